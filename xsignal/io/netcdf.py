"""netCDF4 files (written by ``save``, xarray's h5netcdf engine, netCDF-C).

Reading goes straight through h5py: the dimension scales give the dims,
coordinates are read at once (they are small), and the data variable
becomes a dask array with one task per on-disk chunk (see
:mod:`xsignal.io.common`). CF decoding (scale factors, integer fill values,
times) is left to :func:`xarray.decode_cf`, which keeps the data lazy.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from ..chunks import navigation_chunks
from ..dims import SIGNAL_DIMS_ATTR, check_dims, navigation_dims, signal_dims
from ..progress import distributed_client
from .common import clean_attr, dask_chunks, lazy_array, source_for

DEFAULT_CHUNK_BYTES = 4 * 2**20

# attributes of the netCDF4/HDF5 machinery, never shown to users
_RESERVED = {
    "CLASS",
    "NAME",
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
    "_nc3_strict",
    "_NCProperties",
    "coordinates",
}
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable"
_ANONYMOUS = "__xarray_dataarray_variable__"


def is_netcdf(handle) -> bool:
    """True for a netCDF4 file: the netCDF-4 markers netCDF-C and h5netcdf write.

    HDF5 files that merely use dimension scales are read as plain HDF5.
    """
    if "_NCProperties" in handle.attrs:
        return True
    return any("_Netcdf4Dimid" in obj.attrs for obj in handle.values())


def _is_scale(dset) -> bool:
    return clean_attr(dset.attrs.get("CLASS", b"")) == "DIMENSION_SCALE"


def _is_dimension_only(dset) -> bool:
    return clean_attr(dset.attrs.get("NAME", "")).startswith(_NOT_A_VARIABLE)


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _dims(dset) -> tuple[str, ...]:
    """Dim names of a netCDF variable, from its dimension scales."""
    if _is_scale(dset):
        return (_basename(dset.name),)
    dims = []
    for i, scales in enumerate(dset.dims):
        dims.append(_basename(scales[0].name) if len(scales) else f"phony_dim_{i}")
    return tuple(dims)


def _attrs(obj) -> dict[str, Any]:
    return {k: clean_attr(v) for k, v in obj.attrs.items() if k not in _RESERVED}


def candidates(handle) -> list[str]:
    """Data variables at the file's root: not dimension scales, not coordinates."""
    import h5py

    datasets = {k: v for k, v in handle.items() if isinstance(v, h5py.Dataset)}
    coords: set[str] = set()
    for dset in datasets.values():
        coords.update(clean_attr(dset.attrs.get("coordinates", "")).split())
    return [k for k, v in datasets.items() if not _is_scale(v) and k not in coords]


def read_netcdf(
    handle, variable: str | None, *, chunks: Any, token: str
) -> xr.DataArray:
    """One data variable of an open netCDF4 file as a lazy DataArray."""
    path = handle.filename
    names = candidates(handle)
    if variable is None:
        if not names:
            raise ValueError(f"{path} has no data variable")
        if len(names) > 1:
            raise ValueError(
                f"{path} has several data variables {names}; pass variable= "
                "to choose one"
            )
        variable = names[0]
    key = variable.lstrip("/")
    if key not in handle or not hasattr(handle[key], "shape"):
        raise ValueError(
            f"{path} has no variable {variable!r}; its data variables are {names}"
        )
    dset = handle[key]
    dims = _dims(dset)
    attrs = _attrs(dset)
    # A NaN fill value on float data masks nothing: leave it out so decoding
    # does not add a pass over the data.
    fill = attrs.get("_FillValue")
    if fill is not None and dset.dtype.kind == "f" and np.all(np.isnan(fill)):
        del attrs["_FillValue"]
    marking = attrs.get(SIGNAL_DIMS_ATTR)
    probe = xr.DataArray(np.empty((0,) * len(dims)), dims=dims, attrs=attrs)
    sig = signal_dims(probe) if marking is not None else ()
    src = source_for(handle, key, token)
    data = lazy_array(
        src, dask_chunks(dset.shape, dims, dset.dtype, dset.chunks, chunks, sig)
    )
    if attrs.get("dtype") == "bool" and data.dtype.kind in "iu":
        data = data.astype(bool)  # xarray stores booleans as int8 + dtype="bool"
        del attrs["dtype"]
    coords = _coords(handle, dset, dims)
    name: Hashable | None = _basename(dset.name)
    ds = xr.Dataset({"__data__": xr.Variable(dims, data, attrs)}, coords=coords)
    ds = xr.decode_cf(ds)
    out = ds["__data__"].rename(None if name == _ANONYMOUS else name)
    if not isinstance(out.variable._data, dsa.Array):
        # a CF decoder without dask support wrapped the data (e.g. character
        # arrays): decode block by block instead
        out = out.copy(data=_blockwise_decoded(out, data))
    out.encoding.update(_encoding(dset))
    out.encoding["source"] = path
    return out


def _blockwise_decoded(out: xr.DataArray, data: dsa.Array) -> dsa.Array:
    wrapper = out.variable._data

    def block(_: np.ndarray, block_info=None) -> np.ndarray:
        where = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
        return np.asarray(wrapper[where])

    return data.map_blocks(
        block, dtype=out.dtype, meta=np.empty((0,) * out.ndim, out.dtype)
    )


def _coords(handle, dset, dims: tuple[str, ...]) -> dict[str, xr.Variable]:
    """Dimension coordinates and the variable's listed coordinates, in memory."""
    coords: dict[str, xr.Variable] = {}
    parent = dset.parent
    names = list(dims) + clean_attr(dset.attrs.get("coordinates", "")).split()
    for name in names:
        if name in coords or name not in parent:
            continue
        var = parent[name]
        if not hasattr(var, "shape") or _is_dimension_only(var):
            continue
        attrs = _attrs(var)
        fill = attrs.get("_FillValue")
        if fill is not None and var.dtype.kind == "f" and np.all(np.isnan(fill)):
            del attrs["_FillValue"]
        values = var[()]
        if var.dtype.kind in "SO":
            values = np.asarray(values).astype(str)
        coords[name] = xr.Variable(_dims(var), values, attrs)
    return coords


def _encoding(dset) -> dict[str, Any]:
    return {
        "dtype": dset.dtype,
        "chunksizes": dset.chunks,
        "compression": dset.compression,
        "original_shape": dset.shape,
    }


# --- save --------------------------------------------------------------------


def save_chunks(
    da: xr.DataArray, chunks: Mapping[Hashable, int] | Sequence[int] | None = None
) -> tuple[int, ...]:
    """The on-disk chunk shape :func:`save` writes ``da`` with.

    Given ``chunks`` (a dict by dim name, dims left out whole, or a tuple in
    dim order; ``-1``/``None`` = whole dim) win; else the dask chunks
    (irregular ones give the largest chunk of each dim, with a warning);
    else whole signals and navigation rows up to about 4 MiB.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((256, 256, 1024), "f4")[:, :, :1],
    ...                   dims=("y", "x", "e"))
    >>> save_chunks(da.chunk({"y": 10}))
    (10, 256, 1)
    >>> save_chunks(da, {"y": 4})
    (4, 256, 1)
    """
    shape = dict(da.sizes)
    if chunks is not None:
        if isinstance(chunks, Mapping):
            check_dims(da, chunks, "chunks dim")
            spec = [chunks.get(d, -1) for d in da.dims]
        else:
            spec = list(chunks)
            if len(spec) != da.ndim:
                raise ValueError(
                    f"chunks {tuple(spec)} has {len(spec)} entries but the "
                    f"array has {da.ndim} dims {da.dims}"
                )
        out = []
        for d, c in zip(da.dims, spec):
            if c is None or c == -1:
                c = shape[d]
            if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1:
                raise ValueError(
                    f"chunk length for {d!r} must be a positive int, -1 or None, "
                    f"not {c!r}"
                )
            out.append(int(min(c, shape[d])) or 1)
        return tuple(out)
    if da.chunks is not None:
        out = tuple(max(max(c), 1) if c else 1 for c in da.chunks)
        irregular = [
            d
            for d, c in zip(da.dims, da.chunks)
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0])
        ]
        if irregular:
            warnings.warn(
                f"the dask chunks along {irregular} are irregular; saving with "
                f"on-disk chunks {dict(zip(da.dims, out))} (the largest of each "
                "dim), which is what the file gives back when opened. Pass "
                "chunks= to choose.",
                UserWarning,
                stacklevel=3,
            )
        return out
    sig = signal_dims(da)
    pixel = int(np.prod([shape[d] for d in sig])) * da.dtype.itemsize
    by_dim = navigation_chunks(  # (size-0 dims count as 1: HDF5 chunks are >= 1)
        {d: max(1, shape[d]) for d in navigation_dims(da)}, pixel, DEFAULT_CHUNK_BYTES
    )
    by_dim.update({d: max(1, shape[d]) for d in sig})
    return tuple(by_dim[d] for d in da.dims)


def compression_encoding(compression: str | None) -> dict[str, Any]:
    """netCDF encoding for ``compression``: None, "gzip", "lzf" or an hdf5plugin
    filter name ("zstd", "blosc", "lz4", "bitshuffle", ...)."""
    if compression is None:
        return {}
    if not isinstance(compression, str):
        raise TypeError(f"compression must be a string or None, not {compression!r}")
    name = compression.lower()
    if name in ("gzip", "zlib"):
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "lzf":
        return {"compression": "lzf", "shuffle": True}
    try:
        import hdf5plugin
    except ImportError:
        raise ValueError(
            f"compression {compression!r} is not one of None, 'gzip', 'lzf'; "
            "other filters need the hdf5plugin package"
        ) from None
    classes = {
        k.lower(): v
        for k, v in vars(hdf5plugin).items()
        if isinstance(v, type) and hasattr(v, "filter_id")
    }
    if name not in classes:
        raise ValueError(
            f"unknown compression {compression!r}; choose None, 'gzip', 'lzf' "
            f"or an hdf5plugin filter: {sorted(classes)}"
        )
    flt = classes[name]()
    return {"compression": flt.filter_id, "compression_opts": flt.filter_options}


@contextlib.contextmanager
def _writable_scheduler():
    """Threads instead of dask's process pool while writing.

    The write tasks hold the open output file, which cannot go to other
    processes. A ``dask.distributed`` client is fine: numbers are written
    by :func:`_store_from_client` (blocks computed on the workers, one
    writer here), other dtypes by xarray (which locks and reopens the file
    on the workers).
    """
    import dask
    import dask.multiprocessing

    if dask.base.get_scheduler() is dask.multiprocessing.get:
        with dask.config.set(scheduler="threads"):
            yield
    else:
        yield


def save(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    chunks: Mapping[Hashable, int] | Sequence[int] | None = None,
    compression: str | None = "gzip",
    overwrite: bool = False,
) -> None:
    """Save ``da`` to a chunked netCDF4/HDF5 file, atomically.

    Written through xarray's ``h5netcdf`` engine, so any netCDF4 reader
    opens it; :func:`xsignal.open` gives back the values, coords, attrs,
    signal marking, and dask chunks equal to the on-disk chunks. Lazy data
    is written block by block, never whole in memory. The file is written
    to a temporary file in the target's folder and renamed over the target
    only once complete: a failure (a raising task, a full disk, an
    interrupt) leaves no half-written file and any existing file
    untouched. Saving over the file a lazy ``da`` was read from works: the
    open file keeps being read until the rename replaces it. On a
    ``dask.distributed`` client the blocks are computed (and, for gzip or no
    compression, encoded) on the workers and written by this process alone,
    in order, with at most a few blocks in flight.

    Parameters
    ----------
    path : path-like
        Target file (conventionally ``.nc``).
    chunks : dict by dim name or tuple in dim order, optional
        On-disk chunks; default the dask chunks (irregular ones: the largest
        of each dim, with a warning), else whole signals and about 4 MiB.
    compression : {"gzip", "lzf", None} or an hdf5plugin filter name
        "gzip" (level 4, with byte shuffling) is readable everywhere;
        "lzf" is faster but h5py-only; hdf5plugin filters ("zstd", "blosc",
        ...) need that package to write and to read.
    overwrite : bool
        Replace an existing file; ``False`` raises ``FileExistsError``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        Bad ``chunks`` or ``compression``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(24.0).reshape(2, 3, 4), dims=("y", "x", "e"))
    >>> path = os.path.join(tempfile.mkdtemp(), "a.nc")
    >>> xsignal.save(da.signal.set_signal_dims("x", "e"), path)
    >>> back = xsignal.open(path, lazy=False)
    >>> back.signal.signal_dims, float(back.sum())
    (('x', 'e'), 276.0)
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"no folder {target.parent} to save {target.name} in")
    encoding = {
        "chunksizes": save_chunks(da, chunks),
        **compression_encoding(compression),
    }
    if da.ndim == 0:  # HDF5 scalars have no chunks and no filters
        encoding = {}
    if da.dtype.kind == "f":
        encoding["_FillValue"] = None  # no fill value: NaN stays NaN, no masking pass
    name = da.name if da.name is not None else _ANONYMOUS
    if name in da.coords:
        name = _ANONYMOUS
    out = da.rename(name)
    out.encoding = {}
    for coord in out.coords.values():
        coord.encoding = {}
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.xsignal-tmp")
    try:
        with warnings.catch_warnings(), _writable_scheduler():
            warnings.filterwarnings("ignore", "You are writing invalid netcdf")
            if out.ndim and _fast_path_ok(out):
                _write_streaming(out, tmp, encoding)
            else:
                out.to_dataset().to_netcdf(
                    tmp,
                    engine="h5netcdf",
                    encoding={name: encoding},
                    invalid_netcdf=compression not in (None, "gzip", "zlib"),
                )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fast_path_ok(da: xr.DataArray) -> bool:
    """Numbers (other dtypes go through xarray's writer)."""
    return da.dtype.kind in "iuf"


class _ChunkWriter:
    """``dask.array.store`` target: whole raw chunks written as they are."""

    def __init__(self, dset, raw: bool) -> None:
        self.dset = dset
        self.chunks = dset.chunks
        self.raw = raw and dset.chunks is not None

    def __setitem__(self, key: tuple, block: np.ndarray) -> None:
        if self.raw and self._whole_chunk(key, block):
            block = np.ascontiguousarray(block, dtype=self.dset.dtype)
            offsets = tuple(sl.start or 0 for sl in key)
            self.dset.id.write_direct_chunk(offsets, block)
        else:
            self.dset[key] = block

    def _whole_chunk(self, key: tuple, block: np.ndarray) -> bool:
        if len(key) != len(self.chunks) or block.shape != self.chunks:
            return False
        return all(
            isinstance(sl, slice) and (sl.start or 0) % c == 0
            for sl, c in zip(key, self.chunks)
        )


_CF_ATTRS = {"_FillValue", "missing_value", "scale_factor", "add_offset", "calendar"}


def _plain_coords(da: xr.DataArray) -> bool:
    """True when every coord is numbers without CF encoding to apply."""
    for coord in da.coords.values():
        if coord.dtype.kind not in "iuf" or _CF_ATTRS & set(coord.attrs):
            return False
        if " since " in str(coord.attrs.get("units", "")):
            return False
    return True


def _write_plain_coords(f, da: xr.DataArray) -> None:
    """Numeric coords straight through h5netcdf (what xarray would write)."""
    f.dimensions = {str(d): n for d, n in da.sizes.items()}
    for name, coord in da.coords.items():
        var = f.create_variable(
            str(name), tuple(map(str, coord.dims)), coord.dtype, data=coord.values
        )
        var.attrs.update(coord.attrs)


def _write_streaming(da: xr.DataArray, tmp: Path, encoding: dict) -> None:
    """Coords and metadata through h5netcdf, then the data straight into HDF5.

    Numeric coordinates are written with h5netcdf, others by xarray (which
    applies their CF encoding); the data variable is added with h5netcdf
    and filled with h5py, block by
    block for lazy data, whole raw chunks without going through HDF5's
    selection code (the file is the same as xarray's own writer makes).
    """
    import dask.array as dsa
    import h5netcdf
    import h5py

    name = da.name
    non_dim = [str(c) for c in da.coords if c not in da.dims]
    plain = _plain_coords(da)
    if not plain:  # coords needing CF encoding (times, strings...): xarray
        da.to_dataset().drop_vars(name).to_netcdf(tmp, engine="h5netcdf")
    opts = {k: v for k, v in encoding.items() if k != "chunksizes"}
    attrs = {k: v for k, v in da.attrs.items()}
    with h5netcdf.File(tmp, "a" if not plain else "w") as f:
        if plain:
            _write_plain_coords(f, da)
        for dim in da.dims:
            if dim not in f.dimensions:
                f.dimensions[dim] = da.sizes[dim]
        var = f.create_variable(
            name,
            tuple(da.dims),
            da.dtype,
            chunks=encoding["chunksizes"],
            **{k: v for k, v in opts.items() if k != "_FillValue"},
        )
        for key, value in attrs.items():
            try:
                var.attrs[key] = value
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"attribute {key!r} = {value!r} cannot be stored in a netCDF "
                    f"file ({err}); use a string, a number or a list of numbers"
                ) from err
        if non_dim:
            var.attrs["coordinates"] = " ".join(non_dim)
            if "coordinates" in f.attrs:
                del f.attrs["coordinates"]
    with h5py.File(tmp, "a") as h:
        dset = h[name]
        raw = dset.id.get_create_plist().get_nfilters() == 0
        if da.chunks is None:
            dset[...] = da.values
        else:
            import threading

            data = da.data
            if not _aligned(data.chunks, dset.chunks):
                # whole on-disk chunks per block: no chunk is written twice
                data = data.rechunk(dset.chunks)
            client = distributed_client()
            if client is not None:
                _store_from_client(client, data, dset)
            else:
                dsa.store(
                    data, _ChunkWriter(dset, raw), lock=threading.Lock(), compute=True
                )


def _aligned(chunks: tuple[tuple[int, ...], ...], disk: tuple[int, ...]) -> bool:
    """True when every dask block boundary falls on an on-disk chunk boundary."""
    for dim_chunks, size in zip(chunks, disk):
        edges = np.cumsum(dim_chunks[:-1])
        if np.any(edges % size):
            return False
    return True


# --- writing on a dask.distributed client -------------------------------------
# HDF5 files cannot be written from several processes, and the open output
# file cannot travel to the workers. So the workers compute the blocks (and,
# for gzip/shuffle or no filters, encode them into the bytes of the stored
# chunk, which is where the time goes), and this process alone writes them,
# in order, a bounded window of blocks ahead so memory stays a few chunks.

_SHUFFLE, _DEFLATE = 2, 1  # HDF5 filter ids


def _filters(dset) -> list[tuple[int, tuple]] | None:
    """The dataset's filter pipeline, if the workers can apply it: none,
    shuffle, deflate, or shuffle then deflate. None for anything else."""
    plist = dset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _, values, _ = plist.get_filter(i)
        out.append((int(code), tuple(values)))
    codes = [c for c, _ in out]
    return out if codes in ([], [_SHUFFLE], [_DEFLATE], [_SHUFFLE, _DEFLATE]) else None


def _encode_chunk(
    block: np.ndarray, chunk: tuple[int, ...], dtype: str, filters: list, fill: Any
) -> bytes:
    """The bytes HDF5 stores for one chunk holding ``block`` (padded with the
    fill value to the full chunk shape at the edges, as HDF5 does)."""
    import zlib

    dtype = np.dtype(dtype)
    if block.shape != chunk:
        full = np.full(chunk, fill, dtype)
        full[tuple(slice(0, n) for n in block.shape)] = block
        block = full
    raw = np.ascontiguousarray(block, dtype).reshape(-1)
    for code, values in filters:
        if code == _SHUFFLE and dtype.itemsize > 1:
            # byte shuffle: all first bytes of the elements, then all second...
            raw = np.ascontiguousarray(raw.view(np.uint8).reshape(-1, dtype.itemsize).T)
        elif code == _DEFLATE:
            level = values[0] if values else 4
            raw = np.frombuffer(zlib.compress(raw.tobytes(), level), np.uint8)
    return raw.tobytes()


def _store_from_client(
    client, data: dsa.Array, dset, window: int | None = None
) -> None:
    """Write ``data`` (blocks aligned with ``dset``'s chunks) into ``dset``
    from this process, the blocks computed on ``client``'s workers."""
    from ..lazy import client_window, in_order

    filters = _filters(dset) if dset.chunks is not None else None
    if filters is not None and not _one_chunk_blocks(data, dset.chunks):
        data = data.rechunk(dset.chunks)  # aligned already: only splits blocks
    edges = [np.cumsum((0, *c)) for c in data.chunks]
    where = [
        tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index))
        for index in np.ndindex(data.numblocks)
    ]
    where = [key for key in where if all(sl.stop > sl.start for sl in key)]
    encode_args = (tuple(dset.chunks or ()), dset.dtype.str, filters, dset.fillvalue)

    def submit(key: tuple[slice, ...]):
        # one small graph per block (slicing culls it), never the whole graph
        block = client.compute(data[key])
        if not filters:  # nothing to encode: no extra task and round trip
            return block
        return client.submit(_encode_chunk, block, *encode_args)

    window = window or client_window(client, data)
    for key, value in zip(where, in_order(submit, where, window)):
        if filters is None:
            dset[key] = value
            continue
        if not filters:
            value = _encode_chunk(value, *encode_args)
        dset.id.write_direct_chunk(tuple(sl.start for sl in key), value)


def _one_chunk_blocks(data: dsa.Array, chunk: tuple[int, ...]) -> bool:
    """True when every block of ``data`` is one on-disk chunk (the last
    block of a dim may be shorter)."""
    return all(
        all(c == n for c in dim[:-1]) and dim[-1] <= n
        for dim, n in zip(data.chunks, chunk)
    )
