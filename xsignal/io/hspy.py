"""HyperSpy ``.hspy`` files (HDF5): reading and writing. The layout itself,
shared with ``.zspy`` stores, is in :mod:`xsignal.io.hyperspy`; the
``engine="hspy"`` xarray backend in :mod:`xsignal.io.backend`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import hyperspy
from .common import source_for
from .h5source import url_of
from .hdf5_write import compression_encoding, fill, navigator_chunks, new_hdf5


def is_hspy(handle: Any) -> bool:
    """True for a HyperSpy file (any format version)."""
    return hyperspy.is_hyperspy(handle)


def read_hspy(handle: Any, variable: str | int | None, *, token: str) -> xr.Dataset:
    """One signal of an open ``.hspy`` file as a lazily indexed Dataset."""
    ds = hyperspy.read_signal(
        handle,
        variable,
        url_of(handle),
        to_source=lambda dset: source_for(handle, dset.name, token),
    )
    for var in ds.data_vars.values():
        var.encoding["compression"] = handle[var.encoding["variable"]].compression
    return ds


def write_hspy(
    da: xr.DataArray,
    path: str | Path,
    *,
    chunks: tuple[int, ...],
    compression: Any,
    navigator: xr.DataArray | None = None,
) -> None:
    """Write ``da`` (signal dims last) to a new ``.hspy`` file ``path``,
    with its ``navigator`` where HyperSpy keeps one, in the same pass."""
    write_hspy_signals(
        [(da, chunks)], path, compression=compression, navigator=navigator
    )


def write_hspy_signals(
    signals: list[tuple[xr.DataArray, tuple[int, ...]]],
    path: str | Path,
    *,
    compression: Any,
    navigator: xr.DataArray | None = None,
) -> None:
    """Write several signals (each with its stored chunks, signal dims
    last, named by ``name``) to a new ``.hspy`` file, as HyperSpy writes a
    list of signals: ``hs.load`` gives them as a list. A ``navigator`` is
    the first signal's (``metadata._HyperSpy.navigator``)."""

    def put(group: Any, name: str, values: np.ndarray) -> None:
        group.create_dataset(name, data=values)

    datasets = []
    navigators = {}
    with new_hdf5(path) as f:
        for i, (da, chunks) in enumerate(signals):
            hyperspy.check_writable(da, ".hspy")
            options = compression_encoding(compression) if da.ndim else {}
            group = hyperspy.write_signal(f, da, put=put, json_attrs=False)
            dset = group.create_dataset(
                "data",
                shape=da.shape,
                dtype=da.dtype,
                chunks=chunks if da.ndim and da.size else None,
                **({} if not da.size else options),
            )
            datasets.append((dset.name, da))
            if navigator is not None and i == 0:
                nav_group = hyperspy.navigator_group(group)
                hyperspy.write_signal_group(
                    nav_group, navigator, put=put, json_attrs=False
                )
                nav = nav_group.create_dataset(
                    "data",
                    shape=navigator.shape,
                    dtype=navigator.dtype,
                    chunks=navigator_chunks(navigator),
                )
                navigators[dset.name] = (nav.name, navigator)
    fill(path, [(name, da) for name, da in datasets if da.size], navigators)
