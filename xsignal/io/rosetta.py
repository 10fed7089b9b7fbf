"""Every format rosettasciio reads (``xsignal[formats]``): ``.blo``, ``.mib``,
``.dm3/.dm4``, ``.emd``, ``.mrc``, ``.tvips``, ``.ser``, ``.prz``, ``.bcf``,
``.nxs``, ``.tif``, ...

rosettasciio's readers give, per signal, a dict of ``data`` (a dask array
with ``lazy=True`` where the reader can), ``axes`` (HyperSpy's axis dicts),
``metadata`` and ``original_metadata``. The axes become coordinates and
the signal marking as for ``.hspy`` files (:mod:`xsignal.io.hyperspy`), the
metadata trees attrs.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import engine
from ..dims import SIGNAL_DIMS_ATTR, encode_signal_dims
from ..sources import (
    READ_ERRORS,
    Source,
    check_identity,
    damaged_read,
    file_identity,
    mark_closed,
    register_closer,
)
from . import hyperspy
from .common import ANONYMOUS, SeveralSignals, source_variable

EXTRA = 'pip install "xsignal[formats]"'
# formats xsignal reads itself (faster, and zarr 3): never through rosettasciio
_NATIVE = {"HSPY", "ZSPY", "netCDF"}


def plugins() -> list[dict[str, Any]]:
    """rosettasciio's reader plugins, or an ImportError naming the extra."""
    try:
        from rsciio import IO_PLUGINS
    except ImportError as err:
        raise ImportError(
            f"reading this format needs rosettasciio: {EXTRA} ({err})"
        ) from err
    return [p for p in IO_PLUGINS if p["name"] not in _NATIVE]


def extensions() -> set[str]:
    """Lower-case extensions (with the dot) that rosettasciio reads, or an
    empty set without rosettasciio."""
    try:
        found = plugins()
    except ImportError:
        return set()
    return {"." + e.lower() for p in found for e in p["file_extensions"]}


def candidates(path: str) -> list[dict[str, Any]]:
    """The plugins whose extensions match ``path``'s, in rosettasciio's order."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return [p for p in plugins() if ext in {e.lower() for e in p["file_extensions"]}]


# --- HDF5 files of rosettasciio's formats, told apart by their content ----------


def _groups(handle: Any) -> dict[str, Any]:
    """The groups in ``handle`` reached by hard links (no other file opened)."""
    import h5py

    out = {}
    for name in handle:
        if isinstance(handle.get(name, getlink=True), h5py.HardLink):
            obj = handle[name]
            if isinstance(obj, h5py.Group):
                out[name] = obj
    return out


def _is_delmic(handle: Any) -> bool:
    """Odemis (Delmic) acquisitions: ``Acquisition*`` groups with SVIData,
    PhysicalData and ImageData/Image, as rosettasciio's reader asks."""
    return any(
        name.startswith("Acquisition")
        and all(k in group for k in ("SVIData", "PhysicalData", "ImageData/Image"))
        for name, group in _groups(handle).items()
    )


def _is_arina(handle: Any) -> bool:
    """A DECTRIS Arina master file: ``/entry/data`` holds only
    ``data_000001``... (links to its data files)."""
    entry = _groups(handle).get("entry")
    data = _groups(entry).get("data") if entry is not None else None
    names = list(data) if data is not None else []
    return bool(names) and all(re.fullmatch(r"data_\d{6}", n) for n in names)


def _is_emd(handle: Any) -> bool:
    """EMD (NCEM's, py4DSTEM's EMD 1.0, Velox): a ``version_major`` and
    ``version_minor`` on the root or a group of it, or Velox's ``Version``
    dataset beside its ``Data`` group."""

    def versioned(obj: Any) -> bool:
        return "version_major" in obj.attrs and "version_minor" in obj.attrs

    if "Version" in handle and "Data" in handle:
        return True
    return versioned(handle) or any(map(versioned, _groups(handle).values()))


def _is_tofwerk(handle: Any) -> bool:
    """TofDAQ (Tofwerk) files, as rosettasciio's reader recognises them."""
    return "TofDAQ Version" in handle.attrs and all(
        k in handle for k in ("FullSpectra", "TimingData", "AcquisitionLog")
    )


def _is_usid(handle: Any) -> bool:
    """Universal Spectroscopy and Imaging Data (pyUSID): ``Measurement_*``
    groups at the root."""
    return any(name.startswith("Measurement_") for name in handle)


# plugin name -> does an open h5py file have its layout
_HDF5_LAYOUTS = {
    "Delmic": _is_delmic,
    "Arina": _is_arina,
    "EMD": _is_emd,
    "Tofwerk": _is_tofwerk,
    "USID": _is_usid,
}


def hdf5_readers(handle: Any) -> list[str]:
    """The rosettasciio plugins that recognise the layout of an open HDF5
    file (Delmic, Arina, EMD/py4DSTEM, Tofwerk, USID), or ``[]`` (also
    without rosettasciio). Only links and attributes are looked at: no
    link to another file is followed, no data read.

    Examples
    --------
    >>> import os, tempfile, h5py
    >>> from xsignal.io.rosetta import hdf5_readers
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f.attrs["version_major"], f.attrs["version_minor"] = 1, 0
    >>> with h5py.File(path, "r") as f:
    ...     hdf5_readers(f)
    ['EMD']
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("data", data=[1, 2])
    >>> with h5py.File(path, "r") as f:
    ...     hdf5_readers(f)
    []
    """
    try:
        known = {p["name"] for p in plugins()}
    except ImportError:
        return []
    found = []
    for name, test in _HDF5_LAYOUTS.items():
        try:
            if name in known and test(handle):
                found.append(name)
        except (KeyError, OSError, RuntimeError, TypeError, ValueError):
            continue  # a damaged or odd file: not that layout
    return found


def _hdf5_layouts(path: str) -> list[str]:
    import h5py

    from .common import is_hdf5

    if not is_hdf5(path):
        return []
    with h5py.File(path, "r") as handle:
        return hdf5_readers(handle)


def choose_plugin(path: str, reader: str | None = None) -> dict[str, Any]:
    """The plugin that reads ``path``: ``reader`` (a plugin name, any case),
    else the only one for its extension; an HDF5 file with an extension
    several plugins share (``.h5``, ``.hdf5``) by its content
    (:func:`hdf5_readers`).

    Raises
    ------
    ValueError
        An unknown ``reader``; no plugin for the extension; several (it
        names them: pass ``reader=`` one of them).
    """
    found = plugins()
    ext = os.path.splitext(path)[1]
    if reader is not None:
        named = [p for p in found if p["name"].lower() == str(reader).lower()]
        if not named:
            for_ext = [p["name"] for p in candidates(path)]
            raise ValueError(
                f"{path}: rosettasciio has no reader {reader!r}; those for "
                f"{ext!r} files are {for_ext}, all are {[p['name'] for p in found]}"
            )
        return named[0]
    matching = candidates(path)
    if ext.lower() in (".h5", ".hdf5"):
        layouts = _hdf5_layouts(path)
        matching = [p for p in found if p["name"] in layouts]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise ValueError(
            f"{path}: xsignal does not know the extension {ext!r} (or, for an "
            "HDF5 file, the layout of any rosettasciio reader)"
        )
    names = [p["name"] for p in matching]
    raise ValueError(
        f"{path}: several rosettasciio readers read {ext!r} files {names}; pass "
        f"reader= one of them (xsignal.open(path, reader={names[0]!r}))"
    )


# readers whose lazy mode gives wrong values on some files: read those eagerly
def _prz_compressed(path: str) -> bool:
    """A Panta Rhei ``.prz`` whose data is deflated in the zip: rosettasciio's
    lazy read maps the compressed bytes as if they were the array."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return zf.getinfo("data.npy").compress_type != zipfile.ZIP_STORED


_LAZY_WRONG: dict[str, Callable[[str], bool]] = {"PantaRhei": _prz_compressed}


def _reader(plugin: dict[str, Any]) -> Callable[..., list[dict[str, Any]]]:
    reader: Callable[..., list[dict[str, Any]]]  # rosettasciio is untyped
    reader = importlib.import_module(plugin["api"]).file_reader
    return reader


def _read(plugin: dict[str, Any], path: str, lazy: bool) -> list[dict[str, Any]]:
    """rosettasciio's signals of ``path``, read lazily or into memory."""
    reader = _reader(plugin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        signals = reader(path, lazy=True) if lazy else reader(path)
    return signals


def _lazy_usable(signals: list[dict[str, Any]]) -> bool:
    """Whether a lazy read gave what xsignal can slice: arrays of known
    shape (a ``.jpg``'s dask array has none) and not of object dtype."""
    for signal in signals:
        data = signal["data"]
        if getattr(data, "dtype", None) is None or data.dtype.kind == "O":
            return False
        if isinstance(data, dsa.Array) and any(np.isnan(n) for n in data.shape):
            return False
    return True


def read_signals(
    path: str, reader: str | None = None
) -> tuple[str, bool, list[dict[str, Any]]]:
    """(plugin name, whether read lazily, rosettasciio's signal dicts) of
    ``path``.

    Lazily where the plugin's reader can: it takes ``lazy``, the lazy read
    works and gives arrays of known shape and dtype other than object, and
    the plugin is not known to read this file wrongly in its lazy mode
    (a Panta Rhei file with deflated data); into memory otherwise.
    """
    plugin = choose_plugin(path, reader)
    name = plugin["name"]
    try:
        lazy = "lazy" in inspect.signature(_reader(plugin)).parameters
        if name in _LAZY_WRONG and _LAZY_WRONG[name](path):
            lazy = False
        signals = None
        if lazy:
            try:
                signals = _read(plugin, path, lazy=True)
            except ImportError:
                raise
            except Exception:  # noqa: BLE001  (no lazy mode for this file)
                signals = None
            if signals is not None and not _lazy_usable(signals):
                signals = None
        lazy = signals is not None
        if signals is None:
            signals = _read(plugin, path, lazy=False)
    except ImportError as err:  # that plugin's own optional dependency
        hint = EXTRA
        if name == "USID":
            hint = 'pip install pyUSID, or pass variable="/path/to/dataset"'
        raise ImportError(
            f"{path}: rosettasciio's {name} reader needs {err.name or err}: {hint}"
        ) from err
    except (FileNotFoundError, PermissionError):
        raise  # they name the file (a data file beside this one, say)
    except Exception as err:  # noqa: BLE001  (rosettasciio's readers raise anything)
        raise ValueError(
            f"cannot read {path} with rosettasciio's {name} reader: the file is "
            f"damaged or truncated, or not a {name} file "
            f"[{type(err).__name__}: {err}]"
        ) from err
    if not signals:
        raise ValueError(f"{path}: rosettasciio's {name} reader finds no signal in it")
    return name, lazy, signals


def signal_name(signal: dict[str, Any], index: int) -> str:
    title = signal.get("metadata", {}).get("General", {}).get("title")
    return str(title) if title else f"signal_{index}"


def choose_signal(names: list[str], variable: str | int | None, path: str) -> int:
    """The index of the signal ``variable`` asks for: a title, or an index
    (an int, or its digits); None for a file of one signal.

    Examples
    --------
    >>> from xsignal.io.rosetta import choose_signal
    >>> choose_signal(["HAADF", "EDS", "EDS"], "HAADF", "f.emd")
    0
    >>> choose_signal(["HAADF", "EDS", "EDS"], 2, "f.emd")
    2
    >>> choose_signal(["HAADF", "EDS", "EDS"], "EDS", "f.emd")
    Traceback (most recent call last):
    ...
    ValueError: f.emd: 2 signals have the title 'EDS' (indices [1, 2]); ...
    """
    if variable is None:
        if len(names) > 1:
            unique = len(set(names)) == len(names)
            raise SeveralSignals(
                f"{path} holds several signals {names}; pass variable= (a title "
                "or an index) to choose one",
                names if unique else [str(i) for i in range(len(names))],
            )
        return 0
    if isinstance(variable, int | np.integer) and not isinstance(variable, bool):
        if 0 <= variable < len(names):
            return int(variable)
        raise ValueError(
            f"{path} has no signal of index {variable}: it holds {len(names)} "
            f"({list(enumerate(names))})"
        )
    text = str(variable)
    matches = [i for i, n in enumerate(names) if n == text]
    if len(matches) > 1:
        raise ValueError(
            f"{path}: {len(matches)} signals have the title {text!r} (indices "
            f"{matches}); pass variable= one of these indices"
        )
    if matches:
        return matches[0]
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise ValueError(
        f"{path} has no signal {variable!r}; its signals are "
        f"{list(enumerate(names))} (a title or an index)"
    )


# (path, plugin, token) -> rosettasciio's signal dicts, per process: each
# process (a dask worker) reads the file's structure once, then slices
_SIGNALS: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
_SIGNALS_LOCK = threading.Lock()


class RosettaSource(Source):
    """One signal of a file read by rosettasciio, as a picklable source.

    A process that reads from it opens the file with rosettasciio itself,
    in the mode chosen at opening (``lazy``: the reader's lazy mode, or the
    whole file into memory, once per process; never tried again), and
    computes the slices it is asked for, so a dask graph carries the path,
    not rosettasciio's arrays.
    """

    def __init__(
        self,
        path: str,
        plugin: str,
        index: int,
        shape: Any,
        dtype: Any,
        token: str,
        identity: tuple[int, ...] | None = None,
        lazy: bool = True,
    ) -> None:
        self._start(path, shape, dtype, token)
        self.plugin = plugin
        self.index = index
        self.identity = identity  # checked before every read, as for HDF5
        self.lazy = lazy

    def __repr__(self) -> str:
        mode = "lazy" if self.lazy else "in memory"
        return f"RosettaSource({self.path!r}, {self.plugin!r}, {self.index}, {mode})"

    def __reduce__(self) -> tuple[Callable[..., RosettaSource], tuple[Any, ...]]:
        return (
            _rebuild,
            (
                self.path,
                self.plugin,
                self.index,
                self.shape,
                self.dtype,  # itself: a structured (RGB) dtype keeps its fields
                self.token,
                self.closed,
                self.identity,
                self.lazy,
            ),
        )

    def _key(self) -> tuple[str, str, str]:
        return (self.path, self.plugin, self.token)

    def _get(self, key: Any) -> np.ndarray:
        check_identity(self.path, self.identity)
        with _SIGNALS_LOCK:
            signals = _SIGNALS.get(self._key())
        if signals is None:
            plugin = next(p for p in plugins() if p["name"] == self.plugin)
            signals = _read(plugin, self.path, lazy=self.lazy)
            with _SIGNALS_LOCK:
                _SIGNALS[self._key()] = signals
        try:
            data = signals[self.index]["data"][key]
            if isinstance(data, dsa.Array):  # inside a task: this slice, here
                return engine.read_here(data)
            return np.asarray(data)
        except READ_ERRORS as err:  # a truncated file: mmap length, short reads
            raise damaged_read(self.path, key, err, "file") from err


def _rebuild(
    path: str,
    plugin: str,
    index: int,
    shape: tuple[int, ...],
    dtype: Any,
    token: str,
    closed: bool,
    identity: tuple[int, ...] | None = None,
    lazy: bool = True,
) -> RosettaSource:
    if closed:
        mark_closed(token)
    return RosettaSource(path, plugin, index, shape, dtype, token, identity, lazy)


def _forget(token: str) -> None:
    """Drop the signals read for ``token`` in this process (its closer)."""
    with _SIGNALS_LOCK:
        for key in [k for k in _SIGNALS if k[2] == token]:
            del _SIGNALS[key]


register_closer(_forget)


def read_rosetta(
    path: str,
    variable: str | int | None,
    *,
    token: str,
    reader: str | None = None,
) -> xr.Dataset:
    """The signal of ``path`` (``variable`` picks one of several, by title
    or index) as a lazily indexed Dataset, read by rosettasciio's plugin
    ``reader`` (a name; None: the one for the extension, see
    :func:`choose_plugin`).

    The dims are the axes' names; the signal dims those whose ``navigate``
    flag is False, or every dim when the reader gives no flag (HyperSpy's
    rule: such a signal is an image, a spectrum..., with no navigation).
    """
    identity = file_identity(path)  # before reading: later reads check it
    plugin, lazy, signals = read_signals(path, reader)
    names = [signal_name(s, i) for i, s in enumerate(signals)]
    index = choose_signal(names, variable, path)
    signal = signals[index]
    data = signal["data"]
    shape = tuple(int(n) for n in data.shape)
    axes = array_order(signal.get("axes") or [], shape)
    dims, coords, sig = hyperspy.axes_coords(axes, shape, path)
    if sig is None:  # no navigate flag: every axis is a signal axis
        sig = list(dims)
    attrs = hyperspy.metadata_attrs(
        hyperspy.jsonable(signal.get("metadata", {}) or {}),
        _safe_tree(signal.get("original_metadata", {}) or {}),
    )
    attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(sig)
    src = RosettaSource(path, plugin, index, shape, data.dtype, token, identity, lazy)
    with _SIGNALS_LOCK:
        _SIGNALS[src._key()] = signals  # this process has read it already
    stored = None
    if isinstance(data, dsa.Array):
        stored = tuple(max(c) if c else 1 for c in data.chunks)
    var = source_variable(
        src,
        dims,
        attrs,
        disk_chunks=stored,
        signal=sig,
        encoding={
            "source": path,
            "format": f"{plugin} (rosettasciio{'' if lazy else ', read into memory'})",
        },
    )
    name = names[index] if len(signals) > 1 else ANONYMOUS
    coords = {k: v for k, v in coords.items() if k != name}
    return xr.Dataset({name: var}, coords=coords)


def array_order(
    axes: list[dict[str, Any]], shape: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    """rosettasciio's axis dicts in the data's dim order, as HyperSpy takes
    them: the list's order (HyperSpy ignores ``index_in_array`` in axis
    dicts, and the Image reader's are swapped), or ``index_in_array``'s
    where only that matches the data's shape.

    Examples
    --------
    >>> from xsignal.io.rosetta import array_order
    >>> axes = [{"name": "y", "size": 2, "index_in_array": 1},
    ...         {"name": "x", "size": 3, "index_in_array": 0}]
    >>> [a["name"] for a in array_order(axes, (2, 3))]
    ['y', 'x']
    >>> [a["name"] for a in array_order(axes, (3, 2))]
    ['x', 'y']
    """

    def fits(order: list[dict[str, Any] | None]) -> bool:
        return all(
            a is None or a.get("size") is None or int(a["size"]) == n
            for a, n in zip(order, shape)
        )

    listed: list[dict[str, Any] | None] = list(axes[: len(shape)])
    listed += [None] * (len(shape) - len(listed))
    if fits(listed):
        return listed
    by_index: list[dict[str, Any] | None] = [None] * len(shape)
    for i, axis in enumerate(axes):
        where = axis.get("index_in_array", i)
        if where is not None and 0 <= int(where) < len(shape):
            by_index[int(where)] = axis
    return by_index if fits(by_index) else listed


def _safe_tree(tree: Any) -> Any:
    """Original metadata as JSON types: big arrays become a short note."""
    if isinstance(tree, dict):
        return {str(k): _safe_tree(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray) and tree.size > 10_000:
        return f"<{tree.dtype} array of shape {tree.shape}>"
    if isinstance(tree, list | tuple) and len(tree) > 10_000:
        return f"<list of {len(tree)} items>"
    return hyperspy.jsonable(tree)
