"""Reductions over navigation/signal dims: sum, mean, nan-versions, arg-extrema.

Every reduction takes the dims to reduce as ``"navigation"`` (the default),
``"signal"``, a dim name, a list of names, or ``None`` for every dim, and
returns a DataArray that keeps the coords of the remaining dims, the attrs,
and the signal marking of the remaining dims. Lazy input gives lazy output
with the chunks of the untouched dims unchanged (dask's tree reductions
never rechunk the dims they keep).

Accumulator dtypes follow numpy's rules, for lazy data too: sums of
integers and booleans accumulate in ``int64`` (``uint64`` for unsigned
integers), so a ``uint8`` or ``int32`` image summed over many pixels does not
wrap around; means, variances and standard deviations of integers are
``float64``; floating data keeps its precision (``float32`` in,
``float32`` out, as with numpy).

The plain versions (``sum``, ``mean``, ...) propagate NaN; the ``nan``
versions ignore it. A lane whose values are all NaN gives 0 for ``nansum``
and NaN for the other nan-reductions.

The module defines functions named ``sum``, ``max`` and ``min``; they are
defined last, and no code in this module calls the builtins of those names.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Iterable
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from dask.array.reductions import (
    mean_agg,
    mean_combine,
    moment_agg,
    moment_chunk,
    moment_combine,
    nannumel,
)

from .dims import _check_dataarray, resolve_dims, signal_dims, with_marking

DimsArg = str | Hashable | Iterable[Hashable] | None

__all__ = [
    "indexmax",
    "indexmin",
    "max",
    "mean",
    "min",
    "nanmax",
    "nanmean",
    "nanmin",
    "nanstd",
    "nansum",
    "nanvar",
    "navigator",
    "std",
    "sum",
    "valuemax",
    "valuemin",
    "var",
]


def _accumulator(dtype: np.dtype) -> np.dtype | None:
    """numpy's sum dtype for integers/booleans (int64/uint64), None for floats."""
    if dtype.kind in "biu":
        return np.zeros(1, dtype).sum().dtype
    return None


def _nansum_block(
    x: np.ndarray, axis: Any = None, keepdims: bool = False, **_: Any
) -> np.ndarray:
    """``nansum`` that pays for NaN handling only in blocks that hold NaN.

    A plain sum is a single fast pass; only when its result has NaN is the
    block summed again with ``np.nansum`` (NaN in, NaN out for a plain sum).
    """
    out = np.sum(x, axis=axis, keepdims=keepdims)
    if np.isnan(out).any():
        out = np.nansum(x, axis=axis, keepdims=keepdims)
    return out


def _fast_nansum(values: Any, axis: Any = None, **_: Any) -> Any:
    """NaN-skipping sum of floating numpy or dask data (xarray's is 2-3x slower)."""
    if isinstance(values, dsa.Array):
        return dsa.reduction(
            values, _nansum_block, _nansum_block, axis=axis, dtype=values.dtype
        )
    return _nansum_block(values, axis=axis)


def _count(x: np.ndarray, axis: Any) -> int:
    """How many values a reduction of ``x`` over ``axis`` takes per result."""
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    return math.prod(x.shape[a] for a in axes)


def _nanmean_chunk(
    x: np.ndarray,
    axis: Any = None,
    dtype: Any = None,
    computing_meta: bool = False,
    **kwargs: Any,
) -> Any:
    """Count and NaN-skipping sum of a block, as dask's ``mean_chunk`` gives
    them; the NaN count costs a pass only in blocks that hold NaN."""
    if computing_meta:
        return x
    total = np.sum(x, axis=axis, dtype=dtype, **kwargs)
    if np.isnan(total).any():
        total = np.nansum(x, axis=axis, dtype=dtype, **kwargs)
        n = np.sum(~np.isnan(x), axis=axis, dtype=dtype, **kwargs)
    else:
        n = np.full(np.shape(total), _count(x, axis), dtype=dtype or total.dtype)
    return {"n": n, "total": total}


def _fast_nanmean(values: Any, axis: Any = None, **_: Any) -> Any:
    """NaN-skipping mean of floating numpy or dask data, one pass per block."""
    dtype = np.mean(np.ones(1, values.dtype)).dtype
    if isinstance(values, dsa.Array):
        return dsa.reduction(
            values,
            _nanmean_chunk,
            mean_agg,
            combine=mean_combine,
            axis=axis,
            dtype=dtype,
            concatenate=False,
        )
    part = _nanmean_chunk(values, axis=axis, dtype=dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (part["total"] / part["n"]).astype(dtype)


def _moment2_chunk(
    x: np.ndarray,
    skipna: bool = True,
    axis: Any = None,
    dtype: Any = None,
    computing_meta: bool = False,
    **kwargs: Any,
) -> Any:
    """Count, sum and centred sum of squares of a block, as dask's
    ``moment_chunk`` gives them, in two passes over the block (the NaN-aware
    ones only for a block that holds NaN, when skipping NaN)."""
    if computing_meta:
        return x
    total = np.sum(x, axis=axis, dtype=dtype, **kwargs)
    if skipna and np.isnan(total).any():
        return moment_chunk(
            x, 2, sum=np.nansum, numel=nannumel, dtype=dtype, axis=axis, **kwargs
        )
    n = np.full(np.shape(total), _count(x, axis), np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = x - (total / n).astype(x.dtype)
    np.multiply(d, d, out=d)  # in place: one temporary block, not two
    m2 = np.sum(d, axis=axis, dtype=dtype, **kwargs)
    return {"total": total, "n": n, "M": m2[..., None]}


def _fast_moment2(
    values: Any, axis: Any = None, *, skipna: bool, root: bool, **_: Any
) -> Any:
    """Variance (``root``: standard deviation) of floating numpy or dask data,
    ``ddof=0``, one read of each block."""
    dtype = np.var(np.ones(1, values.dtype)).dtype
    add = np.nansum if skipna else np.sum
    if isinstance(values, dsa.Array):
        out = dsa.reduction(
            values,
            functools.partial(_moment2_chunk, skipna=skipna),
            functools.partial(moment_agg, sum=add, ddof=0),
            combine=functools.partial(moment_combine, sum=add),
            axis=axis,
            dtype=dtype,
            concatenate=False,
        )
        return dsa.sqrt(out) if root else out
    part = _moment2_chunk(values, skipna, axis=axis, dtype=dtype, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (part["M"][..., 0] / part["n"]).astype(dtype)
    out = np.squeeze(out, axis=axis)
    return np.sqrt(out) if root else out


def _reduce(
    da: xr.DataArray, dims: DimsArg, method: str, skipna: bool, **kwargs: Any
) -> xr.DataArray:
    """Apply the DataArray reduction ``method`` over the resolved dims."""
    _check_dataarray(da)
    names = resolve_dims(da, dims)
    if method == "sum":
        acc = _accumulator(da.dtype)
        if acc is not None:
            kwargs["dtype"] = acc  # never wrap around, lazy or not
    if method == "sum" and skipna and da.dtype.kind in "fc" and not kwargs:
        out = da.reduce(_fast_nansum, dim=names, keep_attrs=True)
    elif method == "mean" and skipna and da.dtype.kind == "f" and not kwargs:
        out = da.reduce(_fast_nanmean, dim=names, keep_attrs=True)
    elif method in ("var", "std") and da.dtype.kind == "f" and not kwargs:
        fn = functools.partial(_fast_moment2, skipna=skipna, root=method == "std")
        out = da.reduce(fn, dim=names, keep_attrs=True)
    else:
        out = getattr(da, method)(dim=names, skipna=skipna, keep_attrs=True, **kwargs)
    out = out.copy(deep=False)
    out.attrs = dict(da.attrs)
    return with_marking(out, signal_dims(da))


_TITLES = {
    "sum": "Sum",
    "mean": "Mean",
    "max": "Maximum",
    "min": "Minimum",
    "std": "Standard deviation",
    "var": "Variance",
}
_DTYPES = {
    "sum": "Integers and booleans accumulate in ``int64`` (``uint64`` when "
    "unsigned), so they never wrap around; floats keep their dtype.",
    "mean": "Integers give ``float64``; floats keep their dtype.",
    "std": "Integers give ``float64``; floats keep their dtype.",
    "var": "Integers give ``float64``; floats keep their dtype.",
    "max": "The dtype of ``da``.",
    "min": "The dtype of ``da``.",
}


def _doc(method: str, nan: bool) -> str:
    what = "ignoring NaN" if nan else "propagating NaN"
    numpy_name = ("nan" if nan else "") + method
    return f"""{_TITLES[method]} of ``da`` over ``dims``, {what}.

    Like :func:`numpy.{numpy_name}`, with the dims given by kind or by name.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dims : "navigation", "signal", str, list of str or None
        The dims to reduce: ``"navigation"`` (default) or ``"signal"`` for
        every dim of that kind, a name, a list of names, or ``None`` for all.
    **kwargs
        Passed to xarray's reduction (``ddof``, ``min_count``...).

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords, the attrs and the signal
        marking kept; lazy when ``da`` is lazy, with the chunks of the
        remaining dims unchanged. {_DTYPES[method]}

    Raises
    ------
    ValueError
        If a named dim is not a dim of ``da``.
    """


def _make(method: str, nan: bool, extra: str = "") -> Any:
    numpy_name = ("nan" if nan else "") + method

    def reduction(
        da: xr.DataArray, dims: DimsArg = "navigation", **kwargs: Any
    ) -> xr.DataArray:
        return _reduce(da, dims, method, skipna=nan, **kwargs)

    reduction.__name__ = reduction.__qualname__ = numpy_name
    reduction.__doc__ = _doc(method, nan) + extra
    return reduction


def _example(name: str, result: str) -> str:
    return f"""
    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     np.array([[[1.0, 2.0], [np.nan, 4.0]]]), dims=("y", "x", "energy")
    ... )
    >>> xsignal.{name}(da).values
    {result}
    """


_DDOF = """
    Notes
    -----
    ``ddof=0`` (default) divides by N as numpy does; ``ddof=1`` gives the
    sample estimate.
"""


def navigator(da: xr.DataArray) -> xr.DataArray:
    """The navigator image: the NaN-ignoring sum over the signal dims.

    The image users browse, one value per navigation pixel. It is
    :func:`xsignal.nansum` over ``"signal"``: one lazy pass over the data,
    with the navigation chunks kept; integers accumulate in ``int64``
    (``uint64`` when unsigned), exactly, and floating data keeps its dtype as
    with numpy (``float32`` sums of a few thousand channels lose no useful
    precision for display). NaN values (e.g. outside an ROI) are skipped, so
    a fully masked signal gives 0.

    Parameters
    ----------
    da : xarray.DataArray

    Returns
    -------
    xarray.DataArray
        Over the navigation dims; lazy when ``da`` is lazy.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.ones((2, 3, 4), "uint8"), dims=("y", "x", "energy"))
    >>> nav = xsignal.navigator(da)
    >>> nav.dims, nav.dtype, int(nav[0, 0])
    (('y', 'x'), dtype('uint64'), 4)
    """
    return _reduce(da, "signal", "sum", skipna=True)


# --- position of extrema ---------------------------------------------------


def _check_one_dim(da: xr.DataArray, dim: Hashable | None) -> Hashable:
    _check_dataarray(da)
    if dim is None:
        sig = signal_dims(da)
        if len(sig) != 1:
            raise ValueError(
                f"dim must be given: the array has {len(sig)} signal dims {sig}"
            )
        return sig[0]
    if dim in ("navigation", "signal") and dim not in da.dims:
        names = resolve_dims(da, dim)
        if len(names) != 1:
            raise ValueError(
                f"dim={dim!r} means the dims {names}; index/value extrema "
                "reduce exactly one dim, name it"
            )
        return names[0]
    (name,) = resolve_dims(da, [dim])
    return name


def _arg_extremum(da: xr.DataArray, dim: Hashable, which: str) -> xr.DataArray:
    """Index of the max/min along ``dim``, NaN ignored, -1 for all-NaN lanes."""
    filled = da
    allnan = None
    if da.dtype.kind in "fc":
        fill = -np.inf if which == "max" else np.inf
        filled = da.fillna(fill)
        allnan = da.isnull().all(dim)
    out = getattr(filled, "arg" + which)(dim, skipna=False, keep_attrs=True)
    if allnan is not None:
        out = out.where(~allnan, -1)
    out = out.astype(np.int64)
    out.attrs = dict(da.attrs)
    out.attrs.pop("units", None)  # an index has no units
    return with_marking(out, signal_dims(da))


def _coord_values(da: xr.DataArray, dim: Hashable) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da.coords[dim].values)
    return np.arange(da.sizes[dim])


def _value_extremum(da: xr.DataArray, dim: Hashable, which: str) -> xr.DataArray:
    index = _arg_extremum(da, dim, which)
    coord = _coord_values(da, dim)
    has_nan = da.dtype.kind in "fc"
    dtype = np.result_type(coord.dtype, np.float64) if has_nan else coord.dtype

    def lookup(i: np.ndarray) -> np.ndarray:
        values = np.asarray(coord[np.clip(i, 0, None)], dtype=dtype)
        return np.where(i < 0, np.nan, values) if has_nan else values

    out = xr.apply_ufunc(
        lookup, index, dask="parallelized", output_dtypes=[dtype], keep_attrs=True
    )
    out.attrs = dict(da.attrs)
    out.attrs.pop("units", None)
    if dim in da.coords and "units" in da.coords[dim].attrs:
        out.attrs["units"] = da.coords[dim].attrs["units"]
    return with_marking(out, signal_dims(da))


_EXTREMA_PARAMS = """
    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : str, optional
        The one dim to search; ``None`` (default) means the only signal dim.
        ``"navigation"``/``"signal"`` are accepted when they mean one dim.

    Raises
    ------
    ValueError
        If ``dim`` is unknown, or is missing and the array has several
        signal dims.
"""


def _with_params(doc: str) -> str:
    return doc.replace("{params}", "\n    " + _EXTREMA_PARAMS.strip() + "\n")


def indexmax(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Index along ``dim`` of the maximum, NaN ignored (-1 where all are NaN).

    Lazy when ``da`` is lazy (dask's tree ``argmax``); the first index wins
    on ties, as with :func:`numpy.argmax`.
    {params}
    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray([[1.0, 5.0, 2.0], [np.nan] * 3], dims=("x", "energy"))
    >>> xsignal.indexmax(da).values
    array([ 1, -1])
    """
    return _arg_extremum(da, _check_one_dim(da, dim), "max")


indexmax.__doc__ = _with_params(indexmax.__doc__)


def indexmin(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Index along ``dim`` of the minimum, NaN ignored (-1 where all are NaN).

    See :func:`xsignal.indexmax`.
    {params}
    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray([[1.0, 5.0, 0.5]], dims=("x", "energy"))
    >>> xsignal.indexmin(da).values
    array([2])
    """
    return _arg_extremum(da, _check_one_dim(da, dim), "min")


indexmin.__doc__ = _with_params(indexmin.__doc__)


def valuemax(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Coordinate along ``dim`` where the maximum is (NaN where all are NaN).

    The coordinate value of :func:`xsignal.indexmax` (the index itself when
    ``dim`` has no coordinate), with the coordinate's units; lazy when
    ``da`` is lazy.
    {params}
    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[1.0, 5.0, 2.0]], dims=("x", "energy"),
    ...     coords={"energy": [280.0, 280.5, 281.0]},
    ... )
    >>> xsignal.valuemax(da).values
    array([280.5])
    """
    return _value_extremum(da, _check_one_dim(da, dim), "max")


valuemax.__doc__ = _with_params(valuemax.__doc__)


def valuemin(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Coordinate along ``dim`` where the minimum is (NaN where all are NaN).

    See :func:`xsignal.valuemax`.
    {params}
    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray([[1.0, 5.0, 0.5]], dims=("x", "energy"))
    >>> xsignal.valuemin(da).values
    array([2.])
    """
    return _value_extremum(da, _check_one_dim(da, dim), "min")


valuemin.__doc__ = _with_params(valuemin.__doc__)


# --- the reductions themselves (names shadowing builtins come last) --------

_RESULTS = {
    "sum": "array([nan,  6.])",
    "mean": "array([nan,  3.])",
    "max": "array([nan,  4.])",
    "min": "array([nan,  2.])",
    "std": "array([nan,  1.])",
    "var": "array([nan,  1.])",
    "nansum": "array([1., 6.])",
    "nanmean": "array([1., 3.])",
    "nanmax": "array([1., 4.])",
    "nanmin": "array([1., 2.])",
    "nanstd": "array([0., 1.])",
    "nanvar": "array([0., 1.])",
}


def _full(method: str, nan: bool) -> Any:
    name = ("nan" if nan else "") + method
    extra = _DDOF if method in ("std", "var") else ""
    return _make(method, nan, extra + _example(name, _RESULTS[name]))


nanmean = _full("mean", True)
nanstd = _full("std", True)
nanvar = _full("var", True)
nanmax = _full("max", True)
nanmin = _full("min", True)
nansum = _full("sum", True)
mean = _full("mean", False)
std = _full("std", False)
var = _full("var", False)
max = _full("max", False)
min = _full("min", False)
sum = _full("sum", False)
