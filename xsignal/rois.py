"""Regions of interest: crop to the bounding box, NaN outside the shape.

A pixel belongs to an ROI when its coordinate, taken as the pixel's centre,
lies inside the shape, edges included: ``left <= x <= right`` and
``top <= y <= bottom`` for :class:`RectangularROI`, ``r_inner <= distance <=
r`` for :class:`CircleROI`. Arrays without a coordinate on a dim use the
index positions ``0, 1, 2, ...``.

How this differs from HyperSpy: HyperSpy's ``CircleROI`` measures the
distance from a centre moved by (just over) half a pixel,
``cx + 0.5 * scale``, to the axis values, so its disc is shifted half a
pixel along each axis relative to ours. For the same ``(cx, cy, r)`` the two
masks can therefore differ by a ring (a crescent) of pixels at the edge of
the circle. Here the centre given is the centre used, which makes the mask
symmetric about ``(cx, cy)`` when that is a pixel centre.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import xarray as xr

from .dims import (
    _check_dataarray,
    check_dims,
    navigation_dims,
    signal_dims,
    with_marking,
)

__all__ = ["CircleROI", "RectangularROI", "roi"]


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return float(value)


class _ROI:
    """Shared behaviour: calling an ROI applies it with :func:`xsignal.roi`."""

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``((x_min, x_max), (y_min, y_max))`` of the shape, in coordinate units."""
        raise NotImplementedError

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where the point ``(x, y)`` is inside the shape (edges included)."""
        raise NotImplementedError

    def __call__(self, da: xr.DataArray, dims: Any = None) -> xr.DataArray:
        """Apply this ROI to ``da``: see :func:`xsignal.roi`."""
        # the two shapes below are the only ROIs (_ROI is their private base)
        return roi(da, cast("RectangularROI | CircleROI", self), dims=dims)


@dataclass(frozen=True)
class RectangularROI(_ROI):
    """A rectangle ``left <= x <= right``, ``top <= y <= bottom``.

    In coordinate units of the two dims it is applied to: ``left``/``right``
    along the x dim, ``top``/``bottom`` along the y dim (see
    :func:`xsignal.roi`). ``top`` is the smaller ``y`` value, as in an image
    whose rows go down.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(20.0).reshape(4, 5), dims=("y", "x"))
    >>> xsignal.RectangularROI(left=1, top=1, right=2, bottom=2)(da).values
    array([[ 6.,  7.],
           [11., 12.]])
    """

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self) -> None:
        for name in ("left", "top", "right", "bottom"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if self.left > self.right:
            raise ValueError(f"left {self.left} is greater than right {self.right}")
        if self.top > self.bottom:
            raise ValueError(f"top {self.top} is greater than bottom {self.bottom}")

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (self.left, self.right), (self.top, self.bottom)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (
            (x >= self.left) & (x <= self.right) & (y >= self.top) & (y <= self.bottom)
        )


@dataclass(frozen=True)
class CircleROI(_ROI):
    """A disc of radius ``r`` about ``(cx, cy)``, or a ring when ``r_inner > 0``.

    A pixel belongs when the distance ``d`` from ``(cx, cy)`` to its
    coordinate satisfies ``r_inner <= d <= r`` (both edges included; with
    ``r_inner=0`` the centre pixel is always in).

    Notes
    -----
    HyperSpy's ``CircleROI`` measures distances from a centre moved by about
    half a pixel (``cx + 0.5 * scale``, ``cy + 0.5 * scale``), so for the
    same numbers its disc is shifted half a pixel along each axis from this
    one, and the two masks can differ by a ring of edge pixels. Here the
    centre given is the centre used.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.ones((5, 5), "int16"), dims=("y", "x"))
    >>> xsignal.CircleROI(cx=2, cy=2, r=1)(da).values
    array([[nan,  1., nan],
           [ 1.,  1.,  1.],
           [nan,  1., nan]], dtype=float32)
    >>> xsignal.CircleROI(cx=2, cy=2, r=1, r_inner=0.5)(da).values
    array([[nan,  1., nan],
           [ 1., nan,  1.],
           [nan,  1., nan]], dtype=float32)
    """

    cx: float
    cy: float
    r: float
    r_inner: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cx", "cy", "r", "r_inner"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if self.r <= 0:
            raise ValueError(f"r must be positive, not {self.r}")
        if not 0 <= self.r_inner < self.r:
            raise ValueError(
                f"r_inner must be at least 0 and less than r={self.r}, "
                f"not {self.r_inner}"
            )

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (self.cx - self.r, self.cx + self.r), (
            self.cy - self.r,
            self.cy + self.r,
        )

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d2 = (x - self.cx) ** 2 + (y - self.cy) ** 2
        return (d2 <= self.r**2) & (d2 >= self.r_inner**2)


def _roi_dims(da: xr.DataArray, dims: Any) -> tuple[Hashable, Hashable]:
    """(x_dim, y_dim) from ``dims``: None or "navigation" (the last two
    navigation dims, the last one as x), "signal" (the same of the signal
    dims), ``{"x": x_dim, "y": y_dim}`` or ``(x_dim, y_dim)``."""
    if dims is None or (isinstance(dims, str) and dims in ("navigation", "signal")):
        kind = dims or "navigation"
        pool = navigation_dims(da) if kind == "navigation" else signal_dims(da)
        if dims is None and len(pool) < 2 and da.ndim == 2:
            return da.dims[1], da.dims[0]  # a plain image: its own two dims
        if len(pool) < 2:
            raise ValueError(
                f"an ROI needs two dims and the array has {len(pool)} {kind} "
                f"dim(s) {pool}; pass dims=(x_dim, y_dim)"
            )
        return pool[-1], pool[-2]
    if isinstance(dims, Mapping):
        if set(dims) != {"x", "y"}:
            raise ValueError(
                f"dims as a dict maps 'x' and 'y' to dim names, e.g. "
                f"{{'x': 'kx', 'y': 'ky'}}, not {dict(dims)!r}"
            )
        dims = (dims["x"], dims["y"])
    if isinstance(dims, (str, bytes)) or len(dims) != 2:
        raise ValueError(
            "dims must be None, 'navigation', 'signal', {'x': x_dim, 'y': y_dim} "
            f"or (x_dim, y_dim), not {dims!r}"
        )
    x, y = check_dims(da, dims, "ROI dim")
    return x, y


def _positions(da: xr.DataArray, dim: Hashable) -> np.ndarray:
    values = np.asarray(da[dim].values)
    if values.dtype.kind not in "iuf":
        raise TypeError(
            f"the coordinate of {dim!r} has dtype {values.dtype}; an ROI needs "
            "numeric coordinates"
        )
    return values


def _span(
    values: np.ndarray, lo: float, hi: float, dim: Hashable, shape: _ROI
) -> np.ndarray:
    """Indices of the coordinates in ``[lo, hi]`` (any ordering of the axis)."""
    (inside,) = np.nonzero((values >= lo) & (values <= hi))
    if inside.size == 0:
        vmin, vmax = np.nanmin(values), np.nanmax(values)
        where = "outside the data" if hi < vmin or lo > vmax else "between pixels"
        raise ValueError(
            f"{shape} is {where}: it spans [{lo:g}, {hi:g}] along {dim!r}, "
            f"whose coordinates span [{vmin:g}, {vmax:g}] and none is inside; "
            "it contains no pixel centre"
        )
    return inside


def roi(
    da: xr.DataArray,
    roi: RectangularROI | CircleROI,
    dims: Any = None,
) -> xr.DataArray:
    """Crop ``da`` to the bounding box of ``roi`` and set outside pixels to NaN.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy; lazy input gives lazy output (the mask is built
        from the coordinates, which are in memory, and applied with
        ``where``: no data is read).
    roi : RectangularROI or CircleROI
        In coordinate units of ``dims``.
    dims : None, "navigation", "signal", dict or (x_dim, y_dim)
        The dims that ``cx``/``left, right`` (x) and ``cy``/``top, bottom``
        (y) refer to. ``None`` or ``"navigation"``: the last two navigation
        dims, the **last one as x** (the image's columns, as HyperSpy draws
        it; a 2-D array with fewer navigation dims, such as an unmarked
        image, uses its two dims). ``"signal"``: the last two signal dims
        the same way, a virtual detector on 4D-STEM data. Or name them:
        ``{"x": "kx", "y": "ky"}`` or the tuple ``("kx", "ky")``, x first.

    Returns
    -------
    xarray.DataArray
        The smallest index range of each ROI dim holding every member pixel
        (coordinates descending or ascending alike), with NaN at the
        non-member pixels. Integer and boolean data become floating point
        (float32 for 8- and 16-bit integers, float64 above, as xarray's
        ``where`` promotes). Other dims, coords, attrs, signal marking and
        chunks of the untouched dims are kept. Then the nan-reductions give
        the ROI's statistics, e.g. ``xsignal.nanmean(out, [y, x])``.

    Raises
    ------
    ValueError
        If the ROI lies outside the data or contains no pixel centre, or the
        dims are not two dims of ``da``.
    TypeError
        If ``roi`` is not an ROI or a coordinate is not numeric.

    Examples
    --------
    A virtual annular detector over the signal dims of 4D data:

    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.ones((2, 3, 7, 7)), dims=("y", "x", "ky", "kx"))
    >>> da = xsignal.set_signal_dims(da, "ky", "kx")
    >>> ring = xsignal.CircleROI(cx=3, cy=3, r=2, r_inner=1)
    >>> image = xsignal.nansum(da.signal.roi(ring, dims="signal"), "signal")
    >>> image.values
    array([[12., 12., 12.],
           [12., 12., 12.]])
    >>> same = da.signal.roi(ring, dims={"x": "kx", "y": "ky"})
    """
    _check_dataarray(da)
    if not isinstance(roi, _ROI):
        raise TypeError(
            f"roi must be a CircleROI or RectangularROI, not {type(roi).__name__}"
        )
    xdim, ydim = _roi_dims(da, dims)
    if xdim == ydim:
        raise ValueError(f"the two ROI dims must differ, got {xdim!r} twice")
    (xlo, xhi), (ylo, yhi) = roi.bounds()
    x, y = _positions(da, xdim), _positions(da, ydim)
    xi = _span(x, xlo, xhi, xdim, roi)
    yi = _span(y, ylo, yhi, ydim, roi)
    # membership on the pixels of the bounding box (coords only, no data)
    box = roi.contains(x[xi][np.newaxis, :], y[yi][:, np.newaxis])
    if not box.any():
        raise ValueError(f"{roi} contains no pixel centre of ({xdim!r}, {ydim!r})")
    # crop to the smallest index ranges holding every member pixel
    rows, cols = yi[box.any(axis=1)], xi[box.any(axis=0)]
    ys = slice(int(rows.min()), int(rows.max()) + 1)
    xs = slice(int(cols.min()), int(cols.max()) + 1)
    out = da.isel({xdim: xs, ydim: ys})
    mask = roi.contains(x[xs][np.newaxis, :], y[ys][:, np.newaxis])
    # a numpy mask over the two dims: where() stays lazy on dask data
    mask_da = xr.DataArray(mask, dims=(ydim, xdim))
    masked = out.where(mask_da).transpose(*out.dims)
    masked = masked.copy(deep=False)
    masked.attrs = dict(da.attrs)
    return with_marking(masked, signal_dims(da))
