"""Stacking DataArrays along a new leading navigation dim."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import dask.array as dsa
import numpy as np
import xarray as xr

from .dims import signal_dims, with_marking


def stack(
    objs: Sequence[xr.DataArray],
    dim: Hashable = "stack",
    lazy: bool | None = None,
    *,
    names: Sequence[str] | None = None,
) -> xr.DataArray:
    """Stack DataArrays along a new leading navigation dim ``dim``.

    Every input must have the same dims, shape, dtype and signal dims; the
    coords and attrs of the first are kept. Nothing is computed: lazy
    inputs stay lazy (one dask array stacked from theirs, blocks kept).

    Parameters
    ----------
    objs : sequence of DataArray
    dim : hashable
        Name of the new dim (must not be a dim of the inputs).
    lazy : bool, optional
        ``None``: lazy when any input is lazy; ``True``: always lazy;
        ``False``: in memory (lazy inputs are computed).
    names : sequence of str, optional
        How to call each input in error messages (``xsignal.open`` passes
        the file names).

    Raises
    ------
    ValueError
        No input, a ``dim`` that already exists, or inputs that do not
        match the first one (the first offender is named).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> a = xr.DataArray(np.zeros((2, 8)), dims=("x", "energy"))
    >>> s = xsignal.stack([a, a + 1, a + 2], dim="time")
    >>> s.dims, s.signal.navigation_dims
    (('time', 'x', 'energy'), ('time', 'x'))
    """
    objs = list(objs)
    if not objs:
        raise ValueError("stack needs at least one DataArray")
    labels = (
        list(names) if names is not None else [f"objs[{i}]" for i in range(len(objs))]
    )
    for label, obj in zip(labels, objs):
        if not isinstance(obj, xr.DataArray):
            raise TypeError(f"{label} is a {type(obj).__name__}, not a DataArray")
    first = objs[0]
    if dim in first.dims:
        raise ValueError(f"{dim!r} is already a dim of the inputs; choose another dim=")
    sig = signal_dims(first)
    for label, obj in zip(labels[1:], objs[1:]):
        problem = None
        if obj.dims != first.dims:
            problem = f"dims {obj.dims}, not {first.dims}"
        elif obj.shape != first.shape:
            problem = f"shape {obj.shape}, not {first.shape}"
        elif obj.dtype != first.dtype:
            problem = f"dtype {obj.dtype}, not {first.dtype}"
        elif signal_dims(obj) != sig:
            problem = f"signal dims {signal_dims(obj)}, not {sig}"
        if problem:
            raise ValueError(f"cannot stack: {label} has {problem} like {labels[0]}")
    if lazy is None:
        lazy = any(o.chunks is not None for o in objs)
    if lazy:
        arrays = [
            o.data if o.chunks is not None else dsa.from_array(o.values, chunks=-1)
            for o in objs
        ]
        data = dsa.stack(arrays, axis=0)
    else:
        data = np.stack([np.asarray(o.values) for o in objs])
    coords = {k: v.variable for k, v in first.coords.items()}
    out = xr.DataArray(
        data,
        dims=(dim, *first.dims),
        coords=coords,
        attrs=dict(first.attrs),
        name=first.name,
    )
    return with_marking(out, sig)
