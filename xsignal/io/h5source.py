"""HDF5 reads: :class:`H5Source` (one dataset, picklable), the per-process
cache of open files, and the buffers blocks are read into.

The file is opened the first time a process reads from it and the h5py
handle kept in a per-process registry, least recently used first (as
xarray's ``CachingFileManager`` does, but a closed source never reopens);
closing a token (:func:`xsignal.sources.close_tokens`) closes its handle
through the closer this module registers.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..sources import Source, check_identity, mark_closed, register_closer

# token -> open h5py.File, in this process, least recently used first. One
# token per xsignal.open call, so closing one opened array does not close
# another opened from the same file.
_HANDLES: collections.OrderedDict[str, Any] = collections.OrderedDict()
# at most this many files stay open per process (like xarray's file cache);
# the least recently used idle one is closed and reopened when next read
MAX_OPEN_FILES = 128
_IN_USE: collections.Counter[str] = collections.Counter()
_PID = os.getpid()
_CLOSED: set[str] = set()
# live H5Source objects per token in this process: when the last one is
# garbage collected nothing can read the handle any more, so it is closed
_LIVE: collections.Counter[str] = collections.Counter()
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
        self.free: dict[int, collections.deque[memoryview]] = {}
        self.held = 0
        self.lock = threading.RLock()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < 2**18:  # small blocks: malloc reuses them anyway
            return np.empty(shape, dtype)
        buf: memoryview | None = None
        with self.lock:
            stack = self.free.get(nbytes)
            if stack:
                buf = stack.pop()
                self.held -= nbytes
        if buf is None:
            # numpy's allocator asks for huge pages (one fault per 2 MiB, no
            # zeroing pass): six times faster to fill than a bytearray;
            # the memoryview keeps numpy from collapsing views' bases
            # (.data is memoryview(array), typed as such on every Python)
            buf = np.empty(nbytes, np.uint8).data
        # the finalizer goes on the array made over the buffer: every view
        # (the reshaped result included) has it as its base and keeps it
        # alive, whichever of them lives longest
        flat = np.frombuffer(buf, dtype=dtype)
        weakref.finalize(flat, self._give_back, buf)
        return flat.reshape(shape)

    def _give_back(self, buf: memoryview) -> None:
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


_DAMAGE = (
    ("too many links", "a link loop (links that lead back to themselves)"),
    ("doesn't exist", "a dangling link (to an object that is not there)"),
    ("object not found", "a dangling link (to an object that is not there)"),
    ("component not found", "a dangling link (to an object that is not there)"),
    ("checksum", "corrupted metadata (a checksum does not match)"),
    ("filter returned failure", "corrupted compressed data"),
    ("ran off end", "corrupted metadata (a record runs past its end)"),
)

# errors a damaged file makes HDF5, h5py or the layout code raise; ours
# (ValueError, FileNotFoundError...) already say what is wrong
DAMAGE_ERRORS = (
    OSError,
    RuntimeError,
    KeyError,
    AttributeError,
    IndexError,
    SystemError,
)


def damaged(path: str, err: BaseException, what: str = "") -> ValueError:
    """A ``ValueError`` naming the file (and ``what`` in it) and saying what
    is wrong, from a raw h5py/HDF5 error."""
    text = str(err)
    problem = next(
        (say for key, say in _DAMAGE if key in text.lower()), "corrupted metadata"
    )
    where = f" ({what})" if what else ""
    return ValueError(
        f"cannot read {path}{where}: the file is damaged: {problem} "
        f"[{type(err).__name__}: {text.splitlines()[0] if text else ''}]"
    )


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

    def __reduce__(self) -> tuple[Callable[..., H5Source], tuple[Any, ...]]:
        # closed: a source sent to another process after close_file stays so
        args = (self.path, self.name, self.shape, self.dtype.str, self.identity)
        return (_rebuild, (*args, self.token, self.closed, self.direct_chunks))

    def __dask_tokenize__(self) -> tuple[str, ...]:
        return ("xsignal.H5Source", self.path, self.name, self.token)

    def _acquire(self) -> Any:
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
            return self._read(_dataset(handle, self.name), key)
        finally:
            self._done()

    def _read(self, dset: Any, key: Any) -> np.ndarray:
        if self.direct_chunks is not None:
            direct = self._read_direct(dset, key, self.direct_chunks)
            if direct is not None:
                return direct
        try:
            read: NDArray[Any]  # h5py is untyped
            if self.dtype.kind == "O":  # variable-length strings: give str
                read = dset.asstr()[key]
                return read
            shape = _slices_shape(key, self.shape)
            if shape is None or not all(shape):
                read = dset[key]
                return read
            out = _POOL.empty(shape, self.dtype)
            dset.read_direct(out, source_sel=key)
            return out
        except (OSError, RuntimeError, KeyError, SystemError) as err:
            # h5py's message names neither the file nor the problem
            raise damaged(self.path, err, self.name) from err

    def _read_direct(
        self, dset: Any, key: Any, chunks: tuple[int, ...]
    ) -> NDArray[Any] | None:
        """Read ``key`` from its raw chunks, or None (then HDF5 reads it).

        A region of whole chunks (ending at a chunk edge or the dataset's)
        is read straight into the result. A part of the chunks (an energy
        window of whole spectra, say) is read as the chunks covering it,
        then cut, when they hold at most four times the part: HDF5's
        selection code costs more than that.
        """
        found = _covering(key, chunks, self.shape)
        if found is None:
            return None
        covering, inner = found
        whole = all(
            i.start == 0 and i.stop == c.stop - c.start for i, c in zip(inner, covering)
        )
        if not whole and _size(covering) > 4 * _size(inner):
            return None
        region = self._read_region(dset, covering, chunks)
        return region if region is None or whole else region[inner].copy()

    def _read_region(
        self, dset: Any, region: tuple[slice, ...], chunks: tuple[int, ...]
    ) -> NDArray[Any] | None:
        """The whole chunks of ``region`` with ``read_direct_chunk``, or None
        (a chunk never written, holding the fill value, or an odd layout).

        Chunks laid out contiguously in the result are read into place;
        others (edge chunks stored whole, regions split in a trailing
        dim) through one chunk-sized buffer.
        """
        out = _POOL.empty(_shape(region), self.dtype)
        buffer: NDArray[Any] | None = None
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


def _dataset(handle: Any, name: str) -> Any:
    """The dataset ``name`` of an open file, looked up once per handle
    (h5py's lookup costs about 0.1 ms: a tenth of reading a 4 MiB chunk
    from the page cache); the cache goes with the handle when it closes."""
    cache: dict[str, Any] = handle.__dict__.setdefault("_xsignal_datasets", {})
    dset = cache.get(name)
    if dset is None:
        dset = cache[name] = handle[name]
    return dset


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
    path: str,
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    identity: tuple[int, ...] | None,
    token: str,
    closed: bool,
    direct_chunks: tuple[int, ...] | None = None,
) -> H5Source:
    if closed:
        mark_closed(token)
    return H5Source(path, name, shape, dtype, identity, token, direct_chunks)


def open_binary(path: str) -> Any:
    """A binary file object for a local path or an fsspec URL (``http://``,
    ``s3://``...: read in blocks as HDF5 asks for them)."""
    if "://" in str(path):
        import fsspec

        return fsspec.open(path, "rb", block_size=URL_BLOCK).open()
    return open(path, "rb")


# bytes fetched per request from a URL: HDF5 reads small pieces of metadata
# at many places, then whole chunks
URL_BLOCK = 4 * 2**20


def h5_file(path: str) -> Any:
    """``h5py.File`` of a local path, or of a URL through a file object
    (the handle holds it and the URL: ``url_of(handle)`` gives it back)."""
    import h5py

    if "://" not in str(path):
        return h5py.File(path, "r")
    fileobj = open_binary(path)
    handle = h5py.File(fileobj, "r")
    handle._xsignal_url, handle._xsignal_fileobj = path, fileobj
    return handle


def url_of(handle: Any) -> str:
    """The path or URL a handle of :func:`h5_file` was opened from."""
    return str(getattr(handle, "_xsignal_url", handle.filename))


def _open_checked(path: str, identity: tuple[int, ...] | None) -> Any:
    try:  # (H5Source._get has just checked the identity)
        handle = h5_file(path)
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


def close_handle(token: str) -> None:
    """Close the file handle of ``token`` in this process, if open."""
    with _REGISTRY_LOCK:
        handle = _HANDLES.pop(token, None)
    _close_quietly(handle)


register_closer(close_handle)
