"""HyperSpy ``.hspy`` files: a reader and the ``engine="hspy"`` xarray backend.

The layout (HDF5, written by HyperSpy/RosettaSciIO): the root has
``file_format = "HyperSpy"``; each signal is a group
``/Experiments/<name>`` holding the array ``data``, one group ``axis-<i>``
per array dim *in array order* (HyperSpy's axes manager lists navigation
axes in the reverse order, the files do not), and the ``metadata`` and
``original_metadata`` trees (groups of attributes). An axis group has
``name``, ``units``, ``size`` and ``navigate``; a uniform axis has
``offset`` and ``scale``, a non-uniform one a dataset ``axis`` with its
values, a functional one an ``expression`` of ``x``.

Axes become coordinates (units in their attrs), ``navigate=False`` axes
the signal dims, the title an attr and the metadata trees JSON strings in
attrs (so they survive :func:`xsignal.save`).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
import uuid
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ..dims import SIGNAL_DIMS_ATTR, encode_signal_dims
from ..handles import H5Source, close_token
from .common import clean_attr, dask_chunks, lazy_array, open_h5, source_for

_NONE = "_None_"
# key prefixes HyperSpy uses to keep Python types in HDF5 attribute names
_PREFIXES = (
    "_list_empty_",
    "_tuple_empty_",
    "_list_",
    "_tuple_",
    "_sig_",
    "_datetime_",
    "_hspy_AxesManager_",
    "_bs_",
)


def is_hspy(handle) -> bool:
    """True for a HyperSpy file (``file_format`` attribute "HyperSpy")."""
    fmt = clean_attr(handle.attrs.get("file_format", ""))
    return isinstance(fmt, str) and fmt.lower() == "hyperspy"


def experiments(handle) -> dict[str, Any]:
    """The signal groups of a HyperSpy file by name (those holding ``data``)."""
    group = handle.get("Experiments")
    if group is None:
        return {}
    return {k: g for k, g in group.items() if hasattr(g, "keys") and "data" in g}


def _choose(handle, variable: str | None):
    path = handle.filename
    found = experiments(handle)
    if not found:
        raise ValueError(f"{path} is a HyperSpy file without any signal")
    if variable is None:
        if len(found) > 1:
            raise ValueError(
                f"{path} holds several signals {list(found)}; pass variable= "
                "to choose one"
            )
        return next(iter(found.items()))
    key = variable.strip("/").removeprefix("Experiments/")
    if key not in found:
        raise ValueError(
            f"{path} has no signal {variable!r}; its signals are {list(found)}"
        )
    return key, found[key]


# --- axes ----------------------------------------------------------------------


def _value(raw: Any) -> Any:
    value = clean_attr(raw)
    return None if isinstance(value, str) and value == _NONE else value


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCS = {
    f: getattr(np, f)
    for f in ("exp", "log", "log10", "sqrt", "sin", "cos", "tan", "abs", "arctan")
}


def evaluate(expression: str, names: dict[str, Any]) -> np.ndarray:
    """Evaluate a functional axis' arithmetic ``expression`` (no ``eval``).

    Examples
    --------
    >>> evaluate("a*x**2 + 1", {"a": 2.0, "x": np.arange(3.0)})
    array([1., 3., 9.])
    """

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.Name) and node.id in ("pi", "e"):
            return getattr(math, node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and len(node.args) == 1
        ):
            return _FUNCS[node.func.id](walk(node.args[0]))
        raise ValueError(f"unsupported expression {expression!r}")

    return np.asarray(walk(ast.parse(expression, mode="eval")), dtype=float)


def _axis_values(group, size: int) -> np.ndarray | None:
    """The coordinate values of one axis group, or None if unknown."""
    attrs = group.attrs
    kind = _value(attrs.get("_type", "UniformDataAxis"))
    if "axis" in group or (kind == "DataAxis" and "axis" in attrs):
        values = group["axis"][()] if "axis" in group else attrs["axis"]
        return np.asarray(values)
    if kind == "FunctionalDataAxis" or "expression" in attrs:
        names = {
            k: _value(v)
            for k, v in attrs.items()
            if k not in ("expression", "name", "units", "navigate", "_type")
        }
        if "x" in group:
            x = group["x"]
            names["x"] = (
                _axis_values(x, size)
                if hasattr(x, "attrs") and "size" in x.attrs
                else x[()]
            )
        else:
            names["x"] = np.arange(size, dtype=float)
        try:
            return evaluate(str(_value(attrs["expression"])), names)
        except (ValueError, SyntaxError, TypeError):
            warnings.warn(
                f"axis {group.name}: cannot evaluate the functional axis "
                f"{_value(attrs['expression'])!r}; it gets no coordinate",
                UserWarning,
                stacklevel=4,
            )
            return None
    offset = _value(attrs.get("offset", 0.0)) or 0.0
    scale = _value(attrs.get("scale", 1.0))
    scale = 1.0 if scale is None else scale
    return offset + scale * np.arange(size, dtype=float)


def read_axes(group, shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """One dict per array dim: name, units, navigate, values."""
    axes = []
    used: set[str] = set()
    for i, size in enumerate(shape):
        sub = group.get(f"axis-{i}")
        if sub is None:
            axes.append(
                {"name": f"dim_{i}", "units": None, "navigate": None, "values": None}
            )
            continue
        name = _value(sub.attrs.get("name"))
        if not isinstance(name, str) or not name or name in used:
            name = f"dim_{i}"
        used.add(name)
        navigate = sub.attrs.get("navigate")
        values = _axis_values(sub, size)
        if values is not None and values.shape != (size,):
            values = None
        axes.append(
            {
                "name": name,
                "units": _value(sub.attrs.get("units")),
                "navigate": None if navigate is None else bool(navigate),
                "values": values,
            }
        )
    return axes


# --- metadata --------------------------------------------------------------------


def _key(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _jsonable(value: Any) -> Any:
    value = _value(value)
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def read_tree(group) -> dict[str, Any]:
    """A HyperSpy metadata group as a JSON-able dict."""
    out: dict[str, Any] = {}
    for k, v in group.attrs.items():
        out[_key(k)] = _jsonable(v)
    for k, v in group.items():
        if hasattr(v, "keys"):
            out[_key(k)] = read_tree(v)
        elif v.dtype.kind in "biufcSUO" and v.size <= 10_000:
            out[_key(k)] = _jsonable(v[()])
        else:
            out[_key(k)] = f"<{v.dtype} array of shape {v.shape}>"
    return out


def _attrs(group) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    metadata = read_tree(group["metadata"]) if "metadata" in group else {}
    general = metadata.get("General", {})
    if general.get("title"):
        attrs["title"] = general["title"]
    signal_type = metadata.get("Signal", {}).get("signal_type")
    if signal_type:
        attrs["signal_type"] = signal_type
    attrs["metadata"] = json.dumps(metadata, default=str)
    if "original_metadata" in group:
        original = read_tree(group["original_metadata"])
        if original:
            attrs["original_metadata"] = json.dumps(original, default=str)
    return attrs


# --- reading -----------------------------------------------------------------------


def _layout(handle, variable: str | None):
    """(name, group, dims, coords, attrs) of the chosen signal."""
    name, group = _choose(handle, variable)
    if "attributes" in group and bool(group["attributes"].attrs.get("ragged", False)):
        raise NotImplementedError(
            f"{handle.filename}: signal {name!r} is ragged (a different length "
            "per pixel), which xsignal does not read"
        )
    dset = group["data"]
    axes = read_axes(group, dset.shape)
    dims = tuple(a["name"] for a in axes)
    coords = {}
    for a in axes:
        if a["values"] is not None:
            attrs = {"units": a["units"]} if a["units"] else {}
            coords[a["name"]] = xr.Variable(a["name"], a["values"], attrs)
    if any(a["navigate"] is not None for a in axes):
        sig = [a["name"] for a in axes if a["navigate"] is False]
    else:  # no navigate flags (very old files): the last dim is the signal
        sig = list(dims[-1:])
    attrs = _attrs(group)
    attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(sig)
    return name, group, dims, coords, attrs, sig


def read_hspy(handle, variable: str | None, *, chunks: Any, token: str) -> xr.DataArray:
    """One signal of an open ``.hspy`` file as a lazy DataArray."""
    name, group, dims, coords, attrs, sig = _layout(handle, variable)
    dset = group["data"]
    src = source_for(handle, dset.name, token)
    data = lazy_array(
        src, dask_chunks(dset.shape, dims, dset.dtype, dset.chunks, chunks, sig)
    )
    out = xr.DataArray(
        data,
        dims=dims,
        coords=coords,
        attrs=attrs,
        name=None if name == "__unnamed__" else name,
    )
    out.encoding.update(
        {
            "source": handle.filename,
            "chunksizes": dset.chunks,
            "compression": dset.compression,
            "dtype": dset.dtype,
        }
    )
    return out


# --- the xarray backend -----------------------------------------------------------


class HspyBackendArray(BackendArray):
    """xarray's lazy array protocol over one ``.hspy`` dataset."""

    def __init__(self, src: H5Source) -> None:
        self.src = src
        self.shape = src.shape
        self.dtype = src.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        # basic indexing (ints and slices) reaches h5py; xarray applies any
        # list or array indexing to the result in memory
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self.src.__getitem__
        )


class HspyBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="hspy")``: HyperSpy files in xarray.

    The signal becomes the one data variable (named after the signal),
    with coordinates from its axes; ``chunks={}`` gives the on-disk chunks.
    """

    description = "Open HyperSpy .hspy files (HDF5) in xarray"
    url = "https://github.com/xsignal/xsignal"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "variable")

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        variable: str | None = None,
    ) -> xr.Dataset:
        path = os.fspath(filename_or_obj)
        handle = open_h5(path)
        token = uuid.uuid4().hex
        try:
            if not is_hspy(handle):
                raise ValueError(f"{path} is not a HyperSpy file")
            name, group, dims, coords, attrs, _ = _layout(handle, variable)
            dset = group["data"]
            src = source_for(handle, dset.name, token)
        except BaseException:
            handle.close()
            raise
        data = indexing.LazilyIndexedArray(HspyBackendArray(src))
        var = xr.Variable(dims, data, attrs)
        var.encoding = {
            "chunksizes": dset.chunks,
            "preferred_chunks": dict(zip(dims, dset.chunks or dset.shape)),
            "source": path,
            "dtype": dset.dtype,
        }
        key = "data" if name == "__unnamed__" else name
        ds = xr.Dataset({key: var}, coords=coords)
        drop = [drop_variables] if isinstance(drop_variables, str) else drop_variables
        if drop:
            ds = ds.drop_vars([d for d in drop if d in ds.variables])
        ds.set_close(lambda: close_token(token))
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            return os.fspath(filename_or_obj).lower().endswith(".hspy")
        except TypeError:
            return False
