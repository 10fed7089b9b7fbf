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

from .dims import signal_dims, with_marking
from .reductions import _check_one_dim

__all__ = [
    "derivative",
    "estimate_poissonian_noise_variance",
    "find_peaks1D",
    "gaussian_filter",
    "integrate1D",
    "integrate_simpson",
    "remove_background",
    "smooth_savitzky_golay",
]

# FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _one_chunk(da: xr.DataArray, dim: Hashable) -> xr.DataArray:
    """``da`` with ``dim`` in one chunk (lazy arrays only)."""
    if da.chunks is None:
        return da
    return da.chunk({dim: -1}) if len(da.chunksizes[dim]) > 1 else da


def _axis(da: xr.DataArray, dim: Hashable) -> np.ndarray:
    """The coordinate of ``dim`` as float64 (the index without one)."""
    if dim in da.coords and da.coords[dim].dtype.kind in "iuf":
        return np.asarray(da.coords[dim].values, dtype=np.float64)
    return np.arange(da.sizes[dim], dtype=np.float64)


def _uniform_step(da: xr.DataArray, dim: Hashable, tool: str) -> float:
    """The step of a uniform coordinate; a clear error otherwise."""
    x = _axis(da, dim)
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
    """``fn`` applied to whole blocks along ``dim`` (last axis), same shape."""
    out = xr.apply_ufunc(
        fn,
        _one_chunk(da, dim),
        input_core_dims=[[dim]],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[dtype],
        keep_attrs=True,
    )
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
        marking of the dims that remain.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> x = np.linspace(0.0, np.pi, 101)
    >>> da = xr.DataArray(np.sin(x)[None, :] * [[1.0], [2.0]], dims=("y", "e"),
    ...                   coords={"e": x})
    >>> np.round(xsignal.integrate_simpson(da).values, 6)
    array([2., 4.])
    """
    from scipy.integrate import simpson

    dim = _check_one_dim(da, dim)
    x = _axis(da, dim)
    dtype = _float_dtype(da)
    out = xr.apply_ufunc(
        lambda block: simpson(block, x=x, axis=-1).astype(dtype, copy=False),
        _one_chunk(da, dim),
        input_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[dtype],
        keep_attrs=True,
    )
    return with_marking(out, signal_dims(da))


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
    x = _axis(da, dim)

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
    x = _axis(da, dim)
    lo, hi = _range_indices(x, signal_range, dim)
    dtype = np.result_type(_float_dtype(da), np.float32)
    fit = _BACKGROUND_FITS[background_type]

    def background(block: np.ndarray) -> np.ndarray:
        values = np.asarray(block, dtype=np.float64)
        curve = fit(values, x, lo, hi, polynomial_order)
        return curve.astype(dtype, copy=False)

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


def _power_law(
    values: np.ndarray, x: np.ndarray, i1: int, i4: int, order: int
) -> np.ndarray:
    """Two-area power law on channels ``i1..i4`` of every spectrum."""
    from scipy.integrate import simpson

    if (i1 + i4) % 2:  # an even sum splits the channels at a channel
        i4 -= 1
    i2 = (i1 + i4) // 2
    x1, x2, x4 = x[i1], x[i2], x[i4]
    with np.errstate(divide="ignore", invalid="ignore"):
        area1 = simpson(values[..., i1:i2], x=x[i1:i2], axis=-1)
        area2 = simpson(values[..., i2:i4], x=x[i2:i4], axis=-1)
        ratio = area1 / area2 * (x4 - x2) / (x2 - x1)
        r = 2.0 * np.log(ratio) / np.log(x4 * x2 / (x2 * x1))
        k = 1.0 - r
        amp1 = k * area1 / (x2**k - x1**k)
        amp2 = k * area2 / (x4**k - x2**k)
        amp = (amp1 * area1 + amp2 * area2) / (area1 + area2)
        r, amp = np.nan_to_num(r), np.nan_to_num(amp)
        curve = amp[..., None] * np.where(x > 0, x, np.nan) ** -r[..., None]
    out: np.ndarray = np.nan_to_num(curve)
    return out


def _polynomial(
    values: np.ndarray, x: np.ndarray, lo: int, hi: int, order: int
) -> np.ndarray:
    """Least-squares polynomials on channels ``lo..hi``, all spectra at once."""
    lanes = values.reshape(-1, values.shape[-1])
    coeffs = np.polynomial.polynomial.polyfit(
        x[lo : hi + 1], lanes[:, lo : hi + 1].T, int(order)
    )
    curve: np.ndarray = np.polynomial.polynomial.polyval(x, coeffs)
    return curve.reshape(values.shape)


def _offset(values: np.ndarray, x: np.ndarray, lo: int, hi: int, order: int) -> Any:
    mean = values[..., lo : hi + 1].mean(axis=-1, keepdims=True)
    return np.broadcast_to(mean, values.shape)


def _exponential(
    values: np.ndarray, x: np.ndarray, lo: int, hi: int, order: int
) -> np.ndarray:
    """``A exp(-x / tau)`` by a line through the log of the positive values."""
    window = values[..., lo : hi + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(window > 0, window, np.nan))
    xs = x[lo : hi + 1]
    ok = np.isfinite(logs)
    n = ok.sum(-1)
    xm = np.where(ok, xs, 0).sum(-1) / n
    ym = np.where(ok, logs, 0).sum(-1) / n
    dx = np.where(ok, xs - xm[..., None], 0)
    slope = (dx * np.where(ok, logs - ym[..., None], 0)).sum(-1) / (dx * dx).sum(-1)
    intercept = ym - slope * xm
    with np.errstate(over="ignore", invalid="ignore"):
        curve = np.exp(intercept[..., None] + slope[..., None] * x)
    out: np.ndarray = np.nan_to_num(curve)
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
    x = _axis(da, dim)
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

    data = _one_chunk(da, dim)
    out = xr.apply_ufunc(
        block_peaks,
        data,
        input_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[object],
    )
    out.attrs = {"long_name": f"peak positions along {dim}"}
    units = da.coords[dim].attrs.get("units") if dim in da.coords else None
    if units:
        out.attrs["units"] = units
    out.name = "peaks"
    return with_marking(out, [])
