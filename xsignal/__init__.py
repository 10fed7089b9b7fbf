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
from .lazy import as_lazy, blocks, change_dtype, close_file, is_lazy
from .lazy import compute_all as compute
from .options import get_options, set_options
from .sources import ClosedFileError, ExternalReadError, FileChangedError

__version__ = "0.1.0"

__all__ = [
    "ClosedFileError",
    "ExternalReadError",
    "FileChangedError",
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
from .io import metadata, open, save  # noqa: E402  (xsignal.open is the API name)
from .stacking import stack  # noqa: E402

__all__ += ["metadata", "open", "save", "stack"]

# --- map (issue 4) -----------------------------------------------------------
from .mapping import map, map_blocks, map_overlap  # noqa: E402, A004

__all__ += ["map", "map_blocks", "map_overlap"]

# --- decomposition (issue 5) -------------------------------------------------
from .decomposition import Decomposition, decomposition  # noqa: E402
from .decomposition.result import (  # noqa: E402
    Separation,
    blind_source_separation,
)

__all__ += ["Decomposition", "Separation", "blind_source_separation", "decomposition"]

# --- quick look (issue 11) ----------------------------------------------------
from .plotting import plot, plot_decomposition  # noqa: E402

__all__ += ["plot", "plot_decomposition"]

# --- reductions, histogram, roi, stacking, rebin (issue 6) -------------------
from . import reductions as _reductions  # noqa: E402
from .histograms import histogram  # noqa: E402
from .rebin import rebin  # noqa: E402
from .reductions import (  # noqa: E402
    indexmax,
    indexmin,
    navigator,
    valuemax,
    valuemin,
)
from .rois import CircleROI, RectangularROI  # noqa: E402
from .rois import roi as roi  # noqa: E402  (the function)

# sum/max/min are attributes (xsignal.sum) but stay out of __all__, so that
# ``from xsignal import *`` never shadows the builtins of those names
max = _reductions.max
mean = _reductions.mean
min = _reductions.min
nanmax = _reductions.nanmax
nanmean = _reductions.nanmean
nanmin = _reductions.nanmin
nanstd = _reductions.nanstd
nansum = _reductions.nansum
nanvar = _reductions.nanvar
std = _reductions.std
sum = _reductions.sum
var = _reductions.var

__all__ += [
    "CircleROI",
    "RectangularROI",
    "histogram",
    "indexmax",
    "indexmin",
    "mean",
    "nanmax",
    "nanmean",
    "nanmin",
    "nanstd",
    "nansum",
    "nanvar",
    "navigator",
    "rebin",
    "roi",
    "std",
    "valuemax",
    "valuemin",
    "var",
]

# --- signal tools (issue 24) ----------------------------------------------------
from .fourier import fft, ifft  # noqa: E402
from .images import align2D, estimate_shift2D, find_peaks2D  # noqa: E402
from .spectra import (  # noqa: E402
    align1D,
    derivative,
    estimate_poissonian_noise_variance,
    estimate_shift1D,
    find_peaks1D,
    gaussian_filter,
    integrate1D,
    integrate_simpson,
    remove_background,
    shift1D,
    smooth_savitzky_golay,
)
from .stem import (  # noqa: E402
    azimuthal_integral1d,
    center_of_mass,
    virtual_image,
    virtual_images,
)

__all__ += [
    "align1D",
    "align2D",
    "azimuthal_integral1d",
    "center_of_mass",
    "virtual_image",
    "virtual_images",
    "derivative",
    "estimate_poissonian_noise_variance",
    "estimate_shift1D",
    "estimate_shift2D",
    "fft",
    "find_peaks1D",
    "find_peaks2D",
    "gaussian_filter",
    "ifft",
    "integrate1D",
    "integrate_simpson",
    "remove_background",
    "shift1D",
    "smooth_savitzky_golay",
]

# --- model fitting (issue 25) ---------------------------------------------------
from . import components  # noqa: E402
from .fitting import FitResult, Model, create_model  # noqa: E402

__all__ += ["FitResult", "Model", "components", "create_model"]

# --- plans before compute (issue 26) ------------------------------------------
from .engine import MemoryWarning  # noqa: E402
from .plan import Plan, plan  # noqa: E402  (xsignal.plan becomes the function)

__all__ += ["MemoryWarning", "Plan", "plan"]
