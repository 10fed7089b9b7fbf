"""``xsignal.open``: one entry point for netCDF4, HyperSpy and plain HDF5 files."""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import xarray as xr

from ..handles import close_token
from . import hdf5, hspy, netcdf
from .common import open_h5
from .save import is_url

PathLike = str | os.PathLike


def expand_paths(paths: PathLike | Sequence[PathLike]) -> tuple[list[str], bool]:
    """The files named by ``paths`` and whether several were asked for.

    A string with glob characters (``*?[``) that is not itself an existing
    file is expanded (sorted); a glob matching nothing is a
    ``FileNotFoundError``.
    """
    if isinstance(paths, str | os.PathLike):
        items, several = [paths], False
    else:
        items, several = list(paths), True
        if not items:
            raise ValueError("no paths given: pass a path, a glob or a list")
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if is_url(text):
            out.append(text)
        elif glob.has_magic(text) and not os.path.exists(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise FileNotFoundError(f"no file matches {text!r}")
            several = True
            out.extend(matches)
        else:
            out.append(os.path.expanduser(text))
    return out, several


def file_kind(handle) -> str:
    """``"hspy"``, ``"netcdf"`` or ``"hdf5"``, from an HDF5 file's own attributes."""
    if hspy.is_hspy(handle):
        return "hspy"
    if netcdf.is_netcdf(handle):
        return "netcdf"
    return "hdf5"


# what rosettasciio reads, for the error when it is not installed
ROSETTA_EXTENSIONS = (
    ".blo .mib .dm3 .dm4 .emd .mrc .mrcz .tvips .ser .emi .prz .bcf .spx .nxs "
    ".tif .tiff .rpl .msa .unf .sur .spd .spc .app5 .wdf .elid .npy .pts .de5"
).split()
# read by xsignal itself even when rosettasciio knows the extension
_OWN_EXTENSIONS = (".nc", ".nc4", ".h5", ".hdf5", ".hspy", ".zspy", ".zarr", ".zip")


def source_kind(path: str, variable: str | None = None) -> str:
    """How to read ``path``: ``"zarr"``, ``"hdf5"`` or ``"rosetta"``.

    URLs and zarr folders or zip files are zarr stores; HDF5 files are read
    by xsignal (HyperSpy, netCDF or plain datasets) unless their extension
    is a rosettasciio format (``.emd``, ``.nxs``...) and no HDF5 dataset
    path is given; other files by rosettasciio.
    """
    from . import rosetta, zarr_

    if is_url(path):
        return "zarr"
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        if zarr_.is_zarr_folder(path):
            return "zarr"
        raise ValueError(
            f"{path} is a folder, not a file or a zarr store (no zarr.json, "
            ".zgroup or .zarray in it)"
        )
    ext = os.path.splitext(path)[1].lower()
    if ext not in _OWN_EXTENSIONS and not (variable or "").startswith("/"):
        known = rosetta.extensions()
        if ext in known:
            return "rosetta"
        if ext in ROSETTA_EXTENSIONS:
            raise ImportError(
                f"{path}: reading {ext} files needs rosettasciio: {rosetta.EXTRA}"
            )
    if zarr_.is_zarr_zip(path):
        return "zarr"
    return "hdf5"


def open_one(
    path: PathLike,
    *,
    lazy: bool = True,
    chunks: Mapping[Hashable, Any] | Sequence[int] | str | None = None,
    variable: str | None = None,
) -> xr.DataArray:
    """Open one file or store (see :func:`open`)."""
    path = os.fspath(path)
    kind = source_kind(path, variable)
    token = uuid.uuid4().hex
    if kind == "zarr":
        from .zarr_ import read_zarr

        da = read_zarr(path, variable, chunks=chunks, token=token)
    elif kind == "rosetta":
        from .rosetta import read_rosetta

        da = read_rosetta(path, variable, chunks=chunks)
    else:
        handle = open_h5(path)
        try:
            kind = file_kind(handle)
            reader = {
                "hspy": hspy.read_hspy,
                "netcdf": netcdf.read_netcdf,
                "hdf5": hdf5.read_hdf5,
            }[kind]
            da = reader(handle, variable, chunks=chunks, token=token)
            da.encoding["format"] = {
                "hspy": "HyperSpy .hspy (HDF5)",
                "netcdf": "netCDF4 (HDF5)",
                "hdf5": "HDF5",
            }[kind]
        except BaseException:
            close_token(token)
            handle.close()
            raise
    if not lazy:
        da = da.compute()
        close_token(token)
    return da


def open(  # noqa: A001  (xsignal.open mirrors xarray's open_* family)
    paths: PathLike | Sequence[PathLike],
    *,
    lazy: bool = True,
    chunks: Mapping[Hashable, Any] | Sequence[int] | str | None = None,
    stack: bool = False,
    dim: str = "stack",
    variable: str | None = None,
) -> xr.DataArray | list[xr.DataArray]:
    """Open netCDF4, HyperSpy ``.hspy`` or HDF5 files as (lazy) DataArrays.

    The kind of file is recognised from its content, not its name: HyperSpy
    files by their ``file_format`` attribute, netCDF4 files (written by
    :func:`xsignal.save`, xarray or netCDF-C) by their dimension scales;
    anything else is read as a plain HDF5 dataset. Nothing but the
    metadata and the coordinates is read at opening: the data is a dask
    array with one task per block, each one read of the file.

    Parameters
    ----------
    paths : path, glob or list of paths
        One file gives one DataArray; a list or a glob gives a list, or one
        array stacked along ``dim`` with ``stack=True``.
    lazy : bool
        ``False`` reads the data into memory and closes the file.
    chunks : None, "auto", dict or tuple
        ``None``: the chunks stored on disk (for a contiguous dataset:
        whole signals, blocks near dask's ``array.chunk-size``). ``"auto"``:
        dask's rule in multiples of the on-disk chunks. A dict by dim name
        (dims left out keep the on-disk chunks) or a tuple in dim order.
    stack : bool
        With several files, stack them lazily along a new leading
        navigation dim ``dim`` (see :func:`xsignal.stack`).
    dim : str
        Name of the stacking dim.
    variable : str, optional
        The variable to read: a netCDF variable name, an HDF5 dataset path
        (``"/group/data"``) or, for a ``.hspy`` file holding several
        signals, the signal's name. Needed when a file holds several.

    Returns
    -------
    DataArray or list of DataArray
        HyperSpy axes become coordinates (units in their attrs), its
        navigation/signal axes the navigation/signal dims, its title and
        metadata attrs; files written by :func:`xsignal.save` come back with
        their coords, attrs and signal marking.

    Raises
    ------
    FileNotFoundError
        A missing file, or a glob matching nothing.
    ValueError
        A file that is not HDF5 or is damaged; several candidate variables
        without ``variable=``; an unknown ``variable``; with
        ``stack=True``, files that do not match (the first offender is
        named).

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, xsignal
    >>> path = os.path.join(tempfile.mkdtemp(), "si.nc")
    >>> da = xr.DataArray(np.ones((4, 5, 8), "f4"), dims=("y", "x", "energy"))
    >>> xsignal.save(da.chunk({"y": 2}), path, compression=None)
    >>> back = xsignal.open(path)
    >>> back.chunks
    ((2, 2), (5,), (8,))
    >>> float(back.sum())
    160.0
    >>> xsignal.close_file(back)
    """
    files, several = expand_paths(paths)
    opened = [open_one(f, lazy=lazy, chunks=chunks, variable=variable) for f in files]
    if stack:
        from ..stacking import stack as _stack

        return _stack(opened, dim=dim, names=files)
    return opened if several else opened[0]
