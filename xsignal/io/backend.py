"""The reader layer: one xarray backend per format, and format detection.

Each backend's ``open_dataset`` gives one variable (the file's signal or
the ``variable=`` asked for) with its coordinates, lazily indexed through a
:class:`~xsignal.io.common.SourceArray` over a picklable source, with the
stored chunks in ``encoding["preferred_chunks"]``; nothing but metadata is
read. :func:`xsignal.open` is :func:`backend_for` + ``xr.open_dataset`` +
the chunks asked for + the signal marking.

- :class:`Hdf5Backend`: netCDF4, HyperSpy ``.hspy`` and plain HDF5 files,
  told apart by their content (one file handle per process, whole stored
  chunks read directly);
- :class:`ZarrBackend`: zarr stores, HyperSpy's ``.zspy`` layout or
  xarray's, in folders, zip files or at fsspec URLs;
- :class:`RosettaBackend`: every format rosettasciio reads;
- :class:`XsignalBackend` (``engine="xsignal"``): any of them, chosen by
  :func:`backend_for`; :class:`HspyBackend` (``engine="hspy"``): HyperSpy
  HDF5 files only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from ..sources import close_tokens
from .common import SeveralSignals, is_hdf5, is_url, open_h5
from .h5source import DAMAGE_ERRORS, damaged

# what rosettasciio reads, for the error when it is not installed
ROSETTA_EXTENSIONS = (
    ".blo .mib .dm3 .dm4 .emd .mrc .mrcz .tvips .ser .emi .prz .bcf .spx .nxs "
    ".tif .tiff .rpl .msa .unf .sur .spd .spc .app5 .wdf .elid .npy .pts .de5"
).split()
# read by xsignal itself even when rosettasciio knows the extension
_OWN_EXTENSIONS = (".nc", ".nc4", ".h5", ".hdf5", ".hspy", ".zspy", ".zarr", ".zip")


class FileBackend(BackendEntrypoint):
    """What every xsignal backend shares: ``variable=``, ``drop_variables``,
    and closing the files of the opened Dataset with ``ds.close()``.

    Subclasses implement ``read(path, variable, token, allow_external) ->
    xr.Dataset``; without ``allow_external``, files whose reads would reach
    other files are refused (HDF5 external links, external storage,
    virtual datasets: :func:`xsignal.io.common.check_no_external`).
    """

    url = "https://github.com/xsignal/xsignal"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "variable",
        "allow_external",
        "reader",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        variable: str | int | None = None,
        allow_external: bool = False,
        reader: str | None = None,
    ) -> xr.Dataset:
        path = os.fspath(filename_or_obj)
        token = uuid.uuid4().hex
        try:
            if reader is None:
                ds = self.read(path, variable, token, allow_external)
            else:
                ds = self.read_with(reader, path, variable, token, allow_external)
        except (FileNotFoundError, PermissionError, NotImplementedError):
            close_tokens([token])  # what these say is right as it is
            raise
        except DAMAGE_ERRORS as err:
            close_tokens([token])
            raise damaged(path, err) from err
        except BaseException:
            close_tokens([token])
            raise
        drop = [drop_variables] if isinstance(drop_variables, str) else drop_variables
        if drop:
            ds = ds.drop_vars([d for d in drop if d in ds.variables])
        for var in ds.data_vars.values():
            var.encoding["xsignal_token"] = token  # names its dask layers
        ds.set_close(lambda: close_tokens([token]))
        return ds

    def open_groups_as_dict(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        allow_external: bool = False,
    ) -> dict[str, xr.Dataset]:
        """Every signal of the file, one group each (``"/"`` alone for a
        file of one signal), for ``xr.open_groups``/``xr.open_datatree``."""

        def one(variable: str | int | None) -> xr.Dataset:
            return self.open_dataset(
                filename_or_obj,
                drop_variables=drop_variables,
                variable=variable,
                allow_external=allow_external,
            )

        try:
            return {"/": one(None)}
        except SeveralSignals as several:
            groups = {"/": xr.Dataset()}
            for name in several.names:
                groups["/" + name.strip("/").replace("/", "_")] = one(name)
            return groups

    def open_datatree(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        allow_external: bool = False,
    ) -> xr.DataTree:
        """A file holding several signals as a tree, one node each (see
        :meth:`open_groups_as_dict`)."""
        groups = self.open_groups_as_dict(
            filename_or_obj,
            drop_variables=drop_variables,
            allow_external=allow_external,
        )
        return xr.DataTree.from_dict(groups)

    def read(
        self, path: str, variable: str | int | None, token: str, allow_external: bool
    ) -> xr.Dataset:
        raise NotImplementedError

    def read_with(
        self,
        reader: str,
        path: str,
        variable: str | int | None,
        token: str,
        allow_external: bool,
    ) -> xr.Dataset:
        """:meth:`read` with ``reader=`` (a rosettasciio plugin's name): a
        backend reading that format itself ignores it, others refuse it."""
        if isinstance(self, _NATIVE_READERS.get(str(reader).lower(), ())):
            return self.read(path, variable, token, allow_external)
        raise ValueError(
            f"{path}: reader={reader!r} names a rosettasciio reader, but this "
            f"file is read by xsignal's {type(self).__name__}"
        )


class Hdf5Backend(FileBackend):
    """netCDF4, HyperSpy ``.hspy`` and plain HDF5 files (by their content)."""

    description = "netCDF4, HyperSpy .hspy and plain HDF5 files, read by xsignal"
    _FORMATS = {
        "hspy": "HyperSpy .hspy (HDF5)",
        "netcdf": "netCDF4 (HDF5)",
        "hdf5": "HDF5",
    }

    def read(
        self, path: str, variable: str | int | None, token: str, allow_external: bool
    ) -> xr.Dataset:
        from . import hdf5, hspy, netcdf

        handle = open_h5(path, allow_external=allow_external)
        try:
            kind = file_kind(handle)
            self.check(kind, path)
            reader = {
                "hspy": hspy.read_hspy,
                "netcdf": netcdf.read_netcdf,
                "hdf5": hdf5.read_hdf5,
            }[kind]
            ds = reader(handle, variable, token=token)
        except BaseException:
            handle.close()
            raise
        for var in ds.data_vars.values():
            var.encoding["format"] = self._FORMATS[kind]
        return ds

    def check(self, kind: str, path: str) -> None:
        """Raise if this backend does not read files of ``kind``."""


class HspyBackend(Hdf5Backend):
    """``xr.open_dataset(path, engine="hspy")``: HyperSpy ``.hspy`` files.

    The signal becomes the one data variable (named after the signal),
    with coordinates from its axes; ``chunks={}`` gives the on-disk chunks.
    """

    description = "Open HyperSpy .hspy files (HDF5) in xarray"

    def check(self, kind: str, path: str) -> None:
        if kind != "hspy":
            raise ValueError(f"{path} is not a HyperSpy file")

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            name: str = os.fspath(filename_or_obj).lower()
            return name.endswith(".hspy")
        except TypeError:
            return False


class ZarrBackend(FileBackend):
    """zarr stores: HyperSpy ``.zspy`` or xarray's layout, format 2 or 3."""

    description = "zarr stores and HyperSpy .zspy stores, read by xsignal"

    def read(
        self, path: str, variable: str | int | None, token: str, allow_external: bool
    ) -> xr.Dataset:
        from .zarr_ import read_zarr

        return read_zarr(path, variable, token=token, allow_external=allow_external)


class RosettaBackend(FileBackend):
    """Every format rosettasciio reads (``xsignal[formats]``)."""

    description = "every format rosettasciio reads, through xsignal"

    def read(
        self, path: str, variable: str | int | None, token: str, allow_external: bool
    ) -> xr.Dataset:
        return self.read_with(None, path, variable, token, allow_external)

    def read_with(
        self,
        reader: str | None,
        path: str,
        variable: str | int | None,
        token: str,
        allow_external: bool,
    ) -> xr.Dataset:
        """Read with rosettasciio's plugin ``reader`` (None: the one for the
        file, :func:`xsignal.io.rosetta.choose_plugin`)."""
        from .rosetta import read_rosetta

        if not allow_external and is_hdf5(path):  # .emd, .nxs...: HDF5 inside
            open_h5(path, allow_external=False).close()
        return read_rosetta(path, variable, token=token, reader=reader)


class XsignalBackend(FileBackend):
    """``xr.open_dataarray(path, engine="xsignal")`` for netCDF, ``.hspy``,
    ``.zspy``, zarr, plain HDF5 (``variable="/path"``) and every format
    rosettasciio reads: the backend :func:`backend_for` chooses.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, xsignal
    >>> path = os.path.join(tempfile.mkdtemp(), "a.hspy")
    >>> xsignal.save(xr.DataArray(np.ones((2, 3)), dims=("x", "e")), path)
    >>> xr.open_dataarray(path, engine="xsignal", chunks={}).chunks
    ((2,), (3,))
    """

    description = "Open every format xsignal reads (HyperSpy, zarr, netCDF...)"

    def read(
        self, path: str, variable: str | int | None, token: str, allow_external: bool
    ) -> xr.Dataset:
        backend = backend_for(path, variable)()
        return backend.read(path, variable, token, allow_external)

    def read_with(
        self,
        reader: str,
        path: str,
        variable: str | int | None,
        token: str,
        allow_external: bool,
    ) -> xr.Dataset:
        backend = backend_for(path, variable, reader)()
        return backend.read_with(reader, path, variable, token, allow_external)

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            name: str = os.fspath(filename_or_obj).lower().rstrip("/")
        except TypeError:
            return False
        return name.endswith((".hspy", ".zspy", ".zspy.zip"))


def file_kind(handle: Any) -> str:
    """``"hspy"``, ``"netcdf"`` or ``"hdf5"``, from an HDF5 file's own attributes."""
    from . import hspy, netcdf

    if hspy.is_hspy(handle):
        return "hspy"
    if netcdf.is_netcdf(handle):
        return "netcdf"
    return "hdf5"


# rosettasciio's names of the formats xsignal reads itself (``reader=``)
_NATIVE_READERS: dict[str, type[FileBackend]] = {
    "hspy": Hdf5Backend,
    "netcdf": Hdf5Backend,
    "zspy": ZarrBackend,
}


URL_HDF5_EXTENSIONS = (".hspy", ".nc", ".h5", ".hdf5", ".he5", ".nc4", ".cdf")


def backend_for(
    path: str, variable: str | int | None = None, reader: str | None = None
) -> type[FileBackend]:
    """The backend that reads ``path``.

    URLs and zarr folders or zip files are zarr stores. ``reader=`` (a
    rosettasciio plugin's name) sends any file to that plugin (``"HSPY"``,
    ``"ZSPY"`` and ``"netCDF"`` to xsignal's own readers). Files with a
    rosettasciio extension go to rosettasciio, unless an HDF5 dataset path
    (``variable="/group/data"``) is given. HDF5 files (``.nc``, ``.h5``,
    ``.hdf5``, ``.hspy``) are read by xsignal (HyperSpy, netCDF or plain
    datasets), except ``.h5``/``.hdf5`` files that have neither HyperSpy's
    nor netCDF's layout but that of a rosettasciio reader (Delmic, Arina,
    EMD/py4DSTEM, Tofwerk, USID: :func:`xsignal.io.rosetta.hdf5_readers`)
    when no dataset path is given.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A folder that is not a zarr store.
    ImportError
        A detector format, without rosettasciio installed.

    Examples
    --------
    >>> import os, tempfile, h5py
    >>> from xsignal.io.backend import backend_for
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.h5")
    >>> with h5py.File(path, "w") as f:  # py4DSTEM's EMD 1.0 layout
    ...     f.attrs["version_major"], f.attrs["version_minor"] = 1, 0
    ...     _ = f.create_dataset("data", data=[1, 2])
    >>> backend_for(path).__name__, backend_for(path, "/data").__name__
    ('RosettaBackend', 'Hdf5Backend')
    """
    from . import rosetta, zarr_

    if is_url(path):
        # HDF5 files (HyperSpy, netCDF, plain) through a file object, by
        # their extension (a URL is not looked into to choose); the rest zarr
        suffix = os.path.splitext(path.rstrip("/"))[1].lower()
        return Hdf5Backend if suffix in URL_HDF5_EXTENSIONS else ZarrBackend
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if reader is not None:
        if str(reader).lower() in _NATIVE_READERS:
            return _NATIVE_READERS[str(reader).lower()]
        rosetta.plugins()  # an ImportError naming the extra without rosettasciio
        return RosettaBackend
    if os.path.isdir(path):
        if zarr_.is_zarr_folder(path):
            return ZarrBackend
        raise ValueError(
            f"{path} is a folder, not a file or a zarr store (no zarr.json, "
            ".zgroup or .zarray in it)"
        )
    ext = os.path.splitext(path)[1].lower()
    dataset_path = isinstance(variable, str) and variable.startswith("/")
    if ext not in _OWN_EXTENSIONS and not dataset_path:
        if ext in rosetta.extensions():
            return RosettaBackend
        if ext in ROSETTA_EXTENSIONS:
            raise ImportError(
                f"{path}: reading {ext} files needs rosettasciio: {rosetta.EXTRA}"
            )
    if zarr_.is_zarr_zip(path):
        return ZarrBackend
    if ext in (".h5", ".hdf5") and not dataset_path and _rosetta_layout(path):
        return RosettaBackend
    return Hdf5Backend


def _rosetta_layout(path: str) -> bool:
    """An HDF5 file with neither HyperSpy's nor netCDF's layout, but that of
    a rosettasciio reader."""
    import h5py

    from . import rosetta

    if not is_hdf5(path):
        return False
    try:
        handle = h5py.File(path, "r")
    except OSError:
        return False  # damaged: Hdf5Backend says so
    with handle:
        return file_kind(handle) == "hdf5" and bool(rosetta.hdf5_readers(handle))
