"""Writing HDF5 datasets from DataArrays: compression filters, and the
data written block by block by the tasks that compute the blocks.

Shared by the netCDF and ``.hspy`` writers: each creates its file and
dataset, closes it, then :func:`fill` writes the data into it. Each task
encodes its block's chunks itself (gzip and shuffle as HDF5 stores them,
in parallel) and writes them whole, under one lock per file: on dask's
threads through the file opened once here, on a ``dask.distributed``
cluster (where the file cannot travel) by opening it on the worker, so no
data passes through this process.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import engine
from .navigator_pass import written_with_navigator

if TYPE_CHECKING:
    from typing_extensions import Buffer


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


_SHUFFLE, _DEFLATE = 2, 1  # HDF5 filter ids
# (filter id, its parameters)
_Filter = tuple[int, tuple[int, ...]]


def _filters(dset: Any) -> list[_Filter] | None:
    """The dataset's filter pipeline, if this module can apply it: none,
    shuffle, deflate, or shuffle then deflate. None for anything else
    (then HDF5 applies it, in the write)."""
    plist = dset.id.get_create_plist()
    out: list[_Filter] = []
    for i in range(plist.get_nfilters()):
        code, _, values, _ = plist.get_filter(i)
        out.append((int(code), tuple(values)))
    codes = [c for c, _ in out]
    return out if codes in ([], [_SHUFFLE], [_DEFLATE], [_SHUFFLE, _DEFLATE]) else None


def _encode_chunk(
    block: np.ndarray,
    chunk: tuple[int, ...],
    dtype: np.dtype,
    filters: Sequence[_Filter],
    fill: Any,
) -> np.ndarray:
    """The bytes HDF5 stores for one chunk holding ``block`` (padded with the
    fill value to the full chunk shape at the edges, as HDF5 does)."""
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
            # numpy types arrays as buffers only on Python >= 3.12
            data = cast("Buffer", raw)
            raw = np.frombuffer(zlib.compress(data, level), np.uint8)
    return raw


class _ChunkWriter:
    """``dask.array.store`` target for one HDF5 dataset.

    A block (aligned with the stored chunks) is encoded chunk by chunk in
    the task, outside the lock, then written whole with
    ``write_direct_chunk`` under the file's lock; a dataset whose filters
    this module cannot apply is written through HDF5 (which encodes it,
    under the lock). ``handle``: the file open in this process (dask's
    threads); without it (on a cluster) each write opens the file.
    """

    def __init__(
        self, path: str, name: str, dset: Any, lock: Any, handle: Any = None
    ) -> None:
        self.path = path
        self.name = name
        self.chunks = dset.chunks
        self.dtype = dset.dtype
        self.fillvalue = dset.fillvalue
        self.filters = _filters(dset) if dset.chunks is not None else None
        self.lock = lock
        self.handle = handle

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "handle": None}  # a file does not travel

    def __setitem__(self, key: tuple[slice, ...], block: np.ndarray) -> None:
        filters = self.filters
        pieces = None if filters is None else list(self._encoded(key, block, filters))
        with self.lock, self._dataset() as dset:
            if pieces is None:
                dset[key] = block
                return
            for offset, data in pieces:
                dset.id.write_direct_chunk(offset, data)

    def _encoded(
        self, key: tuple[slice, ...], block: np.ndarray, filters: Sequence[_Filter]
    ) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        starts = [sl.start or 0 for sl in key]
        grid = [range(0, n, c) for n, c in zip(block.shape, self.chunks)]
        for corner in itertools.product(*grid):
            part = block[tuple(slice(a, a + c) for a, c in zip(corner, self.chunks))]
            offset = tuple(s + a for s, a in zip(starts, corner))
            data = _encode_chunk(part, self.chunks, self.dtype, filters, self.fillvalue)
            yield offset, data

    @contextlib.contextmanager
    def _dataset(self) -> Iterator[Any]:
        if self.handle is not None:
            yield self.handle[self.name]
            return
        with new_hdf5(self.path, "r+") as handle:
            yield handle[self.name]


def fill(
    path: Path | str,
    arrays: Sequence[tuple[str, xr.DataArray]],
    navigators: Mapping[str, tuple[str, xr.DataArray]] | None = None,
) -> None:
    """Write each ``(name, da)``'s values into the dataset ``name`` (same
    shape) of the HDF5 file ``path``, closed, which the writer has just
    created; all lazy ones in one pass.

    ``navigators`` maps a data name to ``(dataset name, navigator)``: the
    task writing each block of the data also sums it for the navigator
    (:mod:`.navigator_pass`), written once the pass is done.

    In-memory data in one write; lazy data by the tasks that compute its
    blocks (rechunked to whole on-disk chunks when its blocks are not
    aligned with them), on the user's scheduler: see the module doc.
    """
    here = engine.client() is None
    lock = engine.write_lock(f"xsignal-save-{os.fspath(path)}")
    todo = list(arrays)
    pending = dict(navigators or {})
    sources: list[dsa.Array] = []
    writers: list[_ChunkWriter] = []
    summed: list[tuple[str, dsa.Array]] = []
    with new_hdf5(path, "r+") as handle:
        while todo:
            name, da = todo.pop(0)
            dset = handle[name]
            nav = pending.pop(name, None)
            if da.chunks is None:
                dset[...] = da.values
                if nav is not None:
                    todo.append(nav)
                continue
            data = da.data
            if dset.chunks is not None and not _aligned(data.chunks, dset.chunks):
                # whole on-disk chunks per block: no chunk is written twice
                data = data.rechunk(dset.chunks)
            writer = _ChunkWriter(
                os.fspath(path), name, dset, lock, handle=handle if here else None
            )
            fused = None
            if nav is not None:
                fused = written_with_navigator(
                    data, da.dims, nav[1], writer.__setitem__
                )
                if fused is None:  # blocks of parts of signals: its own sum
                    todo.append(nav)
                else:
                    summed.append((nav[0], fused))
            if fused is None:
                sources.append(data)
                writers.append(writer)
        if here and (sources or summed):
            values = _store(sources, writers, [s for _, s in summed])
    if not here and (sources or summed):  # the workers open the file
        values = _store(sources, writers, [s for _, s in summed])
    if summed:  # the navigators, in memory now: written here
        with new_hdf5(path, "r+") as handle:
            for (name, _), value in zip(summed, values):
                handle[name][...] = value


def navigator_chunks(navigator: xr.DataArray) -> tuple[int, ...]:
    """A navigator's stored chunks: its blocks (the data's navigation
    chunks), whole when in memory. Chunked, so its writes take the raw
    chunk path that a full disk cannot crash."""
    if navigator.chunks is None:
        return tuple(max(1, n) for n in navigator.shape)
    return tuple(max(1, *c) for c in navigator.chunks)


def _store(
    sources: list[dsa.Array], writers: list[_ChunkWriter], also: list[dsa.Array]
) -> tuple[Any, ...]:
    """Write ``sources`` into ``writers`` and compute ``also`` (arrays whose
    tasks write their own blocks) in one pass; the values of ``also``."""
    if not sources:
        return engine.compute(*also, desc="save")
    # dask types store's targets as arrays; it needs only __setitem__ (documented)
    stored = dsa.store(sources, writers, lock=False, compute=False)  # type: ignore[arg-type]
    return engine.compute(stored, *also, desc="save")[1:]


def _aligned(chunks: tuple[tuple[int, ...], ...], disk: tuple[int, ...]) -> bool:
    """True when every dask block boundary falls on an on-disk chunk boundary."""
    for dim_chunks, size in zip(chunks, disk):
        edges = np.cumsum(dim_chunks[:-1])
        if np.any(edges % size):
            return False
    return True
