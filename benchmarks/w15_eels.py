"""W15 EELS tools: the first day's spectrum-image tools against HyperSpy/exspy.

Issue 24 asks for the EELS tools to be measured against HyperSpy; this
workload is not in shared/BENCHMARKS.md, so it has no target of its own:
it reports each tool's time against the raw read pass and against HyperSpy
2.5 on the same data, and how far the two results are apart.

The data (S: 128x128x1024 float32, --quick 32x32x1024): an EELS spectrum
image over -30 ... 481.5 eV (0.5 eV channels): a zero-loss peak whose
position drifts smoothly over the scan (within 1.5 eV), a power-law
background ``A E^-3`` from 20 eV on (``A`` varying over the scan) and an
edge at 400 eV, Poisson counts; a chunked uncompressed netCDF4/HDF5 file
(16 scan rows a chunk, 8 MiB), in the page cache. Tools, each computed to
numpy (xsignal: open, build, ``.values``; HyperSpy: the data in memory, as
its users run these, a copy made outside the timing for its in-place
methods):

- ``remove_background(signal_range=(300, 390))``, a power law
  (HyperSpy's ``fast=True``: the two-area estimate, xsignal's too);
- ``align1D(start=-5, end=5)``: the shifts of the zero-loss peak
  (cross-correlation with the middle pixel, sub-channel interpolation) and
  each spectrum shifted by them (linear interpolation);
- ``smooth_savitzky_golay(window_length=11, polynomial_order=3)``;
- ``gaussian_filter(FWHM=2)`` (eV);
- ``integrate_simpson`` over energy.

Agreement, on the whole map: the largest difference over the result's
largest magnitude (shifts: the largest difference in eV, and where both
aligned spectra hold values).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import xsignal
from benchmarks.common import (
    DATA_DIR,
    HYPERSPY,
    Context,
    Row,
    compare,
    run_hyperspy,
    write_spectra,
)
from benchmarks.limits import raw_pass

CHANNELS = 1024
OFFSET, SCALE = -30.0, 0.5
RANGE = (300.0, 390.0)  # the background's fitting window, eV
ZLP = (-5.0, 5.0)  # the alignment window, eV
RAW = "raw pass"
TOOLS = ("remove_background", "align1D", "savitzky_golay", "gaussian_filter", "simpson")


def eels_file(ctx: Context) -> Path:
    """The W15 file (written once, cached), chunks of 16 scan rows."""
    ny, nx = (32, 32) if ctx.quick else (128, 128)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"eels_{ny}x{nx}x{CHANNELS}.nc"
    if path.exists():
        return path
    energy = OFFSET + SCALE * np.arange(CHANNELS)
    y, x = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    drift = 1.5 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)  # eV
    amplitude = 2.7e10 * (1 + 0.3 * np.cos(3 * x + 2 * y))  # 1000 counts at 300 eV
    rng = np.random.default_rng(15)
    safe = np.maximum(energy, 20.0)
    edge = np.where(energy >= 400, 200 * (safe / 400) ** -2, 0.0)

    def slab(rows: slice) -> np.ndarray:
        zlp = 1e6 * np.exp(-0.5 * ((energy - drift[rows, :, None]) / 1.0) ** 2)
        background = np.where(energy >= 20, amplitude[rows, :, None] * safe**-3, 0)
        return rng.poisson(zlp + background + edge)

    return write_spectra(path, energy, (ny, nx), 16, slab)


def xsignal_tools(path: Path) -> dict:
    def opened():
        return xsignal.open(path).signal

    return {
        "remove_background": lambda: opened().remove_background(RANGE).values,
        "align1D": lambda: opened().align1D(*ZLP).values,
        "savitzky_golay": lambda: opened().smooth_savitzky_golay(11, 3).values,
        "gaussian_filter": lambda: opened().gaussian_filter(2.0).values,
        "simpson": lambda: opened().integrate_simpson().values,
        "shifts": lambda: opened().estimate_shift1D(*ZLP).values,
    }


HS_EELS = """
import logging
logging.getLogger("hyperspy").setLevel(logging.ERROR)

with h5py.File(ARGS["path"], "r") as f:
    energy, data = f["energy"][()], f["data"][()]

s = hs.signals.Signal1D(data)
ax = s.axes_manager.signal_axes[0]
ax.offset, ax.scale, ax.units = float(energy[0]), float(energy[1] - energy[0]), "eV"
ax.is_binned = False
start, end = ARGS["zlp"]

def in_place(method):
    # HyperSpy's smoothing and alignment change the signal: a fresh copy
    # each time, made outside the timing
    def run(copy):
        method(copy)
        return copy.data
    return run

def align(c):
    c.align1D(start=start, end=end, crop=False, show_progressbar=False)

tools = {
    "remove_background": lambda c: s.remove_background(
        signal_range=tuple(ARGS["range"]), background_type="Power law", fast=True,
        show_progressbar=False).data,
    "align1D": in_place(align),
    "savitzky_golay": in_place(
        lambda c: c.smooth_savitzky_golay(polynomial_order=3, window_length=11)),
    "gaussian_filter": in_place(lambda c: c.gaussian_filter(2.0)),
    "simpson": lambda c: s.integrate_simpson(ax).data,
    "shifts": lambda c: s.estimate_shift1D(start=start, end=end,
                                           show_progressbar=False),
}
seconds, results = {}, {}
for name, tool in tools.items():
    times = []
    for _ in range(ARGS["repeats"] + 1):  # the first untimed
        copy = s.deepcopy()
        t0 = time.perf_counter()
        found = tool(copy)
        times.append(time.perf_counter() - t0)
    seconds[name] = statistics.median(times[1:])
    results[name] = np.asarray(found, dtype=np.float64)
np.savez(ARGS["out"], **results)
emit(seconds=seconds, peak_mib=peak_rss_mib())
"""


def agreement(name: str, ours: np.ndarray, theirs: np.ndarray) -> str:
    """How far xsignal's result is from HyperSpy's, in words."""
    ours = np.asarray(ours, np.float64).reshape(theirs.shape)
    both = np.isfinite(ours) & np.isfinite(theirs)
    if name == "shifts":  # HyperSpy's sign: the shift that aligns
        diff = min(np.abs(ours - theirs).max(), np.abs(ours + theirs).max())
        return f"shifts within {diff:.2g} eV of HyperSpy's"
    scale = np.abs(theirs[both]).max()
    diff = np.abs(ours - theirs)[both].max() / scale
    return f"largest difference from HyperSpy {diff:.2g} of its largest value"


def run(ctx: Context) -> list[Row]:
    path = eels_file(ctx)
    load = os.getloadavg()
    with xsignal.open(path) as da:
        pixels = da.shape[0] * da.shape[1]
    tools = xsignal_tools(path)
    measured = compare(
        {RAW: lambda: raw_pass(path), **{k: tools[k] for k in TOOLS}},
        ctx.repeats,
        baseline=RAW,
    )
    shifts = tools["shifts"]()
    hs = run_hyperspy(
        ctx,
        HS_EELS,
        path=path,
        range=RANGE,
        zlp=ZLP,
        repeats=max(1, min(ctx.repeats, 3)),
        out=path.with_name("w15_hyperspy.npz"),
    )
    found = dict(np.load(path.with_name("w15_hyperspy.npz"))) if hs else {}
    raw_s = measured[RAW].seconds
    rows = [Row("W15 EELS", RAW, raw_s)]
    for name in TOOLS:
        m = measured[name]
        note = f"{m.seconds / pixels * 1e6:.3g} us/pixel"
        if name in found:
            note += "; " + agreement(name, m.result, found[name])
        if name == "align1D" and "shifts" in found:
            note += "; " + agreement("shifts", shifts, found["shifts"])
        rows.append(
            Row(f"W15 {name}", "xsignal", m.seconds, vs_raw=m.ratio, extra=note)
        )
        if hs:
            sec = hs["seconds"][name]
            rows.append(
                Row(
                    f"W15 {name}",
                    HYPERSPY,
                    sec,
                    vs_raw=sec / raw_s,
                    extra=f"{sec / pixels * 1e6:.3g} us/pixel, in memory",
                    peak_mib=hs["peak_mib"],
                )
            )
    ctx.notes.append(
        f"W15 {pixels} pixels x {CHANNELS} channels float32; load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    return rows
