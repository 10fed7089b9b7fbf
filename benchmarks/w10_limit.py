"""W10 at the machine's limit: each whole-file pass against what the machine
can do on the same file, measured in the same run (:mod:`benchmarks.limits`).

- single passes (navigator, reductions over signal and navigation dims,
  a virtual detector, the vectorized map, histogram counting, and W1 as a
  user writes it, open included) against the **raw pass**;
- SVD, PCA, ORPCA, ORNMF (4 components) against the **exact-SVD limit**,
  with the largest principal angle to the true factors.

On the M file; with ``--full`` also on the 4 GiB L file (in the page cache:
it is read once before timing).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import xsignal
from benchmarks.common import Context, Row, compare
from benchmarks.decomposition import K, degrees, true_factors
from benchmarks.limits import exact_svd_limit, raw_pass
from benchmarks.w2_map import com_block

RAW = "raw pass"
SVD_LIMIT = "exact-SVD limit"


def _open(path) -> xr.DataArray:
    return xsignal.open(path)


def _values(da: xr.DataArray) -> np.ndarray:
    return da.signal.compute(progress=False).values


def single_pass_tools(path) -> dict:
    """What a user writes for each single pass, open to computed values."""
    da = _open(path)
    energy = da["energy"].values
    lo, hi = energy[len(energy) // 4], energy[len(energy) // 2]
    weights = np.arange(da.sizes["energy"], dtype="f4")

    def com():
        d = _open(path)
        return _values(d.signal.map(com_block, vectorized=True, weights=weights))

    def histogram():
        d = _open(path)
        return _values(d.signal.histogram(bins=100, range=(0.0, 200.0)))

    grouped = _grouped_chunks(path)

    return {
        "W1 as written (open + nansum)": lambda: _values(
            _open(path).signal.nansum("signal")
        ),
        "navigator": lambda: _values(_open(path).signal.navigator()),
        "sum (signal)": lambda: _values(_open(path).signal.sum("signal")),
        "nanmean (signal)": lambda: _values(_open(path).signal.nanmean("signal")),
        "max (signal)": lambda: _values(_open(path).signal.max("signal")),
        "nanstd (signal)": lambda: _values(_open(path).signal.nanstd("signal")),
        "mean (navigation)": lambda: _values(_open(path).signal.mean("navigation")),
        "nanmax (navigation)": lambda: _values(_open(path).signal.nanmax("navigation")),
        "virtual detector": lambda: _values(
            _open(path).sel(energy=slice(lo, hi)).signal.sum("signal")
        ),
        "vectorized map (centre of mass)": com,
        "histogram counting (100 bins)": histogram,
        "navigator, blocks of ~16 MiB": lambda: _values(
            xsignal.open(path, chunks=grouped).signal.navigator()
        ),
        "nanmean (signal), blocks of ~16 MiB": lambda: _values(
            xsignal.open(path, chunks=grouped).signal.nanmean("signal")
        ),
    }


def _grouped_chunks(path) -> dict:
    """Whole stored chunks, several per dask block (about 16 MiB): fewer
    tasks, blocks that still fit in the CPU's cache."""
    da = xsignal.open(path)
    first = da.dims[0]
    stored = da.chunks[0][0]
    block_bytes = da.nbytes / da.shape[0] * stored
    return {first: stored * max(1, round(16 * 2**20 / block_bytes))}


def decompose(path, algorithm: str) -> np.ndarray:
    dec = xsignal.decomposition(_open(path), algorithm, K, progress=False)
    return dec.factors.values.T


def rows_for(ctx: Context, size: str) -> list[Row]:
    path = ctx.data_file(size)
    label = f"W10-{size}"
    raw_pass(path)  # into the page cache
    single = {RAW: lambda: raw_pass(path), **single_pass_tools(path)}
    measured = compare(single, ctx.repeats, baseline=RAW)
    rows = [
        Row(label, name, m.seconds, vs_raw=m.ratio, extra="" if name == RAW else RAW)
        for name, m in measured.items()
    ]
    truth = true_factors(xsignal.open(path).shape)
    big = size == "L"
    decompositions = {SVD_LIMIT: lambda: exact_svd_limit(path, K)}
    for algorithm in ("SVD", "PCA", "ORPCA", "ORNMF"):
        decompositions[algorithm] = lambda a=algorithm: decompose(path, a)
    measured = compare(
        decompositions,
        1 if big else max(1, ctx.repeats // 2),
        baseline=SVD_LIMIT,
        warmup=not big,
    )
    for name, m in measured.items():
        extra = "" if name == SVD_LIMIT else SVD_LIMIT
        row = Row(label, name, m.seconds, vs_raw=m.ratio, extra=extra)
        row.degrees = degrees(m.result, truth)
        rows.append(row)
    return rows


def run(ctx: Context) -> list[Row]:
    rows = rows_for(ctx, "M")
    if ctx.full:
        rows += rows_for(ctx, "L")
    else:
        ctx.notes.append("W10 on the 4 GiB L file skipped: ask with --full")
    return rows
