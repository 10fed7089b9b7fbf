"""``engine="xsignal"``: every format :func:`xsignal.open` reads, as an xarray
backend (and ``engine="hspy"``, the same for HyperSpy files only).

The backend opens the file as :func:`xsignal.open` does (format detection,
one dask task per stored chunk, the signal marking in attrs) and gives
the array as the one data variable of a Dataset; ``chunks={}`` keeps the
stored chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint


class XsignalBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataarray(path, engine="xsignal")`` for netCDF, ``.hspy``,
    ``.zspy``, zarr, plain HDF5 (``variable="/path"``) and every format
    rosettasciio reads.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, xsignal
    >>> path = os.path.join(tempfile.mkdtemp(), "a.hspy")
    >>> xsignal.save(xr.DataArray(np.ones((2, 3)), dims=("x", "e")), path)
    >>> xr.open_dataarray(path, engine="xsignal", chunks={}).chunks
    ((2,), (3,))
    """

    description = "Open every format xsignal reads (HyperSpy, zarr, netCDF...)"
    url = "https://github.com/xsignal/xsignal"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "variable")

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        variable: str | None = None,
    ) -> xr.Dataset:
        from .dispatch import open_one

        path = os.fspath(filename_or_obj)
        self.check(path)
        da = open_one(path, variable=variable)
        name = da.name if da.name is not None else "data"
        if da.chunks is not None:  # chunks={} gives the stored chunks
            da.encoding["preferred_chunks"] = {
                d: max(c) if c else 1 for d, c in zip(da.dims, da.chunks)
            }
        ds = da.to_dataset(name=name)
        drop = [drop_variables] if isinstance(drop_variables, str) else drop_variables
        if drop:
            ds = ds.drop_vars([d for d in drop if d in ds.variables])
        ds.set_close(lambda: _close(da))
        return ds

    def check(self, path: str) -> None:
        """Raise if this engine does not read ``path`` (every file: no)."""

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            name = os.fspath(filename_or_obj).lower().rstrip("/")
        except TypeError:
            return False
        return name.endswith((".hspy", ".zspy", ".zspy.zip"))


class HspyBackendEntrypoint(XsignalBackendEntrypoint):
    """``xr.open_dataset(path, engine="hspy")``: HyperSpy ``.hspy`` files.

    The signal becomes the one data variable (named after the signal),
    with coordinates from its axes; ``chunks={}`` gives the on-disk chunks.
    """

    description = "Open HyperSpy .hspy files (HDF5) in xarray"

    def check(self, path: str) -> None:
        from . import hspy
        from .common import open_h5

        with open_h5(path) as handle:
            if not hspy.is_hspy(handle):
                raise ValueError(f"{path} is not a HyperSpy file")

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            return os.fspath(filename_or_obj).lower().endswith(".hspy")
        except TypeError:
            return False


def _close(da: xr.DataArray) -> None:
    from ..handles import close_file

    close_file(da)
