"""Shared pieces of the benchmark workloads: data files, paired timing, memory,
HyperSpy in its own environment."""

from __future__ import annotations

import functools
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from xsignal.testing import write_spectrum_image

DATA_DIR = Path(os.environ.get("XSIGNAL_BENCH_DATA", Path(__file__).parent / ".data"))
HS_PYTHON = Path(os.environ.get("XSIGNAL_HS_PYTHON", "/work/hs-venv/bin/python"))
HYPERSPY = "HyperSpy 2.5"  # the tool name of HyperSpy rows: the "vs HyperSpy" base

SIZES = {
    "S": (128, 128, 1024),
    "M": (256, 256, 1024),
    "L": (1024, 1024, 1024),
    # --quick stand-ins
    "qS": (32, 32, 512),
    "qM": (64, 64, 512),
    "qL": (128, 128, 512),
}


@dataclass
class Context:
    """What every workload gets: sizes to use, repeats, whether to run long ones."""

    quick: bool = False
    repeats: int = 5
    full: bool = False  # run the long workloads (W7 on the 4 GiB file)
    notes: list[str] = field(default_factory=list)

    def size(self, name: str) -> tuple[int, ...]:
        return SIZES[("q" + name) if self.quick else name]

    def data_file(self, name: str) -> Path:
        """The synthetic benchmark file of size ``name`` (written once, cached)."""
        shape = self.size(name)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = DATA_DIR / ("si_" + "x".join(map(str, shape)) + ".nc")
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            write_spectrum_image(tmp, shape, rank=4, seed=0)
            tmp.rename(path)
        return path


def write_spectra(
    path: Path,
    energy: Any,
    nav: tuple[int, int],
    rows: int,
    slab: Callable[[slice], Any],
) -> Path:
    """A netCDF4/HDF5 spectrum image (y, x, energy) float32, chunks of
    ``rows`` scan rows and whole spectra, its ``energy`` coordinate in eV
    and the signal dim marked; ``slab(rows)`` gives the counts of those
    scan rows. Written to a temporary name, then renamed: a file that
    exists is whole (the workloads cache it)."""
    import h5netcdf
    import numpy as np

    ny, nx = nav
    tmp = path.with_suffix(".tmp")
    with h5netcdf.File(tmp, "w") as f:
        f.dimensions = {"y": ny, "x": nx, "energy": len(energy)}
        v = f.create_variable("energy", ("energy",), "f8")
        v[:] = energy
        v.attrs["units"] = "eV"
        var = f.create_variable(
            "data", ("y", "x", "energy"), "f4", chunks=(rows, nx, len(energy))
        )
        var.attrs.update({"units": "counts", "signal_dims": json.dumps(["energy"])})
        for start in range(0, ny, rows):
            sl = slice(start, start + rows)
            var[sl] = np.asarray(slab(sl), dtype="f4")
    tmp.rename(path)
    return path


@dataclass
class Row:
    """One measured line of the report.

    ``vs_raw`` is the median of per-pair ratios (this tool's time over the raw
    baseline's, run back to back); ``vs_hyperspy`` is this tool's median time
    over the workload's HyperSpy row's (filled in by the runner).
    """

    workload: str
    tool: str
    seconds: float
    vs_raw: float | None = None
    vs_hyperspy: float | None = None
    degrees: float | None = None
    peak_mib: float | None = None
    extra: str = ""


# --- timing ---------------------------------------------------------------------


@dataclass
class Measurement:
    """Median seconds of one tool, its median paired ratio, its last result."""

    seconds: float
    ratio: float | None
    result: Any


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(
    tools: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    baseline: str = "raw",
    warmup: bool = True,
) -> dict[str, Measurement]:
    """Time every tool against ``baseline`` in back-to-back pairs.

    Each repeat runs the baseline then one tool, for every tool in turn, so a
    burst of load from other users of a shared machine hits both sides of a
    pair; the ratio reported is the median of the per-pair ratios. One
    untimed warm-up run of each tool first (file cache, imports, JIT-like
    first-call costs) unless ``warmup`` is false.
    """
    base = tools[baseline]
    results = {name: fn() for name, fn in tools.items()} if warmup else {}
    times: dict[str, list[float]] = {name: [] for name in tools}
    ratios: dict[str, list[float]] = {name: [] for name in tools if name != baseline}
    for _ in range(max(1, repeats)):
        if not ratios:  # only the baseline
            seconds, results[baseline] = timed(base)
            times[baseline].append(seconds)
        for name in ratios:
            base_seconds, results[baseline] = timed(base)
            seconds, results[name] = timed(tools[name])
            times[baseline].append(base_seconds)
            times[name].append(seconds)
            ratios[name].append(seconds / base_seconds)
    return {
        name: Measurement(
            statistics.median(times[name]),
            statistics.median(ratios[name]) if name in ratios else None,
            results[name],
        )
        for name in tools
    }


def rows_from(
    workload: str, measured: dict[str, Measurement], **extra: str
) -> list[Row]:
    """One row per measured tool; ``extra`` maps tool names to notes."""
    return [
        Row(workload, name, m.seconds, vs_raw=m.ratio, extra=extra.get(name, ""))
        for name, m in measured.items()
    ]


# --- memory ---------------------------------------------------------------------


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB) since its last ``exec``.

    ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: on Linux the latter keeps
    the parent's resident size at ``fork``, which would count the runner's
    memory in a child's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


# --- HyperSpy 2.5, in its own virtualenv ------------------------------------------

HS_PRELUDE = (
    textwrap.dedent(
        """
    import json, statistics, sys, time
    from pathlib import Path
    import h5py, numpy as np
    import hyperspy.api as hs

    ARGS = json.loads(sys.argv[1])

    def timed(fn, repeats):
        result = fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times), result

    def emit(**values):
        print(json.dumps(values))
    """
    )
    + "\n"
    + inspect.getsource(peak_rss_mib)
)

HS_CONVERT = textwrap.dedent(
    """
    src, dst = ARGS["src"], Path(ARGS["dst"])
    with h5py.File(src, "r") as f:
        dset = f["data"]
        data, chunks = dset[()], dset.chunks
    cls = hs.signals.Signal1D if ARGS["kind"] == "1d" else hs.signals.Signal2D
    tmp = dst.with_suffix(".tmp.hspy")
    cls(data).save(tmp, chunks=chunks, compression=ARGS["compression"], overwrite=True)
    tmp.rename(dst)
    emit(done=True)
    """
)


@functools.cache
def hyperspy_available() -> bool:
    """True when ``HS_PYTHON`` exists and imports hyperspy."""
    if not HS_PYTHON.exists():
        return False
    done = subprocess.run(
        [str(HS_PYTHON), "-c", "import hyperspy.api"], capture_output=True
    )
    return done.returncode == 0


def run_hyperspy(
    ctx: Context, body: str, timeout: float = 1800, **args: Any
) -> dict | None:
    """Run ``HS_PRELUDE + body`` with ``ARGS = args``; its last JSON line.

    None (and a note) when HyperSpy is missing, fails or times out.
    """
    if not hyperspy_available():
        return None
    script = HS_PRELUDE + textwrap.dedent(body)
    try:
        done = subprocess.run(
            [str(HS_PYTHON), "-c", script, json.dumps(args, default=str)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        ctx.notes.append(f"HyperSpy timed out after {timeout:.0f} s")
        return None
    if done.returncode != 0:
        ctx.notes.append(f"HyperSpy failed: {done.stderr.strip()[-300:]}")
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def hspy_file(
    ctx: Context, path: Path, *, kind: str = "1d", compression: str | None = None
) -> Path | None:
    """``path`` saved as ``.hspy`` by HyperSpy (same chunks; cached), or None."""
    dst = path.with_name(f"{path.stem}_{compression or 'none'}.hspy")
    if dst.exists():
        return dst
    done = run_hyperspy(
        ctx, HS_CONVERT, src=path, dst=dst, kind=kind, compression=compression
    )
    return dst if done is not None else None
