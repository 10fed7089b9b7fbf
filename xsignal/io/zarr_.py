"""Zarr stores: ``.zarr`` (format 2 or 3, as xarray writes them) and
HyperSpy's ``.zspy`` (its HDF5 layout in zarr format 2).

A store is a local folder, a zip file, or an fsspec URL (``http://``,
``s3://``, ``memory://``...). Reading is lazy, one dask task per stored
chunk. Plain stores go through xarray's zarr backend (coords, attrs, CF
decoding, consolidated metadata); HyperSpy stores through
:mod:`xsignal.io.hyperspy`, as ``.hspy`` files. Writing goes through zarr
itself: every chunk is written by the dask task that computes it, so on a
``dask.distributed`` cluster the workers write their own chunks and no
data passes through the calling process.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import engine, navigators
from ..chunks import WHOLE, per_dim
from ..sources import ArraySource, ExternalReadError, FileChangedError
from . import hyperspy
from .common import choose, marked_signal, source_variable
from .navigator_pass import written_with_navigator
from .store_check import CheckedStore

if TYPE_CHECKING:
    import zarr
    from zarr.abc.store import Store

ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def is_zarr_folder(path: str) -> bool:
    """True for a folder holding a zarr group or array (format 2 or 3)."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, m)) for m in ZARR_MARKERS
    )


def is_zarr_zip(path: str) -> bool:
    """True for a zip file holding a zarr store at its root."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n in ZARR_MARKERS for n in zf.namelist())


def open_store(path: str, *, allow_external: bool = False) -> Store:
    """The zarr store for a folder, a zip file or a URL (read-only), checked
    before each read (:class:`~xsignal.io.store_check.CheckedStore`)."""
    import zarr.storage

    store: Store
    if "://" in path:
        store = zarr.storage.FsspecStore.from_url(path, read_only=True)
    elif os.path.isfile(path):
        store = zarr.storage.ZipStore(path, mode="r")
    else:
        store = zarr.storage.LocalStore(path, read_only=True)
    return CheckedStore(store, path, allow_external=allow_external)


def _root(store: Store, path: str) -> zarr.Group:
    import zarr

    try:
        return zarr.open_group(store, mode="r")
    except (FileChangedError, ExternalReadError):
        raise  # the store's checks name what is wrong
    except Exception as err:  # zarr raises several kinds for a missing group
        raise ValueError(f"cannot read {path} as a zarr store ({err})") from err


def read_zarr(
    path: str, variable: str | int | None, *, token: str, allow_external: bool = False
) -> xr.Dataset:
    """One array of a zarr store (HyperSpy's layout or xarray's) as a lazily
    indexed Dataset; each read first checks that the store is unchanged and,
    unless ``allow_external``, that it stays inside the store
    (:class:`~xsignal.io.store_check.StoreCheck`)."""

    store = open_store(path, allow_external=allow_external)
    root = _root(store, path)
    version = f"zarr format {root.metadata.zarr_format}"
    if hyperspy.is_hyperspy(root):
        ds = hyperspy.read_signal(
            root,
            variable,
            path,
            to_source=lambda array: ArraySource(array, path, token),
        )
        version = f"HyperSpy .zspy ({version})"
    else:
        ds = _read_xarray(store, root, path, variable, token)
    for var in ds.data_vars.values():
        var.encoding["format"] = version
    return ds


def _read_xarray(
    store: Store,
    root: zarr.Group,
    path: str,
    variable: str | int | None,
    token: str,
) -> xr.Dataset:
    """Through xarray's zarr backend (coords, attrs, consolidated metadata),
    the chosen variable's data behind a :class:`~xsignal.sources.Source`:
    the zarr array itself, or xarray's decoding of it where CF attributes
    change the stored values."""
    try:
        with warnings.catch_warnings():
            # stores without consolidated metadata are fine, only slower to open
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consol")
            ds = xr.open_zarr(store, chunks=None, consolidated=None)
    except (FileChangedError, ExternalReadError):
        raise
    except Exception as err:
        raise ValueError(f"cannot read {path} as a zarr store ({err})") from err
    key = choose(list(map(str, ds.data_vars)), variable, path)
    var = ds[key].variable
    stored = var.encoding.get("preferred_chunks") or {}
    disk = tuple(stored.get(d, n) for d, n in var.sizes.items()) if var.ndim else None
    sig = marked_signal(var.dims, var.attrs)
    encoding = {k: v for k, v in var.encoding.items() if k != "preferred_chunks"}
    attrs = dict(var.attrs)
    nav_name = str(attrs.get(navigators.ATTR, ""))
    if nav_name in ds.variables:  # the stored navigator: on record only
        del attrs[navigators.ATTR]
        nav = ds[nav_name].variable
        encoding[navigators.STORED] = source_variable(
            ArraySource(nav._data if _cf_decoded(nav) else root[nav_name], path, token),
            nav.dims,
            disk_chunks=None,
        )
    array = var._data if _cf_decoded(var) else root[key]
    new = source_variable(
        ArraySource(array, path, token),
        var.dims,
        attrs,
        disk_chunks=disk,
        signal=sig,
        encoding={**encoding, "source": path},
    )
    coords = {k: v.variable for k, v in ds[key].coords.items() if k != nav_name}
    return xr.Dataset({key: new}, coords=coords)


def _cf_decoded(var: xr.Variable) -> bool:
    """Whether xarray's CF decoding changes the stored values of ``var``
    (scaling, masking a fill value, another dtype, times or strings)."""
    enc = var.encoding
    if any(enc.get(k) is not None for k in _CF_VALUE_KEYS):
        return True
    if "dtype" in enc and np.dtype(enc["dtype"]) != var.dtype:
        return True
    return var.dtype.kind not in "biufc"


_CF_VALUE_KEYS = ("scale_factor", "add_offset", "_FillValue", "missing_value")


# --- writing -----------------------------------------------------------------------


def compressors(compression: Any, zarr_format: int) -> tuple[Any, ...]:
    """zarr compressors for ``compression`` ("auto" = zstd), checked up front.

    Examples
    --------
    >>> compressors("auto", 3)
    (ZstdCodec(level=3, checksum=False),)
    >>> compressors(None, 2)
    ()
    """
    if compression is None:
        return ()
    if not isinstance(compression, str):
        return (compression,)  # a numcodecs or zarr codec object
    name = compression.lower()
    table: dict[str, Callable[[], Any]]  # codec factories (numcodecs is untyped)
    if zarr_format == 3:
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        table = {
            "auto": lambda: ZstdCodec(level=3),
            "zstd": lambda: ZstdCodec(level=3),
            "gzip": lambda: GzipCodec(level=4),
            "zlib": lambda: GzipCodec(level=4),
            "lz4": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            "blosc": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        }
    else:
        import numcodecs

        table = {
            "auto": lambda: numcodecs.Zstd(level=3),
            "zstd": lambda: numcodecs.Zstd(level=3),
            "gzip": lambda: numcodecs.GZip(level=4),
            "zlib": lambda: numcodecs.GZip(level=4),
            "lz4": lambda: numcodecs.Blosc(cname="lz4", clevel=5),
            "blosc": lambda: numcodecs.Blosc(cname="zstd", clevel=3),
        }
    if name not in table:
        raise ValueError(
            f"unknown compression {compression!r} for zarr; choose None, "
            f"{', '.join(repr(k) for k in table)} or a numcodecs/zarr codec"
        )
    return (table[name](),)


def shard_shape(
    da: xr.DataArray,
    shards: Mapping[Any, int] | Sequence[int],
    chunks: tuple[int, ...],
) -> tuple[int, ...]:
    """The shard shape from ``shards`` (by dim name or in dim order; dims
    left out: one chunk), checked to be whole multiples of the chunks."""

    spec = per_dim(da.dims, shards, default=chunks, what="shards")
    return tuple(
        -(-min(n if s == WHOLE else s, max(n, 1)) // c) * c  # whole chunks
        for s, c, n in zip(spec, chunks, da.shape)
    )


def _aligned_data(da: xr.DataArray, step: tuple[int, ...]) -> xr.DataArray:
    """``da`` with dask blocks made of whole ``step`` units (chunks, or
    shards), so no two tasks write the same stored object."""
    if da.chunks is None:
        return da
    ok = all(all(c % s == 0 for c in dim[:-1]) for dim, s in zip(da.chunks, step))
    return da if ok else da.chunk(dict(zip(da.dims, step)))


def write_zarr(
    da: xr.DataArray,
    path: str | Path,
    *,
    chunks: tuple[int, ...],
    compressors: tuple[Any, ...],
    shards: tuple[int, ...] | None = None,
    overwrite: bool = False,
    navigator: xr.DataArray | None = None,
) -> None:
    """Write ``da`` as a zarr format 3 store, xarray's layout, with a
    ``navigator`` as the variable ``<name>_navigator`` named by the data's
    ``navigator`` attr, written in the same pass."""
    name = da.name if da.name is not None else "__xarray_dataarray_variable__"
    if name in da.coords:
        name = "__xarray_dataarray_variable__"
    out = _aligned_data(da.rename(name), shards or chunks)
    out.encoding = {}
    for coord in out.coords.values():
        coord.encoding = {}
    encoding: dict[str, Any] = {"compressors": compressors}
    if out.ndim:
        encoding["chunks"] = chunks
        if shards is not None:
            encoding["shards"] = shards
    if out.dtype.kind == "f":
        encoding["_FillValue"] = None
    dataset = out.to_dataset()
    encodings = {name: encoding}
    if navigator is not None:
        nav_name = navigators.variable_name(name)
        nav = navigator.rename(nav_name).drop_vars(navigator.coords)
        nav.encoding = {}
        if nav.chunks is not None:  # one stored chunk: it is small
            nav = nav.chunk(dict.fromkeys(nav.dims, -1))
        # a coordinate of the data for xarray, named by the data's attr
        dataset = dataset.assign_coords({nav_name: nav})
        dataset[name].attrs[navigators.ATTR] = nav_name
        encodings[nav_name] = {"compressors": compressors}
        if nav.dtype.kind == "f":
            encodings[nav_name]["_FillValue"] = None
    with warnings.catch_warnings():
        # consolidated metadata (one read to open a remote store) is a
        # zarr-python extension of format 3
        warnings.filterwarnings("ignore", "Consolidated metadata is currently not")
        written = dataset.to_zarr(
            os.fspath(path),
            mode="w" if overwrite else "w-",
            zarr_format=3,
            consolidated=True,
            encoding=encodings,
            compute=False,
        )
    engine.compute(written, desc="save")


def write_zspy(
    da: xr.DataArray,
    path: str | Path,
    *,
    chunks: tuple[int, ...],
    compressors: tuple[Any, ...],
    overwrite: bool = False,
    navigator: xr.DataArray | None = None,
) -> None:
    """Write ``da`` (signal dims last) as a HyperSpy ``.zspy`` store (zarr
    format 2), with its ``navigator`` where HyperSpy keeps one, in the same
    pass."""
    import zarr

    hyperspy.check_writable(da, ".zspy")
    root = zarr.open_group(
        os.fspath(path), mode="w" if overwrite else "w-", zarr_format=2
    )

    def put(group: Any, name: str, values: np.ndarray) -> None:
        group.create_array(name, data=np.asarray(values), compressors=None)

    group = hyperspy.write_signal(
        root, da, put=put, json_attrs=True, file_format="ZSpy"
    )
    array = group.create_array(
        "data",
        shape=da.shape,
        dtype=da.dtype,
        chunks=tuple(max(1, c) for c in chunks) if da.ndim else (),
        compressors=compressors or None,
        fill_value=0,
    )
    pairs = [(da, array)] if da.size else []
    summed = None
    if navigator is not None:
        nav_group = hyperspy.navigator_group(group)
        hyperspy.write_signal_group(nav_group, navigator, put=put, json_attrs=True)
        nav_array = nav_group.create_array(
            "data", shape=navigator.shape, dtype=navigator.dtype, fill_value=0
        )
        if da.chunks is not None and da.size:  # summed by the tasks writing
            summed = written_with_navigator(
                _aligned_data(da, array.chunks).data,
                da.dims,
                navigator,
                array.__setitem__,
            )
        if summed is None:
            pairs.append((navigator, nav_array))
        else:
            pairs = []
    lazy = []
    for values, target in pairs:
        if values.chunks is None:
            target[...] = np.asarray(values.data)
        else:
            lazy.append((_aligned_data(values, target.chunks).data, target))
    stores = []
    if lazy:
        sources, targets = zip(*lazy)
        stores.append(
            dsa.store(list(sources), list(targets), lock=False, compute=False)
        )
    if summed is not None:
        nav_array[...] = engine.compute(summed, *stores, desc="save")[0]
    elif stores:
        engine.compute(*stores, desc="save")
    zarr.consolidate_metadata(root.store)  # one read opens it, as HyperSpy writes
