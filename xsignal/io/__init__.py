"""Reading and writing files: netCDF4 (``save``/``open``), HyperSpy ``.hspy``
files, plain HDF5 datasets."""

from .netcdf import save
from .dispatch import open

__all__ = ["open", "save"]
