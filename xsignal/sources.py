"""Files behind lazy arrays: what every reader's source shares.

A :class:`Source` is what one array of a file is read through: small,
picklable (dask's process scheduler and ``dask.distributed`` workers get
it in the graph and read the file themselves), with a ``token`` shared by
the sources of one ``xsignal.open`` call and a closed state. Each io kind
(``io/h5source.py`` for HDF5, the zarr and rosettasciio readers)
subclasses it; what a kind holds open per process it registers as a
closer (:func:`register_closer`), so closing a token closes it whatever
the kind. This module is the bottom of the package: it imports nothing of
xsignal's.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from xarray.core.indexing import BasicIndexer, ExplicitlyIndexed

# tokens closed with close_file in this process: their sources never reopen
_CLOSED: set[str] = set()
# per io kind, a function closing what it holds open for a token here
_CLOSERS: list[Callable[[str], None]] = []
_LOCK = threading.Lock()


def register_closer(closer: Callable[[str], None]) -> None:
    """Have ``closer(token)`` called when the token is closed (each io kind
    registers one, at import, for what it keeps open per process)."""
    with _LOCK:
        if closer not in _CLOSERS:
            _CLOSERS.append(closer)


class ClosedFileError(ValueError):
    """Reading from a file that was closed with :func:`xsignal.close_file`."""


class FileChangedError(ValueError):
    """Reading from a file that was replaced or rewritten since it was opened."""


class ExternalReadError(ValueError):
    """A read that would reach outside its file or store (a link out of it),
    refused without ``allow_external=True``."""


def file_identity(path: str) -> tuple[Any, ...]:
    """(device, inode, size, modification time in ns) of ``path``: changes
    when the file is replaced, and when it is rewritten in place. For a URL
    (``http://``, ``s3://``...), what its server says of it: size, ETag and
    Last-Modified (one HEAD request)."""
    if "://" in str(path):
        return _url_identity(str(path))
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# what a server says of an object that changes when it is written again
_URL_FIELDS = ("size", "ETag", "LastModified", "Last-Modified")


def url_stamp(info: dict[str, Any]) -> tuple[str, ...]:
    """The identity of an object at a URL from fsspec's ``info`` of it."""
    return tuple(str(info.get(field)) for field in _URL_FIELDS)


def _url_identity(url: str) -> tuple[Any, ...]:
    import fsspec

    fs, where = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(where)  # s3fs answers from its listings
    try:
        info = fs.info(where)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the file {url} no longer exists; it was removed or renamed since "
            "it was opened"
        ) from err
    return url_stamp(info)


def check_identity(path: str, identity: tuple[int, ...] | None) -> None:
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

    def _start(self, path: str, shape: Any, dtype: Any, token: str | None) -> None:
        self.path = str(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.token = token or uuid.uuid4().hex

    @property
    def closed(self) -> bool:
        """Whether :func:`xsignal.close_file` closed this source's file (in
        this process, or in the one that sent the source here)."""
        return self.token in _CLOSED

    def __getstate__(self) -> dict[str, Any]:
        # a source sent to another process after close_file stays closed there
        return {**self.__dict__, "_sent_closed": self.closed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.pop("_sent_closed", False):
            mark_closed(state["token"])
        self.__dict__.update(state)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self) -> tuple[str, ...]:
        return (type(self).__name__, self.path, self.token)

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedFileError(
                f"the file {self.path} was closed with close_file(); open it "
                "again with xsignal.open"
            )

    def __getitem__(self, key: Any) -> np.ndarray:
        self._check_open()
        return self._get(key)

    def _get(self, key: Any) -> np.ndarray:
        raise NotImplementedError


class ArraySource(Source):
    """A :class:`Source` over an array object that pickles by itself (a zarr
    array: its store, not its data; or xarray's lazily decoded array over
    one), read with basic indexing.

    Examples
    --------
    >>> import numpy as np
    >>> src = ArraySource(np.arange(6).reshape(2, 3), "memory")
    >>> src[(slice(0, 1), slice(1, 3))]
    array([[1, 2]])
    """

    def __init__(
        self,
        array: Any,
        path: str,
        token: str | None = None,
    ) -> None:
        self._start(path, array.shape, array.dtype, token)
        self.array = array

    def __repr__(self) -> str:
        return f"ArraySource({self.path!r})"

    def _get(self, key: Any) -> np.ndarray:
        try:
            if isinstance(self.array, ExplicitlyIndexed):  # xarray's lazy arrays
                # the ExplicitlyIndexed base declares no __getitem__; every one
                # of xarray's subclasses defines it
                return np.asarray(self.array[BasicIndexer(key)])  # type: ignore[index]
            return np.asarray(self.array[key])
        except (FileChangedError, ExternalReadError):
            raise  # the store's own checks (xsignal.io.store_check): no damage
        except READ_ERRORS as err:
            # a damaged chunk (a codec's error, a chunk of the wrong size, a
            # zero chunk length): say which store, where and what
            raise damaged_read(self.path, key, err, "store") from err


def layer_prefix(token: str) -> str:
    """The name prefix of the dask layers that read the files of ``token``:
    the graph of any array computed from them names its tokens, so they
    are found by name (:func:`tokens_of`), not by looking into tasks."""
    return f"xsignal-{token}-"


_LAYER = re.compile(r"^(?:original-)?xsignal-([0-9a-f]{32})-")


def tokens_of(da: Any) -> list[str]:
    """The tokens of the files a lazy ``da`` reads (none if in memory)."""
    data = getattr(da, "data", da)
    graph = data.__dask_graph__() if hasattr(data, "__dask_graph__") else None
    layers = getattr(graph, "layers", None) or {}
    found = {m.group(1) for name in layers if (m := _LAYER.match(str(name)))}
    return sorted(found)


def mark_closed(token: str) -> None:
    """Mark ``token`` closed in this process (its sources never read again)."""
    with _LOCK:
        _CLOSED.add(token)


def close_tokens(tokens: list[str]) -> None:
    """Mark ``tokens`` closed in this process and close what every io kind
    holds open for them."""
    with _LOCK:
        _CLOSED.update(tokens)
        closers = list(_CLOSERS)
    for token in tokens:
        for closer in closers:
            closer(token)


def close_sources(da: Any) -> list[str]:
    """Close the files a lazy ``da`` reads, in this process; their tokens."""
    tokens = tokens_of(da)
    close_tokens(tokens)
    return tokens


# what readers raise on damaged or truncated data (beside OSError, which
# names the file itself)
READ_ERRORS = (ValueError, RuntimeError, ZeroDivisionError, KeyError, IndexError)


def damaged_read(path: str, key: Any, err: BaseException, what: str) -> ValueError:
    """The error for a read of ``key`` that failed on damaged data: it names
    the file (``what``: "file" or "store"), the block and the cause."""
    return ValueError(
        f"cannot read {path} at {_where(key)}: the {what} is damaged or "
        f"truncated [{type(err).__name__}: {err}]"
    )


def _where(key: Any) -> str:
    """A basic key as the user writes it: ``[0:4, 2, :]``."""
    items = key if isinstance(key, tuple) else (key,)

    def one(item: Any) -> str:
        if isinstance(item, slice):
            start = "" if item.start is None else item.start
            stop = "" if item.stop is None else item.stop
            return f"{start}:{stop}"
        return str(item)

    return "[" + ", ".join(one(item) for item in items) + "]"
