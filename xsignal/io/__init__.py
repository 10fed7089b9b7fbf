"""Reading and writing files: netCDF4, HyperSpy ``.hspy`` and ``.zspy``,
zarr stores, plain HDF5 datasets, and every format rosettasciio reads."""

from .dispatch import open
from .metadata import metadata
from .save import save

__all__ = ["metadata", "open", "save"]
