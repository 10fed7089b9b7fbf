"""W1 navigator: open the M file, sum over the signal dim, compute."""

from __future__ import annotations

import h5py
import numpy as np
import xarray as xr

import xsignal
from benchmarks.common import Context, Row, median_time


def raw(path) -> np.ndarray:
    """The machine's limit: an h5py loop over the on-disk chunks."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        out = np.empty(dset.shape[:-1], dtype="f8")
        for sl in dset.iter_chunks():
            nav = sl[:-1]
            out[nav] = dset[sl].sum(axis=-1, dtype="f8")
        return out


def by_hand(path) -> np.ndarray:
    da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    return da.sum("energy").values


def with_xsignal(path) -> np.ndarray:
    da = xsignal.open(path)
    return da.signal.navigator().signal.compute(progress=False).values


def run(ctx: Context) -> list[Row]:
    path = ctx.data_file("M")
    rows = []
    results = {}
    for tool, fn in (("raw", raw), ("xarray+dask", by_hand), ("xsignal", with_xsignal)):
        seconds, results[tool] = median_time(lambda fn=fn: fn(path), ctx.repeats)
        rows.append(Row("W1", tool, seconds, baseline=None if tool == "raw" else "raw"))
    for tool in ("xarray+dask", "xsignal"):
        np.testing.assert_allclose(results[tool], results["raw"], rtol=1e-5)
    return rows
