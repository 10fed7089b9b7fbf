"""``xsignal.open``: the format's backend (:mod:`xsignal.io.backend`), the
dask chunks asked for, several files and stacking."""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from .. import navigators
from ..dims import SIGNAL_DIMS_ATTR
from ..lazy import compute
from ..sources import layer_prefix
from ..stacking import stack as _stack
from .backend import backend_for
from .common import ANONYMOUS, dask_chunks, is_url

PathLike = str | os.PathLike[str]


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


def open_one(
    path: PathLike,
    *,
    lazy: bool = True,
    chunks: Mapping[Any, Any] | Sequence[int] | str | None = None,
    variable: str | int | None = None,
    allow_external: bool = False,
    reader: str | None = None,
) -> xr.DataArray:
    """Open one file or store (see :func:`open`): its backend, then dask
    chunks as asked (one task per stored chunk by default)."""
    path = os.fspath(path)
    ds = xr.open_dataset(
        path,
        engine=backend_for(path, variable, reader),
        chunks=None,
        cache=False,
        variable=variable,
        allow_external=allow_external,
        reader=reader,
    )
    (name,) = ds.data_vars
    opened = _checked_marking(ds[name], path)
    stored_navigator = opened.encoding.pop(navigators.STORED, None)
    preferred = opened.encoding.get("preferred_chunks", {})
    stored = tuple(preferred.get(d, n) for d, n in opened.sizes.items())
    try:
        spec = dask_chunks(
            opened.shape, opened.dims, opened.dtype, stored, chunks, where=path
        )
    except ValueError:
        ds.close()
        raise
    # layers named by the token: close_file finds the files by name
    token = opened.encoding["xsignal_token"]
    da = opened.chunk(dict(zip(opened.dims, spec)), name_prefix=layer_prefix(token))
    # the data only: xarray would make computed coordinates (a huge axis'
    # UniformIndex) dask arrays too, computed at every look at their values
    da = da.assign_coords(opened.coords)
    if name == ANONYMOUS:
        da = da.rename(None)
    if not lazy:
        return compute(da, progress=False, close_file=True)
    if stored_navigator is not None:
        nav = xr.DataArray(stored_navigator)
        nav = nav.chunk(dict.fromkeys(nav.dims, -1), name_prefix=layer_prefix(token))
        da = navigators.attach(da, nav)
    return da


def _checked_marking(da: xr.DataArray, path: str) -> xr.DataArray:
    """``da`` without a ``signal_dims`` attribute that is not a JSON list of
    its own dim names (with a warning): then the last dim is the signal."""
    raw = da.attrs.get(SIGNAL_DIMS_ATTR)
    if raw is None:
        return da
    try:
        names = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        names = None
    valid = isinstance(names, list) and all(
        isinstance(n, str) and n in da.dims for n in names
    )
    if not valid:
        warnings.warn(
            f"{path}: its signal_dims attribute {raw!r} is not a JSON list of "
            f"its dim names {tuple(map(str, da.dims))}; ignoring it (the last "
            "dim is the signal dim)",
            UserWarning,
            stacklevel=4,
        )
        da = da.copy()
        del da.attrs[SIGNAL_DIMS_ATTR]
    return da


def open(  # noqa: A001  (xsignal.open mirrors xarray's open_* family)
    paths: PathLike | Sequence[PathLike],
    *,
    lazy: bool = True,
    chunks: Mapping[Any, Any] | Sequence[int] | str | None = None,
    stack: bool = False,
    dim: str = "stack",
    variable: str | int | None = None,
    allow_external: bool = False,
    reader: str | None = None,
) -> xr.DataArray | list[xr.DataArray]:
    """Open files or stores of any format xsignal reads as (lazy) DataArrays.

    Reads netCDF4 files (written by :func:`xsignal.save`, xarray or
    netCDF-C), HyperSpy ``.hspy`` files (every format version) and ``.zspy``
    stores, zarr stores (format 2 or 3; folders, zip files and fsspec URLs
    such as ``"s3://bucket/scan.zarr"``), plain HDF5 datasets
    (``variable="/group/data"``) and, with ``pip install "xsignal[formats]"``,
    every format rosettasciio reads (``.blo``, ``.mib``, ``.dm4``, ``.emd``,
    ``.tif``...). HDF5 files are told apart by their content, zarr stores by
    their metadata, detector formats by their extension. Nothing but the
    metadata and the coordinates is read at opening: the data is a dask
    array with one task per stored chunk, each one read of the file. Each
    format is an xarray backend (:mod:`xsignal.io.backend`); ``open`` adds
    the detection, the chunks and the signal marking.

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
        navigation dim ``dim`` (see :func:`xsignal.stack`), whose coordinate
        holds the file names (and a ``title`` coordinate their titles).
    dim : str
        Name of the stacking dim.
    variable : str, optional
        The variable to read: a netCDF or zarr variable name, an HDF5
        dataset path (``"/group/data"``) or, for a HyperSpy or detector file
        holding several signals, the signal's name (or index, for detector
        files). Needed when a file holds several.
    allow_external : bool
        HDF5 files can make reads reach other files: external links,
        datasets stored in external raw files, virtual datasets. Such files
        are refused (``ValueError`` naming the object and the other file)
        unless this is True, so a file from elsewhere cannot make xsignal
        (a conversion service, say) read ``/etc/passwd``.
    reader : str, optional
        The rosettasciio reader to read detector files with, by its name
        (``"MRC"``, ``"MRCZ"``, ``"Hamamatsu"``, ``"JEOL"``...), as
        HyperSpy's ``reader=``: needed when several readers share the
        file's extension (``.mrc``, ``.img``, ``.xml``, ``.csv``), which is
        an error naming them otherwise. ``.h5``/``.hdf5`` files are told
        apart by their content (HyperSpy, netCDF, plain HDF5, or a
        rosettasciio format: Delmic, Arina, EMD/py4DSTEM...). Readers
        without a lazy mode (MSA, Renishaw, ``.jpg``...) read the file into
        memory at opening, and the array is a dask array over it.

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
    ImportError
        A detector format without rosettasciio installed (names the extra).
    ValueError
        A file of no format xsignal reads, or a damaged one; several candidate variables
        without ``variable=``; an unknown ``variable``, or a title several
        signals share (the error lists their indices); several rosettasciio
        readers for the extension without ``reader=``; with
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
    opened = [
        open_one(
            f,
            lazy=lazy,
            chunks=chunks,
            variable=variable,
            allow_external=allow_external,
            reader=reader,
        )
        for f in files
    ]
    if stack:
        # which file is which (HyperSpy's stack_elements): a coordinate of
        # the file names, and of their titles where they have them
        stacked = _stack(opened, dim=dim, names=files).assign_coords(
            {dim: [os.fspath(f) for f in files]}
        )
        titles = [o.attrs.get("title") for o in opened]
        if any(titles):
            stacked = stacked.assign_coords(title=(dim, [t or "" for t in titles]))
        return stacked
    return opened if several else opened[0]
