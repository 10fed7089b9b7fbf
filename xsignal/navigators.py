"""Navigators stored in files: the record an opened array carries to its
stored navigator, and the rule for when that navigator still holds.

:func:`xsignal.save` writes the navigator (the sum over the signal dims)
from the blocks it writes, in the same pass; :func:`xsignal.open` gives the
data alone, with a record in ``da.encoding`` holding the stored navigator
(lazy, read from the same file with the same checks as the data).
:func:`stored` serves it while the array is the file's data, unmodified:
the same dask graph as opened, or that graph cut by indexing (``isel``,
``sel``, transposes, rechunks) along navigation dims only. Anything else
(arithmetic, ``map``, a cut along a signal dim, a new marking) computes the
navigator as before.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .dims import navigation_dims, signal_dims

RECORD = "xsignal_navigator"  # da.encoding key of the record
STORED = "xsignal_stored_navigator"  # a backend's lazily indexed Variable
ATTR = "navigator"  # netCDF/zarr: the data variable's attr naming it
SUFFIX = "_navigator"
# layers that only cut, reorder or regroup the opened blocks
_VIEW_LAYERS = ("getitem-", "transpose-", "rechunk-", "rechunk_")


def variable_name(name: Hashable) -> str:
    """The navigator's variable name beside data variable ``name``.

    Examples
    --------
    >>> variable_name("scan")
    'scan_navigator'
    """
    return f"{name}{SUFFIX}"


def attach(da: xr.DataArray, navigator: xr.DataArray) -> xr.DataArray:
    """Record on ``da``, as just opened (lazy), its stored ``navigator``
    (over ``da``'s navigation dims, lazy; :func:`stored` gives it ``da``'s
    coordinates as they are then)."""
    nav = navigation_dims(da)
    if set(navigator.dims) != set(nav) or any(
        navigator.sizes[d] != da.sizes[d] for d in nav
    ):
        return da  # not this data's navigator (a file edited by hand)
    record = {
        "navigator": navigator,
        "graph": frozenset(da.data.dask.layers),
        "signal": {d: (da.sizes[d], _index(da, d)) for d in signal_dims(da)},
        "index": {d: _index(da, d) for d in nav},
    }
    da.encoding[RECORD] = record
    return da


def _index(da: xr.DataArray, dim: Hashable) -> np.ndarray | None:
    return np.asarray(da.indexes[dim]) if dim in da.indexes else None


def stored(da: xr.DataArray) -> xr.DataArray | None:
    """The stored navigator of ``da``, cut as ``da`` was cut, or None when
    it does not hold (see the module doc).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> stored(xr.DataArray(np.ones((2, 3)), dims=("x", "e"))) is None
    True
    """
    record: dict[str, Any] | None = da.encoding.get(RECORD)
    if record is None or not hasattr(da.data, "dask"):
        return None
    sig = signal_dims(da)
    if list(sig) != list(record["signal"]):
        return None
    for d in sig:  # the signal dims whole, as stored
        size, index = record["signal"][d]
        if da.sizes[d] != size or not _same(index, _index(da, d)):
            return None
    added = set(da.data.dask.layers) - record["graph"]
    if any(not str(name).startswith(_VIEW_LAYERS) for name in added):
        return None
    out: xr.DataArray | None = record["navigator"]
    for d, index in record["index"].items():
        if out is None:
            return None
        if d not in da.dims:  # selected by a scalar label
            if d not in da.coords or index is None:
                return None
            out = _select(out, d, index, np.atleast_1d(da.coords[d].values))
            out = None if out is None else out.isel({d: 0}, drop=True)
        elif da.sizes[d] != out.sizes[d] or not _same(index, _index(da, d)):
            if index is None or d not in da.indexes:
                return None  # cut without labels: the positions are unknown
            out = _select(out, d, index, np.asarray(da.indexes[d]))
    if out is None:
        return None
    nav = navigation_dims(da)
    if set(out.dims) != set(nav):
        return None
    out = out.transpose(*nav).assign_coords(
        {k: v for k, v in da.coords.items() if set(v.dims) <= set(nav)}
    )
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.all(a == b))


def _select(
    out: xr.DataArray, dim: Hashable, index: np.ndarray, labels: np.ndarray
) -> xr.DataArray | None:
    """``out`` at the positions of ``labels`` in the stored ``index``, or
    None when a label is not there (or the stored labels repeat)."""
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    if ordered.size > 1 and np.any(ordered[1:] == ordered[:-1]):
        return None
    found = np.searchsorted(ordered, labels).clip(0, max(ordered.size - 1, 0))
    if not ordered.size or np.any(ordered[found] != labels):
        return None
    return out.isel({dim: order[found]})
