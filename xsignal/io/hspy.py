"""HyperSpy ``.hspy`` files (HDF5): reading, writing, and the
``engine="hspy"`` xarray backend. The layout itself, shared with ``.zspy``
stores, is in :mod:`xsignal.io.layout`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ..handles import H5Source, close_token
from . import layout
from .common import dask_chunks, lazy_array, open_h5, source_for
from .hdf5_write import compression_encoding, fill, writable_scheduler


def is_hspy(handle) -> bool:
    """True for a HyperSpy file (any format version)."""
    return layout.is_hyperspy(handle)


def _layout(handle, variable: str | None):
    return layout.read_layout(handle, variable, handle.filename)


def read_hspy(handle, variable: str | None, *, chunks: Any, token: str) -> xr.DataArray:
    """One signal of an open ``.hspy`` file as a lazy DataArray."""
    name, dset, dims, coords, attrs, sig = _layout(handle, variable)
    src = source_for(handle, dset.name, token)
    data = lazy_array(
        src, dask_chunks(dset.shape, dims, dset.dtype, dset.chunks, chunks, sig)
    )
    out = xr.DataArray(
        data,
        dims=dims,
        coords=coords,
        attrs=attrs,
        name=None if name == layout.UNNAMED else name,
    )
    out.encoding.update(
        {
            "source": handle.filename,
            "chunksizes": dset.chunks,
            "compression": dset.compression,
            "dtype": dset.dtype,
        }
    )
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


# --- the xarray backend -----------------------------------------------------------


class HspyBackendArray(BackendArray):
    """xarray's lazy array protocol over one ``.hspy`` dataset."""

    def __init__(self, src: H5Source) -> None:
        self.src = src
        self.shape = src.shape
        self.dtype = src.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        # basic indexing (ints and slices) reaches h5py; xarray applies any
        # list or array indexing to the result in memory
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self.src.__getitem__
        )


class HspyBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="hspy")``: HyperSpy files in xarray.

    The signal becomes the one data variable (named after the signal),
    with coordinates from its axes; ``chunks={}`` gives the on-disk chunks.
    """

    description = "Open HyperSpy .hspy files (HDF5) in xarray"
    url = "https://github.com/xsignal/xsignal"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "variable")

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        variable: str | None = None,
    ) -> xr.Dataset:
        path = os.fspath(filename_or_obj)
        handle = open_h5(path)
        token = uuid.uuid4().hex
        try:
            if not is_hspy(handle):
                raise ValueError(f"{path} is not a HyperSpy file")
            name, dset, dims, coords, attrs, _ = _layout(handle, variable)
            src = source_for(handle, dset.name, token)
        except BaseException:
            handle.close()
            raise
        data = indexing.LazilyIndexedArray(HspyBackendArray(src))
        var = xr.Variable(dims, data, attrs)
        var.encoding = {
            "chunksizes": dset.chunks,
            "preferred_chunks": dict(zip(dims, dset.chunks or dset.shape)),
            "source": path,
            "dtype": dset.dtype,
        }
        key = "data" if name == layout.UNNAMED else name
        ds = xr.Dataset({key: var}, coords=coords)
        drop = [drop_variables] if isinstance(drop_variables, str) else drop_variables
        if drop:
            ds = ds.drop_vars([d for d in drop if d in ds.variables])
        ds.set_close(lambda: close_token(token))
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            return os.fspath(filename_or_obj).lower().endswith(".hspy")
        except TypeError:
            return False
