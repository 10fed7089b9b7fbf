"""Files behind lazy arrays: picklable sources, and closing them.

A :class:`Source` is what one array of a file is read through: small,
picklable (dask's process scheduler and ``dask.distributed`` workers get
it in the graph and read the file themselves), with a ``token`` shared by
the sources of one ``xsignal.open`` call and a closed state.
:class:`H5Source` names one HDF5 dataset (file path + dataset path); it
opens the file the first time a process reads from it and keeps the h5py
handle in a per-process registry (as xarray's ``CachingFileManager`` does,
but a closed source never reopens). :class:`ArraySource` wraps an array
object that pickles by itself (a zarr array); readers of other formats
subclass :class:`Source`.

Every format's xarray backend gives its data as a :class:`SourceArray`
(xarray's ``BackendArray`` protocol over a source), so
:func:`close_file` finds the sources in a lazy array's graph, closes their
handles and marks them closed: a later compute raises a clear error
instead of silently reopening the file. This module sits at the bottom of
the package: it imports neither the lazy helpers nor the readers.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import threading
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core.indexing import (
    BasicIndexer,
    ExplicitlyIndexed,
    IndexingSupport,
    explicit_indexing_adapter,
)

# token -> open h5py.File, in this process, least recently used first. One
# token per xsignal.open call, so closing one opened array does not close
# another opened from the same file.
_HANDLES: collections.OrderedDict[str, Any] = collections.OrderedDict()
# at most this many files stay open per process (like xarray's file cache);
# the least recently used idle one is closed and reopened when next read
MAX_OPEN_FILES = 128
_IN_USE: collections.Counter = collections.Counter()
_PID = os.getpid()
_CLOSED: set[str] = set()
# live H5Source objects per token in this process: when the last one is
# garbage collected nothing can read the handle any more, so it is closed
_LIVE: collections.Counter = collections.Counter()
_REGISTRY_LOCK = threading.RLock()  # re-entrant: finalizers may run anywhere


class _BufferPool:
    """Recycled memory for the blocks read from files.

    A fresh multi-MiB array costs a page fault per 4 KiB page on first touch,
    which costs more than reading the chunk from the page cache. Blocks are
    therefore numpy arrays over pooled buffers (memoryviews of numpy
    arrays); a buffer goes back to the pool when its array and every view
    of it are gone (views keep the array alive because its base is not an
    ndarray), so a buffer is never reused while anything can still see it.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.free: dict[int, collections.deque] = {}
        self.held = 0
        self.lock = threading.RLock()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < 2**18:  # small blocks: malloc reuses them anyway
            return np.empty(shape, dtype)
        buf = None
        with self.lock:
            stack = self.free.get(nbytes)
            if stack:
                buf = stack.pop()
                self.held -= nbytes
        if buf is None:
            # numpy's allocator asks for huge pages (one fault per 2 MiB, no
            # zeroing pass): six times faster to fill than a bytearray;
            # the memoryview keeps numpy from collapsing views' bases
            buf = memoryview(np.empty(nbytes, np.uint8))
        # the finalizer goes on the array made over the buffer: every view
        # (the reshaped result included) has it as its base and keeps it
        # alive, whichever of them lives longest
        flat = np.frombuffer(buf, dtype=dtype)
        weakref.finalize(flat, self._give_back, buf)
        return flat.reshape(shape)

    def _give_back(self, buf: bytearray) -> None:
        with self.lock:
            if self.held + len(buf) <= self.max_bytes:
                self.free.setdefault(len(buf), collections.deque()).append(buf)
                self.held += len(buf)


_POOL = _BufferPool()


def _close_quietly(handle: Any) -> None:
    """Close an h5py file, if any, that h5py may already have closed."""
    if handle is None:
        return
    try:
        handle.close()
    except Exception:  # h5py already closed it
        pass


class ClosedFileError(ValueError):
    """Reading from a file that was closed with :func:`xsignal.close_file`."""


class FileChangedError(ValueError):
    """Reading from a file that was replaced or rewritten since it was opened."""


def file_identity(path: str) -> tuple[int, int, int, int]:
    """(device, inode, size, modification time in ns) of ``path``: changes
    when the file is replaced, and when it is rewritten in place."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def check_identity(path: str, identity: tuple | None) -> None:
    """Raise unless ``path`` is still the file whose identity was taken.

    One ``stat`` (a few microseconds): cheap enough before every read, so
    a lazy array never mixes values of two versions of a file.
    """
    if identity is None:
        return
    try:
        now = file_identity(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the file {path} no longer exists; it was removed or renamed "
            "since it was opened"
        ) from err
    if now != tuple(identity):
        raise FileChangedError(
            f"the file {path} was replaced or rewritten since it was opened "
            "(its size, inode or modification time changed); its lazy arrays "
            "would mix old and new values: open it again with xsignal.open"
        )


class Source:
    """A picklable reference to one array of a file (see the module doc).

    Subclasses set ``path``, ``shape``, ``dtype``, ``token`` and ``closed``
    (through :meth:`_start`) and implement ``_get(key)`` for basic keys
    (tuples of ints and step-1 slices).
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    token: str
    closed: bool = False

    def _start(self, path: str, shape: Any, dtype: Any, token: str | None) -> None:
        self.path = str(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.token = token or uuid.uuid4().hex
        self.closed = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self) -> tuple:
        return (type(self).__name__, self.path, self.token)

    def _check_open(self) -> None:
        if self.closed or self.token in _CLOSED:
            raise ClosedFileError(
                f"the file {self.path} was closed with close_file(); open it "
                "again with xsignal.open"
            )

    def __getitem__(self, key: Any) -> np.ndarray:
        self._check_open()
        return self._get(key)

    def _get(self, key: Any) -> np.ndarray:
        raise NotImplementedError

    def release(self) -> None:
        """Drop what this process holds open for the source (if anything)."""


class ArraySource(Source):
    """A :class:`Source` over an array object that pickles by itself (a zarr
    array: its store, not its data; or xarray's lazily decoded array over
    one), read with basic indexing.

    Examples
    --------
    >>> src = ArraySource(np.arange(6).reshape(2, 3), "memory")
    >>> src[(slice(0, 1), slice(1, 3))]
    array([[1, 2]])
    """

    def __init__(
        self,
        array: Any,
        path: str,
        token: str | None = None,
        identity: tuple | None = None,
    ) -> None:
        self._start(path, array.shape, array.dtype, token)
        self.array = array
        # a local store's (folder's or zip file's) identity at open: a store
        # saved over is a new folder, so reads of the old one raise
        self.identity = identity

    def __repr__(self) -> str:
        return f"ArraySource({self.path!r})"

    def _get(self, key: Any) -> np.ndarray:
        check_identity(self.path, self.identity)
        if isinstance(self.array, ExplicitlyIndexed):  # xarray's lazy arrays
            return np.asarray(self.array[BasicIndexer(key)])
        return np.asarray(self.array[key])


class H5Source(Source):
    """A picklable reference to one dataset of an HDF5 file.

    Behaves enough like an array (``shape``, ``dtype``, ``ndim``,
    ``__getitem__``) for :func:`dask.array.from_array`. The file is opened
    once per process and per source token, read-only, and kept open until
    :func:`close_file`.

    Parameters
    ----------
    path : str
        The file.
    name : str
        The dataset's path inside the file.
    shape, dtype
        The dataset's shape and dtype (known from opening it).
    identity : tuple, optional
        :func:`file_identity` at open time, checked before every read (in
        any process), so a file replaced or rewritten since raises
        :class:`FileChangedError` instead of giving other data.
    token : str, optional
        Groups the sources of one ``xsignal.open`` call (new if omitted).
    """

    def __init__(
        self,
        path: str,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        identity: tuple[int, ...] | None = None,
        token: str | None = None,
        direct_chunks: tuple[int, ...] | None = None,
    ) -> None:
        self._start(os.fspath(path), shape, dtype, token)
        self.name = name
        self.identity = identity
        # on-disk chunk shape when the chunks are stored raw (no filters):
        # whole chunks are then read with one read_direct_chunk, bypassing
        # HDF5's selection machinery (about twice as fast)
        self.direct_chunks = direct_chunks
        with _REGISTRY_LOCK:
            _LIVE[self.token] += 1
        weakref.finalize(self, _release, self.token).atexit = False

    def __repr__(self) -> str:
        return f"H5Source({self.path!r}, {self.name!r})"

    def __reduce__(self):
        args = (self.path, self.name, self.shape, self.dtype.str, self.identity)
        return (_rebuild, (*args, self.token, self.closed, self.direct_chunks))

    def __dask_tokenize__(self) -> tuple:
        return ("xsignal.H5Source", self.path, self.name, self.token)

    def _acquire(self):
        """This source's open h5py file, marked in use until :meth:`_done`
        (``__getitem__`` has checked that the source is not closed)."""
        _forget_after_fork()
        with _REGISTRY_LOCK:
            handle = _HANDLES.get(self.token)
            if handle is None:
                handle = _open_checked(self.path, self.identity)
                _HANDLES[self.token] = handle
            _HANDLES.move_to_end(self.token)
            _IN_USE[self.token] += 1
            _evict_idle()
        return handle

    def _done(self) -> None:
        with _REGISTRY_LOCK:
            _IN_USE[self.token] -= 1
            if _IN_USE[self.token] <= 0:
                del _IN_USE[self.token]

    def _get(self, key: Any) -> np.ndarray:
        # h5py serialises every call with its own global lock, so no extra
        # lock is needed for threads; reading straight into the result
        # array avoids a copy.
        check_identity(self.path, self.identity)
        handle = self._acquire()
        try:
            return self._read(handle[self.name], key)
        finally:
            self._done()

    def _read(self, dset, key: Any) -> np.ndarray:
        if self.direct_chunks is not None:
            out = self._read_direct(dset, key)
            if out is not None:
                return out
        try:
            if self.dtype.kind == "O":  # variable-length strings: give str
                return dset.asstr()[key]
            shape = _slices_shape(key, self.shape)
            if shape is None or not all(shape):
                return dset[key]
            out = _POOL.empty(shape, self.dtype)
            dset.read_direct(out, source_sel=key)
            return out
        except (OSError, RuntimeError, KeyError, SystemError) as err:
            # h5py's message names neither the file nor the problem
            from .io.common import damaged

            raise damaged(self.path, err, self.name) from err

    def _read_direct(self, dset, key: Any) -> np.ndarray | None:
        """Read ``key`` from its raw chunks, or None (then HDF5 reads it).

        A region of whole chunks (ending at a chunk edge or the dataset's)
        is read straight into the result. A part of the chunks (an energy
        window of whole spectra, say) is read as the chunks covering it,
        then cut, when they hold at most four times the part: HDF5's
        selection code costs more than that.
        """
        found = _covering(key, self.direct_chunks, self.shape)
        if found is None:
            return None
        covering, inner = found
        whole = all(
            i.start == 0 and i.stop == c.stop - c.start for i, c in zip(inner, covering)
        )
        if not whole and _size(covering) > 4 * _size(inner):
            return None
        region = self._read_region(dset, covering)
        return region if region is None or whole else region[inner].copy()

    def _read_region(self, dset, region: tuple[slice, ...]) -> np.ndarray | None:
        """The whole chunks of ``region`` with ``read_direct_chunk``, or None
        (a chunk never written, holding the fill value, or an odd layout).

        Chunks laid out contiguously in the result are read into place;
        others (edge chunks stored whole, regions split in a trailing
        dim) through one chunk-sized buffer.
        """
        chunks = self.direct_chunks
        out = _POOL.empty(_shape(region), self.dtype)
        buffer = None
        grid = [range(r.start, r.stop, c) for r, c in zip(region, chunks)]
        try:
            for offset in itertools.product(*grid):
                piece = tuple(
                    slice(o - r.start, min(o + c, r.stop) - r.start)
                    for o, r, c in zip(offset, region, chunks)
                )
                target = out[piece]
                if target.shape == chunks and target.flags.c_contiguous:
                    dset.id.read_direct_chunk(
                        offset, out=target.reshape(-1).view(np.uint8)
                    )
                    continue
                if buffer is None:
                    buffer = np.empty(chunks, self.dtype)
                dset.id.read_direct_chunk(offset, out=buffer.reshape(-1).view(np.uint8))
                target[...] = buffer[tuple(slice(0, n) for n in target.shape)]
        except Exception:
            return None
        return out


def _shape(region: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(r.stop - r.start for r in region)


def _size(region: tuple[slice, ...]) -> int:
    return math.prod(_shape(region))


def _covering(
    key: Any, chunks: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """``(covering, inner)``: the whole-chunk region around a key of step-1
    slices and the key's place in it, or None for other keys."""
    if not isinstance(key, tuple) or len(key) != len(shape):
        return None
    covering, inner = [], []
    for sl, chunk, size in zip(key, chunks, shape):
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            return None
        start, stop, _ = sl.indices(size)
        if stop <= start:
            return None
        first = start - start % chunk
        last = min(size, -(-stop // chunk) * chunk)
        covering.append(slice(first, last))
        inner.append(slice(start - first, stop - first))
    return tuple(covering), tuple(inner)


class SourceArray(BackendArray):
    """xarray's lazy array protocol over a :class:`Source`.

    Basic keys (ints and slices) reach the source, which reads whole stored
    chunks directly where it can; xarray applies any other indexing to the
    result in memory. Non-native byte orders come back native, as xarray's
    own readers give them.
    """

    def __init__(self, src: Source) -> None:
        self.src = src
        self.shape = src.shape
        dtype = src.dtype
        self.dtype = dtype.newbyteorder("=") if dtype.kind in "iufc" else dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return explicit_indexing_adapter(
            key, self.shape, IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        out = self.src[key]
        return out if out.dtype == self.dtype else out.astype(self.dtype)


def _slices_shape(key: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Shape selected by a tuple of step-1 slices, or None for other keys."""
    if not isinstance(key, tuple) or len(key) != len(shape):
        return None
    out = []
    for sl, n in zip(key, shape):
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            return None
        start, stop, _ = sl.indices(n)
        out.append(max(0, stop - start))
    return tuple(out)


def _evict_idle() -> None:
    """Close least recently used idle files beyond MAX_OPEN_FILES (lock held)."""
    if len(_HANDLES) <= MAX_OPEN_FILES:
        return
    for token in list(_HANDLES):
        if len(_HANDLES) <= MAX_OPEN_FILES:
            break
        if _IN_USE.get(token, 0) == 0:
            try:
                _HANDLES.pop(token).close()
            except Exception:  # already closed
                pass


def _release(token: str) -> None:
    """One source of ``token`` is gone; close its handle after the last one."""
    with _REGISTRY_LOCK:
        _LIVE[token] -= 1
        if _LIVE[token] > 0:
            return
        del _LIVE[token]
        handle = _HANDLES.pop(token, None)
    _close_quietly(handle)


def _forget_after_fork() -> None:
    """In a forked child, drop the parent's handles (HDF5 ids do not survive
    a fork); the child opens its own."""
    global _PID
    if os.getpid() != _PID:
        with _REGISTRY_LOCK:
            if os.getpid() != _PID:
                _HANDLES.clear()
                _PID = os.getpid()


def _rebuild(
    path, name, shape, dtype, identity, token, closed, direct_chunks=None
) -> H5Source:
    src = H5Source(path, name, shape, dtype, identity, token, direct_chunks)
    src.closed = closed
    return src


def _open_checked(path: str, identity: tuple[int, ...] | None):
    import h5py

    try:  # (H5Source._get has just checked the identity)
        handle = h5py.File(path, "r")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the file {path} no longer exists") from err
    try:  # the file just opened, not one that replaced it in between
        check_identity(path, identity)
    except BaseException:
        handle.close()
        raise
    return handle


def open_source_handle(src: H5Source, handle: Any) -> None:
    """Register ``handle`` (already open) as ``src``'s file in this process."""
    with _REGISTRY_LOCK:
        _HANDLES.setdefault(src.token, handle)
        _evict_idle()


def sources(da: Any) -> Iterator[Source]:
    """The :class:`Source` objects in ``da``'s dask graph (none if in memory)."""
    data = getattr(da, "data", da)
    graph = getattr(data, "__dask_graph__", None)
    if graph is None:
        return
    seen: set[int] = set()
    for value in dict(graph()).values():
        for src in _find_sources(value, 0):
            if id(src) not in seen:
                seen.add(id(src))
                yield src


def _find_sources(value: Any, depth: int) -> Iterator[Source]:
    if isinstance(value, Source):
        yield value
        return
    if depth > 16 or isinstance(value, np.ndarray | str | bytes | int | float):
        return
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _find_sources(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _find_sources(item, depth + 1)
    else:
        # dask's task objects keep their function's arguments in .args/.kwargs
        # (and a DataNode its value in .value); xarray's lazy indexing
        # wrappers the wrapped array in .array, a SourceArray its .src
        for attr in ("args", "kwargs", "value", "array", "src"):
            inner = getattr(value, attr, None)
            if inner is not None and not callable(inner):
                yield from _find_sources(inner, depth + 1)


def close_token(token: str) -> None:
    """Close the handle of one token and mark it closed in this process."""
    with _REGISTRY_LOCK:
        _CLOSED.add(token)
        handle = _HANDLES.pop(token, None)
    _close_quietly(handle)


def _close_tokens(tokens: list[str]) -> None:
    for token in tokens:
        close_token(token)


def _close_on_workers(tokens: set[str]) -> None:
    """Close the same handles in the workers of a running dask.distributed client."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client running
        return
    client.run(_close_tokens, sorted(tokens))


def close_file(da: xr.DataArray) -> None:
    """Close the files that a lazy ``da`` was read from.

    Every HDF5 handle that ``xsignal.open`` opened for ``da`` (and for other
    arrays of the same ``xsignal.open`` call) is closed, in this process and
    in the workers of a running ``dask.distributed`` client, so the file can
    be rewritten or deleted. Computing ``da`` (or anything built from it)
    afterwards raises ``ValueError`` rather than reopening the file. An
    array in memory has nothing to close.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> xsignal.close_file(xr.DataArray(np.zeros(3)))  # nothing to close
    """
    tokens = set()
    for src in list(sources(da)):
        src.closed = True
        src.release()
        close_token(src.token)
        tokens.add(src.token)
    if tokens:
        _close_on_workers(tokens)
    if isinstance(da, xr.DataArray):
        da.close()  # arrays from xarray's own backends
