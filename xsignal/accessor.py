"""The ``DataArray.signal`` accessor: a thin shell over xsignal's functions.

The accessor keeps no state: every property re-reads the marking from the
array's attrs, and every method is one call to a public function, which is
where the documentation lives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import chunks as _chunks
from . import dims as _dims
from . import fitting as _fitting
from . import fourier as _fourier
from . import histograms as _histogram
from . import images as _images
from . import io as _io
from . import lazy as _lazy
from . import mapping as _mapping
from . import plotting as _plotting
from . import reductions as _reductions
from . import spectra as _spectra
from . import stem as _stem
from .plan import Plan
from .plan import plan as _plan
from .rebin import rebin as _apply_rebin
from .reductions import NAVIGATION, UNSET, DimsArg, Unset
from .rois import roi as _apply_roi

if TYPE_CHECKING:
    from .decomposition import Decomposition


@xr.register_dataarray_accessor("signal")
class SignalAccessor:
    """HyperSpy-like signal tools on an ``xarray.DataArray``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((4, 6, 8), "f4"), dims=("y", "x", "energy"))
    >>> da.signal
    <Signal1D float32, (y: 4, x: 6 | energy: 8)>
    >>> da.signal.navigation_dims
    ('y', 'x')
    """

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def __repr__(self) -> str:
        return _dims.describe(self._da)

    def _repr_html_(self) -> str:
        return _dims.describe_html(self._da)

    # --- dimensions ---------------------------------------------------------
    @property
    def signal_dims(self) -> tuple[Hashable, ...]:
        """See :func:`xsignal.signal_dims`."""
        return _dims.signal_dims(self._da)

    @property
    def navigation_dims(self) -> tuple[Hashable, ...]:
        """See :func:`xsignal.navigation_dims`."""
        return _dims.navigation_dims(self._da)

    @property
    def signal_shape(self) -> tuple[int, ...]:
        """See :func:`xsignal.dims.signal_shape`."""
        return _dims.signal_shape(self._da)

    @property
    def navigation_shape(self) -> tuple[int, ...]:
        """See :func:`xsignal.dims.navigation_shape`."""
        return _dims.navigation_shape(self._da)

    @property
    def signal_size(self) -> int:
        """See :func:`xsignal.dims.signal_size`."""
        return _dims.signal_size(self._da)

    @property
    def navigation_size(self) -> int:
        """See :func:`xsignal.dims.navigation_size`."""
        return _dims.navigation_size(self._da)

    def set_signal_dims(self, *dims: Hashable) -> xr.DataArray:
        """Call :func:`xsignal.set_signal_dims` on this DataArray."""
        return _dims.set_signal_dims(self._da, *dims)

    # --- laziness and chunks ------------------------------------------------
    @property
    def is_lazy(self) -> bool:
        """See :func:`xsignal.is_lazy`."""
        return _lazy.is_lazy(self._da)

    def as_lazy(self, chunks: Any = None) -> xr.DataArray:
        """Call :func:`xsignal.as_lazy` on this DataArray."""
        return _lazy.as_lazy(self._da, chunks)

    def rechunk(self, navigation: Any = "auto", signal: Any = -1) -> xr.DataArray:
        """Call :func:`xsignal.rechunk` on this DataArray."""
        return _chunks.rechunk(self._da, navigation, signal)

    def compute(
        self, *, progress: bool | None = None, close_file: bool = False
    ) -> xr.DataArray:
        """Call :func:`xsignal.lazy.compute` on this DataArray.

        :func:`xsignal.compute` computes several arrays in one pass.
        """
        return _lazy.compute(self._da, progress=progress, close_file=close_file)

    def close_file(self) -> None:
        """Call :func:`xsignal.close_file` on this DataArray."""
        return _lazy.close_file(self._da)

    def change_dtype(self, dtype: Any, *, rechunk: bool = False) -> xr.DataArray:
        """Call :func:`xsignal.change_dtype` on this DataArray."""
        return _lazy.change_dtype(self._da, dtype, rechunk=rechunk)

    def blocks(
        self,
        *,
        navigation_mask: Any = None,
        signal_mask: Any = None,
        flat: bool = True,
        prefetch: int | None = None,
    ) -> Iterator[tuple[dict[Hashable, slice], np.ndarray]]:
        """Call :func:`xsignal.blocks` on this DataArray."""
        return _lazy.blocks(
            self._da,
            navigation_mask=navigation_mask,
            signal_mask=signal_mask,
            flat=flat,
            prefetch=prefetch,
        )

    # --- files (issue 3) ----------------------------------------------------
    def save(
        self,
        path: Any,
        *,
        format: str | None = None,  # noqa: A002  (the API's name)
        chunks: Any = None,
        compression: Any = "auto",
        overwrite: bool = False,
        shards: Any = None,
        navigator: bool = True,
    ) -> None:
        """Call :func:`xsignal.save` on this DataArray."""
        return _io.save(
            self._da,
            path,
            format=format,
            chunks=chunks,
            compression=compression,
            overwrite=overwrite,
            shards=shards,
            navigator=navigator,
        )

    # --- map (issue 4) ------------------------------------------------------
    def map(
        self,
        func: Callable[..., Any],
        *,
        vectorized: bool = False,
        ragged: bool = False,
        output_dtype: Any = None,
        output_signal_sizes: Mapping[Any, int] | None = None,
        lazy_output: bool | None = None,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.map` on this DataArray."""
        return _mapping.map(
            self._da,
            func,
            vectorized=vectorized,
            ragged=ragged,
            output_dtype=output_dtype,
            output_signal_sizes=output_signal_sizes,
            lazy_output=lazy_output,
            progress=progress,
            **kwargs,
        )

    def map_blocks(
        self,
        func: Callable[..., Any],
        *,
        chunks: Mapping[Any, Any] | None = None,
        drop_dims: Sequence[Hashable] = (),
        new_dims: Mapping[Any, int] | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.map_blocks` on this DataArray."""
        return _mapping.map_blocks(
            self._da,
            func,
            chunks=chunks,
            drop_dims=drop_dims,
            new_dims=new_dims,
            dtype=dtype,
            **kwargs,
        )

    def map_overlap(
        self,
        func: Callable[..., Any],
        depth: int | Mapping[Any, int],
        boundary: Any = "reflect",
        *,
        trim: bool = True,
        dtype: Any = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.map_overlap` on this DataArray."""
        return _mapping.map_overlap(
            self._da, func, depth, boundary, trim=trim, dtype=dtype, **kwargs
        )

    # --- decomposition (issue 5) --------------------------------------------
    def decomposition(
        self,
        algorithm: str = "SVD",
        output_dimension: int | None = None,
        *,
        navigation_mask: Any = None,
        signal_mask: Any = None,
        normalize_poissonian_noise: bool = False,
        centre: str | None = None,
        progress: bool | None = None,
        **algorithm_kwargs: Any,
    ) -> Decomposition:
        """Call :func:`xsignal.decomposition` on this DataArray."""
        from .decomposition import decomposition

        return decomposition(
            self._da,
            algorithm,
            output_dimension,
            navigation_mask=navigation_mask,
            signal_mask=signal_mask,
            normalize_poissonian_noise=normalize_poissonian_noise,
            centre=centre,
            progress=progress,
            **algorithm_kwargs,
        )

    # --- reductions, histogram, roi, rebin (issue 6) ------------------------
    def sum(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        min_count: int | None = None,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.sum` on this DataArray."""
        return _reductions.sum(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            min_count=min_count,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def mean(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.mean` on this DataArray."""
        return _reductions.mean(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def max(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.max` on this DataArray."""
        return _reductions.max(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def min(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.min` on this DataArray."""
        return _reductions.min(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def std(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        ddof: int = 0,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.std` on this DataArray."""
        return _reductions.std(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            ddof=ddof,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def var(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        skipna: bool = False,
        ddof: int = 0,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.var` on this DataArray."""
        return _reductions.var(
            self._da,
            dim,
            dims=dims,
            skipna=skipna,
            ddof=ddof,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nansum(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        min_count: int | None = None,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nansum` on this DataArray."""
        return _reductions.nansum(
            self._da,
            dim,
            dims=dims,
            min_count=min_count,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nanmean(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nanmean` on this DataArray."""
        return _reductions.nanmean(
            self._da,
            dim,
            dims=dims,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nanmax(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nanmax` on this DataArray."""
        return _reductions.nanmax(
            self._da,
            dim,
            dims=dims,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nanmin(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nanmin` on this DataArray."""
        return _reductions.nanmin(
            self._da,
            dim,
            dims=dims,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nanstd(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        ddof: int = 0,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nanstd` on this DataArray."""
        return _reductions.nanstd(
            self._da,
            dim,
            dims=dims,
            ddof=ddof,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def nanvar(
        self,
        dim: DimsArg = NAVIGATION,
        *,
        dims: DimsArg | Unset = UNSET,
        ddof: int = 0,
        keep_attrs: bool | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.nanvar` on this DataArray."""
        return _reductions.nanvar(
            self._da,
            dim,
            dims=dims,
            ddof=ddof,
            keep_attrs=keep_attrs,
            **kwargs,
        )

    def indexmax(
        self, dim: Hashable | None = None, *, keep_attrs: bool | None = None
    ) -> xr.DataArray:
        """Call :func:`xsignal.indexmax` on this DataArray."""
        return _reductions.indexmax(self._da, dim, keep_attrs=keep_attrs)

    def indexmin(
        self, dim: Hashable | None = None, *, keep_attrs: bool | None = None
    ) -> xr.DataArray:
        """Call :func:`xsignal.indexmin` on this DataArray."""
        return _reductions.indexmin(self._da, dim, keep_attrs=keep_attrs)

    def valuemax(
        self, dim: Hashable | None = None, *, keep_attrs: bool | None = None
    ) -> xr.DataArray:
        """Call :func:`xsignal.valuemax` on this DataArray."""
        return _reductions.valuemax(self._da, dim, keep_attrs=keep_attrs)

    def valuemin(
        self, dim: Hashable | None = None, *, keep_attrs: bool | None = None
    ) -> xr.DataArray:
        """Call :func:`xsignal.valuemin` on this DataArray."""
        return _reductions.valuemin(self._da, dim, keep_attrs=keep_attrs)

    def plan(self) -> Plan:
        """Call :func:`xsignal.plan` on this DataArray."""
        return _plan(self._da)

    def navigator(self) -> xr.DataArray:
        """Call :func:`xsignal.navigator` on this DataArray."""
        return _reductions.navigator(self._da)

    def rebin(self, factors: Any, *, trim: bool = False) -> xr.DataArray:
        """Call :func:`xsignal.rebin` on this DataArray."""
        return _apply_rebin(self._da, factors, trim=trim)

    def histogram(
        self,
        bins: Any = "fd",
        range: Any = None,
        density: bool = False,
        *,
        dims: Any = None,
        max_bins: int = 10000,
    ) -> xr.DataArray:
        """Call :func:`xsignal.histogram` on this DataArray."""
        return _histogram.histogram(
            self._da, bins, range, density, dims=dims, max_bins=max_bins
        )

    def roi(self, roi: Any, dims: Any = None) -> xr.DataArray:
        """Call :func:`xsignal.roi` on this DataArray."""
        return _apply_roi(self._da, roi, dims=dims)

    # --- quick look (issue 11) ------------------------------------------------
    def plot(
        self,
        pixel: Mapping[Any, int] | None = None,
        navigator: Any = "auto",
        *,
        figure: Any = None,
        progress: bool | None = None,
    ) -> Any:
        """Call :func:`xsignal.plot` on this DataArray."""
        return _plotting.plot(
            self._da, pixel, navigator, figure=figure, progress=progress
        )

    # --- signal tools (issue 24) ------------------------------------------------
    def integrate1D(self, dim: Hashable | None = None) -> xr.DataArray:
        """Call :func:`xsignal.integrate1D` on this DataArray."""
        return _spectra.integrate1D(self._da, dim)

    def integrate_simpson(self, dim: Hashable | None = None) -> xr.DataArray:
        """Call :func:`xsignal.integrate_simpson` on this DataArray."""
        return _spectra.integrate_simpson(self._da, dim)

    def derivative(
        self, dim: Hashable | None = None, order: int = 1, **kwargs: Any
    ) -> xr.DataArray:
        """Call :func:`xsignal.derivative` on this DataArray."""
        return _spectra.derivative(self._da, dim, order, **kwargs)

    def smooth_savitzky_golay(
        self,
        window_length: int,
        polynomial_order: int,
        deriv: int = 0,
        dim: Hashable | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.smooth_savitzky_golay` on this DataArray."""
        return _spectra.smooth_savitzky_golay(
            self._da, window_length, polynomial_order, deriv, dim
        )

    def gaussian_filter(self, FWHM: float, dim: Hashable | None = None) -> xr.DataArray:
        """Call :func:`xsignal.gaussian_filter` on this DataArray."""
        return _spectra.gaussian_filter(self._da, FWHM, dim)

    def estimate_poissonian_noise_variance(
        self,
        expected_value: xr.DataArray | None = None,
        gain_factor: float = 1.0,
        gain_offset: float = 0.0,
        correlation_factor: float = 1.0,
    ) -> xr.DataArray:
        """Call :func:`xsignal.estimate_poissonian_noise_variance` on this
        DataArray."""
        return _spectra.estimate_poissonian_noise_variance(
            self._da, expected_value, gain_factor, gain_offset, correlation_factor
        )

    def remove_background(
        self,
        signal_range: tuple[float, float],
        background_type: str = "PowerLaw",
        polynomial_order: int = 2,
        dim: Hashable | None = None,
        *,
        return_background: bool = False,
    ) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
        """Call :func:`xsignal.remove_background` on this DataArray."""
        return _spectra.remove_background(
            self._da,
            signal_range,
            background_type,
            polynomial_order,
            dim,
            return_background=return_background,
        )

    def virtual_image(self, roi: Any) -> xr.DataArray:
        """Call :func:`xsignal.virtual_image` on this DataArray."""
        return _stem.virtual_image(self._da, roi)

    def virtual_images(self, rois: Sequence[Any]) -> xr.DataArray:
        """Call :func:`xsignal.virtual_images` on this DataArray."""
        return _stem.virtual_images(self._da, rois)

    def center_of_mass(
        self, mask: Any = None, threshold: float | None = None
    ) -> xr.DataArray:
        """Call :func:`xsignal.center_of_mass` on this DataArray."""
        return _stem.center_of_mass(self._da, mask, threshold)

    def azimuthal_integral1d(
        self,
        npt: int,
        center: tuple[float, float] | None = None,
        radial_range: tuple[float, float] | None = None,
        mask: Any = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.azimuthal_integral1d` on this DataArray."""
        return _stem.azimuthal_integral1d(self._da, npt, center, radial_range, mask)

    def fft(self, shift: bool = False) -> xr.DataArray:
        """Call :func:`xsignal.fft` on this DataArray."""
        return _fourier.fft(self._da, shift)

    def ifft(self, shift: bool | None = None) -> xr.DataArray:
        """Call :func:`xsignal.ifft` on this DataArray."""
        return _fourier.ifft(self._da, shift)

    def find_peaks1D(
        self,
        height: float | None = None,
        prominence: float | None = None,
        distance: float | None = None,
        width: float | None = None,
        dim: Hashable | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.find_peaks1D` on this DataArray."""
        return _spectra.find_peaks1D(self._da, height, prominence, distance, width, dim)

    def estimate_shift1D(
        self,
        start: float | None = None,
        end: float | None = None,
        reference_indices: dict[Hashable, int] | None = None,
        max_shift: float | None = None,
        interpolate: bool = True,
        number_of_interpolation_points: int = 5,
        dim: Hashable | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.estimate_shift1D` on this DataArray."""
        return _spectra.estimate_shift1D(
            self._da,
            start,
            end,
            reference_indices,
            max_shift,
            interpolate,
            number_of_interpolation_points,
            dim,
        )

    def shift1D(
        self,
        shifts: Any,
        fill_value: float = np.nan,
        crop: bool = False,
        dim: Hashable | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.shift1D` on this DataArray."""
        return _spectra.shift1D(self._da, shifts, fill_value, crop, dim)

    def align1D(
        self,
        start: float | None = None,
        end: float | None = None,
        reference_indices: dict[Hashable, int] | None = None,
        max_shift: float | None = None,
        interpolate: bool = True,
        number_of_interpolation_points: int = 5,
        fill_value: float = np.nan,
        dim: Hashable | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.align1D` on this DataArray."""
        return _spectra.align1D(
            self._da,
            start,
            end,
            reference_indices,
            max_shift,
            interpolate,
            number_of_interpolation_points,
            fill_value,
            dim,
        )

    def find_peaks2D(
        self,
        method: str = "local_max",
        min_distance: int = 1,
        threshold_abs: float | None = None,
        threshold_rel: float | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.find_peaks2D` on this DataArray."""
        return _images.find_peaks2D(
            self._da, method, min_distance, threshold_abs, threshold_rel, **kwargs
        )

    def estimate_shift2D(
        self,
        reference: str = "current",
        sub_pixel_factor: int = 1,
        reference_indices: dict[Hashable, int] | None = None,
    ) -> xr.DataArray:
        """Call :func:`xsignal.estimate_shift2D` on this DataArray."""
        return _images.estimate_shift2D(
            self._da, reference, sub_pixel_factor, reference_indices
        )

    def align2D(
        self,
        shifts: xr.DataArray | None = None,
        fill_value: float = np.nan,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Call :func:`xsignal.align2D` on this DataArray."""
        return _images.align2D(self._da, shifts, fill_value, **kwargs)

    # --- model fitting (issue 25) -----------------------------------------------
    def create_model(
        self,
        components: Sequence[Any],
        signal_range: tuple[float, float] | None = None,
        dim: Hashable | None = None,
    ) -> _fitting.Model:
        """Call :func:`xsignal.create_model` on this DataArray."""
        return _fitting.create_model(self._da, components, signal_range, dim)
