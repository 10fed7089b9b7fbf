"""A plan before compute: what computing arrays together will read, hold
and return, from their dask graph alone (nothing is read).

:func:`plan` counts the tasks dask will run (after the optimisation
``dask.compute`` applies, with xsignal's engine settings), the blocks of
files the graph reads and their stored bytes, the memory per worker of
the scheduler a compute would run on (:func:`xsignal.engine.footprint`
holds the model), and the bytes that come back. :func:`xsignal.compute`
checks the same estimate before it starts (:func:`check_memory`) and warns
with a :class:`MemoryWarning` when it does not fit.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from . import engine
from .engine import MemoryWarning, check_memory, human_bytes, is_read_layer
from .io.h5source import H5Source, h5_file
from .sources import ArraySource, Source

__all__ = ["MemoryWarning", "Plan", "check_memory", "plan"]


@dataclass(frozen=True)
class Plan:
    """What computing some arrays together will do, known before it runs.

    Attributes
    ----------
    tasks : int
        Tasks dask runs, after the optimisation of ``dask.compute`` (with
        xsignal's settings: no low-level fusion) and its final assembly.
    blocks_read : int
        Blocks read from files opened with :func:`xsignal.open` (a block
        that several arrays use is read once).
    bytes_read : int
        Their stored bytes: compressed where the file tells its stored size
        (HDF5, zarr), in proportion to the elements read; else in memory.
    peak_memory : int
        Bytes per worker at the peak (see :func:`xsignal.engine.footprint`:
        ``threads`` tasks each holding its inputs and result, plus the
        results assembled for the caller), beyond the process's own.
    bytes_to_caller : int
        Bytes of the computed results (what reaches this process).
    workers, threads : int
        The scheduler's workers and threads per worker the estimate is for.
    memory_limit : int or None
        Memory per worker the scheduler has (the machine's available
        memory for local schedulers, ``memory_limit`` on a cluster), None
        when unknown.
    scheduler : str
        Where the compute would run (:func:`xsignal.engine.where`).
    """

    tasks: int
    blocks_read: int
    bytes_read: int
    peak_memory: int
    bytes_to_caller: int
    workers: int = 1
    threads: int = 1
    memory_limit: int | None = None
    scheduler: str = "threads"

    @property
    def fits(self) -> bool:
        """Whether the peak memory fits the memory each worker has."""
        return self.memory_limit is None or self.peak_memory <= self.memory_limit

    def __repr__(self) -> str:
        limit = (
            "unknown" if self.memory_limit is None else human_bytes(self.memory_limit)
        )
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (
            f"Plan(tasks={self.tasks}, blocks_read={self.blocks_read}, "
            f"bytes_read={human_bytes(self.bytes_read)}, "
            f"peak_memory={human_bytes(self.peak_memory)} per worker, "
            f"bytes_to_caller={human_bytes(self.bytes_to_caller)}, "
            f"workers={self.workers} x {threads} ({self.scheduler}), "
            f"memory_limit={limit})"
        )


def plan(*arrays: Any) -> Plan:
    """The plan of computing ``arrays`` together, made without reading data.

    As :func:`xsignal.compute` would compute them: one dask graph, inputs
    that several arrays share read once, on the scheduler active now.
    Arrays in memory count nothing.

    Parameters
    ----------
    *arrays : DataArray, dask array or other dask collection

    Returns
    -------
    Plan
        ``tasks``, ``blocks_read``, ``bytes_read``, ``peak_memory`` (per
        worker), ``bytes_to_caller``, and what the scheduler has; its repr
        in human units.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, xarray as xr, xsignal
    >>> from xsignal.plan import plan
    >>> path = os.path.join(tempfile.mkdtemp(), "si.nc")
    >>> data = xr.DataArray(np.ones((64, 32, 128), "f4"), dims=("y", "x", "e"))
    >>> xsignal.save(data.chunk({"y": 16}), path, compression=None)
    >>> da = xsignal.open(path)  # 4 blocks of 16 x 32 x 128 float32
    >>> p = plan(da.sum("e"), da.sum(("y", "x")))  # one pass reads both
    >>> p.blocks_read, p.bytes_read == da.nbytes, p.bytes_to_caller
    (4, True, 8704)
    >>> p
    Plan(tasks=..., blocks_read=4, bytes_read=1.00 MiB, peak_memory=...)
    """
    lazy, graph = engine.graph_of(*arrays)
    res = engine.resources()
    fp = engine.footprint(*arrays, on=res)
    blocks, nbytes = _reads(graph, lazy)
    return Plan(
        tasks=_tasks(lazy),
        blocks_read=blocks,
        bytes_read=nbytes,
        peak_memory=fp.peak,
        bytes_to_caller=fp.results,
        workers=res.workers,
        threads=res.threads,
        memory_limit=res.memory,
        scheduler=res.where,
    )


def _tasks(lazy: list[Any]) -> int:
    """Tasks of the graph ``dask.compute(*lazy)`` runs, after its
    optimisation, with xsignal's settings (:func:`engine._unfused`)."""
    if not lazy:
        return 0
    with engine._unfused():
        try:
            from dask._expr import FinalizeCompute
            from dask.base import collections_to_expr
        except ImportError:  # dask before expressions: a low-level dict
            base = importlib.import_module("dask.base")
            graph = dict(base.collections_to_dsk(lazy, optimize_graph=True))
        else:
            expr = FinalizeCompute(collections_to_expr(lazy, True)).optimize()
            graph = dict(expr.__dask_graph__())
    return sum(1 for value in graph.values() if _is_task(value))


def _is_task(value: Any) -> bool:
    """Whether a graph value runs a function (not data held in the graph)."""
    try:
        from dask._task_spec import DataNode, GraphNode
    except ImportError:  # dask before task specs: tuples
        return bool(dask.core.istask(value))
    if isinstance(value, DataNode):
        return False
    return isinstance(value, GraphNode) or bool(dask.core.istask(value))


def _needed(graph: Any, lazy: list[Any]) -> dict[str, set[Any]]:
    """The keys of each layer of ``graph`` that the outputs of ``lazy`` need
    (the graph culled to them, as dask culls it before computing)."""
    from dask.core import flatten

    wanted = set(flatten([obj.__dask_keys__() for obj in lazy]))
    outside = graph.get_all_external_keys() if _has_legacy(graph) else set()
    found: dict[str, set[Any]] = {}
    for name in reversed(graph._toposort_layers()):
        if not wanted:
            break
        layer, deps = graph.layers[name].cull(wanted, outside)
        if not deps:
            continue
        found[name] = set(deps)
        for key, uses in deps.items():
            wanted |= uses
            wanted.discard(key)
    return found


def _has_legacy(graph: Any) -> bool:
    return any(
        getattr(layer, "has_legacy_tasks", False) for layer in graph.layers.values()
    )


def _reads(graph: Any, lazy: list[Any]) -> tuple[int, int]:
    """(blocks read, stored bytes read) by the read layers of ``graph``."""
    if not lazy:
        return 0, 0
    needed = _needed(graph, lazy)
    blocks = nbytes = 0
    for name, keys in needed.items():
        if not is_read_layer(name):
            continue
        notes = graph.layers[name].collection_annotations or {}
        chunks, dtype = notes.get("chunks"), notes.get("dtype")
        if chunks is None or dtype is None:
            continue
        itemsize = np.dtype(dtype).itemsize
        elements = sum(
            math.prod(c[i] for c, i in zip(chunks, key[1:]))
            for key in keys
            if isinstance(key, tuple)
        )
        blocks += len(keys)
        nbytes += _stored_share(graph, name, elements, itemsize)
    return blocks, nbytes


def _stored_share(graph: Any, name: str, elements: int, itemsize: int) -> int:
    """Stored bytes of ``elements`` elements read by layer ``name``: their
    share of the dataset's stored size where the file tells it, else their
    bytes in memory."""
    src = _source_of(graph, name)
    stored = _stored_size(src) if src is not None else None
    if src is None or stored is None:
        return elements * itemsize
    total = math.prod(src.shape)
    return stored * elements // total if total else 0


def _source_of(graph: Any, name: str) -> Source | None:
    """The :class:`~xsignal.sources.Source` a read layer reads: the object
    its "original-" layer holds, unwrapped (xarray's lazy array adapters,
    then :class:`~xsignal.io.common.SourceArray`)."""
    layer = graph.layers.get("original-" + name)
    if layer is None:
        return None
    for value in layer.values():
        obj = getattr(value, "value", value)  # (a DataNode holds it)
        for _ in range(16):
            if isinstance(obj, Source):
                return obj
            obj = getattr(obj, "src", None) or getattr(obj, "array", None)
            if obj is None:
                break
    return None


def _stored_size(src: Source) -> int | None:
    """Bytes ``src``'s whole dataset takes in its file, or None if unknown
    (the file closed, changed or unreachable: then nothing is opened)."""
    if src.closed:
        return None
    try:
        if isinstance(src, H5Source):
            handle = h5_file(src.path)
            try:
                return int(handle[src.name].id.get_storage_size())
            finally:
                handle.close()
        if isinstance(src, ArraySource):
            array = src.array
            for _ in range(8):
                if hasattr(array, "nbytes_stored"):
                    return int(array.nbytes_stored())
                array = getattr(array, "array", None) or getattr(array, "_array", None)
                if array is None:
                    break
    except Exception:  # a plan never fails on a file it cannot ask
        return None
    return None
