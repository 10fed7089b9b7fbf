"""HyperSpy's file layout, read and written over h5py or zarr groups.

One layout serves ``.hspy`` (HDF5) and ``.zspy`` (zarr format 2) files: the
root has ``file_format = "HyperSpy"``; each signal is a group
``/Experiments/<name>`` holding the array ``data``, one group ``axis-<i>``
per array dim *in array order* (HyperSpy's axes manager lists navigation
axes in the reverse order, the files do not), and the ``metadata`` and
``original_metadata`` trees (groups of attributes). An axis group has
``name``, ``units``, ``size`` and ``navigate``; a uniform axis has
``offset`` and ``scale``, a non-uniform one an array ``axis`` with its
values, a functional one an ``expression`` of ``x``.

Files of format 1.x (HyperSpy < 1.0) have no ``file_format`` attribute,
keep the title in ``mapped_parameters`` and may give no ``navigate``
flags; then ``metadata/Signal/record_by`` says which dims are the signal
("spectrum": the last, "image": the last two).

Reading turns axes into coordinates (units in their attrs), the
``navigate=False`` axes into the signal dims, the title into an attr and
the metadata trees into JSON strings in attrs (so they survive any save).
Writing does the reverse from a DataArray; attrs that HyperSpy has no
place for are kept in ``metadata/_xsignal`` and come back as attrs.

The functions here only use what h5py and zarr groups share (``attrs``,
``get``, ``[name]``, ``in``, ``create_group``); the two differences,
listing members and creating small arrays, are :func:`members` and the
``put`` argument of :func:`write_signal`.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .. import navigators
from ..dims import SIGNAL_DIMS_ATTR, encode_signal_dims, signal_dims
from .common import ANONYMOUS, choose, clean_attr, source_variable
from .uniform_index import lazy_coordinate, uniform_axis

NONE = "_None_"
FILE_FORMAT_VERSION = "3.3"
UNNAMED = "__unnamed__"
# the metadata group holding the attrs HyperSpy has no place for
XSIGNAL_GROUP = "_xsignal"
NAVIGATOR = "_sig_navigator"  # under metadata/_HyperSpy: HyperSpy's navigator
# key prefixes HyperSpy uses to keep Python types in attribute names
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
# attrs that the layout stores in its own places
_LAYOUT_ATTRS = {"title", "signal_type", "metadata", "original_metadata"}
# a uniform axis longer than this gets a coordinate computed on demand
# (xsignal.io.uniform_index) instead of its values in memory: a file of a
# few KB can declare 10^12 points (8 TB of float64); real axes of HyperSpy
# signals stay far below, and an axis of 10^7 points is still only 80 MB
LAZY_AXIS_SIZE = 10**7
# metadata trees are read this many groups deep, no deeper (with a warning):
# HyperSpy writes a few levels; a damaged or hostile file can nest thousands
MAX_METADATA_DEPTH = 64


def members(group: Any) -> Iterator[tuple[str, Any]]:
    """(name, child) pairs of an h5py or zarr group; a child zarr cannot
    open (an object array, HyperSpy's markers) is ``None``, not an error:
    the data may be fine."""
    if not hasattr(group, "members"):  # h5py
        return iter(group.items())

    def each() -> Iterator[tuple[str, Any]]:
        for name in _zarr_names(group):
            try:
                child = group[name]
            except (ValueError, TypeError, KeyError):  # zarr 3: no such dtype
                child = None
            yield name, child

    return each()


def _zarr_names(group: Any) -> list[str]:
    """The children of a zarr group: from its consolidated metadata, else
    from the store's listing (zarr's own ``keys()`` opens every child, and
    one it cannot open, an object array, fails them all), else zarr's."""
    from zarr.core.sync import sync

    consolidated = getattr(group.metadata, "consolidated_metadata", None)
    if consolidated is not None:  # one read opened it all: no listing
        return list(consolidated.metadata)
    store = group.store
    if getattr(store, "supports_listing", False):
        try:

            async def listing() -> list[str]:
                return [n async for n in store.list_dir(group.path)]

            listed = {n.rstrip("/") for n in sync(listing())}  # http: "dir/"
            return sorted(n for n in listed if n and not n.startswith("."))
        except (OSError, NotImplementedError):
            pass
    try:
        names: list[str] = list(group.keys())
        return names
    except (ValueError, TypeError):
        return []


def is_group(obj: Any) -> bool:
    return hasattr(obj, "create_group")


def is_hyperspy(root: Any) -> bool:
    """True for a HyperSpy file: ``file_format`` "HyperSpy" (or "ZSpy"), or the format
    1.x layout (no such attribute, signals under ``Experiments``)."""
    fmt = clean_attr(root.attrs.get("file_format", ""))
    if isinstance(fmt, str) and fmt.lower() in ("hyperspy", "zspy"):
        return True
    return "file_format" not in root.attrs and bool(experiments(root))


def experiments(root: Any) -> dict[str, Any]:
    """The signal groups by name (those holding ``data``)."""
    group = root.get("Experiments")
    if group is None or not is_group(group):
        return {}
    return {
        k: g for k, g in members(group) if g is not None and is_group(g) and "data" in g
    }


def choose_signal(root: Any, variable: str | int | None, where: str) -> tuple[str, Any]:
    """(name, group) of the signal asked for; errors name ``where``."""
    found = experiments(root)
    if not found:
        raise ValueError(f"{where} is a HyperSpy file without any signal")
    if isinstance(variable, str):
        variable = variable.strip("/").removeprefix("Experiments/")
    key = choose(list(found), variable, where, "signals", "signal")
    return key, found[key]


# --- axes ----------------------------------------------------------------------


def value(raw: Any) -> Any:
    """An attribute's value, with HyperSpy's ``"_None_"`` as None."""
    out = clean_attr(raw)
    return None if isinstance(out, str) and out == NONE else out


_OPS: dict[type[ast.AST], Callable[..., Any]] = {
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
            # floats, never Python ints: "9**9**9" overflows at once instead
            # of computing a number with hundreds of millions of digits
            return float(node.value)
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


def axis_values(axis: dict[str, Any], size: int, where: str = "") -> np.ndarray | None:
    """Coordinate values of one axis described as HyperSpy does (the attrs
    of an ``axis-<i>`` group, or an axis dict of rosettasciio), or None.

    Examples
    --------
    >>> axis_values({"offset": 280.0, "scale": 0.5}, 3)
    array([280. , 280.5, 281. ])
    """
    kind = value(axis.get("_type", "UniformDataAxis"))
    if axis.get("axis") is not None:
        return np.asarray(axis["axis"])
    if kind == "FunctionalDataAxis" or axis.get("expression") is not None:
        names = {
            k: value(v)
            for k, v in axis.items()
            if k not in ("expression", "name", "units", "navigate", "_type", "x")
        }
        x = axis.get("x")
        names["x"] = np.arange(size, dtype=float) if x is None else x
        expression = str(value(axis["expression"]))
        try:
            with np.errstate(all="ignore"):
                return evaluate(expression, names)
        except (ValueError, SyntaxError, TypeError, OverflowError, ZeroDivisionError):
            warnings.warn(
                f"axis {where}: cannot evaluate the functional axis "
                f"{expression!r}; it gets no coordinate",
                UserWarning,
                stacklevel=4,
            )
            return None
    numbers = offset_scale(axis, where)
    if numbers is None:
        return None
    offset, scale = numbers
    return offset + scale * np.arange(size, dtype=float)


def is_uniform(axis: dict[str, Any]) -> bool:
    """True for an axis dict of a uniform axis (offset and scale, no values
    and no expression)."""
    kind = value(axis.get("_type", "UniformDataAxis"))
    return (
        axis.get("axis") is None
        and kind != "FunctionalDataAxis"
        and axis.get("expression") is None
    )


def offset_scale(axis: dict[str, Any], where: str = "") -> tuple[float, float] | None:
    """``(offset, scale)`` of a uniform axis dict, or None (with a warning)
    when either is not a number.

    Examples
    --------
    >>> offset_scale({"offset": 280.0, "scale": 0.5})
    (280.0, 0.5)
    """
    numbers = []
    for key, default in (("offset", 0.0), ("scale", 1.0)):
        given = value(axis.get(key, default))
        try:
            numbers.append(default if given is None else float(given))
        except (TypeError, ValueError):
            warnings.warn(
                f"axis {where}: its {key} {given!r} is not a number (damaged "
                "axis metadata); it gets no coordinate",
                UserWarning,
                stacklevel=5,
            )
            return None
    return numbers[0], numbers[1]


def _axis_dict(group: Any, size: int) -> dict[str, Any]:
    """An ``axis-<i>`` group as an axis dict (its attrs, arrays read)."""
    axis = dict(group.attrs.items())
    if "axis" in group:
        axis["axis"] = np.asarray(group["axis"][...])
    if "x" in group:
        x = group["x"]
        if is_group(x):  # the x of a functional axis is itself an axis
            if size <= LAZY_AXIS_SIZE:  # (a longer one gets no coordinate)
                axis["x"] = axis_values(_axis_dict(x, size), size, x.name)
        else:
            axis["x"] = np.asarray(x[...])
    return axis


def axes_coords(
    axes: Sequence[dict[str, Any] | None], shape: tuple[int, ...], where: str = ""
) -> tuple[tuple[str, ...], dict[str, xr.Variable], list[str] | None]:
    """Dims, coordinate variables and signal dims of axis dicts in array
    order, as :func:`axes_coordinates` gives them but as plain variables
    (a Dataset made of them holds every coordinate in memory)."""
    dims, coords, sig = axes_coordinates(axes, shape, where)
    return dims, {str(name): coords[name].variable for name in coords}, sig


def axes_coordinates(
    axes: Sequence[dict[str, Any] | None], shape: tuple[int, ...], where: str = ""
) -> tuple[tuple[str, ...], xr.Coordinates, list[str] | None]:
    """Dims, coordinates and signal dims of axis dicts in array order.

    The signal dims are the axes with ``navigate`` False, or None when no
    axis says (the caller decides then). A uniform axis longer than
    ``LAZY_AXIS_SIZE`` gets a coordinate computed on demand
    (:class:`~xsignal.io.uniform_index.UniformIndex`), a functional one that
    long none (with a warning): a file of a few KB can declare any size.

    Examples
    --------
    >>> dims, coords, sig = axes_coordinates(
    ...     [{"name": "y", "scale": 2.0}, {"name": "e", "navigate": False}],
    ...     (10**12, 3),
    ... )
    >>> dims, sig, type(coords.xindexes["y"]).__name__, float(coords["y"][-1])
    (('y', 'e'), ['e'], 'UniformIndex', 1999999999998.0)
    """
    dims: list[str] = []
    coords: dict[str, xr.Variable] = {}
    lazy: list[xr.Coordinates] = []
    flags: list[bool | None] = []
    for i, size in enumerate(shape):
        given = axes[i] if i < len(axes) else None
        axis = given if given is not None else {}
        name = value(axis.get("name"))
        if not isinstance(name, str) or not name or name in dims:
            name = f"dim_{i}"
        dims.append(name)
        navigate = value(axis.get("navigate"))
        flags.append(None if navigate is None else bool(navigate))
        if not axis:
            continue
        label = f"{where} {name}".strip()
        units = value(axis.get("units"))
        attrs = {"units": units} if isinstance(units, str) and units else {}
        if size > LAZY_AXIS_SIZE and axis.get("axis") is None:
            found = _long_axis(axis, size, name, label, attrs)
            if found is not None:
                lazy.append(found)
            continue
        values = axis_values(axis, size, label)
        if values is not None and values.shape == (size,):
            coords[name] = xr.Variable(name, values, attrs)
    if any(f is not None for f in flags):
        sig = [d for d, f in zip(dims, flags) if f is False]
    else:
        sig = None
    out = xr.Coordinates(coords)
    for one in lazy:
        out.update(one)
    return tuple(dims), out, sig


def _long_axis(
    axis: dict[str, Any], size: int, name: str, where: str, attrs: dict[str, Any]
) -> xr.Coordinates | None:
    """The lazily computed coordinate of a uniform axis longer than
    ``LAZY_AXIS_SIZE``, or None (with a warning) for a functional axis
    (not evaluated) or a uniform one whose values are not evenly spaced."""
    if not is_uniform(axis):
        warnings.warn(
            f"axis {where}: a functional axis of {size:,} points (over "
            f"{LAZY_AXIS_SIZE:,}) is not evaluated at open; it gets no coordinate",
            UserWarning,
            stacklevel=5,
        )
        return None
    numbers = offset_scale(axis, where)
    if numbers is None:
        return None
    offset, scale = numbers
    if not (math.isfinite(offset) and math.isfinite(scale) and scale != 0):
        warnings.warn(
            f"axis {where}: {size:,} points of offset {offset!r} and scale "
            f"{scale!r} are not evenly spaced values; it gets no coordinate",
            UserWarning,
            stacklevel=5,
        )
        return None
    return lazy_coordinate(offset, scale, size, name, attrs)


# --- metadata --------------------------------------------------------------------


def _key(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def jsonable(raw: Any) -> Any:
    """A metadata value as plain JSON types (arrays become lists)."""
    out = value(raw)
    if isinstance(out, np.ndarray):
        return [jsonable(v) for v in out.tolist()] if out.ndim else out.item()
    if isinstance(out, np.generic):
        return out.item()
    if isinstance(out, bytes):
        return out.decode("utf-8", "replace")
    if isinstance(out, list | tuple):
        return [jsonable(v) for v in out]
    if isinstance(out, dict):
        return {str(k): jsonable(v) for k, v in out.items()}
    return out


def read_tree(group: Any, where: str = "") -> dict[str, Any]:
    """A metadata group as a JSON-able dict.

    The walk keeps its own stack (no recursion) and visits each group once,
    opening children by their names in their parent; groups deeper than
    ``MAX_METADATA_DEPTH`` are left out, with one warning naming the file
    (``where``) and the first group cut.
    """
    out: dict[str, Any] = {}
    path = str(getattr(group, "name", "") or "").rstrip("/")
    stack: list[tuple[Any, dict[str, Any], str, int]] = [(group, out, path, 0)]
    cut: list[str] = []
    holders: list[dict[str, Any]] = []  # groups that held a signal
    parents: dict[int, tuple[dict[str, Any], str]] = {}
    while stack:
        node, into, path, depth = stack.pop()
        for k, v in node.attrs.items():
            into[_key(k)] = jsonable(v)
        for k, v in members(node):
            if v is None:
                into[_key(k)] = "<an array zarr cannot read (object dtype)>"
            elif is_group(v):
                if k.startswith("_sig_"):  # a signal (a navigator): not metadata
                    holders.append(into)
                    continue
                if depth >= MAX_METADATA_DEPTH:
                    cut.append(f"{path}/{k}")
                    continue
                child: dict[str, Any] = {}
                into[_key(k)] = child
                parents[id(child)] = (into, _key(k))
                stack.append((v, child, f"{path}/{k}", depth + 1))
            elif v.dtype.kind in "biufcSUO" and v.size <= 10_000:
                into[_key(k)] = jsonable(np.asarray(v[...]))
            else:
                into[_key(k)] = f"<{v.dtype} array of shape {v.shape}>"
    for holder in holders:  # a group left empty (_HyperSpy): as if never there
        if not holder and id(holder) in parents:
            parent, key = parents[id(holder)]
            del parent[key]
    if cut:
        others = f" (and {len(cut) - 1} other groups)" if len(cut) > 1 else ""
        warnings.warn(
            f"{where or 'the file'}: its metadata is nested more than "
            f"{MAX_METADATA_DEPTH} groups deep; what is under {cut[0]}{others} "
            "is left out",
            UserWarning,
            stacklevel=2,
        )
    return out


def metadata_attrs(
    metadata: dict[str, Any], original: dict[str, Any] | None = None
) -> dict[str, Any]:
    """DataArray attrs from HyperSpy's metadata (and original metadata) trees."""
    metadata = dict(metadata)
    attrs: dict[str, Any] = dict(metadata.pop(XSIGNAL_GROUP, None) or {})
    general = metadata.get("General", {})
    if isinstance(general, dict) and general.get("title"):
        attrs["title"] = general["title"]
    signal = metadata.get("Signal", {})
    if isinstance(signal, dict) and signal.get("signal_type"):
        attrs["signal_type"] = signal["signal_type"]
    if attrs.pop("_no_title", False):
        attrs.pop("title", None)
    if not attrs.pop("_no_metadata", False):
        attrs["metadata"] = json.dumps(metadata, default=str)
    if original:
        attrs["original_metadata"] = json.dumps(original, default=str)
    return attrs


def _tree_attrs(group: Any, where: str) -> dict[str, Any]:
    metadata = read_tree(group["metadata"], where) if "metadata" in group else {}
    if "mapped_parameters" in group:  # format 1.x: the title lives here
        old = read_tree(group["mapped_parameters"], where)
        metadata.setdefault("General", {}).setdefault("title", old.get("title"))
        if "record_by" in old:
            metadata.setdefault("Signal", {}).setdefault("record_by", old["record_by"])
    original = (
        read_tree(group["original_metadata"], where)
        if "original_metadata" in group
        else {}
    )
    return metadata_attrs(metadata, original)


# --- reading -----------------------------------------------------------------------


def apply_coord_hints(coords: xr.Coordinates, attrs: dict[str, Any]) -> None:
    """Give back the coordinates xsignal wrote beside HyperSpy's axes:
    exact values where the axis' offset and scale round them, none where
    the array had none."""
    for dim in attrs.pop("_no_coords", None) or []:
        if dim in coords:
            del coords[dim]
    for dim, values in (attrs.pop("_coords", None) or {}).items():
        if dim in coords:
            old = coords[dim]
            coords[dim] = xr.Variable(dim, np.asarray(values), old.attrs)


def stored_navigator(group: Any, shape: tuple[int, ...]) -> Any:
    """The data array of the navigator stored with a signal (HyperSpy's
    ``metadata._HyperSpy.navigator``), when it has the navigation ``shape``;
    else None."""
    try:
        data = group["metadata"]["_HyperSpy"][NAVIGATOR]["data"]
    except (KeyError, TypeError):
        return None
    return data if tuple(data.shape) == tuple(shape) else None


def read_layout(
    root: Any, variable: str | int | None, where: str
) -> tuple[str, Any, tuple[str, ...], xr.Coordinates, dict[str, Any], list[str], Any]:
    """(name, data array, dims, coords, attrs, signal dims, the stored
    navigator's array or None) of one signal."""
    name, group = choose_signal(root, variable, where)
    if "attributes" in group and bool(group["attributes"].attrs.get("ragged", False)):
        raise NotImplementedError(
            f"{where}: signal {name!r} is ragged (a different length "
            "per pixel), which xsignal does not read"
        )
    data = group["data"]
    axes = [
        _axis_dict(group[f"axis-{i}"], n) if f"axis-{i}" in group else None
        for i, n in enumerate(data.shape)
    ]
    dims, coords, sig = axes_coordinates(axes, tuple(data.shape), where)
    attrs = _tree_attrs(group, where)
    apply_coord_hints(coords, attrs)
    if attrs.pop("_no_signal_dims", False):  # written by xsignal as an image
        sig = []
    elif sig is None:  # no navigate flags (old files): record_by, else the last dim
        record_by = json.loads(attrs.get("metadata", "{}")).get("Signal", {})
        record_by = record_by.get("record_by") if isinstance(record_by, dict) else None
        sig = list(dims[-2:] if record_by == "image" else dims[-1:])
    attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(sig)
    nav_shape = tuple(n for d, n in zip(dims, data.shape) if d not in sig)
    nav = stored_navigator(group, nav_shape) if sig and nav_shape else None
    return name, data, dims, coords, attrs, sig, nav


def read_signal(
    root: Any,
    variable: str | int | None,
    where: str,
    *,
    to_source: Callable[[Any], Any],
) -> xr.Dataset:
    """One signal as a lazily indexed Dataset (the signal its one data
    variable, ``"__xarray_dataarray_variable__"`` when unnamed);
    ``to_source(array)`` makes the :class:`xsignal.sources.Source` of the
    file's array (h5py and zarr arrays differ)."""
    name, array, dims, coords, attrs, sig, nav = read_layout(root, variable, where)
    encoding = {
        "source": where,
        "variable": array.name,
        "chunksizes": array.chunks,
        "dtype": array.dtype,
    }
    if nav is not None:
        encoding[navigators.STORED] = source_variable(
            to_source(nav), [d for d in dims if d not in sig], disk_chunks=nav.chunks
        )
    var = source_variable(
        to_source(array),
        dims,
        attrs,
        disk_chunks=array.chunks,
        signal=sig,
        encoding=encoding,
    )
    key = ANONYMOUS if name == UNNAMED else name
    return xr.Dataset({key: var}, coords=coords)


# --- writing -----------------------------------------------------------------------


def hyperspy_axes(da: xr.DataArray) -> list[dict[str, Any]]:
    """HyperSpy axis dicts for ``da``'s dims, in array order.

    A dim whose coordinate is evenly spaced becomes a uniform axis (offset,
    scale), another numeric coordinate a non-uniform axis (its values in
    ``axis``), a dim without one a uniform axis of step 1 from 0. A
    computed coordinate (:class:`~xsignal.io.uniform_index.UniformIndex`)
    longer than ``LAZY_AXIS_SIZE`` gives its offset and scale, none of
    its values computed.

    Examples
    --------
    >>> da = xr.DataArray(np.zeros((2, 3)), dims=("x", "e"),
    ...                   coords={"e": ("e", [1.0, 1.5, 2.0], {"units": "eV"})})
    >>> [(a["name"], a["navigate"], a.get("scale"), a["units"])
    ...  for a in hyperspy_axes(da)]
    [('x', True, 1.0, '_None_'), ('e', False, 0.5, 'eV')]
    """
    sig = set(signal_dims(da))
    axes = []
    for dim, size in da.sizes.items():
        axis: dict[str, Any] = {
            "_type": "UniformDataAxis",
            "name": str(dim),
            "size": int(size),
            "navigate": dim not in sig,
            "is_binned": False,
            "units": NONE,
            "offset": 0.0,
            "scale": 1.0,
        }
        coord = da.coords[dim] if dim in da.coords else None
        # a long computed coordinate: its offset and scale, no values made
        lazy = uniform_axis(da.xindexes.get(dim)) if size > LAZY_AXIS_SIZE else None
        if coord is not None and lazy is not None:
            units = coord.attrs.get("units")
            axis["units"] = str(units) if units else NONE
            axis["offset"], axis["scale"] = lazy
        elif coord is not None and coord.dtype.kind in "iuf" and size:
            values = np.asarray(coord.values, dtype=float)
            units = coord.attrs.get("units")
            axis["units"] = str(units) if units else NONE
            steps = np.diff(values)
            if size == 1 or np.allclose(steps, steps[0], rtol=1e-9, atol=0):
                axis["offset"] = float(values[0])
                axis["scale"] = (
                    float((values[-1] - values[0]) / (size - 1)) if size > 1 else 1.0
                )
                exact = axis["offset"] + axis["scale"] * np.arange(size, dtype=float)
                if not np.array_equal(exact, values) or coord.dtype != float:
                    axis["exact"] = coord.values  # kept by xsignal, not HyperSpy
            else:
                del axis["offset"], axis["scale"]
                axis["_type"] = "DataAxis"
                axis["axis"] = values
        elif coord is None:
            axis["exact"] = None  # no coordinate: xsignal gives none back
        axes.append(axis)
    return axes


def _plain(raw: Any) -> Any:
    """A value as JSON types (for zarr attrs)."""
    if isinstance(raw, np.ndarray):
        return raw.tolist()
    if isinstance(raw, np.generic):
        return raw.item()
    return raw


def write_tree(group: Any, tree: dict[str, Any], *, json_attrs: bool) -> None:
    """Write a dict as groups of attributes, HyperSpy's way.

    ``json_attrs`` (zarr) stores plain JSON values; otherwise (HDF5) lists
    of numbers or strings become arrays under a ``_list_`` key.
    """
    for key, item in tree.items():
        key = str(key)
        if isinstance(item, dict):
            write_tree(group.create_group(key), item, json_attrs=json_attrs)
        elif item is None:
            group.attrs[key] = NONE
        elif isinstance(item, list | tuple):
            if not item:
                group.attrs[f"_list_empty_{key}"] = NONE
                continue
            array = np.asarray(item) if _homogeneous(item) else None
            if array is None:
                group.attrs[key] = json.dumps(item, default=str)
            elif json_attrs:
                group.attrs[f"_list_{key}"] = _plain(array)
            else:
                group.attrs[f"_list_{key}"] = (
                    array.astype("S") if array.dtype.kind == "U" else array
                )
        elif isinstance(item, str | bool | int | float | np.generic | np.ndarray):
            group.attrs[key] = _plain(item) if json_attrs else item
        else:
            group.attrs[key] = str(item)


def _homogeneous(items: list[Any] | tuple[Any, ...]) -> bool:
    kinds = {type(v) for v in items}
    return kinds <= {int, float} or kinds == {str} or kinds == {bool}


def _metadata_tree(
    da: xr.DataArray, hints: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(metadata, original_metadata) trees to write for ``da``'s attrs;
    ``hints`` (coordinates HyperSpy's axes cannot give exactly) go with the
    attrs HyperSpy has no place for."""
    attrs = dict(da.attrs)
    try:
        metadata = json.loads(attrs.get("metadata", "{}"))
    except (TypeError, ValueError):
        metadata = {}
    metadata = metadata if isinstance(metadata, dict) else {}
    metadata.pop(XSIGNAL_GROUP, None)
    general = metadata.setdefault("General", {})
    title = attrs.get("title", da.name if da.name is not None else "")
    general["title"] = str(title)
    if "signal_type" in attrs:
        metadata.setdefault("Signal", {})["signal_type"] = str(attrs["signal_type"])
    extra = {
        k: v
        for k, v in attrs.items()
        if k not in _LAYOUT_ATTRS and k != SIGNAL_DIMS_ATTR
    }
    if "metadata" not in attrs:
        extra["_no_metadata"] = True
    if "title" not in attrs:
        extra["_no_title"] = True
    extra.update(hints)
    if extra:
        metadata[XSIGNAL_GROUP] = extra
    try:
        original = json.loads(attrs["original_metadata"])
    except (KeyError, TypeError, ValueError):
        original = None
    return metadata, original if isinstance(original, dict) else None


def write_signal(
    root: Any,
    da: xr.DataArray,
    *,
    put: Callable[[Any, str, np.ndarray], Any],
    json_attrs: bool,
    file_format: str = "HyperSpy",
) -> Any:
    """Write everything of ``da`` but its data; return the signal's group.

    ``put(group, name, values)`` creates a small array in a group (h5py
    and zarr spell it differently). The caller adds the ``data`` array to
    the returned group. ``da`` must have its signal dims last, as HyperSpy
    requires (see :func:`hyperspy_order`).
    """
    root.attrs["file_format"] = file_format
    root.attrs["file_format_version"] = FILE_FORMAT_VERSION
    name = str(da.name) if da.name is not None else UNNAMED
    # several signals of one file share Experiments (HyperSpy reads a list)
    group = root.require_group("Experiments").create_group(name.replace("/", "_"))
    write_signal_group(group, da, put=put, json_attrs=json_attrs)
    return group


def navigator_group(group: Any) -> Any:
    """A new group for a signal's navigator, where HyperSpy keeps the one
    a user set (``metadata._HyperSpy.navigator``; ``s.plot()`` uses it)."""
    return group["metadata"].require_group("_HyperSpy").create_group(NAVIGATOR)


def write_signal_group(
    group: Any,
    da: xr.DataArray,
    *,
    put: Callable[[Any, str, np.ndarray], Any],
    json_attrs: bool,
) -> None:
    """Write everything of ``da`` but its data into the signal ``group``
    (see :func:`write_signal`)."""
    attributes = group.create_group("attributes")
    attributes.attrs["_lazy"] = False
    attributes.attrs["ragged"] = False
    hints: dict[str, Any] = {}
    axes = hyperspy_axes(da)
    if not signal_dims(da) and da.ndim:
        # a navigator, a virtual image, a map of scalars: HyperSpy users
        # expect the image (or spectrum) of its last two dims (one dim), not
        # a navigation-only signal; xsignal reads back no signal dims
        for axis in axes[-2:]:
            axis["navigate"] = False
        hints["_no_signal_dims"] = True
    for i, axis in enumerate(axes):
        sub = group.create_group(f"axis-{i}")
        if "exact" in axis:
            exact = axis.pop("exact")
            if exact is None:
                hints.setdefault("_no_coords", []).append(axis["name"])
            else:
                hints.setdefault("_coords", {})[axis["name"]] = _plain(exact)
        values = axis.pop("axis", None)
        for key, item in axis.items():
            sub.attrs[key] = item
        if values is not None:
            put(sub, "axis", values)
    metadata, original = _metadata_tree(da, hints)
    write_tree(group.create_group("metadata"), metadata, json_attrs=json_attrs)
    write_tree(
        group.create_group("original_metadata"), original or {}, json_attrs=json_attrs
    )


def check_writable(da: xr.DataArray, extension: str) -> None:
    """HyperSpy files hold numbers and booleans: refuse anything else."""
    if da.dtype.kind in "USO":
        raise TypeError(
            f"cannot save {da.dtype} data as {extension}: HyperSpy files hold "
            "numbers and booleans"
        )


def hyperspy_order(da: xr.DataArray) -> xr.DataArray:
    """``da`` with its navigation dims first and signal dims last (HyperSpy's
    array order); unchanged when already so."""
    sig = list(signal_dims(da))
    order = [d for d in da.dims if d not in sig] + sig
    return da if list(da.dims) == order else da.transpose(*order)
