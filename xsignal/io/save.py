"""``xsignal.save``: the format from the extension, chunks, and atomic writes.

Every format writer (:mod:`.netcdf`, :mod:`.hspy`, :mod:`.zarr_`) writes a
new file or store at a path it is given; this module chooses the writer,
checks everything it can before any work, writes to a temporary sibling of
the target and moves it into place only once complete (:mod:`.atomic`).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xarray as xr

from .. import engine, reductions
from ..chunks import WHOLE, navigation_chunks, per_dim
from ..dims import (
    SIGNAL_DIMS_ATTR,
    encode_signal_dims,
    navigation_dims,
    signal_dims,
)
from . import atomic, zarr_
from .common import is_url
from .hdf5_write import compression_encoding
from .hspy import write_hspy
from .hyperspy import hyperspy_order
from .netcdf import write_netcdf

DEFAULT_CHUNK_BYTES = 4 * 2**20

# format -> the extensions that choose it (a ".zip" after .zarr/.zspy, or
# alone, means a zarr store in a zip file)
EXTENSIONS = {
    "netcdf": (".nc", ".nc4", ".h5", ".hdf5"),
    "hspy": (".hspy",),
    "zspy": (".zspy",),
    "zarr": (".zarr",),
}
HDF5_FORMATS = ("netcdf", "hspy")


class _Writer(Protocol):
    """A format's writer: a new file or store at ``path`` (a URL: a str)."""

    def __call__(
        self,
        da: xr.DataArray,
        path: str | Path,
        chunks: tuple[int, ...],
        *,
        overwrite: bool,
        navigator: xr.DataArray | None,
    ) -> None: ...


def format_for(
    path: str | os.PathLike[str], format: str | None = None
) -> tuple[str, bool]:
    """(format, zipped) for saving to ``path``.

    ``format`` wins over the extension; a name ending in ``.zip`` is a
    zarr (or ``.zspy`` before it: HyperSpy zarr) store in a zip file.

    Raises
    ------
    ValueError
        An extension (or ``format``) xsignal cannot write, listing those it can.

    Examples
    --------
    >>> format_for("scan.hspy"), format_for("x.zarr.zip"), format_for("a", "zarr")
    (('hspy', False), ('zarr', True), ('zarr', False))
    """
    name = os.fspath(path).rstrip("/").lower()
    zipped = name.endswith(".zip")
    if zipped:
        name = name[: -len(".zip")]
    if format is not None:
        fmt = str(format).lower()
        if fmt in ("nc", "netcdf4", "hdf5", "h5"):
            fmt = "netcdf"
        if fmt not in EXTENSIONS:
            raise ValueError(
                f"unknown format {format!r}; xsignal writes {sorted(EXTENSIONS)}"
            )
        if zipped and fmt not in ("zarr", "zspy"):
            raise ValueError(f"{path}: only zarr stores can be saved in a .zip file")
        return fmt, zipped
    for fmt, extensions in EXTENSIONS.items():
        if name.endswith(extensions):
            if zipped and fmt not in ("zarr", "zspy"):
                raise ValueError(
                    f"{path}: only zarr stores (.zarr, .zspy) can be saved in a "
                    ".zip file"
                )
            return fmt, zipped
    if zipped:
        return "zarr", True
    known = [e for exts in EXTENSIONS.values() for e in exts] + [".zip"]
    raise ValueError(
        f"cannot tell which format to save {os.fspath(path)!r} in: its extension "
        f"is not one of {', '.join(known)}; rename it or pass format= "
        f"(one of {sorted(EXTENSIONS)})"
    )


def save_chunks(
    da: xr.DataArray, chunks: Mapping[Any, int] | Sequence[int] | None = None
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
        spec = per_dim(da.dims, chunks, default=[WHOLE] * da.ndim)
        return tuple(
            max(1, shape[d] if c == WHOLE else min(c, shape[d]))
            for d, c in zip(da.dims, spec)
        )
    if da.chunks is not None:
        largest = tuple(max(max(c), 1) if c else 1 for c in da.chunks)
        irregular = [
            d
            for d, c in zip(da.dims, da.chunks)
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0])
        ]
        if irregular:
            warnings.warn(
                f"the dask chunks along {irregular} are irregular; saving with "
                f"on-disk chunks {dict(zip(da.dims, largest))} (the largest of each "
                "dim), which is what the file gives back when opened. Pass "
                "chunks= to choose.",
                UserWarning,
                stacklevel=3,
            )
        return largest
    sig = signal_dims(da)
    pixel = int(np.prod([shape[d] for d in sig])) * da.dtype.itemsize
    by_dim = navigation_chunks(  # (size-0 dims count as 1: HDF5 chunks are >= 1)
        {d: max(1, shape[d]) for d in navigation_dims(da)}, pixel, DEFAULT_CHUNK_BYTES
    )
    by_dim.update({d: max(1, shape[d]) for d in sig})
    return tuple(by_dim[d] for d in da.dims)


def save(
    da: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,  # noqa: A002  (the API's name)
    chunks: Mapping[Any, int] | Sequence[int] | None = None,
    compression: Any = "auto",
    overwrite: bool = False,
    shards: Mapping[Any, int] | Sequence[int] | None = None,
    navigator: bool = True,
) -> None:
    """Save ``da`` to a chunked file or store, atomically.

    The format comes from ``format=`` or the extension:

    - ``.nc``, ``.nc4``, ``.h5``, ``.hdf5``: netCDF4 (through h5netcdf), read
      by any netCDF4 reader;
    - ``.hspy``: HyperSpy's HDF5 layout, which ``hs.load`` opens;
    - ``.zspy``: HyperSpy's zarr layout (zarr format 2);
    - ``.zarr``: a zarr format 3 store as xarray writes it
      (``xr.open_zarr`` reads it), optionally sharded;
    - ``.zip`` after any zarr name (``x.zarr.zip``, ``x.zspy.zip``) or
      alone: the same store in one zip file.

    Any other extension raises ``ValueError`` before anything is written.
    :func:`xsignal.open` gives back the values, coords, attrs, signal
    marking, and dask chunks equal to the stored chunks. Lazy data is
    written block by block, never whole in memory. A local save is written
    to a temporary sibling of the target and renamed over it only once
    complete: a failure (a raising task, a full disk, an interrupt) leaves
    no half-written file and any existing file or store untouched; saving
    over the file a lazy ``da`` reads from works. On a ``dask.distributed``
    client, zarr stores are written by the workers, each its own chunks;
    HDF5 files are written by this process from blocks computed (and, for
    gzip or no compression, encoded) on the workers. An fsspec URL
    (``"s3://bucket/x.zarr"``) is written in place, not atomically.

    Parameters
    ----------
    path : path-like or URL
        Target file or store.
    format : {"netcdf", "hspy", "zspy", "zarr"}, optional
        Overrides the extension.
    chunks : dict by dim name or tuple in dim order, optional
        Stored chunks; default the dask chunks (irregular ones: the largest
        of each dim, with a warning), else whole signals and about 4 MiB.
    compression : str, None or a filter object
        ``"auto"``: gzip for HDF5 formats, zstd for zarr. ``"gzip"``,
        ``"zstd"``, ``"lz4"``, ``"lzf"`` (HDF5 only), ``None``; other
        hdf5plugin filter names for HDF5 (that package needed to write and
        to read); a numcodecs or zarr codec object for zarr.
    overwrite : bool
        Replace an existing file or store; ``False`` raises
        ``FileExistsError``, also when another process creates the path
        while this save runs (nothing is replaced then). A replaced file
        keeps its permissions, and its owner where allowed.
    shards : dict by dim name or tuple in dim order, optional
        zarr format 3 only: the shard shape, a multiple of the chunks (many
        chunks in one stored object, fewer files).
    navigator : bool
        Where ``da`` has navigation and signal dims, store its navigator
        (:func:`xsignal.navigator`, the sum over the signal dims), computed
        from the blocks being written in the same pass: in ``.hspy`` and
        ``.zspy`` where HyperSpy keeps one (``metadata._HyperSpy.navigator``,
        which ``s.plot()`` uses), in netCDF and zarr as the variable
        ``<name>_navigator`` named by the data's ``navigator`` attr.
        :func:`xsignal.open` gives the data alone, and its
        ``signal.navigator()`` reads the stored one. ``False``: data only.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        An extension or format that cannot be written, bad ``chunks``,
        ``shards`` or ``compression``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(24.0).reshape(2, 3, 4), dims=("y", "x", "e"))
    >>> folder = tempfile.mkdtemp()
    >>> xsignal.save(da.signal.set_signal_dims("x", "e"), os.path.join(folder, "a.nc"))
    >>> back = xsignal.open(os.path.join(folder, "a.nc"), lazy=False)
    >>> back.signal.signal_dims, float(back.sum())
    (('x', 'e'), 276.0)
    >>> xsignal.save(da, os.path.join(folder, "a.zarr"), chunks={"y": 1})
    >>> xsignal.open(os.path.join(folder, "a.zarr")).chunks
    ((1, 1), (3,), (4,))
    >>> xsignal.save(da, os.path.join(folder, "a.tif"))
    Traceback (most recent call last):
    ...
    ValueError: cannot tell which format to save '...a.tif' in: ...
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    fmt, zipped = format_for(path, format)
    if SIGNAL_DIMS_ATTR in da.attrs:  # store the marking as it is now: no
        da = da.copy(deep=False)  # names of dims that were dropped since
        da.attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(signal_dims(da))
    stored = save_chunks(da, chunks)
    if fmt in ("hspy", "zspy"):  # HyperSpy wants the signal dims last
        by_dim = dict(zip(da.dims, stored))
        da = hyperspy_order(da)
        stored = tuple(by_dim[d] for d in da.dims)
    writer = _writer(fmt, compression, shards, stored, da)
    nav = _navigator(da) if navigator else None
    if is_url(path):
        if zipped or fmt in HDF5_FORMATS:
            raise ValueError(
                f"cannot save {path}: only zarr stores (.zarr, .zspy) can be "
                "written to a URL"
            )
        if not overwrite:
            _refuse_existing_url(os.fspath(path))
        with engine.memory_checked(da, to_caller=False):
            writer(da, os.fspath(path), stored, overwrite=overwrite, navigator=nav)
        return
    folder = fmt in ("zarr", "zspy") and not zipped
    target = atomic.check_target(path, overwrite, folder=folder)
    _check_space(target, da, compression, zipped)
    tmp = atomic.temporary(target)
    store = atomic.temporary(target, "store") if zipped else tmp
    try:
        with engine.memory_checked(da, to_caller=False), engine.joined_threads():
            writer(da, store, stored, overwrite=False, navigator=nav)
        if zipped:
            zip_folder(store, tmp)
            atomic.remove(store)
        if overwrite:
            atomic.replace(tmp, target)
        else:
            atomic.place_new(tmp, target)
    except BaseException as err:
        _remove_when_settled(store, tmp)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            free = shutil.disk_usage(target.parent).free
            raise OSError(
                errno.ENOSPC,
                f"the disk filled up while saving {target} ({_mib(free)} free "
                f"now, the partial file removed; nothing was replaced): {err}",
            ) from err
        if isinstance(err, OSError) and err.errno and str(store.parent) in str(err):
            # the error names the hidden temporary: name the target instead
            raise OSError(
                err.errno,
                f"cannot save {target}: {os.strerror(err.errno)} (writing in "
                f"{target.parent}; nothing was replaced)",
            ) from err
        raise


def _navigator(da: xr.DataArray) -> xr.DataArray | None:
    """What :func:`save` stores as ``da``'s navigator: the sum over the
    signal dims (lazy when ``da`` is: computed with the save), or None for
    data without navigation or signal dims, or holding no numbers."""
    if not navigation_dims(da) or not signal_dims(da) or da.dtype.kind not in "biuf":
        return None
    nav = reductions.navigator(da)
    nav.attrs = {"long_name": "navigator", SIGNAL_DIMS_ATTR: encode_signal_dims([])}
    nav.name = "navigator"
    return nav


def _refuse_existing_url(url: str) -> None:
    """A store at ``url`` without ``overwrite``: the error names the URL
    (zarr's own says "Cannot create '' with mode 'w-'" on s3)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        raise FileExistsError(f"{url} exists; pass overwrite=True to replace it")


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _check_space(
    target: Path, da: xr.DataArray, compression: Any, zipped: bool
) -> None:
    """Refuse a save that cannot fit, before it starts: uncompressed data
    need their size (twice for a zip, built from a folder); compressed
    data are not checked (the size is unknown until written)."""
    if compression is not None:
        return
    need = da.nbytes * (2 if zipped else 1)
    free = shutil.disk_usage(target.parent).free
    if need > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough space to save {target}: {_mib(need)} to write, "
            f"{_mib(free)} free on its disk",
        )


def _remove_when_settled(*paths: Path, timeout: float = 30.0) -> None:
    """Remove the temporaries of a failed save. On a ``dask.distributed``
    client, tasks still running on the workers may write chunks after the
    failure reached here: wait until no task runs, remove, and again while
    the temporaries come back (up to ``timeout`` seconds)."""
    on_cluster = engine.client() is not None
    deadline = time.monotonic() + timeout
    while True:
        engine.wait_until_idle(max(0.0, deadline - time.monotonic()))
        for path in paths:
            atomic.remove(path)
        if not on_cluster or time.monotonic() > deadline:
            return
        time.sleep(0.2)  # a straggler's write lands within this
        if not any(p.exists() for p in paths):
            return


def _writer(
    fmt: str, compression: Any, shards: Any, stored: tuple[int, ...], da: xr.DataArray
) -> _Writer:
    """The format's writer, after checking ``compression`` and ``shards``.

    Returns ``write(da, path, chunks, overwrite=...)``.
    """
    if shards is not None and fmt != "zarr":
        raise ValueError(f"shards= is for zarr format 3 stores (.zarr), not {fmt}")
    if fmt in HDF5_FORMATS:
        compression = "gzip" if compression == "auto" else compression
        compression_encoding(compression)  # raises on a bad name, before any work
        write = write_netcdf if fmt == "netcdf" else write_hspy

        def hdf5(
            da: xr.DataArray,
            path: str | Path,
            chunks: tuple[int, ...],
            *,
            overwrite: bool,
            navigator: xr.DataArray | None,
        ) -> None:
            write(da, path, chunks=chunks, compression=compression, navigator=navigator)

        return hdf5
    zarr_format = 2 if fmt == "zspy" else 3
    codecs = zarr_.compressors(compression, zarr_format)
    shard_shape = zarr_.shard_shape(da, shards, stored) if shards is not None else None
    if fmt == "zspy":

        def zspy(
            da: xr.DataArray,
            path: str | Path,
            chunks: tuple[int, ...],
            *,
            overwrite: bool,
            navigator: xr.DataArray | None,
        ) -> None:
            zarr_.write_zspy(
                da,
                path,
                chunks=chunks,
                compressors=codecs,
                overwrite=overwrite,
                navigator=navigator,
            )

        return zspy

    def zarr3(
        da: xr.DataArray,
        path: str | Path,
        chunks: tuple[int, ...],
        *,
        overwrite: bool,
        navigator: xr.DataArray | None,
    ) -> None:
        zarr_.write_zarr(
            da,
            path,
            chunks=chunks,
            compressors=codecs,
            shards=shard_shape,
            overwrite=overwrite,
            navigator=navigator,
        )

    return zarr3


def zip_folder(folder: Path, target: Path) -> None:
    """Store ``folder``'s files in a new zip file ``target`` (uncompressed:
    the chunks are compressed already), names relative to ``folder``."""
    with zipfile.ZipFile(target, "x", compression=zipfile.ZIP_STORED) as zf:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                zf.write(full, full.relative_to(folder).as_posix())
