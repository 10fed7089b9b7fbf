"""xsignal: HyperSpy's lazy signal toolbox for xarray.

``import xsignal`` registers the ``DataArray.signal`` accessor; every
accessor method is also a plain function here (``xsignal.rechunk(da)`` is
``da.signal.rechunk()``).
"""

from . import accessor as _accessor  # noqa: F401  (registers DataArray.signal)
from .chunks import auto_chunks, rechunk
from .dims import (
    describe,
    navigation_dims,
    navigation_shape,
    navigation_size,
    set_signal_dims,
    signal_dims,
    signal_shape,
    signal_size,
)
from .handles import close_file
from .lazy import as_lazy, blocks, change_dtype, is_lazy
from .lazy import compute_all as compute
from .options import get_options, set_options

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "as_lazy",
    "auto_chunks",
    "blocks",
    "change_dtype",
    "close_file",
    "compute",
    "describe",
    "get_options",
    "is_lazy",
    "navigation_dims",
    "navigation_shape",
    "navigation_size",
    "rechunk",
    "set_options",
    "set_signal_dims",
    "signal_dims",
    "signal_shape",
    "signal_size",
]

# --- files (issue 3) ---------------------------------------------------------

# --- map (issue 4) -----------------------------------------------------------

# --- decomposition (issue 5) -------------------------------------------------
from .decomposition import Decomposition, decomposition  # noqa: E402

__all__ += ["Decomposition", "decomposition"]

# --- reductions, histogram, roi, stacking, rebin (issue 6) -------------------
