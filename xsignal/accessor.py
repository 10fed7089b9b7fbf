"""The ``DataArray.signal`` accessor: a thin shell over xsignal's functions.

The accessor keeps no state: every property re-reads the marking from the
array's attrs, and every method is one call to a public function, which is
where the documentation lives.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import xarray as xr

from . import chunks as _chunks
from . import dims as _dims
from . import handles as _handles
from . import lazy as _lazy


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
        """Call :func:`xsignal.compute` on this DataArray."""
        return _lazy.compute(self._da, progress=progress, close_file=close_file)

    def close_file(self) -> None:
        """Call :func:`xsignal.close_file` on this DataArray."""
        return _handles.close_file(self._da)

    def change_dtype(self, dtype: Any, rechunk: bool = False) -> xr.DataArray:
        """Call :func:`xsignal.change_dtype` on this DataArray."""
        return _lazy.change_dtype(self._da, dtype, rechunk=rechunk)

    def blocks(
        self, navigation_mask: Any = None, signal_mask: Any = None, flat: bool = True
    ):
        """Call :func:`xsignal.blocks` on this DataArray."""
        return _lazy.blocks(
            self._da,
            navigation_mask=navigation_mask,
            signal_mask=signal_mask,
            flat=flat,
        )

    # --- files (issue 3) ----------------------------------------------------

    # --- map (issue 4) ------------------------------------------------------

    # --- decomposition (issue 5) --------------------------------------------
    def decomposition(
        self, algorithm: str = "SVD", output_dimension: int | None = None, **kwargs: Any
    ):
        """Call :func:`xsignal.decomposition` on this DataArray."""
        from .decomposition import decomposition

        return decomposition(self._da, algorithm, output_dimension, **kwargs)

    # --- reductions, histogram, roi, rebin (issue 6) ------------------------
