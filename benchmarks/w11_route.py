"""W11 route: a numpy-heavy per-frame function through ``map`` on 4D-STEM frames.

A (64, 64, 128, 128) uint16 file (32x32 frames with --quick), chunked a few
scan rows at a time (~4 MiB), and one function per 128x128 frame: the
modulus of its 2D FFT, then its radial profile (``np.bincount`` over integer
radii), 91 values a frame. Tools, all on the same data in this run, each in
back-to-back pairs with raw (:func:`benchmarks.common.compare`):

- raw: an h5py loop over the on-disk chunks, the function on each frame, one
  thread;
- xsignal map (default): ``xsignal.open(path).signal.map(radial_fft)`` then
  compute, nothing chosen: xsignal decides where the pixel loops run (a map
  estimated to last over a second may go to its own worker processes);
- xsignal map (threads): the same under ``dask.config.set(scheduler="threads")``;
- HyperSpy 2.5: ``s.map(radial_fft, inplace=False)`` on the lazy ``.hspy``
  copy of the file, then ``compute()`` (its own virtualenv, a subprocess).

The workload's targets: default <= 1.1x threads, and default <= 0.5x HyperSpy.
Both ratios are printed (medians over medians; default / threads also as
the ratio of the two tools' paired ratios to raw, steadier on a loaded
machine) and added to the notes.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
from pathlib import Path

import dask
import h5py
import numpy as np

import xsignal
from benchmarks.common import (
    DATA_DIR,
    HYPERSPY,
    Context,
    Row,
    compare,
    hspy_file,
    rows_from,
    run_hyperspy,
)

DETECTOR = 128  # frame size, with --quick too: the per-frame cost stays the same
DEFAULT = "xsignal map (default)"
THREADS = "xsignal map (threads)"


def radial_fft(frame: np.ndarray) -> np.ndarray:
    """Radial profile of the modulus of the (centred) 2D FFT of one frame."""
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(frame)))
    ny, nx = frame.shape
    y, x = np.indices(frame.shape)
    r = np.hypot(y - ny // 2, x - nx // 2).astype(np.intp).ravel()
    return np.bincount(r, weights=spectrum.ravel()) / np.bincount(r)


def route_file(ctx: Context) -> Path:
    """The uint16 4D file (written once, cached): a bright disc drifting over
    the scan on a low background, Poisson counts; netCDF4, chunks of two scan
    rows (4 MiB at full size)."""
    scan, det = (32 if ctx.quick else 64), DETECTOR
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"route_{scan}x{scan}x{det}x{det}_u2.nc"
    if path.exists():
        return path
    import h5netcdf

    rng = np.random.default_rng(11)
    k = np.arange(det)
    tmp = path.with_suffix(".tmp")
    with h5netcdf.File(tmp, "w") as f:
        f.dimensions = {"scan_y": scan, "scan_x": scan, "ky": det, "kx": det}
        var = f.create_variable(
            "data",
            ("scan_y", "scan_x", "ky", "kx"),
            "u2",
            chunks=(2, scan, det, det),
        )
        var.attrs["signal_dims"] = json.dumps(["ky", "kx"])
        for row in range(scan):
            cy = det / 2 + 4 * np.sin(row / 7) + np.zeros(scan)
            cx = det / 2 + 4 * np.cos(np.arange(scan) / 9)
            r2 = (k[None, :, None] - cy[:, None, None]) ** 2 + (
                k[None, None, :] - cx[:, None, None]
            ) ** 2
            mean = 3 + 200 * (r2 < (det / 8) ** 2)
            var[row] = rng.poisson(mean).astype("u2")
    tmp.rename(path)
    return path


def raw(path: Path) -> np.ndarray:
    """One thread: an h5py loop over the on-disk chunks, the function per frame."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        out = None
        for sl in dset.iter_chunks():
            block = dset[sl]
            nav = block.shape[:2]
            profiles = [radial_fft(block[i]) for i in np.ndindex(*nav)]
            if out is None:
                out = np.empty(dset.shape[:2] + profiles[0].shape)
            out[sl[:2]] = np.reshape(profiles, nav + profiles[0].shape)
        return out


def with_xsignal(path: Path) -> np.ndarray:
    da = xsignal.open(path)
    return da.signal.map(radial_fft).values


def with_threads(path: Path) -> np.ndarray:
    with dask.config.set(scheduler="threads"):
        return with_xsignal(path)


HS_MAP = (
    inspect.getsource(radial_fft)
    + """
def work():
    s = hs.load(ARGS["hspy"], lazy=True)
    out = s.map(radial_fft, inplace=False, show_progressbar=False)
    out.compute(show_progressbar=False)
    return np.asarray(out.data)

seconds, result = timed(work, ARGS["repeats"])
np.save(ARGS["out"], result)
emit(seconds=seconds)
"""
)


def first_call(path: Path) -> float:
    """Seconds of xsignal's default map in a process without xsignal's worker
    pool (stopped first, when there is one): what a user's first call costs."""
    for name in ("xsignal.engine", "xsignal.pool"):  # internal: where it lives
        try:
            importlib.import_module(name).shutdown()
        except (ImportError, AttributeError):
            continue
    start = time.perf_counter()
    with_xsignal(path)
    return time.perf_counter() - start


def ratio_note(
    name: str, value: float | None, target: float, paired: float | None = None
) -> str:
    if value is None:
        return f"W11 {name}: not measured"
    verdict = "meets" if value <= target else "misses"
    also = "" if paired is None else f"; {paired:.2f}x from the pairs with raw"
    return f"W11 {name} = {value:.2f}x ({verdict} the target <= {target}x{also})"


def run(ctx: Context) -> list[Row]:
    path = route_file(ctx)
    cold = first_call(path)
    tools = {
        "raw": lambda: raw(path),
        DEFAULT: lambda: with_xsignal(path),
        THREADS: lambda: with_threads(path),
    }
    measured = compare(tools, ctx.repeats)
    for tool in (DEFAULT, THREADS):
        np.testing.assert_allclose(
            measured[tool].result, measured["raw"].result, rtol=1e-6, err_msg=tool
        )
    rows = rows_from(
        "W11",
        measured,
        **{DEFAULT: f"first call {cold:.2f} s (xsignal's pool stopped before)"},
    )
    hspy = hspy_file(ctx, path, kind="2d")
    out = path.with_name("w11_hyperspy.npy")
    hs = hspy and run_hyperspy(ctx, HS_MAP, hspy=hspy, repeats=ctx.repeats, out=out)
    hs_seconds = None
    if hs:
        np.testing.assert_allclose(np.load(out), measured["raw"].result, rtol=1e-6)
        hs_seconds = hs["seconds"]
        rows.append(Row("W11", HYPERSPY, hs_seconds))
    default = measured[DEFAULT].seconds
    notes = [
        ratio_note(
            "default / threads",
            default / measured[THREADS].seconds,
            1.1,
            paired=measured[DEFAULT].ratio / measured[THREADS].ratio,
        ),
        ratio_note("default / HyperSpy", hs_seconds and default / hs_seconds, 0.5),
    ]
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    ctx.notes.extend(notes)
    return rows


if __name__ == "__main__":
    from benchmarks.run import main

    raise SystemExit(main(["--only", "W11", *sys.argv[1:]]))
