"""Integer rebinning by summation."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from .dims import _check_dataarray, check_dims, signal_dims, with_marking

__all__ = ["rebin"]


def _check_factors(
    da: xr.DataArray, factors: Mapping[Any, int], trim: bool
) -> dict[Hashable, int]:
    if not isinstance(factors, Mapping):
        raise TypeError(
            f"factors must be a dict {{dim: int}}, not {type(factors).__name__}"
        )
    check_dims(da, factors, "rebin dim")
    out = {}
    for dim, factor in factors.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)):
            raise TypeError(
                f"the rebin factor of {dim!r} must be an int, not {factor!r}"
            )
        size = da.sizes[dim]
        if not 1 <= factor <= size:
            raise ValueError(
                f"the rebin factor of {dim!r} must be between 1 and its size "
                f"{size}, not {factor}"
            )
        if size % factor and not trim:
            raise ValueError(
                f"the rebin factor {factor} does not divide the size {size} of "
                f"{dim!r}; pass trim=True to drop the last {size % factor} "
                "element(s)"
            )
        out[dim] = int(factor)
    return out


def _align_chunks(da: xr.DataArray, factors: dict[Hashable, int]) -> xr.DataArray:
    """Rechunk the binned dims (only) to multiples of their factors.

    dask's coarsen would otherwise split every block at the bin boundaries
    and leave many tiny chunks; the dims that are not binned keep theirs.
    """
    if da.chunks is None:
        return da
    chunks = dict(zip(da.dims, da.chunks))
    new = {}
    for dim, factor in factors.items():
        c = chunks[dim]
        if any(n % factor for n in c[:-1]) or (c[-1] % factor and len(c) > 1):
            new[dim] = factor * max(1, round(max(c) / factor))
    return da.chunk(new) if new else da


def rebin(
    da: xr.DataArray, factors: Mapping[Any, int], *, trim: bool = False
) -> xr.DataArray:
    """Bin ``da`` by integer factors, summing the values of each bin.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    factors : dict
        ``{dim: factor}``: every ``factor`` consecutive elements of ``dim``
        become one; dims not named are unchanged.
    trim : bool
        When a factor does not divide its dim's size, ``False`` (default)
        raises ``ValueError``; ``True`` drops the last ``size % factor``
        elements of that dim (the crop keeps the start of the axis).

    Returns
    -------
    xarray.DataArray
        Summed bins (integers accumulate in ``int64``/``uint64``, as numpy's
        sum does; NaN propagates into its bin, as with a plain sum). The
        coordinates of a binned dim are the means of the coordinates in each
        bin, i.e. the bin centres of an evenly spaced axis. Attrs and signal
        marking are kept. Lazy input gives lazy output; a binned dim whose
        chunks are not multiples of its factor is rechunked to the multiple
        nearest its largest chunk first, the other dims keep their chunks.

    Raises
    ------
    ValueError
        If a dim is unknown, a factor is below 1 or above the dim's size, or
        does not divide the size and ``trim`` is False.
    TypeError
        If ``factors`` is not a dict of ints.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     np.arange(12).reshape(2, 6), dims=("x", "energy"),
    ...     coords={"energy": np.arange(6.0)},
    ... )
    >>> out = xsignal.rebin(da, {"energy": 3})
    >>> out.values
    array([[ 3, 12],
           [21, 30]])
    >>> out["energy"].values
    array([1., 4.])
    """
    _check_dataarray(da)
    factors = _check_factors(da, factors, trim)
    if trim:
        da = da.isel(
            {d: slice(0, da.sizes[d] - da.sizes[d] % f) for d, f in factors.items()}
        )
    da = _align_chunks(da, factors)
    acc = np.zeros(1, da.dtype).sum().dtype
    data = da.astype(acc) if acc != da.dtype else da
    out = data.coarsen(factors, boundary="exact", coord_func="mean").reduce(
        np.sum, keep_attrs=True
    )
    out = out.copy(deep=False)
    out.attrs = dict(da.attrs)
    return with_marking(out, signal_dims(da))
