"""Navigation/signal marking of a DataArray: read, write, validate.

The marking lives in ``da.attrs["signal_dims"]`` as a JSON list of names (a
string, because netCDF attributes cannot hold lists of strings reliably).
xarray keeps attrs through arithmetic, slicing, ``astype`` and ``transpose``;
names that are no longer dims of the array are ignored, so reducing or
squeezing a signal dim simply drops it from the marking.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

SIGNAL_DIMS_ATTR = "signal_dims"

Dims = tuple[Hashable, ...]


def _check_dataarray(da: object) -> None:
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")


def _marked(da: xr.DataArray) -> list[Any] | None:
    """The stored marking, or None when the array is unmarked."""
    raw = da.attrs.get(SIGNAL_DIMS_ATTR)
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            names = json.loads(raw)
        except json.JSONDecodeError:
            names = [raw]  # a single bare name written by hand
    else:
        names = list(np.atleast_1d(raw))  # a list set by hand
    if not isinstance(names, list):
        names = [names]
    return names


def signal_dims(da: xr.DataArray) -> Dims:
    """Signal dims of ``da``, in the array's dim order.

    An unmarked array has its last dim as the signal dim (none for 0-d).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((2, 3, 4)), dims=("y", "x", "energy"))
    >>> xsignal.signal_dims(da)
    ('energy',)
    >>> xsignal.signal_dims(xsignal.set_signal_dims(da, "x", "energy"))
    ('x', 'energy')
    """
    _check_dataarray(da)
    names = _marked(da)
    if names is None:
        return da.dims[-1:]
    marked = {str(n) for n in names}
    return tuple(d for d in da.dims if str(d) in marked)


def navigation_dims(da: xr.DataArray) -> Dims:
    """Navigation dims of ``da`` (every dim that is not a signal dim).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((2, 3, 4)), dims=("y", "x", "energy"))
    >>> xsignal.navigation_dims(da)
    ('y', 'x')
    """
    sig = set(signal_dims(da))
    return tuple(d for d in da.dims if d not in sig)


def check_dims(da: xr.DataArray, dims: Iterable[Hashable], what: str = "dim") -> Dims:
    """Return ``dims`` as a tuple; ``ValueError`` for unknown or repeated names."""
    dims = tuple(dims)
    unknown = [d for d in dims if d not in da.dims]
    if unknown:
        raise ValueError(
            f"{what} {unknown[0]!r} is not a dim of this array; its dims are {da.dims}"
        )
    repeated = {d for d in dims if dims.count(d) > 1}
    if repeated:
        raise ValueError(f"{what} {sorted(map(str, repeated))} given more than once")
    return dims


def set_signal_dims(da: xr.DataArray, *dims: Hashable) -> xr.DataArray:
    """Return a new DataArray whose signal dims are ``dims``.

    Every other dim becomes a navigation dim. The signal dims are moved to
    the end, in the order given, so the array's dim order is always
    ``(*navigation_dims, *signal_dims)`` right after this call (a lazy
    transpose: no data is read). With no dims, every dim is navigation.

    Raises
    ------
    ValueError
        If a name is not a dim of ``da`` or is given twice.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((2, 3, 4, 5)), dims=("y", "x", "ky", "kx"))
    >>> s = xsignal.set_signal_dims(da, "kx", "ky")
    >>> s.dims, xsignal.signal_dims(s), xsignal.navigation_dims(s)
    (('y', 'x', 'kx', 'ky'), ('kx', 'ky'), ('y', 'x'))
    """
    _check_dataarray(da)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = tuple(dims[0])
    dims = check_dims(da, dims, "signal dim")
    nav = [d for d in da.dims if d not in dims]
    out = da.transpose(*nav, *dims)
    out = out.copy(deep=False)  # new attrs dict: never touch the caller's
    out.attrs = dict(da.attrs)
    out.attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(dims)
    return out


def encode_signal_dims(dims: Sequence[Hashable]) -> str:
    """The attribute string that marks ``dims`` as signal dims."""
    return json.dumps([str(d) for d in dims])


def with_marking(out: xr.DataArray, signal: Sequence[Hashable]) -> xr.DataArray:
    """Mark ``signal`` (those still dims of ``out``) on ``out`` in place and return it.

    For functions that build a new DataArray and need to keep the marking of
    their input.
    """
    out.attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(
        [d for d in signal if d in out.dims]
    )
    return out


def coordinate_values(da: xr.DataArray, dim: Hashable) -> np.ndarray:
    """The coordinate of ``dim`` as float64: its values when numeric, else
    (or without one) the index positions ``0, 1, 2...``.

    Examples
    --------
    >>> import xarray as xr
    >>> from xsignal.dims import coordinate_values
    >>> coordinate_values(xr.DataArray([1, 2], dims="e", coords={"e": [5, 7]}), "e")
    array([5., 7.])
    """
    if dim in da.coords and da.coords[dim].dtype.kind in "iuf":
        return np.asarray(da.coords[dim].values, dtype=np.float64)
    return np.arange(da.sizes[dim], dtype=np.float64)


def signal_shape(da: xr.DataArray) -> tuple[int, ...]:
    """Sizes of the signal dims, in order."""
    return tuple(da.sizes[d] for d in signal_dims(da))


def navigation_shape(da: xr.DataArray) -> tuple[int, ...]:
    """Sizes of the navigation dims, in order."""
    return tuple(da.sizes[d] for d in navigation_dims(da))


def signal_size(da: xr.DataArray) -> int:
    """Number of elements in one signal (1 when there are no signal dims)."""
    return math.prod(signal_shape(da))


def navigation_size(da: xr.DataArray) -> int:
    """Number of navigation pixels (1 when there are no navigation dims)."""
    return math.prod(navigation_shape(da))


def resolve_dims(
    da: xr.DataArray, dims: str | Hashable | Iterable[Hashable] | None
) -> Dims:
    """Turn a user's ``dims`` argument into a tuple of dim names.

    ``"navigation"`` and ``"signal"`` name the two kinds, ``None`` means every
    dim, a name or a list of names is checked against the array's dims.
    """
    if dims is None:
        return tuple(da.dims)
    if isinstance(dims, str) and dims not in da.dims:
        if dims == "navigation":
            return navigation_dims(da)
        if dims == "signal":
            return signal_dims(da)
    if isinstance(dims, str) or not isinstance(dims, Iterable):
        dims = (dims,)
    return check_dims(da, dims)


def signal_class(da: xr.DataArray) -> str:
    """HyperSpy-like class name for the number of signal dims."""
    return {1: "Signal1D", 2: "Signal2D"}.get(len(signal_dims(da)), "BaseSignal")


def describe(da: xr.DataArray) -> str:
    """One-line, HyperSpy-like summary of ``da``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((4, 6, 8), "f4"), dims=("y", "x", "energy"))
    >>> xsignal.describe(da)
    '<Signal1D float32, (y: 4, x: 6 | energy: 8)>'
    >>> xsignal.describe(da.chunk({"y": 2}))
    '<Signal1D lazy float32, (y: 4, x: 6 | energy: 8), chunks (2, 6 | 8)>'
    """
    _check_dataarray(da)
    nav, sig = navigation_dims(da), signal_dims(da)

    def sizes(names: Dims) -> str:
        return ", ".join(f"{d}: {da.sizes[d]}" for d in names)

    text = f"<{signal_class(da)} "
    lazy = da.chunks is not None
    text += ("lazy " if lazy else "") + f"{da.dtype}, ({sizes(nav)} | {sizes(sig)})"
    if da.chunks is not None:  # lazy
        chunks = dict(zip(da.dims, da.chunks))

        def first(names: Dims) -> str:
            return ", ".join(str(max(chunks[d])) for d in names)

        text += f", chunks ({first(nav)} | {first(sig)})"
    return text + ">"


def describe_html(da: xr.DataArray) -> str:
    """:func:`describe` as an HTML table for notebooks: one row per dim, the
    navigation dims, then the signal dims, with sizes, chunks and units.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((4, 8), "f4"), dims=("x", "energy"))
    >>> html = xsignal.dims.describe_html(da.chunk({"x": 2}))
    >>> ">navigation</th>" in html and "<td>energy</td>" in html
    True
    """
    _check_dataarray(da)
    chunks = dict(zip(da.dims, da.chunks)) if da.chunks is not None else {}

    def rows(kind: str, names: Dims) -> str:
        out = ""
        for i, d in enumerate(names):
            units = da[d].attrs.get("units", "") if d in da.coords else ""
            chunk = str(max(chunks[d])) if d in chunks else ""
            head = f'<th rowspan="{len(names)}">{kind}</th>' if i == 0 else ""
            out += (
                f"<tr>{head}<td>{html.escape(str(d))}</td><td>{da.sizes[d]}</td>"
                f"<td>{chunk}</td><td>{html.escape(str(units))}</td></tr>"
            )
        return out

    title = html.escape(describe(da))
    return (
        f"<div><code>{title}</code><table>"
        "<tr><th></th><th>dim</th><th>size</th><th>chunk</th><th>units</th></tr>"
        f"{rows('navigation', navigation_dims(da))}{rows('signal', signal_dims(da))}"
        "</table></div>"
    )
