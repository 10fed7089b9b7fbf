"""Tools over the two signal dims of image stacks and diffraction frames:
peaks, shifts between frames, alignment.

Each works on whole blocks of frames at once (numpy FFTs over the last two
axes, scipy.ndimage filters with a footprint in the frame only), so a lazy
array stays lazy and no Python runs per frame, except the blob detectors
of scikit-image (``find_peaks2D(method="laplacian_of_gaussian")``), which
take one image at a time.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .chunks import apply_blocks, whole
from .dims import (
    _check_dataarray,
    coordinate_values,
    navigation_dims,
    signal_dims,
    with_marking,
)

__all__ = ["align2D", "estimate_shift2D", "find_peaks2D"]

PEAK_METHODS = ("local_max", "laplacian_of_gaussian", "difference_of_gaussian")


def _frame_dims(da: xr.DataArray) -> tuple[Hashable, Hashable]:
    _check_dataarray(da)
    sig = signal_dims(da)
    if len(sig) != 2:
        raise ValueError(
            f"image tools need two signal dims and the array has {len(sig)} {sig}"
        )
    return sig[0], sig[1]


# --- peaks ------------------------------------------------------------------------


def find_peaks2D(
    da: xr.DataArray,
    method: str = "local_max",
    min_distance: int = 1,
    threshold_abs: float | None = None,
    threshold_rel: float | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """The peaks of every frame, as a ragged array of (y, x) positions in
    coordinate units (pyxem's ``find_peaks``).

    Parameters
    ----------
    da : xarray.DataArray
        Frames over two signal dims.
    method : str
        ``"local_max"``: pixels equal to the maximum of their
        ``(2 * min_distance + 1)``-square neighbourhood, strictly above
        ``threshold_abs`` (default the frame's minimum) and
        ``threshold_rel`` times the frame's maximum, not within
        ``min_distance`` of an edge, and no two closer than
        ``min_distance`` (scikit-image's ``peak_local_max`` rule, as
        pyxem uses it; the filters run on all frames of a block at once
        with :func:`scipy.ndimage.maximum_filter`). ``"laplacian_of_gaussian"`` and
        ``"difference_of_gaussian"``: scikit-image's ``blob_log`` and
        ``blob_dog`` per frame (``**kwargs`` passed on; needs
        scikit-image).
    min_distance : int
    threshold_abs, threshold_rel : float, optional

    Returns
    -------
    xarray.DataArray
        Over the navigation dims, dtype object: each element an array of
        shape (n_peaks, 2), the (y, x) coordinates of the peaks, sorted.
        Lazy when ``da`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> frames = np.zeros((2, 7, 7)); frames[0, 2, 3] = frames[1, 4, 2] = 1.0
    >>> da = xr.DataArray(frames, dims=("t", "ky", "kx"))
    >>> da = da.signal.set_signal_dims("ky", "kx")
    >>> [p.tolist() for p in xsignal.find_peaks2D(da, threshold_abs=0.5).values]
    [[[2.0, 3.0]], [[4.0, 2.0]]]
    """
    ydim, xdim = _frame_dims(da)
    if method not in PEAK_METHODS:
        raise ValueError(f"method must be one of {PEAK_METHODS}, not {method!r}")
    y, x = coordinate_values(da, ydim), coordinate_values(da, xdim)

    def block_peaks(block: np.ndarray) -> np.ndarray:
        frames = np.asarray(block, dtype=np.float64)
        flat = frames.reshape(-1, *frames.shape[-2:])
        if method == "local_max":
            found = _local_maxima(flat, min_distance, threshold_abs, threshold_rel)
        else:
            found = [_blobs(f, method, kwargs) for f in flat]
        out = np.empty(len(found), dtype=object)
        for i, where in enumerate(found):
            out[i] = np.stack([y[where[:, 0]], x[where[:, 1]]], axis=-1)
        return out.reshape(frames.shape[:-2])

    out = apply_blocks(block_peaks, da, (ydim, xdim), {}, object)
    out.attrs = {"long_name": f"peak positions ({ydim}, {xdim})"}
    out.name = "peaks"
    return with_marking(out, [])


def _local_maxima(
    frames: np.ndarray,
    min_distance: int,
    threshold_abs: float | None,
    threshold_rel: float | None,
) -> list[np.ndarray]:
    """(row, col) of the local maxima of every frame, scikit-image's
    ``peak_local_max`` rule, the filters run on all frames at once."""
    from scipy.ndimage import convolve, maximum_filter

    md = int(min_distance)
    size = 2 * md + 1
    peak = frames == maximum_filter(frames, size=(1, size, size), mode="nearest")
    floor = frames.min(axis=(1, 2))  # skimage's default absolute threshold
    if threshold_abs is not None:
        floor = np.full(frames.shape[0], float(threshold_abs))
    if threshold_rel is not None:
        floor = np.maximum(floor, threshold_rel * frames.max(axis=(1, 2)))
    peak &= frames > floor[:, None, None]
    if md > 0:  # skimage's exclude_border=True: no peak within md of an edge
        peak[:, :md] = peak[:, -md:] = False
        peak[:, :, :md] = peak[:, :, -md:] = False
    # equal neighbours (plateaus) all pass the filter: where two candidates
    # are closer than min_distance, keep skimage's choice, frame by frame
    crowded = np.zeros(frames.shape[0], dtype=bool)
    if md > 1:
        near = np.ones((1, 2 * md - 1, 2 * md - 1))
        crowded = convolve(peak.astype(np.int32), near, mode="constant") > 1
        crowded = (crowded & peak).any(axis=(1, 2))
    index, rows, cols = np.nonzero(peak)
    cuts = np.searchsorted(index, np.arange(1, frames.shape[0]))
    found = np.split(np.stack([rows, cols], axis=-1), cuts)
    for i in np.nonzero(crowded)[0]:
        found[i] = _spaced(found[i], frames[i], md)
    return found


def _spaced(where: np.ndarray, frame: np.ndarray, md: int) -> np.ndarray:
    """The peaks kept when each, from the highest (ties in raster order),
    removes the later ones closer than ``md`` (Chebyshev distance)."""
    order = np.argsort(-frame[where[:, 0], where[:, 1]], kind="stable")
    kept: list[np.ndarray] = []
    for point in where[order]:
        if all(np.abs(point - other).max() >= md for other in kept):
            kept.append(point)
    out = np.array(kept).reshape(-1, 2)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _blobs(frame: np.ndarray, method: str, kwargs: dict[str, Any]) -> np.ndarray:
    try:
        from skimage import feature
    except ImportError as err:
        raise ImportError(
            f"find_peaks2D(method={method!r}) needs scikit-image: pip install "
            "scikit-image"
        ) from err
    detect: Any = (
        feature.blob_log if method == "laplacian_of_gaussian" else feature.blob_dog
    )
    blobs: np.ndarray = detect(frame, **kwargs)
    found: np.ndarray = np.round(blobs[:, :2]).astype(np.intp)
    return found[np.lexsort((found[:, 1], found[:, 0]))]


# --- shifts between frames -----------------------------------------------------------


def _upsampled_dft(
    spectrum: np.ndarray, size: int, factor: int, offsets: np.ndarray
) -> np.ndarray:
    """The cross-power ``spectrum`` (frames, h, w) inverse-transformed on a
    ``size`` x ``size`` grid ``factor`` times finer, starting at ``offsets``
    (frames, 2) in upsampled pixels (Guizar-Sicairos et al. 2008): two
    batched matrix products per frame instead of a full upsampled FFT."""
    frames, h, w = spectrum.shape
    fy = np.fft.ifftshift(np.arange(h)) - h // 2
    fx = np.fft.ifftshift(np.arange(w)) - w // 2
    grid = np.arange(size)
    rows = np.exp(
        2j
        * np.pi
        / (h * factor)
        * (grid[None, :, None] - offsets[:, 0, None, None])
        * fy[None, None, :]
    )
    cols = np.exp(
        2j
        * np.pi
        / (w * factor)
        * fx[None, :, None]
        * (grid[None, None, :] - offsets[:, 1, None, None])
    )
    out: np.ndarray = rows @ spectrum @ cols
    return out


def _phase_shifts(
    frames: np.ndarray, references: np.ndarray, factor: int
) -> np.ndarray:
    """(dy, dx) moving every frame (frames, h, w) onto its reference (one
    frame, or one per frame), by phase correlation (the cross-power
    spectrum normalized to unit magnitude), refined ``factor`` times
    finer."""
    h, w = frames.shape[-2:]
    spectrum = np.fft.fft2(references) * np.conj(np.fft.fft2(frames))
    spectrum /= np.maximum(np.abs(spectrum), np.finfo(np.float64).tiny)  # phase only
    corr = np.abs(np.fft.ifft2(spectrum))
    flat = corr.reshape(corr.shape[0], -1).argmax(axis=1)
    peak = np.stack(np.unravel_index(flat, (h, w)), axis=-1).astype(np.float64)
    size = np.array([h, w], dtype=np.float64)
    shifts: np.ndarray = np.where(peak > size // 2, peak - size, peak)
    if factor > 1:
        shifts = np.round(shifts * factor) / factor
        window = int(np.ceil(factor * 1.5))
        centre = np.fix(window / 2.0)
        offsets = centre - shifts * factor
        fine = np.abs(_upsampled_dft(spectrum, window, factor, offsets))
        best = fine.reshape(fine.shape[0], -1).argmax(axis=1)
        where = np.stack(np.unravel_index(best, (window, window)), axis=-1)
        shifts = shifts + (where - centre) / factor
    return shifts


def estimate_shift2D(
    da: xr.DataArray,
    reference: str = "current",
    sub_pixel_factor: int = 1,
    reference_indices: dict[Hashable, int] | None = None,
) -> xr.DataArray:
    """The displacement of every frame from a reference frame, in pixels
    (HyperSpy's ``estimate_shift2D`` sign: a feature at ``p`` in the
    reference is at ``p + shift`` in the frame): phase correlation by FFT
    for all frames of a block at once, refined to ``1 / sub_pixel_factor``
    of a pixel by an upsampled DFT around the peak (Guizar-Sicairos,
    Thurman and Fienup 2008). HyperSpy's default filters (Sobel, median,
    Hanning) and plain correlation are left out: phase correlation finds
    the shifts of small frames exactly where they miss by a pixel.

    Parameters
    ----------
    da : xarray.DataArray
        An image stack (navigation dims, two signal dims).
    reference : str
        ``"current"``: against one frame (HyperSpy's current frame, here
        ``reference_indices``, default the first); ``"cascade"``: each
        frame against the one before along the last navigation dim, the
        shifts summed (for drifting series).
    sub_pixel_factor : int
    reference_indices : dict, optional

    Returns
    -------
    xarray.DataArray
        Dims navigation + ``vector`` (``"y"``, ``"x"``), in pixels; lazy
        when ``da`` is. :func:`align2D` applies them.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> yy, xx = np.mgrid[:32, :32]
    >>> blob = lambda y, x: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    >>> stack = xr.DataArray(np.stack([blob(16, 16), blob(19, 14)]),
    ...                      dims=("t", "y", "x")).signal.set_signal_dims("y", "x")
    >>> xsignal.estimate_shift2D(stack).values
    array([[ 0.,  0.],
           [ 3., -2.]])
    """
    ydim, xdim = _frame_dims(da)
    if reference not in ("current", "cascade"):
        raise ValueError(f"reference must be 'current' or 'cascade', not {reference!r}")
    factor = int(sub_pixel_factor)
    if factor < 1:
        raise ValueError(
            f"sub_pixel_factor must be at least 1, not {sub_pixel_factor!r}"
        )
    nav = navigation_dims(da)
    data = whole(da, (ydim, xdim)).astype(np.float64)
    if reference == "current":
        where = {d: 0 for d in nav}
        where.update(reference_indices or {})
        ref = data.isel({d: i for d, i in where.items() if d in nav}, drop=True)
    else:
        if not nav:
            raise ValueError("reference='cascade' needs a navigation dim")
        # each frame against the one before (the first against itself)
        first = data.isel({nav[-1]: 0}, drop=True)
        ref = data.shift({nav[-1]: 1}).fillna(first)

    def shifts(block: np.ndarray, refs: np.ndarray) -> np.ndarray:
        frames = block.reshape(-1, *block.shape[-2:])
        if refs.ndim > 2 and refs.shape[:-2] == block.shape[:-2]:
            refs = refs.reshape(frames.shape)  # one reference per frame
        else:
            refs = refs.reshape(-1, *refs.shape[-2:])[:1]
        moves = _phase_shifts(frames, refs, factor)
        return 0.0 - moves.reshape(*block.shape[:-2], 2)  # the displacement

    out = apply_blocks(
        shifts, data, (ydim, xdim), {"vector": 2}, np.float64, others=[ref]
    )
    if reference == "cascade":
        out = out.cumsum((nav[-1],))
    out = out.assign_coords(vector=["y", "x"])
    out.attrs = {"long_name": "shift", "units": "px"}
    out.name = "shift"
    return with_marking(out, ["vector"])


def align2D(
    da: xr.DataArray,
    shifts: xr.DataArray | None = None,
    fill_value: float = np.nan,
    **kwargs: Any,
) -> xr.DataArray:
    """Every frame moved back by its displacement ``shifts`` (pixels, from
    :func:`estimate_shift2D` unless given, ``**kwargs`` passed to it), by
    bilinear interpolation for all frames of a block at once (HyperSpy's
    ``align2D(crop=False)``: ``scipy.ndimage.shift(frame, -shift,
    order=1, cval=fill_value)`` per frame); ``fill_value`` where a frame
    has no data. Lazy when ``da`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> yy, xx = np.mgrid[:32, :32]
    >>> blob = lambda y, x: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    >>> stack = xr.DataArray(np.stack([blob(16, 16), blob(19, 14)]),
    ...                      dims=("t", "y", "x")).signal.set_signal_dims("y", "x")
    >>> aligned = xsignal.align2D(stack)
    >>> [np.unravel_index(int(np.nanargmax(f)), f.shape) for f in aligned.values]
    [(np.int64(16), np.int64(16)), (np.int64(16), np.int64(16))]
    """
    ydim, xdim = _frame_dims(da)
    if shifts is None:
        shifts = estimate_shift2D(da, **kwargs)
    dtype = np.result_type(da.dtype if da.dtype.kind == "f" else np.float64, np.float32)
    h, w = da.sizes[ydim], da.sizes[xdim]

    def move(block: np.ndarray, by: np.ndarray) -> np.ndarray:
        frames = np.asarray(block, dtype=dtype)
        offsets = -np.broadcast_to(by, (*frames.shape[:-2], 2))  # back
        sy = -offsets[..., 0, None, None] + np.arange(h)[:, None]
        sx = -offsets[..., 1, None, None] + np.arange(w)[None, :]
        y0, x0 = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
        fy, fx = sy - y0, sx - x0
        inside = (sy >= 0) & (sy <= h - 1) & (sx >= 0) & (sx <= w - 1)
        y0c, x0c = np.clip(y0, 0, h - 1), np.clip(x0, 0, w - 1)
        y1c, x1c = np.clip(y0 + 1, 0, h - 1), np.clip(x0 + 1, 0, w - 1)
        lead: np.ndarray = np.indices(frames.shape[:-2])
        index = tuple(i[..., None, None] for i in lead)

        def at(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            picked: np.ndarray = frames[(*index, rows, cols)]
            return picked

        top = at(y0c, x0c) * (1 - fx) + at(y0c, x1c) * fx
        bottom = at(y1c, x0c) * (1 - fx) + at(y1c, x1c) * fx
        moved = top * (1 - fy) + bottom * fy
        return np.where(inside, moved, fill_value).astype(dtype, copy=False)

    out = xr.apply_ufunc(
        move,
        whole(da, (ydim, xdim)),
        shifts,
        input_core_dims=[[ydim, xdim], ["vector"]],
        output_core_dims=[[ydim, xdim]],
        dask="parallelized",
        output_dtypes=[dtype],
        keep_attrs=True,
    ).transpose(*da.dims)
    result: xr.DataArray = out
    return with_marking(result, signal_dims(da))
