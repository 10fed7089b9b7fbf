"""netCDF4 files (written by ``save``, xarray's h5netcdf engine, netCDF-C).

Reading goes straight through h5py: the dimension scales give the dims,
coordinates are read at once (they are small), and the data variable
becomes a dask array with one task per on-disk chunk (see
:mod:`xsignal.io.common`). CF decoding (scale factors, integer fill values,
times) is left to :func:`xarray.decode_cf`, which keeps the data lazy.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from .. import navigators
from .common import (
    choose,
    clean_attr,
    marked_signal,
    source_for,
    source_variable,
)
from .h5source import url_of
from .hdf5_write import compression_encoding, fill, navigator_chunks

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


def is_netcdf(handle: Any) -> bool:
    """True for a netCDF4 file: the netCDF-4 markers netCDF-C and h5netcdf write.

    HDF5 files that merely use dimension scales are read as plain HDF5.
    """
    if "_NCProperties" in handle.attrs:
        return True
    return any("_Netcdf4Dimid" in obj.attrs for obj in handle.values())


def _is_scale(dset: Any) -> bool:
    kind: object = clean_attr(dset.attrs.get("CLASS", b""))
    return kind == "DIMENSION_SCALE"


def _is_dimension_only(dset: Any) -> bool:
    name: str = clean_attr(dset.attrs.get("NAME", ""))
    return name.startswith(_NOT_A_VARIABLE)


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _dims(dset: Any) -> tuple[str, ...]:
    """Dim names of a netCDF variable, from its dimension scales."""
    if _is_scale(dset):
        return (_basename(dset.name),)
    dims = []
    for i, scales in enumerate(dset.dims):
        dims.append(_basename(scales[0].name) if len(scales) else f"phony_dim_{i}")
    return tuple(dims)


def _attrs(obj: Any) -> dict[str, Any]:
    # names first: the reserved ones (dimension lists of object references)
    # are the slowest to read, and never shown
    attrs = obj.attrs
    return {k: clean_attr(attrs[k]) for k in attrs if k not in _RESERVED}


def candidates(handle: Any) -> list[str]:
    """Data variables at the file's root: not dimension scales, not coordinates."""
    import h5py

    datasets = {k: v for k, v in handle.items() if isinstance(v, h5py.Dataset)}
    coords: set[str] = set()
    for dset in datasets.values():
        coords.update(clean_attr(dset.attrs.get("coordinates", "")).split())
    stored = {clean_attr(v.attrs.get(navigators.ATTR, "")) for v in datasets.values()}
    return [
        k
        for k, v in datasets.items()
        if not _is_scale(v) and k not in coords and k not in stored
    ]


def read_netcdf(handle: Any, variable: str | int | None, *, token: str) -> xr.Dataset:
    """One data variable of an open netCDF4 file, with its coordinates, as a
    lazily indexed Dataset (CF decoding applied lazily by xarray)."""
    path = url_of(handle)
    names = candidates(handle)
    # any array of the file may be asked for by name, not only data variables
    if isinstance(variable, str) and hasattr(handle.get(variable.strip("/")), "shape"):
        key = variable.strip("/")
    else:
        key = choose(names, variable, path)
    dset = handle[key]
    dims = _dims(dset)
    attrs = _attrs(dset)
    # A NaN fill value on float data masks nothing: leave it out so decoding
    # does not add a pass over the data.
    fill = attrs.get("_FillValue")
    if fill is not None and dset.dtype.kind == "f" and np.all(np.isnan(fill)):
        del attrs["_FillValue"]
    sig = marked_signal(dims, attrs)
    encoding = {**_encoding(dset), "source": path}
    nav_name = clean_attr(attrs.get(navigators.ATTR, ""))
    nav: Any = handle.get(nav_name) if nav_name else None
    if hasattr(nav, "shape"):  # the stored navigator: on record, not in attrs
        del attrs[navigators.ATTR]
        encoding[navigators.STORED] = source_variable(
            source_for(handle, nav_name, token), _dims(nav), disk_chunks=nav.chunks
        )
    var = source_variable(
        source_for(handle, key, token),
        dims,
        attrs,
        disk_chunks=dset.chunks,
        signal=sig,
        encoding=encoding,
    )
    name = _basename(dset.name)
    ds = xr.Dataset({name: var}, coords=_coords(handle, dset, dims))
    return xr.decode_cf(ds)


def _coords(handle: Any, dset: Any, dims: tuple[str, ...]) -> dict[str, xr.Variable]:
    """Dimension coordinates and the variable's listed coordinates, in memory."""
    coords: dict[str, xr.Variable] = {}
    parent = dset.parent
    names = list(dims) + clean_attr(dset.attrs.get("coordinates", "")).split()
    navigator = clean_attr(dset.attrs.get(navigators.ATTR, ""))
    for name in names:
        if name in coords or name not in parent or name == navigator:
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


def _encoding(dset: Any) -> dict[str, Any]:
    return {
        "dtype": dset.dtype,
        "chunksizes": dset.chunks,
        "compression": dset.compression,
        "original_shape": dset.shape,
    }


# --- save --------------------------------------------------------------------
# --- writing ---------------------------------------------------------------------


def write_netcdf(
    da: xr.DataArray,
    path: str | Path,
    *,
    chunks: tuple[int, ...],
    compression: str | None,
    navigator: xr.DataArray | None = None,
) -> None:
    """Write ``da`` to a new netCDF4 file ``path`` (see :func:`xsignal.save`).

    Numbers (complex included) and booleans go through
    :func:`_write_streaming`, so a full disk is an ``OSError`` like any
    other; strings and scalars through xarray's h5netcdf writer. A
    ``navigator`` (numbers over the navigation dims) is stored beside the
    data as ``<name>_navigator``, named by the data's ``navigator`` attr,
    written in the same pass as the data.
    """
    encoding = {"chunksizes": chunks, **compression_encoding(compression)}
    if da.ndim == 0:  # HDF5 scalars have no chunks and no filters
        encoding = {}
    if da.dtype.kind == "f":
        encoding["_FillValue"] = None  # no fill value: NaN stays NaN, no masking pass
    name = da.name if da.name is not None else _ANONYMOUS
    if name in da.coords:
        name = _ANONYMOUS
    out = da.rename(name)
    if out.dtype.kind == "b":  # CF's encoding of booleans, as xarray writes it
        out = out.astype("i1").assign_attrs(dtype="bool")
    out.encoding = {}
    for coord in out.coords.values():
        coord.encoding = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are writing invalid netcdf")
        if out.ndim and out.dtype.kind in "iufc":
            _write_streaming(out, path, encoding, navigator)
        else:
            out.to_dataset().to_netcdf(
                path,
                engine="h5netcdf",
                encoding={name: encoding},
                invalid_netcdf=compression not in (None, "gzip", "zlib"),
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


def _write_plain_coords(f: Any, da: xr.DataArray) -> None:
    """Numeric coords straight through h5netcdf (what xarray would write)."""
    f.dimensions = {str(d): n for d, n in da.sizes.items()}
    for name, coord in da.coords.items():
        var = f.create_variable(
            str(name), tuple(map(str, coord.dims)), coord.dtype, data=coord.values
        )
        var.attrs.update(coord.attrs)


def _write_streaming(
    da: xr.DataArray,
    tmp: str | Path,
    encoding: dict[str, Any],
    navigator: xr.DataArray | None = None,
) -> None:
    """Coords and metadata through h5netcdf, then the data straight into HDF5.

    Numeric coordinates are written with h5netcdf, others by xarray (which
    applies their CF encoding); the data variable is added with h5netcdf
    and filled with h5py, block by
    block for lazy data, whole raw chunks without going through HDF5's
    selection code (the file is the same as xarray's own writer makes).
    """
    import h5netcdf

    # h5netcdf names variables with str only (other names raise there)
    name = cast(str, da.name)
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
        summed: dict[str, tuple[str, xr.DataArray]] = {}
        if navigator is not None:
            # a coordinate of the data for xarray (whose open_dataarray
            # wants one data variable), named by the data's attr for xsignal
            nav_name = navigators.variable_name(name)
            f.create_variable(
                nav_name,
                tuple(map(str, navigator.dims)),
                navigator.dtype,
                chunks=navigator_chunks(navigator),
            ).attrs["long_name"] = "navigator (sum over the signal dims)"
            var.attrs[navigators.ATTR] = nav_name
            non_dim.append(nav_name)
            summed[name] = (nav_name, navigator)
        if non_dim:
            var.attrs["coordinates"] = " ".join(non_dim)
            if "coordinates" in f.attrs:
                del f.attrs["coordinates"]
    fill(tmp, [(name, da)], summed)
