"""Reductions over navigation/signal dims: sum, mean, nan-versions, arg-extrema.

Every reduction takes the dims to reduce as xarray does, in ``dim``:
``"navigation"`` (the default), ``"signal"``, a dim name, a list of names,
or ``None`` for every dim (``dims``, the older name, is still accepted), and
``keep_attrs`` as xarray does. The result keeps the coords of the remaining
dims, the attrs (unless ``keep_attrs=False``) and, always, the signal
marking of the remaining dims. Lazy input gives lazy output with the chunks
of the untouched dims unchanged (dask's tree reductions never rechunk the
dims they keep).

Accumulator dtypes follow numpy's rules, for lazy data too: sums of
integers and booleans accumulate in ``int64`` (``uint64`` for unsigned
integers), so a ``uint8`` or ``int32`` image summed over many pixels does not
wrap around; means, variances and standard deviations of integers are
``float64``; floating data keeps its precision (``float32`` in,
``float32`` out, as with numpy).

The plain versions (``sum``, ``mean``, ...) propagate NaN; the ``nan``
versions ignore it. A lane whose values are all NaN gives 0 for ``nansum``
and NaN for the other nan-reductions.

Each reduction is a row of :data:`_REDUCTIONS` (which xarray method, whether
NaN is skipped, which one-pass kernel serves floating data) and a plain
``def`` with its own signature and docstring, so IDEs and ``help()`` see it.

The module defines functions named ``sum``, ``max`` and ``min``; they are
defined last, and no code in this module calls the builtins of those names.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

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

from .chunks import reduce_blocks
from .dims import _check_dataarray, resolve_dims, signal_dims, with_marking
from .navigators import stored as stored_navigator

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


class _DefaultDim(str):
    """The default ``dim``: the string ``"navigation"``, but a distinct object.

    It equals ``"navigation"`` everywhere and reads as ``'navigation'`` in
    signatures; ``dim is NAVIGATION`` tells "not given" from an explicit
    ``dim="navigation"``, so that giving both ``dim`` and ``dims`` is refused.
    """

    __slots__ = ()


NAVIGATION: Final = _DefaultDim("navigation")


class _Unset(enum.Enum):
    """Type of :data:`UNSET`, the default of the older ``dims`` argument."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Final = _Unset.UNSET
"""``dims`` was not given (``None`` is a value: every dim)."""

Unset = Literal[_Unset.UNSET]


def _accumulator(dtype: np.dtype) -> np.dtype | None:
    """numpy's sum dtype for integers/booleans (int64/uint64), None for floats."""
    if dtype.kind in "biu":
        accumulator: np.dtype = np.zeros(1, dtype).sum().dtype
        return accumulator
    return None


def nansum_block(
    x: np.ndarray,
    axis: Any = None,
    keepdims: bool = False,
    dtype: Any = None,
    **_: Any,
) -> np.ndarray:
    """``nansum`` that pays for NaN handling only in blocks that hold NaN.

    A plain sum is a single fast pass; only when its result has NaN is the
    block summed again with ``np.nansum`` (NaN in, NaN out for a plain sum).
    """
    out: np.ndarray = np.sum(x, axis=axis, keepdims=keepdims, dtype=dtype)
    if out.dtype.kind in "fc" and np.isnan(out).any():
        out = np.nansum(x, axis=axis, keepdims=keepdims, dtype=dtype)
    return out


def _fast_nansum(values: Any, axis: Any = None, dtype: Any = None, **_: Any) -> Any:
    """NaN-skipping sum of numpy or dask data (xarray's is 2-3x slower).

    Lazy data whose blocks hold whole lanes of the summed axes (a navigator
    over blocks of whole signals) is one task per block, no reduction tree.
    """
    if not isinstance(values, dsa.Array):
        return nansum_block(values, axis=axis, dtype=dtype)
    axes = tuple(range(values.ndim)) if axis is None else tuple(np.atleast_1d(axis))
    axes = tuple(int(a) % values.ndim for a in axes)
    out_dtype = np.sum(np.zeros(1, values.dtype), dtype=dtype).dtype
    if len(axes) < values.ndim and all(len(values.chunks[a]) == 1 for a in axes):
        block = functools.partial(nansum_block, axis=axes, dtype=dtype)
        return reduce_blocks(block, values, axes, out_dtype)
    return dsa.reduction(values, nansum_block, nansum_block, axis=axes, dtype=out_dtype)


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


@dataclass(frozen=True)
class _Reduction:
    """One row of the table of reductions: how ``xsignal.<name>`` computes."""

    method: str  # the xarray DataArray method of the general path
    skipna: bool  # NaN skipped (the nan-versions) or propagated
    fast: Callable[..., Any] | None = None  # one pass over each block...
    fast_kinds: str = ""  # ...for these dtype kinds, when no kwargs are given
    accumulate: bool = False  # integers and booleans accumulate in (u)int64


_REDUCTIONS: Final[dict[str, _Reduction]] = {
    "sum": _Reduction("sum", False, accumulate=True),
    "nansum": _Reduction("sum", True, _fast_nansum, "fcbiu", accumulate=True),
    "mean": _Reduction("mean", False),
    "nanmean": _Reduction("mean", True, _fast_nanmean, "f"),
    "max": _Reduction("max", False),
    "nanmax": _Reduction("max", True),
    "min": _Reduction("min", False),
    "nanmin": _Reduction("min", True),
    "var": _Reduction(
        "var", False, functools.partial(_fast_moment2, skipna=False, root=False), "f"
    ),
    "nanvar": _Reduction(
        "var", True, functools.partial(_fast_moment2, skipna=True, root=False), "f"
    ),
    "std": _Reduction(
        "std", False, functools.partial(_fast_moment2, skipna=False, root=True), "f"
    ),
    "nanstd": _Reduction(
        "std", True, functools.partial(_fast_moment2, skipna=True, root=True), "f"
    ),
}


def _dim_arg(name: str, dim: DimsArg, dims: DimsArg | Unset) -> DimsArg:
    """The dims asked for, from ``dim`` or its older name ``dims`` (not both)."""
    if dims is UNSET:
        return dim
    if dim is not NAVIGATION:
        raise TypeError(
            f"{name}() got both dim={dim!r} and dims={dims!r}; give only dim "
            "(dims is its older name)"
        )
    return dims


def _keep_attrs(keep_attrs: bool | None) -> bool:
    """``keep_attrs``, with ``None`` following ``xarray.set_options`` as xarray
    does (whose default keeps them)."""
    if keep_attrs is None:
        option = xr.get_options()["keep_attrs"]
        return True if option == "default" else bool(option)
    return bool(keep_attrs)


def _finish(out: xr.DataArray, da: xr.DataArray, keep_attrs: bool) -> xr.DataArray:
    """``out`` with new attrs: ``da``'s when kept, and always the marking of
    the signal dims of ``da`` that remain (an unmarked input's implicit last
    signal dim is written down, so reducing it never promotes another dim)."""
    out = out.copy(deep=False)
    out.attrs = dict(da.attrs) if keep_attrs else {}
    return with_marking(out, signal_dims(da))


def _reduce(
    da: xr.DataArray,
    name: str,
    dim: DimsArg,
    dims: DimsArg | Unset = UNSET,
    *,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Compute the reduction ``name`` (a key of :data:`_REDUCTIONS`)."""
    _check_dataarray(da)
    row = _REDUCTIONS[name]
    if "axis" in kwargs:
        raise TypeError(
            f"{name}() takes the dims to reduce by name, as dim=..., not axis="
        )
    if "skipna" in kwargs:
        raise TypeError(
            f"{name}() always skips NaN, so it takes no skipna; use "
            f"xsignal.{row.method}(..., skipna=...) to choose"
        )
    names = resolve_dims(da, _dim_arg(name, dim, dims))
    if row.accumulate:
        acc = _accumulator(da.dtype)
        if acc is not None:
            kwargs.setdefault("dtype", acc)  # never wrap around, lazy or not
    fast_kwargs = set(kwargs) <= ({"dtype"} if row.accumulate else set())
    if row.fast is not None and da.dtype.kind in row.fast_kinds and fast_kwargs:
        out = da.reduce(row.fast, dim=names, keep_attrs=True, **kwargs)
    else:
        # integers hold no NaN: skipping it would only add a masking pass
        skipna = row.skipna and da.dtype.kind not in "iub"
        out = getattr(da, row.method)(
            dim=names, skipna=skipna, keep_attrs=True, **kwargs
        )
    return _finish(out, da, _keep_attrs(keep_attrs))


def navigator(da: xr.DataArray) -> xr.DataArray:
    """The navigator image: the NaN-ignoring sum over the signal dims.

    The image users browse, one value per navigation pixel. It is
    :func:`xsignal.nansum` over ``"signal"``: one lazy pass over the data,
    with the navigation chunks kept; integers accumulate in ``int64``
    (``uint64`` when unsigned), exactly, and floating data keeps its dtype as
    with numpy (``float32`` sums of a few thousand channels lose no useful
    precision for display). NaN values (e.g. outside an ROI) are skipped, so
    a fully masked signal gives 0. The attrs of ``da`` are kept.

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

    An array opened from a file saved with its navigator (the default of
    :func:`xsignal.save`) gets the stored one, read without a pass over the
    data, while it is the file's data unmodified (or cut along navigation
    dims by labels): see :mod:`xsignal.navigators`.
    """
    found = stored_navigator(da)
    if found is not None:
        return found
    return _reduce(da, "nansum", "signal", keep_attrs=True)


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


def _arg_extremum(
    da: xr.DataArray, dim: Hashable, which: str, keep_attrs: bool | None
) -> xr.DataArray:
    """Index of the max/min along ``dim``, NaN ignored, -1 for all-NaN lanes."""
    filled = da
    allnan = None
    if da.dtype.kind in "fc":
        fill = -np.inf if which == "max" else np.inf
        filled = da.fillna(fill)
        allnan = da.isnull().all([dim])  # a list: dim may be any hashable
    out = getattr(filled, "arg" + which)(dim, skipna=False, keep_attrs=True)
    if allnan is not None:
        out = out.where(~allnan, -1)
    out = _finish(out.astype(np.int64), da, _keep_attrs(keep_attrs))
    out.attrs.pop("units", None)  # an index has no units
    return out


def _coord_values(da: xr.DataArray, dim: Hashable) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da.coords[dim].values)
    return np.arange(da.sizes[dim])


def _value_extremum(
    da: xr.DataArray, dim: Hashable, which: str, keep_attrs: bool | None
) -> xr.DataArray:
    index = _arg_extremum(da, dim, which, keep_attrs)
    coord = _coord_values(da, dim)
    has_nan = da.dtype.kind in "fc"
    dtype = np.result_type(coord.dtype, np.float64) if has_nan else coord.dtype

    def lookup(i: np.ndarray) -> np.ndarray:
        values = np.asarray(coord[np.clip(i, 0, None)], dtype=dtype)
        return np.where(i < 0, np.nan, values) if has_nan else values

    out = xr.apply_ufunc(
        lookup, index, dask="parallelized", output_dtypes=[dtype], keep_attrs=True
    )
    out = _finish(out, da, _keep_attrs(keep_attrs))
    out.attrs.pop("units", None)
    if dim in da.coords and "units" in da.coords[dim].attrs:
        # the coordinate's units are the result's, whatever keep_attrs says
        out.attrs["units"] = da.coords[dim].attrs["units"]
    return out


_EXTREMA_PARAMS = """
    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : str, optional
        The one dim to search; ``None`` (default) means the only signal dim.
        ``"navigation"``/``"signal"`` are accepted when they mean one dim.
    keep_attrs : bool, optional
        Keep the attrs of ``da`` (but its ``units``); ``None`` follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them by default.
        The signal marking is written either way.

    Raises
    ------
    ValueError
        If ``dim`` is unknown, or is missing and the array has several
        signal dims.
"""


def _with_params(doc: str | None) -> str:
    assert doc is not None
    return doc.replace("{params}", "\n    " + _EXTREMA_PARAMS.strip() + "\n")


def indexmax(
    da: xr.DataArray, dim: Hashable | None = None, *, keep_attrs: bool | None = None
) -> xr.DataArray:
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
    return _arg_extremum(da, _check_one_dim(da, dim), "max", keep_attrs)


indexmax.__doc__ = _with_params(indexmax.__doc__)


def indexmin(
    da: xr.DataArray, dim: Hashable | None = None, *, keep_attrs: bool | None = None
) -> xr.DataArray:
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
    return _arg_extremum(da, _check_one_dim(da, dim), "min", keep_attrs)


indexmin.__doc__ = _with_params(indexmin.__doc__)


def valuemax(
    da: xr.DataArray, dim: Hashable | None = None, *, keep_attrs: bool | None = None
) -> xr.DataArray:
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
    return _value_extremum(da, _check_one_dim(da, dim), "max", keep_attrs)


valuemax.__doc__ = _with_params(valuemax.__doc__)


def valuemin(
    da: xr.DataArray, dim: Hashable | None = None, *, keep_attrs: bool | None = None
) -> xr.DataArray:
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
    return _value_extremum(da, _check_one_dim(da, dim), "min", keep_attrs)


valuemin.__doc__ = _with_params(valuemin.__doc__)


# --- the reductions themselves (names shadowing builtins come last) --------
def nansum(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    min_count: int | None = None,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Sum of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nansum` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives 0 (NaN with ``min_count=1``), as
    :func:`numpy.nansum`.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    min_count : int, optional
        When NaN is skipped, the fewest valid values a result needs;
        fewer give NaN (an all-NaN lane then gives NaN, not 0).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.sum` (e.g. ``dtype``).

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers and booleans accumulate in ``int64`` (``uint64`` when
        unsigned), so they never wrap around; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    sum, xarray.DataArray.sum

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nansum(da).values  # over the navigation dims y and x
    array([1., 6.])
    >>> da.signal.nansum(dim="energy").values
    array([[3., 4.]])
    >>> xsignal.nansum(da, dims="signal").values  # dims: the older name
    array([[3., 4.]])
    """
    if min_count is not None:
        kwargs["min_count"] = min_count
    return _reduce(da, "nansum", dim, dims, keep_attrs=keep_attrs, **kwargs)


def nanmean(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Mean of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nanmean` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.mean` (e.g. ``dtype``).

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    mean, xarray.DataArray.mean

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nanmean(da).values  # over the navigation dims y and x
    array([1., 3.])
    >>> da.signal.nanmean(dim="energy").values
    array([[1.5, 4. ]])
    >>> da.signal.nanmean(dim=["y", "x"], keep_attrs=False).attrs
    {'signal_dims': '["energy"]'}
    """
    return _reduce(da, "nanmean", dim, dims, keep_attrs=keep_attrs, **kwargs)


def nanmax(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Maximum of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nanmax` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.max`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        The dtype of ``da``.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    max, xarray.DataArray.max

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nanmax(da).values  # over the navigation dims y and x
    array([1., 4.])
    >>> da.signal.nanmax(dim="energy").values
    array([[2., 4.]])
    """
    return _reduce(da, "nanmax", dim, dims, keep_attrs=keep_attrs, **kwargs)


def nanmin(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Minimum of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nanmin` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.min`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        The dtype of ``da``.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    min, xarray.DataArray.min

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nanmin(da).values  # over the navigation dims y and x
    array([1., 2.])
    >>> da.signal.nanmin(dim="energy").values
    array([[1., 4.]])
    """
    return _reduce(da, "nanmin", dim, dims, keep_attrs=keep_attrs, **kwargs)


def nanstd(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    ddof: int = 0,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Standard deviation of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nanstd` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    ddof : int, default 0
        Delta degrees of freedom: divide by ``N - ddof`` (``0`` as numpy,
        ``1`` for the sample estimate).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.std`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    std, xarray.DataArray.std

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nanstd(da).values  # over the navigation dims y and x
    array([0., 1.])
    >>> da.signal.nanstd(dim="energy").values
    array([[0.5, 0. ]])
    """
    if ddof != 0:
        kwargs["ddof"] = ddof
    return _reduce(da, "nanstd", dim, dims, keep_attrs=keep_attrs, **kwargs)


def nanvar(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    ddof: int = 0,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Variance of ``da`` over ``dim``, ignoring NaN.

    :func:`numpy.nanvar` over dims given by kind or by name, lazily for lazy
    ``da``.

    An all-NaN lane gives NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    ddof : int, default 0
        Delta degrees of freedom: divide by ``N - ddof`` (``0`` as numpy,
        ``1`` for the sample estimate).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.var`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis`` or ``skipna``
        (this one always skips NaN).
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    var, xarray.DataArray.var

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.nanvar(da).values  # over the navigation dims y and x
    array([0., 1.])
    >>> da.signal.nanvar(dim="energy").values
    array([[0.25, 0.  ]])
    """
    if ddof != 0:
        kwargs["ddof"] = ddof
    return _reduce(da, "nanvar", dim, dims, keep_attrs=keep_attrs, **kwargs)


def mean(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Mean of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.mean` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nanmean`.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.mean` (e.g. ``dtype``).

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nanmean, xarray.DataArray.mean

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.mean(da).values  # over the navigation dims y and x
    array([nan,  3.])
    >>> da.signal.mean(dim="energy").values
    array([[1.5, nan]])
    """
    return _reduce(
        da, "nanmean" if skipna else "mean", dim, dims, keep_attrs=keep_attrs, **kwargs
    )


def std(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    ddof: int = 0,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Standard deviation of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.std` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nanstd`.
    ddof : int, default 0
        Delta degrees of freedom: divide by ``N - ddof`` (``0`` as numpy,
        ``1`` for the sample estimate).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.std`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nanstd, xarray.DataArray.std

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.std(da).values  # over the navigation dims y and x
    array([nan,  1.])
    >>> da.signal.std(dim="energy").values
    array([[0.5, nan]])
    >>> da.signal.std(dim="energy", ddof=1).values
    array([[0.70710678,        nan]])
    """
    if ddof != 0:
        kwargs["ddof"] = ddof
    return _reduce(
        da, "nanstd" if skipna else "std", dim, dims, keep_attrs=keep_attrs, **kwargs
    )


def var(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    ddof: int = 0,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Variance of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.var` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nanvar`.
    ddof : int, default 0
        Delta degrees of freedom: divide by ``N - ddof`` (``0`` as numpy,
        ``1`` for the sample estimate).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.var`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers give ``float64``; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nanvar, xarray.DataArray.var

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.var(da).values  # over the navigation dims y and x
    array([nan,  1.])
    >>> da.signal.var(dim="energy").values
    array([[0.25,  nan]])
    """
    if ddof != 0:
        kwargs["ddof"] = ddof
    return _reduce(
        da, "nanvar" if skipna else "var", dim, dims, keep_attrs=keep_attrs, **kwargs
    )


def max(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Maximum of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.max` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nanmax`.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.max`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        The dtype of ``da``.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nanmax, xarray.DataArray.max

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.max(da).values  # over the navigation dims y and x
    array([nan,  4.])
    >>> da.signal.max(dim="energy").values
    array([[ 2., nan]])
    """
    return _reduce(
        da, "nanmax" if skipna else "max", dim, dims, keep_attrs=keep_attrs, **kwargs
    )


def min(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Minimum of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.min` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nanmin`.
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.min`.

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        The dtype of ``da``.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nanmin, xarray.DataArray.min

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.min(da).values  # over the navigation dims y and x
    array([nan,  2.])
    >>> da.signal.min(dim="energy").values
    array([[ 1., nan]])
    """
    return _reduce(
        da, "nanmin" if skipna else "min", dim, dims, keep_attrs=keep_attrs, **kwargs
    )


def sum(
    da: xr.DataArray,
    dim: DimsArg = NAVIGATION,
    *,
    dims: DimsArg | Unset = UNSET,
    skipna: bool = False,
    min_count: int | None = None,
    keep_attrs: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Sum of ``da`` over ``dim``, propagating NaN.

    :func:`numpy.sum` over dims given by kind or by name, lazily for lazy
    ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    dim : "navigation", "signal", str, list of str or None, default "navigation"
        The dims to reduce: every navigation or every signal dim, a dim
        name, a list of names, or ``None`` for every dim.
    dims : same as ``dim``, optional
        The older name of ``dim``, still accepted; give one of the two.
    skipna : bool, default False
        Skip NaN: ``True`` gives :func:`xsignal.nansum`.
    min_count : int, optional
        When NaN is skipped, the fewest valid values a result needs;
        fewer give NaN (an all-NaN lane then gives NaN, not 0).
    keep_attrs : bool, optional
        Keep the attrs of ``da``; ``None`` (default) follows
        ``xarray.set_options(keep_attrs=...)``, which keeps them. The signal
        marking of the remaining dims is written either way.
    **kwargs
        Passed on to :meth:`xarray.DataArray.sum` (e.g. ``dtype``).

    Returns
    -------
    xarray.DataArray
        Over the remaining dims, with their coords and signal marking; lazy
        when ``da`` is lazy, with the chunks of the remaining dims unchanged.
        Integers and booleans accumulate in ``int64`` (``uint64`` when
        unsigned), so they never wrap around; floats keep their dtype.

    Raises
    ------
    TypeError
        If both ``dim`` and ``dims`` are given, or ``axis``.
    ValueError
        If a named dim is not a dim of ``da``.

    See Also
    --------
    nansum, xarray.DataArray.sum

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     [[[1.0, 2.0], [np.nan, 4.0]]], dims=("y", "x", "energy"),
    ...     attrs={"units": "counts"},
    ... )
    >>> xsignal.sum(da).values  # over the navigation dims y and x
    array([nan,  6.])
    >>> da.signal.sum(dim="energy").values
    array([[ 3., nan]])
    >>> da.signal.sum(dim=["y", "x"], keep_attrs=False).attrs
    {'signal_dims': '["energy"]'}
    """
    if min_count is not None:
        kwargs["min_count"] = min_count
    return _reduce(
        da, "nansum" if skipna else "sum", dim, dims, keep_attrs=keep_attrs, **kwargs
    )
