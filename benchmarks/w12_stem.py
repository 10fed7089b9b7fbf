"""W12 4D-STEM: single-pass tools on a (128, 128, 128, 128) uint16 HDF5 file.

The file (a (32, 32, 64, 64) one with --quick) holds a bright disc drifting
over the scan on a low background, Poisson counts, uncompressed chunks of
16x16 frames, written once (netCDF4) with a raw ``.bin`` copy of the same
bytes for LiberTEM's raw reader; both sit in the page cache after the
warm-up. Workloads, each timed in back-to-back pairs with the raw read pass
(:func:`raw_pass`: ``read_direct_chunk`` over the stored chunks and a numpy
sum of each, one thread, run just before the tool):

- sum over navigation: ``da.sum(("y", "x"))``; LiberTEM ``SumUDF``;
- navigator: ``da.signal.navigator()``; LiberTEM ``SumSigUDF``;
- BF: ``da.signal.virtual_image(bf)``; LiberTEM ``ApplyMasksUDF``, one mask;
- BF+ADF: ``da.signal.virtual_images([bf, adf])`` (one pass); LiberTEM
  ``ApplyMasksUDF`` with both masks;
- COM: ``da.signal.center_of_mass()``; LiberTEM ``CoMUDF`` (``raw_com``);
- azimuthal: ``da.signal.azimuthal_integral1d(64)``; LiberTEM
  ``ApplyMasksUDF`` with the same 64 annulus weights, sparse; and xsignal
  about a centre off the frame's middle (0.3, -0.2 px: no mirror symmetry,
  so no fold), against LiberTEM's centred time;
- per-frame: :func:`radial_profile` (a Python function per frame) through
  ``da.signal.map`` (xsignal's default route, and under
  ``dask.config.set(scheduler="threads")``); LiberTEM a UDF with
  ``process_frame``.

xsignal opens the file once per tool (outside the timing) and each timed
pass builds the graph and computes it (dask's threaded scheduler); LiberTEM
0.16 runs in its own virtualenv (``XSIGNAL_LT_PYTHON``, default
``/work/libertem-venv/bin/python``) as a subprocess that does the same
pairs with the same raw pass, for each executor (``inline``, ``threads``
and ``dask`` with 2 workers) and loader (``ctx.load("hdf5")`` and
``ctx.load("raw")``), the dataset loaded outside the timing, one BLAS
thread a process (as its workers set). Every result
is checked against xsignal's (sums and detectors equal, COM within 1e-3 px,
profiles within float32 rounding) before a time is reported.

Reported per workload: seconds (min/median/max), the median paired ratio to
the raw pass (same process), the ratio to LiberTEM's best (its best paired
ratio to raw, over executors and loaders: a ratio of ratios, each side
against its own raw pass) and the targets of shared/BENCHMARKS.md W12.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import h5py
import numpy as np

import xsignal
from benchmarks.common import DATA_DIR, Context, Measurement, Row, compare

LT_PYTHON = Path(os.environ.get("XSIGNAL_LT_PYTHON", "/work/libertem-venv/bin/python"))
LIBERTEM = "LiberTEM 0.16"
XS = "xsignal"
WORKLOADS = ("sum", "navigator", "BF", "BF+ADF", "COM", "azimuthal", "per-frame")
NPT = 64  # annuli of the azimuthal profile
# (max x raw, max x LiberTEM's best); per-frame: only against LiberTEM's UDF
TARGETS: dict[str, tuple[float | None, float]] = {
    "sum": (1.2, 1.0),
    "navigator": (1.2, 1.0),
    "BF": (1.2, 1.0),
    "BF+ADF": (1.2, 1.0),
    "COM": (1.2, 1.0),
    "azimuthal": (1.5, 0.5),
    "per-frame": (None, 1.0),
}
SEVERAL_VS_ONE = 1.3  # BF+ADF <= 1.3x BF
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# --- data ------------------------------------------------------------------------


def stem_files(ctx: Context) -> tuple[Path, Path, tuple[int, int, int, int]]:
    """(HDF5 file, raw .bin copy, shape), written once and cached."""
    scan, det = (32, 64) if ctx.quick else (128, 128)
    shape = (scan, scan, det, det)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    stem = "stem_" + "x".join(map(str, shape)) + "_u2"
    path, raw = DATA_DIR / f"{stem}.nc", DATA_DIR / f"{stem}.bin"
    if path.exists() and raw.exists():
        return path, raw, shape
    import h5netcdf

    rng = np.random.default_rng(12)
    k = np.arange(det)
    tmp, tmp_raw = path.with_suffix(".nc.tmp"), raw.with_suffix(".bin.tmp")
    with h5netcdf.File(tmp, "w") as f, open(tmp_raw, "wb") as out:
        f.dimensions = {"y": scan, "x": scan, "ky": det, "kx": det}
        var = f.create_variable(
            "data", ("y", "x", "ky", "kx"), "u2", chunks=(16, 16, det, det)
        )
        var.attrs["signal_dims"] = json.dumps(["ky", "kx"])
        for row0 in range(0, scan, 16):  # one row of chunks at a time
            rows = np.arange(row0, row0 + 16)[:, None]
            cy = det / 2 + det / 32 * np.sin(rows / 7) + np.zeros((1, scan))
            cx = det / 2 + det / 32 * np.cos(np.arange(scan) / 9) + np.zeros((16, 1))
            r2 = (k[:, None] - cy[..., None, None]) ** 2 + (
                k[None, :] - cx[..., None, None]
            ) ** 2
            block = rng.poisson(3 + 200 * (r2 < (det / 8) ** 2)).astype("u2")
            var[row0 : row0 + 16] = block
            out.write(block.tobytes())
    tmp.rename(path)
    tmp_raw.rename(raw)
    return path, raw, shape


def detectors(det: int) -> tuple[xsignal.CircleROI, xsignal.CircleROI]:
    """A bright-field disc and an annular dark-field ring, pixel units."""
    c = det / 2
    return (
        xsignal.CircleROI(c, c, 0.2 * det),
        xsignal.CircleROI(c, c, 0.48 * det, r_inner=0.25 * det),
    )


def masks(det: int) -> np.ndarray:
    """The detectors as (2, det, det) float32 masks, xsignal's pixel rule."""
    y, x = np.mgrid[0:det, 0:det].astype(np.float64)
    return np.stack([r.contains(x, y) for r in detectors(det)]).astype(np.float32)


def annulus_weights(det: int, npt: int = NPT) -> np.ndarray:
    """(npt, det, det) float32: 1/count on the pixels of each annulus, the
    definition of ``xsignal.azimuthal_integral1d`` (centre of the frame,
    0 to the farthest pixel centre, equal widths)."""
    y, x = np.mgrid[0:det, 0:det].astype(np.float64)
    c = (det - 1) / 2
    radius = np.hypot(x - c, y - c)
    width = radius.max() / npt
    index = np.minimum(np.floor(radius / width).astype(np.int64), npt - 1)
    counts = np.bincount(index.ravel(), minlength=npt)
    out = np.zeros((npt, det, det), np.float32)
    for i in range(npt):
        if counts[i]:
            out[i][index == i] = 1.0 / counts[i]
    return out


_RADII: dict = {}


def radial_profile(frame):
    """Mean of one frame over integer radii from its centre: a per-frame
    Python function of a few numpy calls (W11's profile without the FFT)."""
    r = _RADII.get(frame.shape)
    if r is None:
        ny, nx = frame.shape
        yy, xx = np.indices(frame.shape)
        radii = np.hypot(yy - ny // 2, xx - nx // 2).astype(np.intp).ravel()
        r = _RADII[frame.shape] = (radii, np.bincount(radii))
    return np.bincount(r[0], weights=frame.ravel(), minlength=r[1].size) / r[1]


# --- the raw read pass -------------------------------------------------------------


def raw_pass(path):
    """One thread: every stored chunk read with ``read_direct_chunk`` and
    summed with numpy (uint16 accumulated in uint64, exact)."""
    total = 0
    with h5py.File(path, "r") as f:
        dset = f["data"]
        dtype = dset.dtype
        for sel in dset.iter_chunks():
            _, raw = dset.id.read_direct_chunk(tuple(sl.start for sl in sel))
            total += int(np.frombuffer(raw, dtype).sum())
    return total


# --- xsignal -----------------------------------------------------------------------


def xsignal_tools(path: Path, det: int) -> dict[str, Callable[[], np.ndarray]]:
    bf, adf = detectors(det)
    da = xsignal.open(path)

    def per_frame_threads() -> np.ndarray:
        with dask.config.set(scheduler="threads"):
            return da.signal.map(radial_profile).values

    return {
        "sum": lambda: da.sum(("y", "x")).values,
        "navigator": lambda: da.signal.navigator().values,
        "BF": lambda: da.signal.virtual_image(bf).values,
        "BF+ADF": lambda: da.signal.virtual_images([bf, adf]).values,
        "COM": lambda: da.signal.center_of_mass().values,
        "azimuthal": lambda: da.signal.azimuthal_integral1d(NPT).values,
        # a centre off the frame's middle: no mirror symmetry to fold
        "azimuthal (off-centre)": lambda: (
            da.signal.azimuthal_integral1d(
                NPT, center=((det - 1) / 2 + 0.3, (det - 1) / 2 - 0.2)
            ).values
        ),
        "per-frame": lambda: da.signal.map(radial_profile).values,
        "per-frame (threads)": per_frame_threads,
    }


class Recorder:
    """Wraps a tool to keep the seconds of every call after the first
    (the first is :func:`compare`'s untimed warm-up)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.times, self.calls = fn, [], 0

    def __call__(self) -> Any:
        start = time.perf_counter()
        out = self.fn()
        if self.calls:
            self.times.append(time.perf_counter() - start)
        self.calls += 1
        return out


# --- LiberTEM 0.16, in its own virtualenv ------------------------------------------

LT_BODY = """
import json, statistics, sys, time
import numpy as np, h5py
import libertem.api as lt
from libertem.udf import UDF
from libertem.udf.sum import SumUDF
from libertem.udf.sumsigudf import SumSigUDF
from libertem.udf.masks import ApplyMasksUDF
from libertem.udf.com import CoMUDF

ARGS = json.loads(sys.argv[1])


class RadialUDF(UDF):
    def get_result_buffers(self):
        n = radial_profile(np.zeros(self.meta.dataset_shape.sig, "u2")).size
        return {"profile": self.buffer(kind="nav", extra_shape=(n,), dtype="f8")}

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE

    def process_frame(self, frame):
        self.results.profile[:] = radial_profile(frame)


def factories(stack):
    return [(lambda m=m: m) for m in stack]


def udfs(det):
    m = np.load(ARGS["masks"])
    rings = np.load(ARGS["rings"])
    return {
        "sum": (lambda: SumUDF(), "intensity"),
        "navigator": (lambda: SumSigUDF(), "intensity"),
        "BF": (lambda: ApplyMasksUDF(factories(m[:1])), "intensity"),
        "BF+ADF": (lambda: ApplyMasksUDF(factories(m)), "intensity"),
        "COM": (lambda: CoMUDF.with_params(), "raw_com"),
        "azimuthal": (
            lambda: ApplyMasksUDF(factories(rings), use_sparse="scipy.sparse"),
            "intensity",
        ),
        "per-frame": (lambda: RadialUDF(), "profile"),
    }


def run_one(ctx, ds, make, key):
    out = ctx.run_udf(dataset=ds, udf=make())
    return np.asarray(out[key].data)


results, timings = {}, []
shape = ARGS["shape"]
for spec in ARGS["executors"]:
    start = time.perf_counter()
    try:
        ctx = (
            lt.Context.make_with(spec) if spec == "inline"
            else lt.Context.make_with(spec, cpus=2)
        )
    except Exception as exc:
        timings.append({"executor": spec, "error": repr(exc)[:300]})
        continue
    startup = time.perf_counter() - start
    for loader in ("hdf5", "raw"):
        start = time.perf_counter()
        if loader == "hdf5":
            ds = ctx.load("hdf5", path=ARGS["h5"], ds_path="data")
        else:
            ds = ctx.load(
                "raw", path=ARGS["bin"], nav_shape=tuple(shape[:2]),
                sig_shape=tuple(shape[2:]), dtype="uint16",
            )
        load = time.perf_counter() - start
        for name, (make, key) in udfs(shape[-1]).items():
            result = run_one(ctx, ds, make, key)  # warm-up
            tool, base = [], []
            for _ in range(ARGS["repeats"]):
                start = time.perf_counter()
                raw_pass(ARGS["h5"])
                base.append(time.perf_counter() - start)
                start = time.perf_counter()
                result = run_one(ctx, ds, make, key)
                tool.append(time.perf_counter() - start)
            results[f"{spec}/{loader}/{name}"] = result
            timings.append({
                "executor": spec, "loader": loader, "workload": name,
                "times": tool, "raw": base, "load": load, "startup": startup,
            })
    ctx.close()
np.savez(ARGS["out"], **results)
print(json.dumps({"timings": timings}))
"""


@functools.cache
def libertem_available() -> bool:
    if not LT_PYTHON.exists():
        return False
    done = subprocess.run(
        [str(LT_PYTHON), "-c", "import libertem.api"], capture_output=True
    )
    return done.returncode == 0


def run_libertem(ctx: Context, timeout: float = 3600, **args: Any) -> dict | None:
    """The LiberTEM script with ``ARGS = args`` in LiberTEM's venv; its last
    JSON line, or None (and a note) when it is missing or fails."""
    if not libertem_available():
        ctx.notes.append(f"W12: no LiberTEM at {LT_PYTHON}")
        return None
    script = (
        "from __future__ import annotations\n"
        + inspect.getsource(raw_pass)
        + "\n_RADII = {}\n"
        + inspect.getsource(radial_profile)
        + textwrap.dedent(LT_BODY)
    )
    # one BLAS thread a process, as LiberTEM's own workers run: no OpenBLAS
    # threads spinning next to the executor's on 2 cores
    env = dict(os.environ, **{v: "1" for v in BLAS_THREADS})
    try:
        done = subprocess.run(
            [str(LT_PYTHON), "-c", script, json.dumps(args, default=str)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        ctx.notes.append(f"W12: LiberTEM timed out after {timeout:.0f} s")
        return None
    if done.returncode != 0:
        ctx.notes.append(f"W12: LiberTEM failed: {done.stderr.strip()[-300:]}")
        print(done.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- checks ------------------------------------------------------------------------


def check(name: str, mine: np.ndarray, theirs: np.ndarray) -> None:
    """Raise unless LiberTEM's result ``theirs`` agrees with xsignal's."""
    mine = np.asarray(mine, np.float64)
    theirs = np.asarray(theirs, np.float64)
    if name == "sum" or name == "navigator":
        np.testing.assert_array_equal(theirs, mine, err_msg=name)
    elif name in ("BF", "BF+ADF"):
        np.testing.assert_array_equal(theirs.reshape(mine.shape), mine, name)
    elif name == "COM":  # xsignal (..., [x, y]); LiberTEM raw_com (..., [y, x])
        diff = np.abs(theirs[..., ::-1] - mine).max()
        assert diff <= 1e-3, f"COM differs by {diff:.2e} px"
    elif name == "azimuthal":  # xsignal: NaN for an empty annulus
        np.testing.assert_allclose(theirs, np.nan_to_num(mine), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(theirs, mine, rtol=1e-12, err_msg=name)


# --- the workload ------------------------------------------------------------------


def spread(times: list[float]) -> str:
    return f"{min(times):.3f}/{np.median(times):.3f}/{max(times):.3f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def run(ctx: Context) -> list[Row]:
    path, raw_copy, shape = stem_files(ctx)
    det = shape[-1]
    print(f"W12 {shape} uint16, {path.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)
    load_before = load()

    # xsignal: every tool paired with the raw pass, in this process
    start = time.perf_counter()
    xsignal.open(path)
    open_seconds = time.perf_counter() - start
    base = Recorder(lambda: raw_pass(path))
    tools = {name: Recorder(fn) for name, fn in xsignal_tools(path, det).items()}
    measured: dict[str, Measurement] = compare({"raw": base, **tools}, ctx.repeats)
    total = measured["raw"].result
    assert int(measured["sum"].result.sum()) == total, "xsignal sum != raw pass"
    assert int(measured["navigator"].result.sum()) == total, "navigator != raw"

    # LiberTEM: the same pairs in its own venv, its results checked
    lt_best: dict[str, tuple[float, str, list[float]]] = {}
    lt_rows: list[Row] = []
    out = DATA_DIR / "w12_libertem.npz"
    tmp = DATA_DIR / "w12_masks.npy", DATA_DIR / "w12_rings.npy"
    np.save(tmp[0], masks(det))
    np.save(tmp[1], annulus_weights(det))
    lt = run_libertem(
        ctx,
        h5=path,
        bin=raw_copy,
        shape=shape,
        masks=tmp[0],
        rings=tmp[1],
        out=out,
        repeats=ctx.repeats,
        executors=["inline", "threads", "dask"],
    )
    if lt is not None:
        results = np.load(out)
        for t in lt["timings"]:
            if "error" in t:
                ctx.notes.append(f"W12: LiberTEM {t['executor']}: {t['error']}")
                continue
            name, tool = t["workload"], f"{LIBERTEM} {t['executor']}/{t['loader']}"
            mine = measured[name].result
            check(name, mine, results[f"{t['executor']}/{t['loader']}/{name}"])
            ratio = float(np.median(np.divide(t["times"], t["raw"])))
            if name not in lt_best or ratio < lt_best[name][0]:
                lt_best[name] = (ratio, tool, t["times"])
            lt_rows.append(
                Row(
                    f"W12 {name}",
                    tool,
                    float(np.median(t["times"])),
                    vs_raw=ratio,
                    extra=f"min/med/max {spread(t['times'])} s; load {t['load']:.2f} s",
                )
            )

    rows: list[Row] = []
    table = [
        "| W12 workload | tool | s min/med/max | x raw | x LiberTEM best | target |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name in WORKLOADS:
        raw_times = base.times  # the raw pass of every pair
        targets = TARGETS[name]
        best = lt_best.get(name)
        variants = [name] + [v for v in tools if v.startswith(f"{name} (")]
        for tool_name in variants:
            m, times = measured[tool_name], tools[tool_name].times
            vs_lt = best and m.ratio / best[0]
            tool = XS + tool_name[len(name) :]
            goal = " and ".join(
                f"<= {t}x {what}"
                for t, what in zip(targets, ("raw", "LiberTEM"), strict=True)
                if t is not None
            )
            ok = (targets[0] is None or m.ratio <= targets[0]) and (
                vs_lt is None or vs_lt <= targets[1]
            )
            verdict = "meets" if ok else "misses"
            if tool == XS:
                verdicts.append(f"{name} {verdict}")
            note = f"min/med/max {spread(times)} s; vs LiberTEM best {_x(vs_lt)}"
            rows.append(Row(f"W12 {name}", tool, m.seconds, vs_raw=m.ratio, extra=note))
            table.append(
                f"| {name} | {tool} | {spread(times)} | {m.ratio:.2f}x | "
                f"{_x(vs_lt)} | {goal}: {verdict} |"
            )
        if best:
            table.append(
                f"| {name} | best: {best[1]} | {spread(best[2])} | {best[0]:.2f}x"
                " | 1.00x | |"
            )
        rows.append(
            Row(
                f"W12 {name}",
                "raw",
                float(np.median(raw_times)),
                extra=f"min/med/max {spread(raw_times)} s (all pairs)",
            )
        )
        rows.extend(r for r in lt_rows if r.workload == f"W12 {name}")
    several = measured["BF+ADF"].ratio / measured["BF"].ratio
    verdict = "meets" if several <= SEVERAL_VS_ONE else "misses"
    notes = [
        f"W12 {shape} uint16: xsignal {', '.join(verdicts)}",
        f"W12 BF+ADF / BF = {several:.2f}x ({verdict} the target <= {SEVERAL_VS_ONE}x)",
        f"W12 xsignal.open {open_seconds:.3f} s (outside the timings); "
        f"{load_before} before, {load()} after",
    ]
    print("\n".join(table + notes), file=sys.stderr, flush=True)
    ctx.notes.extend(notes)
    return rows


if __name__ == "__main__":
    from benchmarks.run import main

    raise SystemExit(main(["--only", "W12", *sys.argv[1:]]))
