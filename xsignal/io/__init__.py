"""Reading and writing files: netCDF4 (``save``/``open``), HyperSpy ``.hspy``
files, plain HDF5 datasets."""

from .dispatch import open
from .netcdf import save

__all__ = ["open", "save"]
