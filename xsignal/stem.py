"""4D-STEM tools over the two signal dims of each frame: virtual detectors,
centre of mass, azimuthal integration.

Each is a weighted sum over the pixels of every frame, so each is one
matrix product per block: the block's frames as rows (frames x pixels)
times a weight matrix (pixels x outputs), the way LiberTEM's
``ApplyMasksUDF`` works. Any number of detectors costs one pass over the
data, and several tools computed together (``xsignal.compute(a, b)``) share
that pass. Integer frames are multiplied in float32 (float64 for 32- and
64-bit integers and float64 data), never first copied to float64, and
sparse weights (annuli) stay sparse.

Positions are in the signal dims' coordinate units, the last signal dim as
x (the image's columns, as :func:`xsignal.roi` with ``dims="signal"``).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .chunks import apply_blocks
from .dims import (
    _check_dataarray,
    coordinate_values,
    navigation_dims,
    signal_dims,
    with_marking,
)
from .rois import _ROI, CircleROI, RectangularROI

# weight matrices up to this many entries (64 MiB of float32) are dense: a
# BLAS product of a block of frames is then about 3x faster than a sparse one
DENSE_WEIGHTS = 2**24

__all__ = [
    "azimuthal_integral1d",
    "center_of_mass",
    "virtual_image",
    "virtual_images",
]


def _frame_dims(da: xr.DataArray) -> tuple[Hashable, Hashable]:
    """(y_dim, x_dim): the last two signal dims."""
    _check_dataarray(da)
    sig = signal_dims(da)
    if len(sig) < 2:
        raise ValueError(
            f"frames need two signal dims and the array has {len(sig)} {sig}; "
            "mark them with set_signal_dims(ky, kx)"
        )
    return sig[-2], sig[-1]


def _grid(da: xr.DataArray) -> tuple[Hashable, Hashable, np.ndarray, np.ndarray]:
    """(y_dim, x_dim, y, x): the frame's pixel centres as 2-D arrays."""
    ydim, xdim = _frame_dims(da)
    y, x = np.meshgrid(
        coordinate_values(da, ydim), coordinate_values(da, xdim), indexing="ij"
    )
    return ydim, xdim, y, x


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype frames are multiplied in."""
    if dtype.kind in "biu" and dtype.itemsize <= 2 or dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _support(weights: Any, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The smallest (rows, columns) window of the frame holding every pixel
    with a weight: the rest of the frame is never converted or multiplied
    (a bright-field disc is a few percent of the frame)."""
    used = np.asarray(
        weights.getnnz(axis=1)
        if hasattr(weights, "tocsr")
        else np.any(weights != 0, axis=1)
    ).reshape(shape)
    rows, cols = np.nonzero(used.any(1))[0], np.nonzero(used.any(0))[0]
    if not rows.size:  # no weight at all (every pixel masked): one pixel
        return slice(0, 1), slice(0, 1)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _FrameProduct:
    """Frames (any leading dims, two trailing pixel dims) times a weight
    matrix, as the rows of one (frames x outputs) array.

    The frames' window of used pixels is converted to the working dtype a
    few frames at a time into a per-thread buffer that stays in the CPU's
    cache, never as one block-sized float copy; a few outputs are one
    matrix-vector product each, over the rows it weights (BLAS's
    matrix-matrix product is several times slower for 2-4 columns). More
    outputs are one matrix product per band of frame rows, each with only
    the outputs weighted in its band (annuli: about half the products of
    one dense matrix). Weights the same on both sides of the window's
    middle row or column (an azimuthal profile about the frame's centre,
    as after centring the direct beam) are folded first: each frame's
    mirrored halves summed, so the product runs over a half or a quarter
    of the pixels.
    """

    BUFFER = 2**20  # values per conversion buffer: 4 MiB of float32
    FEW = 4  # up to this many outputs, one matrix-vector product each
    BAND = 16  # frame rows per band
    _local = threading.local()

    def __init__(self, weights: Any, shape: tuple[int, int], dtype: np.dtype):
        self.window = _support(weights, shape)
        ys, xs = self.window
        inside = (
            np.arange(shape[0])[ys, None] * shape[1] + np.arange(shape[1])[xs]
        ).ravel()
        self.full = inside.size == shape[0] * shape[1]
        self.sparse = hasattr(weights, "tocsr")
        w = weights.tocsr()[inside] if self.sparse else np.asarray(weights)[inside]
        self.dtype = dtype
        self.n_out = w.shape[1]
        self.fold = (0, 0)
        if self.sparse:
            self.w = w.T.tocsr().astype(dtype)  # outputs x pixels
        elif self.n_out <= self.FEW:  # folding costs more than it saves
            self.spans = self._spans(w, xs.stop - xs.start)
        else:
            w = self._folded(w, (ys.stop - ys.start, xs.stop - xs.start))
            self.bands = self._bands(w, self.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the pixels multiplied: the window, folded."""
        ys, xs = self.window
        (rows, columns), (fy, fx) = (ys.stop - ys.start, xs.stop - xs.start), self.fold
        return rows - fy, columns - fx

    @property
    def pixels(self) -> int:
        """Pixels multiplied per frame: the window's, folded."""
        rows, columns = self.shape
        return rows * columns

    def _folded(self, w: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The weights of the pixels left after folding the window along
        each axis it is mirror-symmetric in (sets ``fold``: the rows and
        columns added onto their mirrors)."""
        w3 = w.reshape(*shape, -1)
        fy = shape[0] // 2 if np.array_equal(w3, w3[::-1]) else 0
        fx = shape[1] // 2 if np.array_equal(w3, w3[:, ::-1]) else 0
        self.fold = (fy, fx)
        rows, columns = self.shape
        return w3[:rows, :columns].reshape(self.pixels, -1)

    def _spans(self, w: np.ndarray, width: int) -> list[tuple[slice, np.ndarray]]:
        """(pixels, weights) per output: the rows of the window it weights
        (a disc beside an annulus is not multiplied over the annulus')."""
        spans = []
        for column in w.T:
            rows = np.nonzero(np.any(column.reshape(-1, width) != 0, axis=1))[0]
            if not rows.size:
                rows = np.zeros(1, int)
            pixels = slice(rows[0] * width, (rows[-1] + 1) * width)
            spans.append((pixels, np.ascontiguousarray(column[pixels], self.dtype)))
        return spans

    def _bands(self, w: np.ndarray, width: int) -> list[tuple[slice, slice, Any]]:
        """(pixels, outputs, weights) per band of rows, or one band for all
        when bands would save less than a quarter of the products."""
        bands, cost = [], 0
        for start in range(0, w.shape[0], self.BAND * width):
            pixels = slice(start, min(start + self.BAND * width, w.shape[0]))
            used = np.nonzero(np.any(w[pixels] != 0, axis=0))[0]
            if used.size:
                outs = slice(used[0], used[-1] + 1)
                bands.append((pixels, outs, np.asarray(w[pixels, outs], self.dtype)))
                cost += (pixels.stop - pixels.start) * (outs.stop - outs.start)
        if cost > 0.75 * w.size:
            return [(slice(None), slice(None), np.asarray(w, self.dtype))]
        return bands

    def _multiply(self, frames: np.ndarray, out: np.ndarray) -> None:
        """``out`` (outputs x frames) = weights^T @ frames^T."""
        if self.sparse:
            out[...] = self.w @ frames.T
        elif self.n_out <= self.FEW:
            for j, (pixels, w) in enumerate(self.spans):
                np.matmul(frames[:, pixels], w, out=out[j])
        else:
            rows = out.T  # frames x outputs
            rows[...] = 0
            for pixels, outs, w in self.bands:
                rows[:, outs] += frames[:, pixels] @ w

    def _add_mirrors(self, part: np.ndarray, frames: np.ndarray) -> None:
        """Fold: add onto ``part`` (the window's first rows and columns) the
        pixels mirrored onto them, in the working dtype."""
        fy, fx = self.fold
        rows, columns = self.shape
        if fx:  # column c gets column -1 - c
            np.add(part[..., :fx], frames[:, :rows, ::-1][..., :fx], out=part[..., :fx])
        if fy:  # row r gets row -1 - r
            np.add(part[:, :fy], frames[:, ::-1, :columns][:, :fy], out=part[:, :fy])
        if fy and fx:
            corner = frames[:, ::-1, ::-1][:, :fy, :fx]
            np.add(part[:, :fy, :fx], corner, out=part[:, :fy, :fx])

    def __call__(self, block: np.ndarray) -> np.ndarray:
        frames = block.reshape(-1, *block.shape[-2:])
        n = frames.shape[0]
        out = np.empty((self.n_out, n), self.dtype)
        if self.full and frames.dtype == self.dtype and self.fold == (0, 0):
            self._multiply(frames.reshape(n, -1), out)
            return out.T
        window = frames[(slice(None), *self.window)]
        rows, columns = self.shape
        step = max(1, self.BUFFER // self.pixels)
        buffer = getattr(self._local, "buffer", None)
        if (
            buffer is None
            or buffer.dtype != self.dtype
            or buffer.size < step * self.pixels
        ):
            buffer = np.empty(step * self.pixels, self.dtype)
            self._local.buffer = buffer
        for i in range(0, n, step):
            m = min(step, n - i)
            part = buffer[: m * self.pixels].reshape(m, rows, columns)
            step_frames = window[i : i + m]
            np.copyto(part, step_frames[:, :rows, :columns], casting="unsafe")
            self._add_mirrors(part, step_frames)
            self._multiply(part.reshape(m, -1), out[:, i : i + m])
        return out.T


class _SeparableProduct(_FrameProduct):
    """Weights that are each an outer product over the whole frame, output
    ``j`` = ``rows[j] @ frame @ columns[j]``: one matrix-vector product
    per distinct column vector over the frames' rows, the rest on the
    small row sums (the centre of mass: two passes over the frame, not
    three)."""

    def __init__(
        self,
        rows: np.ndarray,
        columns: np.ndarray,
        shape: tuple[int, int],
        dtype: np.dtype,
    ):
        self.window = (slice(0, shape[0]), slice(0, shape[1]))
        self.fold = (0, 0)
        self.full = True
        self.dtype = dtype
        self.n_out = len(rows)
        self.width = shape[1]
        distinct, self.which = np.unique(columns, axis=0, return_inverse=True)
        self.columns = np.ascontiguousarray(distinct, dtype=dtype)
        self.rows = np.asarray(rows, dtype=dtype)

    def _multiply(self, frames: np.ndarray, out: np.ndarray) -> None:
        lines = frames.reshape(-1, self.width)  # every row of every frame
        sums = [np.matmul(lines, c).reshape(len(frames), -1) for c in self.columns]
        for j, (row, k) in enumerate(zip(self.rows, self.which.ravel())):
            np.matmul(sums[k], row, out=out[j])


def _apply_weights(
    da: xr.DataArray,
    weights: Any,
    out_dim: str,
    out_coords: Any,
    finish: Any = None,
) -> xr.DataArray:
    """Every frame of ``da`` times ``weights`` (pixels x outputs, dense or
    scipy sparse, or ``(rows, columns)`` of separable weights, see
    :class:`_SeparableProduct`): one product per block; dims navigation +
    ``out_dim``.
    ``finish`` turns a block's products (frames, outputs) into the results
    (frames, len(out_coords)) in the same task."""
    ydim, xdim = _frame_dims(da)
    dtype = _work_dtype(da.dtype)
    n_out = len(out_coords)
    shape = (da.sizes[ydim], da.sizes[xdim])
    if isinstance(weights, tuple):  # (rows, columns): separable weights
        rows, columns = weights
        multiply: _FrameProduct = _SeparableProduct(rows, columns, shape, dtype)
    else:
        multiply = _FrameProduct(weights, shape, dtype)

    def product(block: np.ndarray) -> np.ndarray:
        out = multiply(block)
        if finish is not None:
            out = finish(out)
        return out.reshape(*block.shape[:-2], n_out)

    out = apply_blocks(product, da, (ydim, xdim), {out_dim: n_out}, dtype)
    out = out.assign_coords({out_dim: out_coords})
    rest = [d for d in signal_dims(da) if d not in (ydim, xdim)]
    return with_marking(out, rest or [out_dim])


# --- virtual detectors -----------------------------------------------------------


def _mask(detector: Any, da: xr.DataArray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A detector as a float mask over the frame."""
    if isinstance(detector, _ROI):
        return np.asarray(detector.contains(x, y), dtype=np.float64)
    mask = np.asarray(getattr(detector, "values", detector))
    if mask.shape != y.shape:
        raise ValueError(
            f"a detector mask must have the frame's shape {y.shape}, not {mask.shape}"
        )
    if mask.dtype.kind not in "biuf":
        raise TypeError(
            f"a detector mask must be numbers or booleans, not {mask.dtype}"
        )
    return mask.astype(np.float64)


def _name(detector: Any, index: int) -> str:
    if isinstance(detector, CircleROI):
        c = detector
        if c.r_inner:
            return f"annulus({c.cx:g}, {c.cy:g}, {c.r_inner:g}-{c.r:g})"
        return f"disc({c.cx:g}, {c.cy:g}, {c.r:g})"
    if isinstance(detector, RectangularROI):
        return (
            f"rectangle({detector.left:g}, {detector.top:g}, "
            f"{detector.right:g}, {detector.bottom:g})"
        )
    return f"mask {index}"


def virtual_images(da: xr.DataArray, rois: Sequence[Any]) -> xr.DataArray:
    """The sum of each frame inside each detector, every detector in one
    pass over the data (pyxem's ``get_virtual_image`` for several ROIs).

    Parameters
    ----------
    da : xarray.DataArray
        Frames over its last two signal dims (4D-STEM: navigation y, x and
        signal ky, kx), lazy or in memory.
    rois : sequence
        Detectors: :class:`xsignal.CircleROI` (discs and annuli),
        :class:`xsignal.RectangularROI` (coordinate units of the signal
        dims, the last one as x; a pixel belongs when its centre is inside,
        edges included, see :func:`xsignal.roi`), or masks of the frame's
        shape (booleans or weights).

    Returns
    -------
    xarray.DataArray
        Dims navigation + ``roi`` (coordinate: each detector's description),
        marked as a stack of images (``roi`` the signal dim); float32 for
        frames of up to 16-bit integers or float32, else float64. Lazy when
        ``da`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> k = np.arange(9.0) - 4
    >>> frames = xr.DataArray(np.ones((2, 3, 9, 9)), dims=("y", "x", "ky", "kx"),
    ...                       coords={"ky": k, "kx": k})
    >>> frames = frames.signal.set_signal_dims("ky", "kx")
    >>> bf, adf = xsignal.CircleROI(0, 0, 1), xsignal.CircleROI(0, 0, 4, r_inner=3)
    >>> images = xsignal.virtual_images(frames, [bf, adf])
    >>> images.sizes["roi"], images.isel(y=0, x=0).values.tolist()
    (2, [5.0, 24.0])
    """
    if isinstance(rois, _ROI) or not len(rois):
        raise TypeError("rois must be a non-empty list of detectors")
    _, _, y, x = _grid(da)
    masks = np.stack([_mask(r, da, y, x).ravel() for r in rois], axis=1)
    empty = [i for i in range(masks.shape[1]) if not masks[:, i].any()]
    if empty:
        raise ValueError(
            f"detector(s) {[_name(rois[i], i) for i in empty]} contain no pixel "
            "centre of the frame"
        )
    names = [_name(r, i) for i, r in enumerate(rois)]
    out = _apply_weights(da, masks, "roi", names)
    out.attrs = {k: v for k, v in da.attrs.items() if k != "signal_dims"}
    out = with_marking(out, navigation_dims(da)[-2:])
    out.name = "virtual_images"
    return out


def virtual_image(da: xr.DataArray, roi: Any) -> xr.DataArray:
    """The sum of each frame inside one detector (pyxem's
    ``get_virtual_image``): an image over the navigation dims, marked as
    the signal (HyperSpy's ``Signal2D``). See :func:`virtual_images`.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> frames = xr.DataArray(np.ones((2, 3, 5, 5)), dims=("y", "x", "ky", "kx"))
    >>> frames = frames.signal.set_signal_dims("ky", "kx")
    >>> xsignal.virtual_image(frames, xsignal.CircleROI(2, 2, 1)).values
    array([[5., 5., 5.],
           [5., 5., 5.]])
    """
    image = virtual_images(da, [roi]).isel(roi=0, drop=True)
    image.name = "virtual_image"
    return with_marking(image, navigation_dims(da)[-2:])


# --- centre of mass --------------------------------------------------------------


def center_of_mass(
    da: xr.DataArray,
    mask: Any = None,
    threshold: float | None = None,
) -> xr.DataArray:
    """The centre of mass of each frame, in the signal dims' coordinate
    units: ``sum(I * x) / sum(I)`` and the same for y.

    Parameters
    ----------
    da : xarray.DataArray
        Frames over the last two signal dims.
    mask : CircleROI, RectangularROI or boolean array, optional
        Only the pixels inside count (a disc around the direct beam).
    threshold : float, optional
        Pixels below ``threshold`` times the frame's mean count as zero
        (pyxem's rule). A frame computed with a threshold needs its mean
        first: its block is read once, the product then taken on the
        thresholded frames.

    Returns
    -------
    xarray.DataArray
        Dims navigation + ``vector`` (coords ``"x"``, ``"y"``), NaN for a
        frame summing to zero. Lazy when ``da`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> frame = np.zeros((1, 5, 5)); frame[0, 1, 3] = 2.0
    >>> da = xr.DataArray(frame, dims=("t", "ky", "kx"),
    ...                   coords={"kx": np.arange(5) * 0.1, "ky": np.arange(5) * 0.1})
    >>> com = xsignal.center_of_mass(da.signal.set_signal_dims("ky", "kx"))
    >>> com.sel(vector="x").values, com.sel(vector="y").values
    (array([0.3]), array([0.1]))
    """
    ydim, xdim, y, x = _grid(da)
    weights: Any
    if mask is None:  # sum, x and y moments: ones and coordinates, separable
        ones_y, ones_x = np.ones(y.shape[0]), np.ones(x.shape[1])
        weights = (
            np.stack([ones_y, ones_y, y[:, 0]]),
            np.stack([ones_x, x[0], ones_x]),
        )
    else:
        keep = _mask(mask, da, y, x)
        weights = np.stack([keep.ravel(), (keep * x).ravel(), (keep * y).ravel()], 1)
    data = da
    if threshold is not None:
        if not threshold >= 0:
            raise ValueError(f"threshold must be non-negative, not {threshold!r}")
        mean = da.mean([ydim, xdim])
        data = da.where(da >= threshold * mean, 0)

    def divide(sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            moments: np.ndarray = sums[:, 1:] / sums[:, :1]
        return moments

    # the moments and their division in one task per block
    com = _apply_weights(data, weights, "vector", ["x", "y"], finish=divide)
    units = da.coords[xdim].attrs.get("units") if xdim in da.coords else None
    com.attrs = {"long_name": "centre of mass"}
    if units:
        com.attrs["units"] = units
    com.name = "center_of_mass"
    return with_marking(com, ["vector"])


# --- azimuthal integration -------------------------------------------------------


def azimuthal_integral1d(
    da: xr.DataArray,
    npt: int,
    center: tuple[float, float] | None = None,
    radial_range: tuple[float, float] | None = None,
    mask: Any = None,
) -> xr.DataArray:
    """The mean intensity of each frame in ``npt`` annuli around ``center``
    (pyxem's ``get_azimuthal_integral1d``, without pixel splitting): a
    pixel counts in the annulus holding its centre's distance.

    Parameters
    ----------
    da : xarray.DataArray
        Frames over the last two signal dims.
    npt : int
        Number of annuli, of equal width.
    center : (x, y), optional
        In coordinate units; default the frame's centre.
    radial_range : (float, float), optional
        Inner and outer radius; default 0 to the farthest pixel centre.
    mask : CircleROI, RectangularROI or boolean array, optional
        Pixels to leave out (True: left out), e.g. a beam stop.

    Returns
    -------
    xarray.DataArray
        Dims navigation + ``radius`` (the annuli's mid radii, in the
        coordinate units), NaN for an annulus without pixels. One product
        per block (dense weights, or sparse ones for frames too large).
        Lazy when ``da`` is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> ky, kx = np.mgrid[-10:11, -10:11].astype(float)
    >>> rings = xr.DataArray(np.hypot(ky, kx)[None], dims=("t", "ky", "kx"),
    ...                      coords={"ky": ky[:, 0], "kx": kx[0]})
    >>> profile = xsignal.azimuthal_integral1d(
    ...     rings.signal.set_signal_dims("ky", "kx"), 5, center=(0, 0),
    ...     radial_range=(0, 10))
    >>> profile.radius.values
    array([1., 3., 5., 7., 9.])
    >>> bool(np.all(abs(profile.values - profile.radius.values) < 0.3))
    True
    """
    from scipy import sparse

    if isinstance(npt, bool) or not isinstance(npt, int | np.integer) or npt < 1:
        raise ValueError(f"npt must be a positive int, not {npt!r}")
    ydim, xdim, y, x = _grid(da)
    if center is None:
        cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    else:
        cx, cy = (float(v) for v in center)
    radius = np.hypot(x - cx, y - cy).ravel()
    lo, hi = (0.0, float(radius.max())) if radial_range is None else radial_range
    if not hi > lo >= 0:
        raise ValueError(
            f"radial_range must be 0 <= inner < outer, not {radial_range!r}"
        )
    width = (hi - lo) / npt
    index = np.floor((radius - lo) / width).astype(np.int64)
    index[radius == hi] = npt - 1  # the outer edge belongs to the last annulus
    inside = (index >= 0) & (index < npt)
    if mask is not None:
        inside &= _mask(mask, da, y, x).ravel() == 0
    pixels = np.nonzero(inside)[0]
    counts = np.bincount(index[pixels], minlength=npt).astype(np.float64)
    with np.errstate(divide="ignore"):
        share = np.where(counts > 0, 1.0 / counts, 0.0)
    weights = sparse.csr_matrix(
        (share[index[pixels]], (pixels, index[pixels])), shape=(radius.size, npt)
    )
    if radius.size * npt <= DENSE_WEIGHTS:  # BLAS beats scipy.sparse here
        weights = weights.toarray()
    mids = lo + width * (np.arange(npt) + 0.5)
    empty = counts == 0

    def blank(means: np.ndarray) -> np.ndarray:  # annuli without pixels: NaN
        means[:, empty] = np.nan
        return means

    # in the product's own task: no extra task a block
    out = _apply_weights(
        da, weights, "radius", mids, finish=blank if empty.any() else None
    )
    units = da.coords[xdim].attrs.get("units") if xdim in da.coords else None
    if units:
        out.coords["radius"].attrs["units"] = units
    out.attrs = {"long_name": "azimuthal mean"}
    out.name = "azimuthal_integral"
    return with_marking(out, ["radius"])
