"""Files behind lazy arrays, and closing them."""

from __future__ import annotations

import xarray as xr


def close_file(da: xr.DataArray) -> None:
    """Close the files that a lazy ``da`` was read from.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> xsignal.close_file(xr.DataArray(np.zeros(3)))  # nothing to close
    """
    da.close()
