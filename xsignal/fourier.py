"""Fourier transforms over the signal dims, with frequency coordinates.

:func:`fft` transforms every signal of a block at once
(:func:`numpy.fft.fftn` over the signal axes; the signal dims made one
chunk), so a lazy array stays lazy and no Python runs per pixel. The
signal dims keep their names, as HyperSpy keeps its axes: their
coordinates become frequencies, ``numpy.fft.fftfreq(n, step)`` (centred on
zero with ``shift=True``), in inverse units (``"1/eV"``). :func:`ifft`
undoes it, the original coordinates restored from what :func:`fft` kept in
the frequency coordinates' attrs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .chunks import whole
from .dims import _check_dataarray, signal_dims, with_marking

__all__ = ["fft", "ifft"]

# attrs of a frequency coordinate: the original coordinate's start and step
_START, _STEP, _SHIFTED = "fft_start", "fft_step", "fft_shifted"


def _signal(da: xr.DataArray) -> tuple[Hashable, ...]:
    _check_dataarray(da)
    sig = signal_dims(da)
    if not sig:
        raise ValueError("the array has no signal dims to transform")
    return sig


def _step(da: xr.DataArray, dim: Hashable) -> tuple[float, float]:
    """(start, step) of a uniform coordinate (0, 1 without one)."""
    if dim not in da.coords or da.coords[dim].dtype.kind not in "iuf":
        return 0.0, 1.0
    x = np.asarray(da.coords[dim].values, dtype=np.float64)
    if x.size < 2:
        return float(x[0]), 1.0
    steps = np.diff(x)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise NotImplementedError(
            f"a Fourier transform needs a uniform coordinate on {dim!r}"
        )
    return float(x[0]), float(steps[0])


def _transform(
    da: xr.DataArray, sig: tuple[Hashable, ...], fn: Any, dtype: Any
) -> xr.DataArray:
    data = whole(da, sig)
    axes = tuple(range(-len(sig), 0))
    out = xr.apply_ufunc(
        lambda block: fn(block, axes=axes),
        data,
        input_core_dims=[list(sig)],
        output_core_dims=[list(sig)],
        dask="parallelized",
        output_dtypes=[dtype],
        keep_attrs=True,
    )
    result: xr.DataArray = out.transpose(*da.dims)
    return result


def _units(coord: Any) -> str | None:
    units = getattr(coord, "attrs", {}).get("units")
    if not units:
        return None
    text = str(units)
    if text.startswith("1/"):
        return text[2:]
    return f"1/{text}" if text.isidentifier() else f"1/({text})"


def fft(da: xr.DataArray, shift: bool = False) -> xr.DataArray:
    """The discrete Fourier transform over the signal dims (HyperSpy's
    ``fft``), complex, with frequency coordinates.

    Parameters
    ----------
    da : xarray.DataArray
        Lazy or in memory; uniform coordinates on the signal dims.
    shift : bool
        Put the zero frequency in the middle (:func:`numpy.fft.fftshift`).

    Returns
    -------
    xarray.DataArray
        complex128 (complex64 for float32 input); the signal dims keep
        their names, their coordinates the frequencies ``fftfreq(n,
        step)`` in inverse units.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> t = np.arange(8) * 0.5
    >>> wave = xr.DataArray(np.cos(2 * np.pi * 0.25 * t), dims=("t",),
    ...                     coords={"t": ("t", t, {"units": "s"})})
    >>> spectrum = xsignal.fft(wave, shift=True)
    >>> spectrum.t.values, spectrum.t.attrs["units"]
    (array([-1.  , -0.75, -0.5 , -0.25,  0.  ,  0.25,  0.5 ,  0.75]), '1/s')
    >>> np.round(abs(spectrum).values, 6)
    array([0., 0., 0., 4., 0., 4., 0., 0.])
    """
    sig = _signal(da)
    dtype = np.result_type(da.dtype, np.complex64)

    def forward(block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        out = np.fft.fftn(block, axes=axes).astype(dtype, copy=False)
        return np.fft.fftshift(out, axes=axes) if shift else out

    out = _transform(da, sig, forward, dtype)
    for dim in sig:
        start, step = _step(da, dim)
        n = da.sizes[dim]
        freq = np.fft.fftfreq(n, step)
        if shift:
            freq = np.fft.fftshift(freq)
        attrs: dict[str, Any] = {_START: start, _STEP: step, _SHIFTED: int(shift)}
        units = _units(da.coords.get(dim))
        if units:
            attrs["units"] = units
        out = out.assign_coords({dim: (dim, freq, attrs)})
    return with_marking(out, sig)


def ifft(da: xr.DataArray, shift: bool | None = None) -> xr.DataArray:
    """The inverse of :func:`fft` over the signal dims.

    Parameters
    ----------
    da : xarray.DataArray
        A transform, e.g. from :func:`fft`.
    shift : bool, optional
        Whether the zero frequency is in the middle; default what
        :func:`fft` recorded (False without a record).

    Returns
    -------
    xarray.DataArray
        Complex; the original coordinates where :func:`fft` recorded them,
        else ``arange(n) / (n * frequency step)``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> e = 100 + np.arange(6) * 0.5
    >>> da = xr.DataArray(np.arange(6.0), dims=("e",),
    ...                   coords={"e": ("e", e, {"units": "eV"})})
    >>> back = xsignal.ifft(xsignal.fft(da, shift=True))
    >>> np.allclose(back.real, da), back.e.values[:2], back.e.attrs["units"]
    (True, array([100. , 100.5]), 'eV')
    """
    sig = _signal(da)
    coords = {d: da.coords.get(d) for d in sig}
    if shift is None:
        shift = any(
            bool(c.attrs.get(_SHIFTED)) for c in coords.values() if c is not None
        )
    dtype = np.result_type(da.dtype, np.complex64)

    def inverse(block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        if shift:
            block = np.fft.ifftshift(block, axes=axes)
        return np.fft.ifftn(block, axes=axes).astype(dtype, copy=False)

    out = _transform(da, sig, inverse, dtype)
    for dim, coord in coords.items():
        n = da.sizes[dim]
        attrs = dict(coord.attrs) if coord is not None else {}
        if _STEP in attrs:
            start, step = float(attrs[_START]), float(attrs[_STEP])
        else:
            step, start = 1.0, 0.0
            if coord is not None and n > 1:
                freq = np.sort(np.asarray(coord.values, dtype=np.float64))
                step = 1.0 / (n * float(freq[1] - freq[0]))
        new_attrs = {
            k: v for k, v in attrs.items() if k not in (_START, _STEP, _SHIFTED)
        }
        units = _units(coord)
        if units:
            new_attrs["units"] = units
        out = out.assign_coords({dim: (dim, start + step * np.arange(n), new_attrs)})
    return with_marking(out, sig)
