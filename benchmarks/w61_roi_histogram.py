"""W61 (issue 6): an ROI's mean spectrum and an fd histogram of the M file.

- ``W61-roi``: a disc of radius a quarter of the field at the centre, the
  NaN-ignoring mean spectrum of its pixels, computed from the file.
- ``W61-hist``: the histogram of every value with numpy's ``"fd"`` rule.

Baselines: raw h5py loops over the on-disk chunks (for fd the raw baseline
reads everything into memory and calls ``np.histogram``, exact quartiles),
xarray+dask by hand, and HyperSpy 2.5 lazily (optional, in its own venv).
"""

from __future__ import annotations

import h5py
import numpy as np
import xarray as xr

import xsignal
from benchmarks.common import (
    HYPERSPY,
    Context,
    Row,
    compare,
    hspy_file,
    rows_from,
    run_hyperspy,
)


def disc(shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(cx, cy, r) in index units of the centre disc of the navigation."""
    ny, nx = shape[:2]
    return (nx - 1) / 2, (ny - 1) / 2, min(nx - 1, ny - 1) / 4


def disc_mask(shape: tuple[int, ...]) -> np.ndarray:
    cx, cy, r = disc(shape)
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r**2


def raw_roi(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        dset = f["data"]
        mask = disc_mask(dset.shape)
        total = np.zeros(dset.shape[-1])
        count = 0
        for sl in dset.iter_chunks():
            m = mask[sl[0], sl[1]]
            if m.any():
                total += dset[sl][m].sum(axis=0, dtype="f8")
                count += int(m.sum())
        return total / count


def by_hand_roi(path) -> np.ndarray:
    da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    mask = xr.DataArray(disc_mask(da.shape), dims=("y", "x"))
    return da.where(mask).mean(("y", "x")).values


def xsignal_roi(path) -> np.ndarray:
    da = _open(path)
    cx, cy, r = disc(da.shape)
    step = float(da["x"][1] - da["x"][0])  # coords are in nm: scale the disc
    region = xsignal.CircleROI(cx * step, cy * step, r * step)(da)
    return xsignal.nanmean(region, "navigation").compute().values


def raw_hist(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        values = f["data"][...]
    return np.histogram(values, bins="fd")[0]


def xsignal_hist(path) -> np.ndarray:
    return xsignal.histogram(_open(path), bins="fd").compute().values


def _open(path) -> xr.DataArray:
    return xsignal.open(path)


HS_ROI_HIST = """
s = hs.load(ARGS["hspy"], lazy=True)
ny, nx = s.axes_manager.navigation_shape[::-1]
cx, cy, r = (nx - 1) / 2, (ny - 1) / 2, min(nx - 1, ny - 1) / 4

def roi():
    return hs.roi.CircleROI(cx, cy, r)(s).nanmean(axis=(0, 1)).compute()

def hist():
    return s.get_histogram(bins="fd").compute()

out = {}
for name, fn in (("roi", roi), ("hist", hist)):
    try:
        out[name] = timed(fn, ARGS["repeats"])[0]
    except Exception as e:
        out[name] = repr(e)[:200]
emit(**out)
"""


def run(ctx: Context) -> list[Row]:
    path = ctx.data_file("M")
    roi = compare(
        {
            "raw": lambda: raw_roi(path),
            "xarray+dask": lambda: by_hand_roi(path),
            "xsignal": lambda: xsignal_roi(path),
        },
        ctx.repeats,
    )
    for tool in ("xarray+dask", "xsignal"):
        np.testing.assert_allclose(roi[tool].result, roi["raw"].result, rtol=1e-5)
    hist = compare(
        {"raw": lambda: raw_hist(path), "xsignal": lambda: xsignal_hist(path)},
        ctx.repeats,
    )
    bins = {t: f"{len(m.result)} bins" for t, m in hist.items()}
    rows = rows_from("W61-roi", roi) + rows_from("W61-hist", hist, **bins)
    hspy = hspy_file(ctx, path)
    hs = (hspy and run_hyperspy(ctx, HS_ROI_HIST, hspy=hspy, repeats=ctx.repeats)) or {}
    for key, workload in (("roi", "W61-roi"), ("hist", "W61-hist")):
        value = hs.get(key)
        if isinstance(value, float):
            rows.append(Row(workload, HYPERSPY, value))
        elif value is not None:
            rows.append(Row(workload, HYPERSPY, float("nan"), extra=f"failed: {value}"))
    return rows
