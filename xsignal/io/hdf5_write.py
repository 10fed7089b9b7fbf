"""Writing HDF5 datasets from DataArrays: compression filters, whole raw
chunks, and on a ``dask.distributed`` client blocks computed and encoded on
the workers, written by this process.

Shared by the netCDF and ``.hspy`` writers: each creates its dataset, then
:func:`fill` writes the data into it, block by block for lazy data.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import engine


@contextlib.contextmanager
def new_hdf5(path: Path | str, mode: str = "w") -> Iterator[Any]:
    """``h5py.File(path, mode)`` for writing, flushed before it is closed.

    No chunk cache: each chunk goes to the file when it is written, so a
    failed write (a full disk) raises there. Cached chunks would be written
    at close, where h5py ignores errors (the file then looks complete) and
    HDF5 can be left in a state that crashes the process at exit. The
    explicit flush writes the metadata while errors can still raise.
    """
    import h5py

    handle = h5py.File(path, mode, rdcc_nbytes=0)
    try:
        yield handle
        try:
            handle.flush()
        except OSError as err:
            raise OSError(
                err.errno or errno.EIO,
                f"cannot finish writing {path}: {err}",
            ) from err
    finally:
        handle.close()


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


def fill(dset, da: xr.DataArray) -> None:
    """Write ``da``'s values into the h5py dataset ``dset`` (same shape).

    In-memory data in one write; lazy data block by block (rechunked to
    whole on-disk chunks when its blocks are not aligned with them), whole
    raw chunks without HDF5's selection code, and on a ``dask.distributed``
    client computed (and encoded) on the workers.
    """
    if da.chunks is None:
        dset[...] = da.values
    else:
        _fill_blocks(dset, da)
    # cached chunks are written now, while the dataset is open: a failure
    # (a full disk) raises here, where h5py would ignore it at close
    dset.flush()


def _fill_blocks(dset, da: xr.DataArray) -> None:
    raw = dset.id.get_create_plist().get_nfilters() == 0
    data = da.data
    if dset.chunks is not None and not _aligned(data.chunks, dset.chunks):
        # whole on-disk chunks per block: no chunk is written twice
        data = data.rechunk(dset.chunks)
    client = engine.client()
    if client is not None:
        _store_from_client(client, data, dset)
    else:
        stored = dsa.store(
            data, _ChunkWriter(dset, raw), lock=threading.Lock(), compute=False
        )
        engine.compute(stored, desc="save")


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

    window = window or engine.client_window(client, data.blocks[(0,) * data.ndim])
    for key, value in zip(where, engine.in_order(submit, where, window)):
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
