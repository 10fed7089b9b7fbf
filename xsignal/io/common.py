"""What every reader shares: opening HDF5 files with clear errors, attrs,
choosing a variable, the lazily indexed variable over a source, and the
dask chunks to read it with (one task per stored chunk)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from dask.array.core import normalize_chunks
from xarray.backends import BackendArray
from xarray.core import indexing

from ..chunks import WHOLE, navigation_chunks, per_dim, target_chunk_bytes
from ..dims import SIGNAL_DIMS_ATTR, Dims, signal_dims
from ..sources import Source, file_identity
from .h5source import H5Source, h5_file, open_binary, open_source_handle, url_of

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# the name xarray gives an unnamed DataArray's variable in a file
ANONYMOUS = "__xarray_dataarray_variable__"


def is_hdf5(path: str) -> bool:
    """True when ``path`` (a file or URL) starts with the HDF5 signature (at
    0 or a user block)."""
    with open_binary(path) as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(8)
            if len(head) < 8:
                return False
            if head == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2


# what xsignal reads, for errors on files it does not
READABLE = (
    "xsignal reads netCDF4, HyperSpy .hspy and .zspy, zarr stores (folders "
    "or .zip), HDF5 files, and with xsignal[formats] every format "
    "rosettasciio reads (.blo, .mib, .dm3/.dm4, .emd, .tif, .mrc, .bcf...)"
)


def open_h5(path: str, *, allow_external: bool) -> Any:
    """``h5py.File(path, "r")`` (a file or a URL) with errors that name the
    path and the problem; without ``allow_external``, files whose reads
    reach other files are refused (:func:`check_no_external`)."""
    if not is_url(path):  # a URL is not fetched twice: h5py tells
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder, not a file")
        if not is_hdf5(path):
            raise ValueError(
                f"{path} is not an HDF5/netCDF4 file (no HDF5 signature), nor a "
                f"format known by its extension; {READABLE}"
            )
    try:
        handle = h5_file(path)
    except FileNotFoundError:
        raise  # a URL that is not there
    except OSError as err:
        raise ValueError(
            f"cannot read {path}: the HDF5 file is damaged or truncated ({err})"
        ) from err
    if not allow_external:
        try:
            check_no_external(handle, path)
        except BaseException:
            handle.close()
            raise
    return handle


ALLOW_EXTERNAL_HINT = (
    "xsignal reads no other file unless asked: pass allow_external=True to "
    "xsignal.open (--allow-external on the command line) if you trust it"
)


def check_no_external(handle: Any, path: str) -> None:
    """Refuse an HDF5 file that makes reads reach other files: external
    links, datasets stored in external raw files, virtual datasets mapping
    other files. Such files are valid HDF5, but a file from elsewhere could
    then read any file this process may read (``/etc/passwd`` into the
    data), so :func:`xsignal.open` refuses them unless ``allow_external``.
    """
    try:
        problem = _reaches_other_files(handle)
    # (h5py fails to decode HDF5's message when it quotes damaged names)
    except (KeyError, RuntimeError, OSError, UnicodeError) as err:
        raise ValueError(
            f"{path}: the HDF5 file's structure cannot be walked, it is damaged ({err})"
        ) from err
    if problem:
        raise ValueError(f"{path}: {problem}; {ALLOW_EXTERNAL_HINT}")


def _reaches_other_files(handle: Any) -> str | None:
    """What first makes reads of the open file reach other files (an
    external link before a dataset's storage), or None.

    Every group is walked once with an explicit stack, each member opened
    by its name in its own group: time linear in the number of objects
    however deep they are nested (h5py's ``visititems`` opens each one by
    its whole path, which took minutes on a file nested 2000 groups deep).
    Hard links that lead back to a visited object are not followed again.
    """
    import h5py

    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, Any]] = [("", handle.id)]
    storage: str | None = None  # the first dataset reading other files
    while stack:
        prefix, group = stack.pop()
        for name, kind in _links(group):
            where = f"{prefix}/{name.decode('utf-8', 'replace')}"
            if kind == h5py.h5l.TYPE_EXTERNAL:
                filename, target = group.links.get_val(name)
                return (
                    f"{where} is an external link to "
                    f"{os.fsdecode(filename)}:{os.fsdecode(target)}"
                )
            if kind != h5py.h5l.TYPE_HARD:  # soft links stay in this file
                continue
            obj = h5py.h5o.open(group, name)
            info = h5py.h5o.get_info(obj)
            if (info.fileno, info.addr) in seen:
                continue
            seen.add((info.fileno, info.addr))
            if isinstance(obj, h5py.h5g.GroupID):
                stack.append((where, obj))
            elif isinstance(obj, h5py.h5d.DatasetID) and storage is None:
                storage = _dataset_storage(where, h5py.Dataset(obj))
    return storage


def _links(group: Any) -> list[tuple[bytes, int]]:
    """(name, link type) of every link in an h5py ``GroupID``."""
    found: list[tuple[bytes, int]] = []
    group.links.iterate(lambda name, info: found.append((name, info.type)), info=True)
    return found


def _dataset_storage(where: str, dset: Any) -> str | None:
    """What makes reads of dataset ``where`` reach other files, or None."""
    if dset.external:
        files = sorted({os.fsdecode(entry[0]) for entry in dset.external})
        return (
            f"dataset {where} stores its data in other files {files} "
            "(HDF5 external storage)"
        )
    if dset.is_virtual:
        files = sorted({v.file_name for v in dset.virtual_sources()} - {"."})
        if files:
            return f"dataset {where} is a virtual dataset reading other files {files}"
    return None


class SeveralSignals(ValueError):
    """A file holds several signals and none was chosen; ``names`` lists
    them, each a valid ``variable=`` (``xr.open_datatree`` opens them all)."""

    def __init__(self, message: str, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = list(names)


# what h5py's messages say, and what to tell the user
def choose(
    names: Sequence[str],
    variable: str | int | None,
    where: str,
    what: str = "data variables",
    one: str = "variable",
) -> str:
    """The one of ``names`` that ``variable`` asks for (None: the only one;
    an int: that index in the file's order).

    Errors name ``where`` and list ``names``.

    Examples
    --------
    >>> choose(["a"], None, "f.nc"), choose(["a", "b"], "/b", "f.nc")
    ('a', 'b')
    >>> choose(["a", "b"], 1, "f.nc")
    'b'

    """
    names = list(names)
    if isinstance(variable, int | np.integer) and not isinstance(variable, bool):
        if not -len(names) <= variable < len(names):
            raise ValueError(
                f"{where} has {len(names)} {what} {names}; variable={variable} is "
                "not an index of them"
            )
        return names[variable]
    if variable is None:
        if not names:
            raise ValueError(f"{where} has no {what}")
        if len(names) > 1:
            raise SeveralSignals(
                f"{where} has several {what} {names}; pass variable= to choose one",
                names,
            )
        return names[0]
    if not isinstance(variable, str):
        raise TypeError(
            f"variable must be a name or an int index, not {variable!r} ({where})"
        )
    key = variable.strip("/")
    if key not in names:
        raise ValueError(f"{where} has no {one} {variable!r}; its {what} are {names}")
    return key


def clean_attr(value: Any) -> Any:
    """An HDF5 attribute as xarray's h5netcdf backend gives it."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            value = value.astype(str)
        if value.dtype.kind == "O":
            value = np.array(
                [v.decode() if isinstance(v, bytes) else v for v in value.ravel()]
            ).reshape(value.shape)
        if value.size == 1 and value.ndim == 1:
            return value[0]
    return value


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
        out: np.ndarray = indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )
        return out

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        out = self.src[key]
        return out if out.dtype == self.dtype else out.astype(self.dtype)


def is_url(path: Any) -> bool:
    """True for an fsspec URL such as ``"s3://bucket/x.zarr"``."""
    return isinstance(path, str) and "://" in path


def source_for(handle: Any, name: str, token: str) -> H5Source:
    """A :class:`H5Source` for dataset ``name`` of the open ``handle``.

    The handle is registered under ``token`` so this process reuses it.
    """
    dset = handle[name]
    path = url_of(handle)
    path = path if is_url(path) else os.path.abspath(path)
    direct = None
    if (
        dset.chunks is not None
        and dset.id.get_create_plist().get_nfilters() == 0
        and dset.dtype.kind in "biufc"
    ):
        direct = dset.chunks
    src = H5Source(
        path,
        # the path in this file: an external link's dataset has another
        # name (dset.name) in the file it links to
        "/" + name.lstrip("/"),
        dset.shape,
        dset.dtype,
        identity=file_identity(path),
        token=token,
        direct_chunks=direct,
    )
    open_source_handle(src, handle)
    return src


def stored_chunks(
    shape: Sequence[int],
    dims: Sequence[Hashable],
    dtype: np.dtype,
    disk_chunks: Sequence[int] | None,
    signal: Sequence[Hashable] = (),
) -> tuple[int, ...]:
    """The chunk length of each dim as stored, or for a contiguous dataset
    whole signals and about dask's ``array.chunk-size`` per block."""
    shape = tuple(int(n) for n in shape)
    if disk_chunks is None:
        sig = [d for d in dims if d in set(signal)] or list(dims[-1:])
        pixel = int(np.prod([shape[dims.index(d)] for d in sig])) * dtype.itemsize
        nav = {d: max(1, n) for d, n in zip(dims, shape) if d not in sig}
        by_dim = navigation_chunks(nav, pixel, target_chunk_bytes())
        by_dim.update({d: shape[dims.index(d)] for d in sig})
        disk_chunks = tuple(by_dim[d] for d in dims)
    return tuple(max(1, min(c, n)) if n else 1 for c, n in zip(disk_chunks, shape))


def dask_chunks(
    shape: Sequence[int],
    dims: Sequence[Hashable],
    dtype: np.dtype,
    disk_chunks: Sequence[int] | None,
    chunks: Any,
    signal: Sequence[Hashable] = (),
    where: str = "the file",
) -> tuple[tuple[int, ...], ...]:
    """The dask chunks for a dataset read with ``chunks`` (``where``, the
    file, names it in errors).

    ``None`` (or ``{}``): the stored chunks (:func:`stored_chunks`).
    ``"auto"``: dask's rule, in multiples of the stored chunks. A dict by
    dim name (dims not named keep their stored chunks), a tuple in dim
    order or one int for every dim (``-1`` = whole): as given.
    """
    shape = tuple(int(n) for n in shape)
    disk = stored_chunks(shape, dims, dtype, disk_chunks, signal)
    spec = [
        n if c == WHOLE else c
        for c, n in zip(per_dim(dims, chunks, default=disk, auto=True), shape)
    ]
    check_task_count(shape, spec, disk, where)
    out: tuple[tuple[int, ...], ...] = normalize_chunks(
        tuple(spec), shape, dtype=dtype, previous_chunks=disk
    )
    return out


# more tasks than this would hang or exhaust memory on the first compute
MAX_OPEN_TASKS = 10_000_000


def check_task_count(
    shape: Sequence[int], spec: Sequence[Any], disk: Sequence[int], where: str
) -> None:
    """Refuse chunks that make an absurd number of dask tasks, counted from
    the chunk lengths before any chunk tuple is built (a file can declare
    any shape in a few bytes: 10^12 rows must fail at once, naming it).
    ``"auto"`` is counted as the stored chunks, which it only merges."""
    count = 1
    for n, c, d in zip(shape, spec, disk):
        count *= -(-int(n) // max(1, int(d if c == "auto" else c))) if n else 1
    if count > MAX_OPEN_TASKS:
        raise ValueError(
            f"{where}: its array of shape {tuple(shape)} would be read in "
            f"{count:.3g} chunks (over {MAX_OPEN_TASKS:,}); pass larger chunks= "
            "if the file is real"
        )


def marked_signal(dims: Sequence[Hashable], attrs: dict[str, Any]) -> Dims:
    """The signal dims a stored ``signal_dims`` attribute names, or ``()``
    when there is none (then the chunk rules need no signal)."""
    if SIGNAL_DIMS_ATTR not in attrs:
        return ()
    probe = xr.DataArray(np.empty((0,) * len(dims)), dims=tuple(dims), attrs=attrs)
    return signal_dims(probe)


def source_variable(
    src: Source,
    dims: Sequence[Hashable],
    attrs: dict[str, Any] | None = None,
    *,
    disk_chunks: Sequence[int] | None,
    signal: Sequence[Hashable] = (),
    encoding: dict[str, Any] | None = None,
) -> xr.Variable:
    """The variable a backend gives for ``src``: lazily indexed (nothing is
    read until xarray or dask asks), with ``preferred_chunks`` the stored
    chunks (for a contiguous dataset whole signals and about dask's
    ``array.chunk-size`` per block), which ``chunks={}`` gives."""
    if disk_chunks is not None and any(
        int(c) < 1 for c, n in zip(disk_chunks, src.shape) if n
    ):
        raise ValueError(
            f"cannot read {src.path}: its chunk shape {tuple(disk_chunks)} has "
            "a length below 1 (the metadata is damaged)"
        )
    data = indexing.LazilyIndexedArray(SourceArray(src))
    var = xr.Variable(tuple(dims), data, attrs or {})
    stored = stored_chunks(src.shape, dims, src.dtype, disk_chunks, signal)
    var.encoding = {**(encoding or {}), "preferred_chunks": dict(zip(dims, stored))}
    return var
