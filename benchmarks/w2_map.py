"""W2 map: centre of mass of each spectrum (M file) and of each 4D-STEM pattern.

Tools, all timed in this run on the same file, each in back-to-back pairs with
raw (:func:`benchmarks.common.compare`):

- raw: an h5py loop over the on-disk chunks, vectorized numpy on each;
- xarray apply_ufunc: ``xr.apply_ufunc(..., vectorize=True, dask="parallelized")``
  with the per-pixel function, as a user of xarray would write it;
- xsignal map (per pixel) and xsignal map (vectorized=True), on the file opened
  with ``xsignal.open`` (or xarray's h5netcdf reader before the files issue);
- xsignal map on an h5py-backed dask array: the same calls without xarray's
  reader, to separate map's own cost from the reader's;
- HyperSpy 2.5 lazy ``map`` (when ``/work/hs-venv/bin/python`` has HyperSpy), in a
  subprocess, on the same data converted to ``.hspy`` there: uncompressed like
  the netCDF file (the fair baseline), and for the spectra also gzip-compressed
  (HyperSpy's default when saving), whose decompression dominates its time.

Per-pixel time is mostly the user's function: map's own cost is about 0.25 us
per pixel in memory and 0.45 us lazily (HyperSpy 2.5: about 0.9 us lazily),
against some 8 us for one call of ``com_pixel`` on 1024 values.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as dsa
import h5py
import numpy as np
import xarray as xr

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

# --- the functions a user would write -----------------------------------------


def com_pixel(s: np.ndarray, weights: np.ndarray) -> float:
    """Centre of mass of one spectrum."""
    return (s * weights).sum() / s.sum()


def com_block(b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Centre of mass of every spectrum of a block (..., energy)."""
    return (b * weights).sum(-1) / b.sum(-1)


def com_pattern(p: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Centre of mass (row, column) of one 2D pattern."""
    total = p.sum()
    return np.array([(p.sum(1) * ky).sum() / total, (p.sum(0) * kx).sum() / total])


def com_patterns(b: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Centre of mass (row, column) of every pattern of a block (..., ky, kx)."""
    total = b.sum((-2, -1))
    rows = (b.sum(-1) * ky).sum(-1) / total
    cols = (b.sum(-2) * kx).sum(-1) / total
    return np.stack([rows, cols], axis=-1)


# --- readers ------------------------------------------------------------------


def open_xsignal(path: Path) -> xr.DataArray:
    return xsignal.open(path)


class H5Array:
    """An h5py-backed DataArray (dask chunks = file chunks); close() to release."""

    def __init__(self, path: Path) -> None:
        meta = xr.open_dataarray(path, engine="h5netcdf")
        self.file = h5py.File(path, "r")
        dset = self.file[meta.name]
        data = dsa.from_array(dset, chunks=dset.chunks, lock=False)
        self.da = xr.DataArray(
            data, dims=meta.dims, coords=meta.coords, attrs=meta.attrs, name=meta.name
        )
        meta.close()

    def close(self) -> None:
        self.file.close()


def raw(path: Path, block_fn, name: str, out_shape: tuple[int, ...], **kw):
    """The machine's limit: an h5py loop over the on-disk chunks."""
    with h5py.File(path, "r") as f:
        dset = f[name]
        n_nav = dset.ndim - (1 if block_fn is com_block else 2)
        out = np.empty(dset.shape[:n_nav] + out_shape, dtype="f8")
        for sl in dset.iter_chunks():
            out[sl[:n_nav]] = block_fn(dset[sl], **kw)
        return out


# --- HyperSpy in its own environment ------------------------------------------

HS_MAP = """
def com_pixel(s, weights):
    return (s * weights).sum() / s.sum()

def com_pattern(p, ky, kx):
    total = p.sum()
    return np.array([(p.sum(1) * ky).sum() / total, (p.sum(0) * kx).sum() / total])

def work():
    s = hs.load(ARGS["hspy"], lazy=True)
    shape = s.axes_manager.signal_shape[::-1]
    if ARGS["kind"] == "1d":
        kw = {"weights": np.arange(shape[-1], dtype="f4")}
        fn = com_pixel
    else:
        kw = {"ky": np.arange(shape[0], dtype="f4"),
              "kx": np.arange(shape[1], dtype="f4")}
        fn = com_pattern
    out = s.map(fn, inplace=False, lazy_output=False, show_progressbar=False, **kw)
    return np.asarray(out.data)

seconds, result = timed(work, ARGS["repeats"])
np.save(ARGS["out"], result)
emit(seconds=seconds)
"""


def hyperspy_map(
    ctx: Context, path: Path, kind: str, compression: str | None = None
) -> tuple[float, np.ndarray] | None:
    """Median time of HyperSpy's lazy map and its result, or None without HyperSpy.

    The data are saved as ``.hspy`` with ``compression`` (None, like the
    netCDF file, or "gzip", HyperSpy's default when saving).
    """
    hspy = hspy_file(ctx, path, kind=kind, compression=compression)
    out = path.with_name(f"w2_hyperspy_{kind}.npy")
    done = hspy and run_hyperspy(
        ctx, HS_MAP, hspy=hspy, kind=kind, repeats=ctx.repeats, out=out
    )
    return (done["seconds"], np.load(out)) if done else None


# --- 4D-STEM data -------------------------------------------------------------


def stem_file(ctx: Context) -> Path:
    """A 64x64 scan of 128x128 patterns (32x32 of 64x64 with --quick), float32."""
    scan, det = (32, 64) if ctx.quick else (64, 128)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"stem_{scan}x{scan}x{det}x{det}.nc"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    k = np.arange(det)
    tmp = path.with_suffix(".tmp")
    import h5netcdf

    with h5netcdf.File(tmp, "w") as f:
        f.dimensions = {"scan_y": scan, "scan_x": scan, "ky": det, "kx": det}
        var = f.create_variable(
            "data", ("scan_y", "scan_x", "ky", "kx"), "f4", chunks=(2, scan, det, det)
        )
        var.attrs["signal_dims"] = json.dumps(["ky", "kx"])
        for row in range(scan):
            # a bright disc whose centre drifts across the scan, plus counts
            cy = det / 2 + 4 * np.sin(row / 7) + np.zeros(scan)
            cx = det / 2 + 4 * np.cos(np.arange(scan) / 9)
            r2 = (k[None, :, None] - cy[:, None, None]) ** 2 + (
                k[None, None, :] - cx[:, None, None]
            ) ** 2
            mean = 2 + 50 * (r2 < (det / 8) ** 2)
            var[row] = rng.poisson(mean).astype("f4")
    tmp.rename(path)
    return path


# --- the workloads --------------------------------------------------------------


def map_rows(
    ctx: Context,
    workload: str,
    path: Path,
    kind: str,
    raw_fn,
    per_pixel,
    vectorized,
    by_hand=None,
) -> list[Row]:
    """Time raw, xarray (optional), xsignal map per pixel and vectorized, on
    xsignal's reader and on an h5py-backed dask array, and HyperSpy's map."""
    h5 = H5Array(path)
    tools = {"raw": raw_fn}
    if by_hand is not None:
        tools["xarray apply_ufunc"] = by_hand
    tools["xsignal map"] = lambda: per_pixel(open_xsignal(path))

    def in_processes():
        with xsignal.set_options(map_processes=True):
            return per_pixel(open_xsignal(path))

    # the map is short (under a second): "auto" keeps it in threads
    tools["xsignal map (worker processes)"] = in_processes
    tools["xsignal map vectorized"] = lambda: vectorized(open_xsignal(path))
    tools["xsignal map (h5py reader)"] = lambda: per_pixel(h5.da)
    tools["xsignal map vectorized (h5py reader)"] = lambda: vectorized(h5.da)
    try:
        measured = compare(tools, ctx.repeats)
    finally:
        h5.close()
    results = {tool: m.result for tool, m in measured.items()}
    rows = rows_from(workload, measured)
    hs = hyperspy_map(ctx, path, kind)
    if hs is not None:
        rows.append(Row(workload, HYPERSPY, hs[0]))
        results[HYPERSPY] = hs[1]
        gz = hyperspy_map(ctx, path, kind, "gzip") if kind == "1d" else None
        if gz is not None:
            tool = f"{HYPERSPY} (gzip .hspy)"
            rows.append(Row(workload, tool, gz[0], extra="HyperSpy's default save"))
            results[tool] = gz[1]
    for tool, value in results.items():
        np.testing.assert_allclose(value, results["raw"], rtol=1e-4, err_msg=tool)
    return rows


def run_spectra(ctx: Context) -> list[Row]:
    path = ctx.data_file("M")
    weights = np.arange(ctx.size("M")[-1], dtype="f4")

    def by_hand() -> np.ndarray:
        da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
        out = xr.apply_ufunc(
            com_pixel,
            da,
            input_core_dims=[["energy"]],
            vectorize=True,
            dask="parallelized",
            output_dtypes=[np.float32],
            kwargs={"weights": weights},
        )
        return out.values

    return map_rows(
        ctx,
        "W2",
        path,
        "1d",
        lambda: raw(path, com_block, "data", (), weights=weights),
        lambda da: da.signal.map(com_pixel, weights=weights).values,
        lambda da: da.signal.map(com_block, vectorized=True, weights=weights).values,
        by_hand,
    )


def run_stem(ctx: Context) -> list[Row]:
    path = stem_file(ctx)
    with h5py.File(path, "r") as f:
        det = f["data"].shape[-2:]
    ky, kx = (np.arange(n, dtype="f4") for n in det)
    sizes = {"axis": 2}
    return map_rows(
        ctx,
        "W2-4D",
        path,
        "2d",
        lambda: raw(path, com_patterns, "data", (2,), ky=ky, kx=kx),
        lambda da: (
            da.signal.map(com_pattern, ky=ky, kx=kx, output_signal_sizes=sizes).values
        ),
        lambda da: da.signal.map(com_patterns, vectorized=True, ky=ky, kx=kx).values,
    )


def run(ctx: Context) -> list[Row]:
    return run_spectra(ctx) + run_stem(ctx)
