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


def _read(plugin: dict[str, Any], path: str) -> list[dict[str, Any]]:
    reader = importlib.import_module(plugin["api"]).file_reader
    signals: list[dict[str, Any]]  # rosettasciio is untyped
    if "lazy" in inspect.signature(reader).parameters:
        signals = reader(path, lazy=True)
    else:
        signals = reader(path)
    return signals


def read_signals(path: str) -> tuple[str, list[dict[str, Any]]]:
    """(plugin name, rosettasciio's signal dicts) for ``path``, trying each
    matching plugin in turn."""
    found = candidates(path)
    if not found:
        raise ValueError(
            f"{path}: xsignal does not know the extension {os.path.splitext(path)[1]!r}"
        )
    errors = []
    for plugin in found:
        try:
            signals = _read(plugin, path)
        except ImportError as err:  # that plugin's own optional dependency
            errors.append(f"{plugin['name']}: needs {err.name or err}")
            continue
        except Exception as err:  # noqa: BLE001  (the next plugin may read it)
            errors.append(f"{plugin['name']}: {type(err).__name__}: {err}")
            continue
        if signals:
            return plugin["name"], signals
        errors.append(f"{plugin['name']}: no signal")
    raise ValueError(f"cannot read {path} with rosettasciio ({'; '.join(errors)})")


def signal_name(signal: dict[str, Any], index: int) -> str:
    title = signal.get("metadata", {}).get("General", {}).get("title")
    return str(title) if title else f"signal_{index}"


# (path, plugin, token) -> rosettasciio's signal dicts, per process: each
# process (a dask worker) reads the file's structure once, then slices
_SIGNALS: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
_SIGNALS_LOCK = threading.Lock()


class RosettaSource(Source):
    """One signal of a file read by rosettasciio, as a picklable source.

    A process that reads from it opens the file with rosettasciio itself
    (lazily where the reader can) and computes the slices it is asked for,
    so a dask graph carries the path, not rosettasciio's arrays.
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
    ) -> None:
        self._start(path, shape, dtype, token)
        self.plugin = plugin
        self.index = index
        self.identity = identity  # checked before every read, as for HDF5

    def __repr__(self) -> str:
        return f"RosettaSource({self.path!r}, {self.plugin!r}, {self.index})"

    def __reduce__(self) -> tuple[Callable[..., RosettaSource], tuple[Any, ...]]:
        return (
            _rebuild,
            (
                self.path,
                self.plugin,
                self.index,
                self.shape,
                self.dtype.str,
                self.token,
                self.closed,
                self.identity,
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
            signals = _read(plugin, self.path)
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
    dtype: str,
    token: str,
    closed: bool,
    identity: tuple[int, ...] | None = None,
) -> RosettaSource:
    if closed:
        mark_closed(token)
    return RosettaSource(path, plugin, index, shape, dtype, token, identity)


def _forget(token: str) -> None:
    """Drop the signals read for ``token`` in this process (its closer)."""
    with _SIGNALS_LOCK:
        for key in [k for k in _SIGNALS if k[2] == token]:
            del _SIGNALS[key]


register_closer(_forget)


def read_rosetta(path: str, variable: str | None, *, token: str) -> xr.Dataset:
    """The signal of ``path`` (``variable`` picks one of several, by title
    or index) as a lazily indexed Dataset."""
    identity = file_identity(path)  # before reading: later reads check it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plugin, signals = read_signals(path)
    names = [signal_name(s, i) for i, s in enumerate(signals)]
    if variable is None:
        if len(signals) > 1:
            unique = len(set(names)) == len(names)
            raise SeveralSignals(
                f"{path} holds several signals {names}; pass variable= (a title "
                "or an index) to choose one",
                names if unique else [str(i) for i in range(len(names))],
            )
        index = 0
    elif str(variable) in names:
        index = names.index(str(variable))
    elif str(variable).isdigit() and int(variable) < len(signals):
        index = int(variable)
    else:
        raise ValueError(f"{path} has no signal {variable!r}; its signals are {names}")
    signal = signals[index]
    data = signal["data"]
    shape = tuple(int(n) for n in data.shape)
    axes: list[dict[str, Any] | None] = [None] * len(shape)
    for i, axis in enumerate(signal.get("axes", [])):
        where = axis.get("index_in_array", i)
        if where is not None and where < len(shape):
            axes[where] = axis
    dims, coords, sig = hyperspy.axes_coords(axes, shape, path)
    if sig is None:
        sig = list(dims[-1:])
    attrs = hyperspy.metadata_attrs(
        hyperspy.jsonable(signal.get("metadata", {}) or {}),
        _safe_tree(signal.get("original_metadata", {}) or {}),
    )
    attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(sig)
    src = RosettaSource(path, plugin, index, shape, data.dtype, token, identity)
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
        encoding={"source": path, "format": f"{plugin} (rosettasciio)"},
    )
    name = names[index] if len(signals) > 1 else ANONYMOUS
    coords = {k: v for k, v in coords.items() if k != name}
    return xr.Dataset({name: var}, coords=coords)


def _safe_tree(tree: Any) -> Any:
    """Original metadata as JSON types: big arrays become a short note."""
    if isinstance(tree, dict):
        return {str(k): _safe_tree(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray) and tree.size > 10_000:
        return f"<{tree.dtype} array of shape {tree.shape}>"
    if isinstance(tree, list | tuple) and len(tree) > 10_000:
        return f"<list of {len(tree)} items>"
    return hyperspy.jsonable(tree)
