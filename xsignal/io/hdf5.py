"""Plain HDF5 datasets (not netCDF, not HyperSpy), chosen with ``variable=``."""

from __future__ import annotations

from typing import Any

import xarray as xr

from .common import (
    SeveralSignals,
    choose,
    clean_attr,
    source_for,
    source_variable,
)
from .h5source import url_of


def datasets(handle: Any) -> list[str]:
    """Paths of every array dataset in the file (scalars left out), those
    behind external links included (files with external links are opened
    only with ``allow_external``)."""
    import h5py

    found: list[str] = []

    def visit(prefix: str) -> Any:
        def one(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.shape:
                found.append(f"{prefix}/{name}")

        return one

    def visit_link(name: str, link: Any) -> None:
        if not isinstance(link, h5py.ExternalLink):
            return
        try:
            target = handle.get(name)  # opens the other file
        except (OSError, KeyError):
            return  # a dangling link: reading it says so
        if isinstance(target, h5py.Dataset):
            visit("")(name, target)
        elif isinstance(target, h5py.Group):  # its own links are not followed
            target.visititems(visit(f"/{name}"))

    handle.visititems(visit(""))
    handle.visititems_links(visit_link)
    return found


def read_hdf5(handle: Any, variable: str | int | None, *, token: str) -> xr.Dataset:
    """One dataset of an open HDF5 file as a lazily indexed Dataset.

    Dims are named after attached dimension scales when there are any,
    else ``dim_0``, ``dim_1``...; the dataset's attributes become attrs,
    and the last dim is the signal dim (the array is not marked).
    """
    import h5py

    path = url_of(handle)
    found = datasets(handle)
    if variable is None:
        if not found:
            raise ValueError(f"{path} holds no HDF5 dataset")
        if len(found) > 1:
            shown = found if len(found) <= 10 else [*found[:10], "..."]
            raise SeveralSignals(
                f"{path} holds several datasets {shown}; pass variable= "
                f"(e.g. variable={found[0]!r}) to choose one",
                ["/" + name.lstrip("/") for name in found],
            )
        variable = found[0]
    if not isinstance(variable, str):  # an index into the file's datasets
        variable = choose(found, variable, path, "datasets", "dataset")
    key = "/" + variable.lstrip("/")
    obj = handle.get(key)
    if not isinstance(obj, h5py.Dataset):
        what = "a group, not a dataset" if obj is not None else "not in the file"
        raise ValueError(
            f"{path}: {variable!r} is {what}; its datasets are "
            f"{found if len(found) <= 10 else [*found[:10], '...']}"
        )
    if not obj.shape:
        raise ValueError(f"{path}: {variable!r} is a scalar, not an array")
    dims: list[str] = []
    coords = {}
    for i, scales in enumerate(obj.dims):
        name = scales[0].name.rsplit("/", 1)[-1] if len(scales) else f"dim_{i}"
        name = name if name and name not in dims else f"dim_{i}"
        dims.append(name)
        if len(scales) and scales[0].shape == (obj.shape[i],):
            coords[name] = scales[0][()]  # an attached dimension scale
    attrs = {
        k: clean_attr(v)
        for k, v in obj.attrs.items()
        if k not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME")
    }
    encoding = {
        "source": path,
        "variable": key,
        "chunksizes": obj.chunks,
        "compression": obj.compression,
        "dtype": obj.dtype,
    }
    var = source_variable(
        source_for(handle, key, token),
        tuple(dims),
        attrs,
        disk_chunks=obj.chunks,
        encoding=encoding,
    )
    name = key.rsplit("/", 1)[-1]
    coords = {d: xr.Variable(d, v) for d, v in coords.items() if d != name}
    return xr.Dataset({name: var}, coords=coords)
