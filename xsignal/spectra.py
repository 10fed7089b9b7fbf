"""Tools along one signal dim (spectra): integration, derivatives, smoothing,
noise variance, background removal.

Each takes a DataArray, lazy or in memory, and returns one of the same kind
(a lazy input gives a lazy result and reads nothing). The signal dim is
``dim`` (``None``: the array's one signal dim), coordinates in its units.
Every tool works on whole blocks: the signal dim is made one chunk, and
numpy or scipy take all the spectra of a block at once along their last
axis, so no Python runs per pixel and the result does not depend on the
navigation chunking.

Definitions follow HyperSpy 2.5's (its ``Signal1D`` methods), so results
agree with it to rounding; where they differ it is said in the function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import xarray as xr

from .chunks import apply_blocks, whole
from .dims import coordinate_values, signal_dims, with_marking
from .reductions import _check_one_dim

__all__ = [
    "align1D",
    "derivative",
    "estimate_shift1D",
    "estimate_poissonian_noise_variance",
    "find_peaks1D",
    "gaussian_filter",
    "integrate1D",
    "integrate_simpson",
    "remove_background",
    "shift1D",
    "smooth_savitzky_golay",
]

# FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _uniform_step(da: xr.DataArray, dim: Hashable, tool: str) -> float:
    """The step of a uniform coordinate; a clear error otherwise."""
    x = coordinate_values(da, dim)
    if x.size < 2:
        return 1.0
    steps = np.diff(x)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise NotImplementedError(
            f"{tool} needs a uniform coordinate on {dim!r} (equal steps), as "
            "HyperSpy's does"
        )
    return float(steps[0])


def _float_dtype(da: xr.DataArray) -> np.dtype:
    """The float dtype results are computed in (float64 for integers)."""
    return da.dtype if da.dtype.kind in "fc" else np.dtype(np.float64)


def _along(
    da: xr.DataArray,
    dim: Hashable,
    fn: Callable[[np.ndarray], np.ndarray],
    dtype: Any,
) -> xr.DataArray:
    """``fn`` applied to whole blocks along ``dim`` (last axis), same shape
    (:func:`~xsignal.chunks.apply_blocks`: no copy of each block first)."""
    out = apply_blocks(fn, da, [dim], {dim: da.sizes[dim]}, dtype, keep_attrs=True)
    result: xr.DataArray = out.transpose(*da.dims)
    return result


# --- integration ------------------------------------------------------------------


def integrate_simpson(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Integral over ``dim`` by Simpson's rule on its coordinate
    (:func:`scipy.integrate.simpson`, HyperSpy's ``integrate_simpson``).

    Parameters
    ----------
    da : xarray.DataArray
    dim : hashable, optional
        The dim to integrate; default the one signal dim.

    Returns
    -------
    xarray.DataArray
        Without ``dim``; lazy when ``da`` is; the attrs kept, the signal
        marking of the dims that remain. One product of each block with
        the rule's weights (:func:`simpson_weights`), in the data's float
        dtype: float32 data sum in float32 (about 1e-6 relative, where
        scipy sums in float64), integers in float64.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> x = np.linspace(0.0, np.pi, 101)
    >>> da = xr.DataArray(np.sin(x)[None, :] * [[1.0], [2.0]], dims=("y", "e"),
    ...                   coords={"e": x})
    >>> np.round(xsignal.integrate_simpson(da).values, 6)
    array([2., 4.])
    """
    dim = _check_one_dim(da, dim)
    dtype = _float_dtype(da)
    # Simpson's rule is linear in the data: one product with its weights
    weights = simpson_weights(coordinate_values(da, dim)).astype(dtype)
    out = apply_blocks(
        lambda block: np.matmul(block, weights, dtype=dtype),
        da,
        [dim],
        {},
        dtype,
        keep_attrs=True,
    )
    return with_marking(out, signal_dims(da))


def simpson_weights(x: Any) -> np.ndarray:
    """The weights ``w`` with ``y @ w`` the integral of ``y`` over ``x`` by
    Simpson's rule, as :func:`scipy.integrate.simpson` computes it.

    Pairs of intervals each take the parabola through their three points
    (the composite rule for uneven spacing); with an odd number of
    intervals, the last one takes the parabola through the last three
    points (Cartwright's correction, the formulas of Wikipedia's "Simpson's
    rule", composite rule for irregularly spaced data); two points: the
    trapezoid.

    Examples
    --------
    >>> import numpy as np
    >>> from xsignal.spectra import simpson_weights
    >>> (simpson_weights(np.arange(5.0)) * 3).tolist()
    [1.0, 4.0, 2.0, 4.0, 1.0]
    >>> x = np.array([0.0, 0.5, 1.5, 2.0])        # uneven, three intervals
    >>> round(float(x**2 @ simpson_weights(x)), 12)  # exact for a parabola
    2.666666666667
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    w = np.zeros(n)
    if n == 2:
        w[:] = 0.5 * (x[1] - x[0])
    if n < 3:
        return w
    stop = n if n % 2 else n - 1  # the points of the pairs of intervals
    h = np.diff(x[:stop])
    h0, h1 = h[0::2], h[1::2]
    pair = (h0 + h1) / 6
    ratio = _divide(h0, h1)
    w[0 : stop - 2 : 2] += pair * (2 - _divide(1.0, ratio))
    w[1 : stop - 1 : 2] += pair * (h0 + h1) * _divide(h0 + h1, h0 * h1)
    w[2:stop:2] += pair * (2 - ratio)
    if n % 2 == 0:  # the last interval
        a, b = x[-2:-1] - x[-3:-2], x[-1:] - x[-2:-1]
        w[-1:] += _divide(2 * b * b + 3 * a * b, 6 * (a + b))
        w[-2:-1] += _divide(b * b + 3 * a * b, 6 * a)
        w[-3:-2] -= _divide(b**3, 6 * a * (a + b))
    return w


def _divide(top: Any, bottom: np.ndarray) -> np.ndarray:
    """``top / bottom``, 0 where ``bottom`` is 0 (a repeated coordinate, as
    scipy's rule takes it)."""
    top = np.broadcast_to(np.asarray(top, np.float64), bottom.shape)
    out: np.ndarray = np.divide(
        top, bottom, out=np.zeros_like(bottom), where=bottom != 0
    )
    return out


def integrate1D(da: xr.DataArray, dim: Hashable | None = None) -> xr.DataArray:
    """Integral over ``dim``: Simpson's rule on the coordinate, as
    HyperSpy's ``integrate1D`` does on a non-binned axis. For binned data
    (counts per channel), HyperSpy's binned case is ``da.sum(dim)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.ones((2, 11)), dims=("y", "e"),
    ...                   coords={"e": np.linspace(0, 5, 11)})
    >>> xsignal.integrate1D(da).values
    array([5., 5.])
    """
    return integrate_simpson(da, dim)


# --- derivatives and smoothing ------------------------------------------------------


def derivative(
    da: xr.DataArray, dim: Hashable | None = None, order: int = 1, **kwargs: Any
) -> xr.DataArray:
    """Derivative along ``dim`` with respect to its coordinate, ``order``
    times :func:`numpy.gradient` (second-order central differences inside,
    one-sided at the ends; ``edge_order=2`` passes on), as HyperSpy's
    ``derivative``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> x = np.arange(6.0) * 0.5
    >>> da = xr.DataArray(x**2, dims=("e",), coords={"e": x})
    >>> xsignal.derivative(da).values
    array([0.5, 1. , 2. , 3. , 4. , 4.5])
    """
    dim = _check_one_dim(da, dim)
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"order must be a positive int, not {order!r}")
    x = coordinate_values(da, dim)

    def gradient(block: np.ndarray) -> np.ndarray:
        out = block
        for _ in range(int(order)):
            out = np.gradient(out, x, axis=-1, **kwargs)
        return out

    return _along(da, dim, gradient, _float_dtype(da))


def smooth_savitzky_golay(
    da: xr.DataArray,
    window_length: int,
    polynomial_order: int,
    deriv: int = 0,
    dim: Hashable | None = None,
) -> xr.DataArray:
    """Savitzky-Golay smoothing (or its ``deriv``-th derivative, per unit of
    the coordinate) along ``dim``: :func:`scipy.signal.savgol_filter` on
    whole blocks, as HyperSpy's ``smooth_savitzky_golay``
    (``differential_order`` there is ``deriv`` here).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> x = np.arange(9.0)
    >>> da = xr.DataArray(3 * x + 1, dims=("e",), coords={"e": x})
    >>> xsignal.smooth_savitzky_golay(da, 5, 2, deriv=1).values
    array([3., 3., 3., 3., 3., 3., 3., 3., 3.])
    """
    from scipy.signal import savgol_filter

    dim = _check_one_dim(da, dim)
    step = _uniform_step(da, dim, "smooth_savitzky_golay")
    return _along(
        da,
        dim,
        lambda block: savgol_filter(
            block, window_length, polynomial_order, deriv=deriv, delta=step, axis=-1
        ),
        _float_dtype(da),
    )


def gaussian_filter(
    da: xr.DataArray, FWHM: float, dim: Hashable | None = None
) -> xr.DataArray:
    """Convolution with a Gaussian of full width at half maximum ``FWHM``
    (coordinate units) along ``dim``: :func:`scipy.ndimage.gaussian_filter1d`
    on whole blocks (edges reflected), as HyperSpy's ``gaussian_filter``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> spike = xr.DataArray(np.eye(1, 41, 20)[0], dims=("e",),
    ...                      coords={"e": np.arange(41) * 0.5})
    >>> smooth = xsignal.gaussian_filter(spike, FWHM=2.0)
    >>> round(float(smooth.sum()), 6), float(smooth.idxmax())
    (1.0, 10.0)
    """
    from scipy.ndimage import gaussian_filter1d

    dim = _check_one_dim(da, dim)
    if not FWHM > 0:
        raise ValueError(f"FWHM must be greater than zero, not {FWHM!r}")
    step = _uniform_step(da, dim, "gaussian_filter")
    sigma = FWHM / abs(step) / FWHM_PER_SIGMA
    dtype = _float_dtype(da)
    return _along(
        da,
        dim,
        lambda block: gaussian_filter1d(block.astype(dtype, copy=False), sigma, -1),
        dtype,
    )


# --- noise ------------------------------------------------------------------------


def estimate_poissonian_noise_variance(
    da: xr.DataArray,
    expected_value: xr.DataArray | None = None,
    gain_factor: float = 1.0,
    gain_offset: float = 0.0,
    correlation_factor: float = 1.0,
) -> xr.DataArray:
    """The variance of Poisson noise after a linear detector, HyperSpy's
    model: ``(expected * gain_factor + gain_offset) * correlation_factor``,
    never below ``gain_offset * correlation_factor``.

    HyperSpy stores the result in the signal's metadata; here it is
    returned (lazy when the input is), for ``fit(variance=...)`` or
    ``decomposition`` weights.

    Parameters
    ----------
    da : xarray.DataArray
        The counts.
    expected_value : xarray.DataArray, optional
        The noise-free expectation (a model, a smoothed copy); default
        ``da`` itself.
    gain_factor, gain_offset, correlation_factor : float
        Non-negative.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> counts = xr.DataArray(np.array([0.0, 4.0, 9.0]), dims=("e",))
    >>> xsignal.estimate_poissonian_noise_variance(counts, gain_factor=2,
    ...                                            gain_offset=1).values
    array([ 1.,  9., 19.])
    """
    for name, value in (
        ("gain_factor", gain_factor),
        ("gain_offset", gain_offset),
        ("correlation_factor", correlation_factor),
    ):
        if not value >= 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    expected = da if expected_value is None else expected_value
    variance = (expected * gain_factor + gain_offset) * correlation_factor
    variance = variance.clip(min=gain_offset * correlation_factor)
    variance.attrs = dict(da.attrs)
    title = da.attrs.get("title") or da.name
    if title:
        variance.attrs["title"] = f"Variance of {title}"
    return with_marking(variance, signal_dims(da))


# --- background removal -------------------------------------------------------------

BACKGROUNDS = ("PowerLaw", "Polynomial", "Offset", "Exponential")


def remove_background(
    da: xr.DataArray,
    signal_range: tuple[float, float],
    background_type: str = "PowerLaw",
    polynomial_order: int = 2,
    dim: Hashable | None = None,
    *,
    return_background: bool = False,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """The data minus a background fitted to each spectrum on
    ``signal_range`` (HyperSpy's ``remove_background(..., fast=True)``):
    every spectrum of a block at once, no per-pixel loop.

    - ``"PowerLaw"``: ``A * x**-r`` by the two-area method (Egerton): the
      range is cut in two halves at a channel, each integrated by
      Simpson's rule; ``r`` from the ratio of the two areas, ``A`` the
      area-weighted mean of the amplitudes each half gives (HyperSpy's
      ``PowerLaw.estimate_parameters``).
    - ``"Polynomial"``: least squares of order ``polynomial_order`` on the
      range, all spectra in one solve.
    - ``"Offset"``: the mean on the range.
    - ``"Exponential"``: ``A * exp(-x / tau)`` by least squares on the
      logarithm of the (positive) data on the range. HyperSpy fits this
      one by non-linear least squares; on noisy data the two differ.

    Parameters
    ----------
    da : xarray.DataArray
    signal_range : (float, float)
        Start and end of the fitting range, in coordinate units.
    background_type : str
        One of ``"PowerLaw"``, ``"Polynomial"``, ``"Offset"``,
        ``"Exponential"``.
    polynomial_order : int
        For ``"Polynomial"``.
    dim : hashable, optional
        Default the one signal dim.
    return_background : bool
        Also return the background.

    Returns
    -------
    xarray.DataArray, or (data minus background, background)
        Float, lazy when ``da`` is, over the whole coordinate.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> e = np.arange(200.0, 400.0, 0.5)
    >>> edge = np.where(e > 300, 50.0, 0.0)
    >>> da = xr.DataArray(1e8 * e**-3.0 + edge, dims=("energy",),
    ...                   coords={"energy": e})
    >>> clean = xsignal.remove_background(da, (220.0, 290.0))
    >>> float((abs(clean) / da).sel(energy=slice(220, 290)).max()) < 0.015
    True
    >>> round(float(clean.sel(energy=350.0)))  # the edge's 50 above background
    50
    """
    dim = _check_one_dim(da, dim)
    if background_type not in BACKGROUNDS:
        raise ValueError(
            f"background_type must be one of {BACKGROUNDS}, not {background_type!r}"
        )
    x = coordinate_values(da, dim)
    lo, hi = _range_indices(x, signal_range, dim)
    dtype = np.result_type(_float_dtype(da), np.float32)
    fit = _BACKGROUND_FITS[background_type]

    def background(block: np.ndarray) -> np.ndarray:
        # the fit reads only its range; the curve is made in the result's dtype
        window = np.asarray(block[..., lo:hi], dtype=np.float64)
        return fit(window, x[lo : hi + 1], x, polynomial_order, dtype)

    bg = _along(da, dim, background, dtype)
    bg.attrs = dict(da.attrs)
    cleaned = (da.astype(dtype) - bg).assign_attrs(da.attrs)
    cleaned = with_marking(cleaned, signal_dims(da))
    if return_background:
        return cleaned, with_marking(bg, signal_dims(da))
    return cleaned


def _range_indices(
    x: np.ndarray, signal_range: tuple[float, float], dim: Hashable
) -> tuple[int, int]:
    """Channel indices (first, last) of ``signal_range`` on the coordinate
    ``x``: the nearest channels, as HyperSpy's ``value_range_to_indices``."""
    try:
        start, end = (float(v) for v in signal_range)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"signal_range must be (start, end) in coordinate units, not "
            f"{signal_range!r}"
        ) from err
    if not start < end:
        raise ValueError(f"signal_range must have start < end, not {signal_range!r}")
    if end < x.min() or start > x.max():
        raise ValueError(
            f"signal_range {signal_range!r} is outside the coordinate of {dim!r} "
            f"({x.min():g} to {x.max():g})"
        )
    lo = int(np.abs(x - start).argmin())
    hi = int(np.abs(x - end).argmin())
    if hi - lo < 2:
        raise ValueError(
            f"signal_range {signal_range!r} holds fewer than 3 channels of {dim!r}"
        )
    return min(lo, hi), max(lo, hi)


def _power_law_parameters(
    values: np.ndarray, x: np.ndarray, i1: int, i4: int
) -> tuple[np.ndarray, np.ndarray]:
    """(A, r) of ``A * x**-r`` for every spectrum, by the two-area method on
    channels ``i1..i4`` (HyperSpy's ``PowerLaw.estimate_parameters``)."""
    if (i1 + i4) % 2:  # an even sum splits the channels at a channel
        i4 -= 1
    i2 = (i1 + i4) // 2
    x1, x2, x4 = x[i1], x[i2], x[i4]
    with np.errstate(divide="ignore", invalid="ignore"):
        area1 = values[..., i1:i2] @ simpson_weights(x[i1:i2])
        area2 = values[..., i2:i4] @ simpson_weights(x[i2:i4])
        ratio = area1 / area2 * (x4 - x2) / (x2 - x1)
        r = 2.0 * np.log(ratio) / np.log(x4 * x2 / (x2 * x1))
        k = 1.0 - r
        amp1 = k * area1 / (x2**k - x1**k)
        amp2 = k * area2 / (x4**k - x2**k)
        amp = (amp1 * area1 + amp2 * area2) / (area1 + area2)
    return np.nan_to_num(amp), np.nan_to_num(r)


# Each background fit takes the fitting range of every spectrum of a block
# (``window``, float64), the range's coordinates and the next one (``xs``),
# the whole coordinate ``x``, the polynomial order and the dtype of the
# curve it returns over ``x``.


def _power_law(
    window: np.ndarray, xs: np.ndarray, x: np.ndarray, order: int, dtype: Any
) -> np.ndarray:
    """Two-area power law on the range of every spectrum; 0 where x <= 0.

    ``A x**-r`` is made as ``A exp(-r log x)`` in ``dtype``: numpy's power
    of a row by a column costs several times its exp."""
    amp, r = _power_law_parameters(window, xs, 0, xs.size - 1)
    positive = x > 0
    logs = np.log(np.where(positive, x, 1.0)).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        curve: np.ndarray = np.multiply.outer((-r).astype(dtype), logs)
        np.exp(curve, out=curve)
        curve *= amp.astype(dtype)[..., None]
    curve[..., ~positive] = 0
    if not np.isfinite(curve).all():  # an overflowing exp: the largest float
        np.nan_to_num(curve, copy=False)
    return curve


def _polynomial(
    window: np.ndarray, xs: np.ndarray, x: np.ndarray, order: int, dtype: Any
) -> np.ndarray:
    """Least-squares polynomials on the range (its last channel excluded,
    as HyperSpy slices), all spectra at once."""
    lanes = window.reshape(-1, window.shape[-1])
    coeffs = np.polynomial.polynomial.polyfit(xs[:-1], lanes.T, int(order))
    curve: np.ndarray = np.polynomial.polynomial.polyval(x, coeffs)
    return curve.astype(dtype, copy=False).reshape(*window.shape[:-1], x.size)


def _offset(
    window: np.ndarray, xs: np.ndarray, x: np.ndarray, order: int, dtype: Any
) -> np.ndarray:
    mean = window.mean(axis=-1, keepdims=True).astype(dtype)
    return np.broadcast_to(mean, (*window.shape[:-1], x.size))


def _exponential(
    window: np.ndarray, xs: np.ndarray, x: np.ndarray, order: int, dtype: Any
) -> np.ndarray:
    """``A exp(-x / tau)`` by a line through the log of the positive values."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(window > 0, window, np.nan))
    xs = xs[:-1]
    ok = np.isfinite(logs)
    n = ok.sum(-1)
    xm = np.where(ok, xs, 0).sum(-1) / n
    ym = np.where(ok, logs, 0).sum(-1) / n
    dx = np.where(ok, xs - xm[..., None], 0)
    slope = (dx * np.where(ok, logs - ym[..., None], 0)).sum(-1) / (dx * dx).sum(-1)
    intercept = ym - slope * xm
    with np.errstate(over="ignore", invalid="ignore"):
        curve = np.exp(intercept[..., None] + slope[..., None] * x)
    out: np.ndarray = np.nan_to_num(curve).astype(dtype, copy=False)
    return out


_BACKGROUND_FITS: dict[str, Callable[..., np.ndarray]] = {
    "PowerLaw": _power_law,
    "Polynomial": _polynomial,
    "Offset": _offset,
    "Exponential": _exponential,
}


# --- peaks ------------------------------------------------------------------------


def find_peaks1D(
    da: xr.DataArray,
    height: float | None = None,
    prominence: float | None = None,
    distance: float | None = None,
    width: float | None = None,
    dim: Hashable | None = None,
) -> xr.DataArray:
    """The peaks of every spectrum (:func:`scipy.signal.find_peaks`), as a
    ragged array of their positions in coordinate units.

    Parameters
    ----------
    da : xarray.DataArray
    height, prominence : float, optional
        Minimum height and prominence (data units).
    distance, width : float, optional
        Minimum distance between peaks and minimum width, in coordinate
        units (turned into channels on the uniform coordinate).
    dim : hashable, optional
        Default the one signal dim.

    Returns
    -------
    xarray.DataArray
        Over the other dims, dtype object: each element a float64 array of
        the peak positions of that spectrum, increasing. Lazy when ``da``
        is. scipy finds peaks in one spectrum at a time (its C code takes
        no block), so each block's task calls it per spectrum: about 10 µs
        each, no per-pixel task in the graph.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> e = np.arange(100) * 0.5
    >>> peaks = np.exp(-0.5 * ((e - 10) / 1.0) ** 2) + 2 * np.exp(-0.5 * (e - 30) ** 2)
    >>> da = xr.DataArray(np.stack([peaks, 2 * peaks]), dims=("x", "e"),
    ...                   coords={"e": e})
    >>> found = xsignal.find_peaks1D(da, height=0.5)
    >>> [p.tolist() for p in found.values]
    [[10.0, 30.0], [10.0, 30.0]]
    """
    from scipy.signal import find_peaks

    dim = _check_one_dim(da, dim)
    x = coordinate_values(da, dim)
    peak = {k: v for k, v in (("distance", distance), ("width", width)) if v}
    if peak:  # coordinate units to channels
        step = abs(_uniform_step(da, dim, "find_peaks1D distance and width"))
        peak = {k: max(1.0, v / step) for k, v in peak.items()}

    def block_peaks(block: np.ndarray) -> np.ndarray:
        lanes = np.asarray(block, dtype=np.float64)
        flat = lanes.reshape(-1, lanes.shape[-1])
        out = np.empty(flat.shape[0], dtype=object)
        for i, lane in enumerate(flat):
            where, _ = find_peaks(lane, height=height, prominence=prominence, **peak)
            out[i] = x[where]
        return out.reshape(lanes.shape[:-1])

    out = apply_blocks(block_peaks, da, [dim], {}, object)
    out.attrs = {"long_name": f"peak positions along {dim}"}
    units = da.coords[dim].attrs.get("units") if dim in da.coords else None
    if units:
        out.attrs["units"] = units
    out.name = "peaks"
    return with_marking(out, [])


# --- shifts -----------------------------------------------------------------------


def _upsample(lanes: np.ndarray, factor: int) -> np.ndarray:
    """Every row linearly interpolated at ``factor`` points per channel
    (``(n - 1) * factor + 1`` samples from the first to the last)."""
    n = lanes.shape[-1]
    position = np.arange((n - 1) * factor + 1) / factor
    left = np.minimum(position.astype(np.intp), n - 2)
    frac = position - left
    out: np.ndarray = lanes[..., left] * (1 - frac) + lanes[..., left + 1] * frac
    return out


def _best_lags(rows: np.ndarray, ref: np.ndarray, max_lag: int | None) -> np.ndarray:
    """For every row ``v``, the lag ``t`` maximizing ``sum_n ref[n + t] v[n]``
    (numpy's ``correlate(ref, v, "full")`` argmax, minus ``len - 1``), by FFT
    for all rows at once; ``|t| <= max_lag`` when given."""
    length = rows.shape[-1]
    size = 1 << (2 * length - 1).bit_length()
    spectrum = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(rows, size, axis=-1))
    corr = np.fft.irfft(spectrum, size, axis=-1)
    lags = np.arange(-(length - 1), length)
    values = corr[..., lags % size]
    if max_lag is not None:
        values = np.where(np.abs(lags) <= max_lag, values, -np.inf)
    best: np.ndarray = lags[np.argmax(values, axis=-1)].astype(np.float64)
    return best


def estimate_shift1D(
    da: xr.DataArray,
    start: float | None = None,
    end: float | None = None,
    reference_indices: dict[Hashable, int] | None = None,
    max_shift: float | None = None,
    interpolate: bool = True,
    number_of_interpolation_points: int = 5,
    dim: Hashable | None = None,
) -> xr.DataArray:
    """The shift of every spectrum relative to a reference spectrum, by
    cross-correlation on ``[start, end]`` (HyperSpy's ``estimate_shift1D``).

    Each spectrum's window is linearly interpolated at
    ``number_of_interpolation_points + 1`` points per channel (HyperSpy's
    count), centred, and cross-correlated with the reference's; the lag of
    the maximum, in coordinate units, is the shift: :func:`shift1D` by it
    aligns the spectrum on the reference. All spectra of a block are
    correlated at once by FFT.

    Parameters
    ----------
    da : xarray.DataArray
    start, end : float, optional
        The window in coordinate units; default the whole coordinate.
    reference_indices : dict, optional
        Navigation indices of the reference spectrum, e.g. ``{"y": 0, "x":
        3}``; default the first pixel (HyperSpy's current pixel).
    max_shift : float, optional
        Largest shift looked for, in coordinate units. (HyperSpy 2.5 takes
        the argument but does not apply it.)
    interpolate : bool
        Sub-channel shifts (otherwise whole channels).
    number_of_interpolation_points : int
    dim : hashable, optional
        Default the one signal dim.

    Returns
    -------
    xarray.DataArray
        Over the navigation dims, in coordinate units; lazy when ``da`` is
        (the reference is read in the same graph, not at this call).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> e = np.arange(200) * 0.5
    >>> peak = lambda at: np.exp(-0.5 * ((e - at) / 2.0) ** 2)
    >>> da = xr.DataArray(np.stack([peak(50), peak(51.5), peak(48)]),
    ...                   dims=("x", "e"), coords={"e": e})
    >>> xsignal.estimate_shift1D(da).values
    array([ 0. , -1.5,  2. ])
    >>> aligned = xsignal.align1D(da)
    >>> [float(aligned.isel(x=i).idxmax()) for i in range(3)]
    [50.0, 50.0, 50.0]
    """
    dim = _check_one_dim(da, dim)
    step = _uniform_step(da, dim, "estimate_shift1D")
    x = coordinate_values(da, dim)
    i1 = 0 if start is None else int(np.abs(x - start).argmin())
    i2 = x.size if end is None else int(np.abs(x - end).argmin())
    if i2 - i1 < 2:
        raise ValueError(f"[start, end] holds fewer than 2 channels of {dim!r}")
    factor = int(number_of_interpolation_points) + 1 if interpolate else 1
    nav = [d for d in da.dims if d != dim]
    where = {d: 0 for d in nav}
    where.update(reference_indices or {})
    ref = da.isel({d: i for d, i in where.items() if d in nav}, drop=True)
    max_lag = None if max_shift is None else int(abs(max_shift) / abs(step) * factor)

    def shifts(block: np.ndarray, reference: np.ndarray) -> np.ndarray:
        window = np.asarray(block[..., i1:i2], dtype=np.float64)
        target = np.asarray(reference[..., i1:i2], dtype=np.float64).reshape(-1)
        if factor > 1:
            window, target = _upsample(window, factor), _upsample(target, factor)
        window = window - window.mean(-1, keepdims=True)
        target = target - target.mean()
        return _best_lags(window, target, max_lag) / factor * step

    out = apply_blocks(shifts, da, [dim], {}, np.float64, others=[ref])
    units = da.coords[dim].attrs.get("units") if dim in da.coords else None
    out.attrs = {"long_name": f"shift along {dim}"}
    if units:
        out.attrs["units"] = units
    out.name = "shift"
    return with_marking(out, [])


def shift1D(
    da: xr.DataArray,
    shifts: Any,
    fill_value: float = np.nan,
    crop: bool = False,
    dim: Hashable | None = None,
) -> xr.DataArray:
    """Every spectrum moved by its shift (coordinate units) along ``dim``,
    by linear interpolation: ``new(x) = old(x - shift)`` (HyperSpy's
    ``shift1D``), ``fill_value`` where ``x - shift`` is outside the data.

    Parameters
    ----------
    da : xarray.DataArray
    shifts : float or xarray.DataArray
        One shift, or one per spectrum over (some of) the navigation dims;
        lazy shifts keep the result lazy.
    fill_value : float
    crop : bool
        Keep only the channels that every spectrum still has (HyperSpy's
        default); needs the shifts in memory (compute them first).
    dim : hashable, optional

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(6.0), dims=("e",), coords={"e": np.arange(6.0)})
    >>> xsignal.shift1D(da, 1.5).values
    array([nan, nan, 0.5, 1.5, 2.5, 3.5])
    """
    dim = _check_one_dim(da, dim)
    step = _uniform_step(da, dim, "shift1D")
    moves = _as_shifts(da, dim, shifts)
    if dim in moves.dims:
        raise ValueError(f"shifts must not have the signal dim {dim!r}")
    n = da.sizes[dim]
    dtype = np.result_type(_float_dtype(da), np.float32)

    def move(block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        lanes = block.reshape(-1, n)
        if not lanes.size:
            return np.empty(block.shape, dtype)
        d = np.broadcast_to(np.asarray(offsets, np.float64), block.shape[:-1])
        d = d.reshape(-1) / step  # value k comes from position k - d
        # the same for every channel of a spectrum: the left neighbour
        # k + a and the weight of the right one, frac in [0, 1)
        a = np.floor(-d)
        frac = (-d - a).astype(dtype)
        a = np.clip(np.nan_to_num(a), -n - 1, n).astype(np.intp)
        # each spectrum in a row padded on both sides, so that its two
        # neighbour runs are plain slices of one flat buffer: gathered as
        # whole rows (memory copies), not one index per value
        pad = int(np.abs(a).max()) + 1
        width = n + 2 * pad
        padded = np.zeros((lanes.shape[0], width), dtype)
        padded[:, pad : pad + n] = lanes
        runs = np.lib.stride_tricks.sliding_window_view(padded.reshape(-1), n)
        starts = np.arange(lanes.shape[0]) * width + pad + a
        low: np.ndarray = runs[starts]
        moved: np.ndarray = runs[starts + 1]
        moved -= low
        moved *= frac[:, None]
        moved += low
        k = np.arange(n)
        outside = (k < d[:, None]) | (k > (n - 1) + d[:, None]) | np.isnan(d)[:, None]
        np.copyto(moved, np.asarray(fill_value, dtype), where=outside)
        return moved.reshape(block.shape)

    out = xr.apply_ufunc(
        move,
        whole(da, [dim]),
        moves,
        input_core_dims=[[dim], []],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[dtype],
        keep_attrs=True,
    ).transpose(*da.dims)
    if crop:
        if moves.chunks is not None:
            raise ValueError(
                "crop=True needs the shifts in memory: compute them first "
                "(xsignal.compute(shifts))"
            )
        low, high = float(np.nanmin(moves)), float(np.nanmax(moves))
        first = max(0, int(np.ceil(max(high, 0.0) / step - 1e-9)))
        last = n - max(0, int(np.ceil(max(-low, 0.0) / step - 1e-9)))
        out = out.isel({dim: slice(first, last)})
    result: xr.DataArray = out
    return with_marking(result, signal_dims(da))


def _as_shifts(da: xr.DataArray, dim: Hashable, shifts: Any) -> xr.DataArray:
    """Shifts as a DataArray over (some of) the other dims: a number, an
    array of the other dims' shape (in their order), or a DataArray."""
    if isinstance(shifts, xr.DataArray):
        return shifts
    values = np.asarray(shifts, dtype=np.float64)
    others = [d for d in da.dims if d != dim]
    shape = tuple(da.sizes[d] for d in others)
    if values.ndim == 0:
        return xr.DataArray(values)
    if values.shape != shape:
        raise ValueError(
            f"shifts of shape {values.shape} do not match the other dims "
            f"{tuple(others)} of shape {shape}"
        )
    return xr.DataArray(values, dims=others)


def align1D(
    da: xr.DataArray,
    start: float | None = None,
    end: float | None = None,
    reference_indices: dict[Hashable, int] | None = None,
    max_shift: float | None = None,
    interpolate: bool = True,
    number_of_interpolation_points: int = 5,
    fill_value: float = np.nan,
    dim: Hashable | None = None,
) -> xr.DataArray:
    """Every spectrum aligned on the reference: :func:`shift1D` by the shifts
    of :func:`estimate_shift1D` (HyperSpy's ``align1D``, without its in-place
    cropping: the channels a shift leaves empty are ``fill_value``). Lazy
    when ``da`` is: the shifts and the shifted data are one graph."""
    shifts = estimate_shift1D(
        da,
        start,
        end,
        reference_indices,
        max_shift,
        interpolate,
        number_of_interpolation_points,
        dim,
    )
    return shift1D(da, shifts, fill_value, dim=dim)
