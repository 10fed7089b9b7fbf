"""HyperSpy ``.hspy`` files (HDF5): reading and writing. The layout itself,
shared with ``.zspy`` stores, is in :mod:`xsignal.io.layout`; the
``engine="hspy"`` xarray backend in :mod:`xsignal.io.backend`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import layout
from .common import lazy_array, source_for
from .hdf5_write import compression_encoding, fill, writable_scheduler


def is_hspy(handle) -> bool:
    """True for a HyperSpy file (any format version)."""
    return layout.is_hyperspy(handle)


def _layout(handle, variable: str | None):
    return layout.read_layout(handle, variable, handle.filename)


def read_hspy(handle, variable: str | None, *, chunks: Any, token: str) -> xr.DataArray:
    """One signal of an open ``.hspy`` file as a lazy DataArray."""

    def to_dask(dset, spec):
        return lazy_array(source_for(handle, dset.name, token), spec)

    out = layout.read_signal(
        handle, variable, handle.filename, chunks=chunks, to_dask=to_dask
    )
    out.encoding["compression"] = handle[out.encoding["variable"]].compression
    return out


def write_hspy(
    da: xr.DataArray, path: Path, *, chunks: tuple[int, ...], compression: Any
) -> None:
    """Write ``da`` (signal dims last) to a new ``.hspy`` file ``path``."""
    import h5py

    def put(group, name: str, values: np.ndarray) -> None:
        group.create_dataset(name, data=values)

    options = compression_encoding(compression) if da.ndim else {}
    if da.dtype.kind in "US" or da.dtype == object:
        raise TypeError(
            f"cannot save {da.dtype} data as .hspy: HyperSpy files hold numbers "
            "and booleans"
        )
    with h5py.File(path, "w") as f:
        group = layout.write_signal(f, da, put=put, json_attrs=False)
        dset = group.create_dataset(
            "data",
            shape=da.shape,
            dtype=da.dtype,
            chunks=chunks if da.ndim and da.size else None,
            **({} if not da.size else options),
        )
        if da.size:
            with writable_scheduler():
                fill(dset, da)
