"""Where work runs: the one module that knows.

Every computation of xsignal is a dask graph run by the scheduler the user
chose, the xarray way: dask's threads by default, ``dask.config.set(
scheduler=...)``, or a ``dask.distributed.Client``. This module is the one
place that asks which one is active (:func:`where`, never importing
``distributed`` unless it is already imported) and what it has
(:func:`resources`: workers, threads, memory per worker), estimates what a
graph needs there (:func:`footprint`, warning before a compute that would
not fit: :func:`check_memory`), computes with a progress bar or a callback
fed with partial results (:func:`compute`), keeps a window of blocks in
flight for loops over blocks (:func:`stream`), runs a function on every
cluster worker (:func:`on_workers`), and holds the one route the user can
opt into for Python code that holds the GIL: worker processes for
:func:`xsignal.map` (``xsignal.set_options(map_processes=True)``,
:class:`ProcessRoute`). Nothing else in the package probes the scheduler
or starts processes.
"""

from __future__ import annotations

import ast
import atexit
import collections
import concurrent.futures
import contextlib
import contextvars
import importlib
import itertools
import math
import multiprocessing
import os
import queue
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import dask
import dask.array as dsa
import dask.local
import dask.multiprocessing
import dask.threaded
import numpy as np
import xarray as xr
from dask.blockwise import Blockwise
from dask.highlevelgraph import HighLevelGraph

from . import progress as _progress

Where = Literal["sync", "threads", "processes", "distributed", "worker", "other"]


# --- the one probe ------------------------------------------------------------


def _client() -> Any:
    """The default ``dask.distributed`` client, or None (without importing
    distributed: no client can exist before it is imported)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _in_distributed_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def where() -> Where:
    """Where a compute started here now runs.

    ``"worker"`` inside a worker process (a ``dask.distributed`` worker, a
    process of dask's processes scheduler or of the map route): work is
    done here, never handed on. Otherwise the scheduler the user chose:
    ``"distributed"`` (a client), ``"processes"``, ``"sync"``,
    ``"threads"`` (dask's default for arrays), or ``"other"`` (a custom
    scheduler function).

    Examples
    --------
    >>> import dask, xsignal.engine as engine
    >>> engine.where()
    'threads'
    >>> with dask.config.set(scheduler="sync"):
    ...     engine.where()
    'sync'
    """
    if multiprocessing.parent_process() is not None or _in_distributed_worker():
        return "worker"
    client = _client()
    scheduler = dask.base.get_scheduler() if _config_scheduler() or client else None
    if client is not None and scheduler == client.get:
        return "distributed"
    if scheduler is None or scheduler is dask.threaded.get:
        return "threads"
    if scheduler is dask.local.get_sync:
        return "sync"
    if scheduler is dask.multiprocessing.get:
        return "processes"
    return "other"


def _config_scheduler() -> Any:
    return dask.config.get("scheduler", None)


def client() -> Any:
    """The ``dask.distributed`` client computes go to, or None (also when a
    local scheduler was chosen over an existing client)."""
    return _client() if where() == "distributed" else None


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pickles_tasks() -> bool:
    """Whether the active scheduler sends tasks to other processes."""
    return where() in ("processes", "distributed")


# --- what the scheduler has, and what a graph needs there ------------------------


class MemoryWarning(UserWarning):
    """A compute or save estimated to need more memory than the scheduler has.

    Raised as a warning (``warnings.warn``) before any work starts; the
    message names the arrays and a chunking that fits. A ``UserWarning``
    (not a ``ResourceWarning``, which Python hides by default), so it shows
    once per call site; ``warnings.simplefilter("error", MemoryWarning)``
    turns it into an error.
    """


@dataclass(frozen=True)
class Resources:
    """What the active scheduler has: ``workers`` processes of ``threads``
    threads each, and ``memory`` bytes per worker (None when unknown or
    unlimited). Dask's threads and the sync scheduler are one worker, this
    process; its memory is what the machine has available now."""

    where: Where
    workers: int
    threads: int
    memory: int | None


def available_memory() -> int | None:
    """Bytes this machine can give now without swapping, or None if unknown.

    ``MemAvailable`` of ``/proc/meminfo`` on Linux, else psutil's
    ``virtual_memory().available`` when psutil is installed.

    Examples
    --------
    >>> from xsignal import engine
    >>> engine.available_memory() > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        psutil = importlib.import_module("psutil")  # (no stubs: untyped)
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def resources() -> Resources:
    """Workers, threads per worker and memory per worker of the scheduler a
    compute started here would run on (:func:`where`).

    Dask's threads: one worker with dask's ``num_workers`` (or a pool set
    with ``dask.config.set(pool=...)``) threads, default one per core, and
    the machine's available memory (:func:`available_memory`). Sync and
    inside a worker: one thread. Dask's processes: one thread per process,
    the available memory shared among them. A ``dask.distributed`` client:
    its workers, their most threads and their smallest ``memory_limit``
    (None when a worker has no limit).

    Examples
    --------
    >>> import dask
    >>> from xsignal import engine
    >>> with dask.config.set(scheduler="sync"):
    ...     engine.resources().threads
    1
    """
    found = where()
    if found == "distributed":
        info = _client().scheduler_info(n_workers=-1)["workers"].values()
        threads = max([int(w.get("nthreads") or 1) for w in info] or [1])
        limits = [int(w.get("memory_limit") or 0) for w in info]
        memory = min(limits) if limits and all(limits) else None
        return Resources(found, max(1, len(limits)), threads, memory)
    available = available_memory()
    if found in ("sync", "worker"):
        return Resources(found, 1, 1, available)
    pool = dask.config.get("pool", None)
    count = int(
        dask.config.get("num_workers", None)
        or getattr(pool, "_max_workers", None)
        or cores()
    )
    if found == "processes":
        share = None if available is None else available // count
        return Resources(found, count, 1, share)
    return Resources(found, 1, count, available)


@dataclass(frozen=True)
class Footprint:
    """What a graph holds in memory while it runs (see :func:`footprint`).

    ``per_task``: the most one task holds (its inputs and its result);
    ``results``: the results assembled for the caller; ``peak``: bytes per
    worker; ``block``: the chunk shape of the largest block the graph
    reads (from a file, else of any array in it), ``block_chunks`` its
    array's chunks, the pieces a chunking that fits is made from; ``read``
    the bytes of the largest block read from a file.
    """

    per_task: int
    results: int
    peak: int
    threads: int
    block: tuple[int, ...] | None = None
    block_chunks: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)
    read: int = 0


# the layers that read stored data: xsignal.open names them by the token of
# its files (sources.layer_prefix), "original-..." holds the file object
_READ_LAYER = re.compile(r"^xsignal-[0-9a-f]{32}-")


def is_read_layer(name: Any) -> bool:
    """Whether the dask layer ``name`` reads blocks of a file opened with
    :func:`xsignal.open` (one task per block, each reading its block).

    Examples
    --------
    >>> from xsignal import engine
    >>> engine.is_read_layer("xsignal-" + "0" * 32 + "-data-ab12")
    True
    >>> engine.is_read_layer("sum-aggregate-ab12")
    False
    """
    return isinstance(name, str) and _READ_LAYER.match(name) is not None


class _Layers:
    """Block sizes of a high-level graph's layers, from the chunks dask
    notes on every layer that makes an array (``collection_annotations``).

    Two corrections: a reduction's per-block step (a blockwise layer read
    only by its ``-partial-``/``-aggregate-`` layers) is noted with its
    input's chunks but gives the size of its aggregate's blocks; and the
    read tasks of an array turned into delayed objects (``to_delayed``,
    whose layer keeps no chunks) are sized from the region each reads.
    """

    def __init__(self, graph: HighLevelGraph) -> None:
        self.graph = graph
        self.chunks: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.itemsize: dict[str, int] = {}
        self.sized: dict[Any, int] = {}  # bytes of single keys or layers
        for name, layer in graph.layers.items():
            notes = layer.collection_annotations or {}
            chunks, dtype = notes.get("chunks"), notes.get("dtype")
            if chunks is None or dtype is None:
                continue
            try:
                self.itemsize[name] = np.dtype(dtype).itemsize
            except TypeError:
                continue
            self.chunks[name] = tuple(tuple(int(n) for n in c) for c in chunks)
        users: dict[str, list[str]] = collections.defaultdict(list)
        for name, deps in graph.dependencies.items():
            for dep in deps:
                users[dep].append(name)
        for name in graph.layers:
            if _is_store(name):  # dask.array.store: blocks written, none kept
                self.sized[name] = 0
        for name, layer in graph.layers.items():
            found = users.get(name, [])
            if (
                isinstance(layer, Blockwise)
                and found
                and all("-partial-" in u or "-aggregate-" in u for u in found)
            ):
                self.sized[name] = max(self._annotated(u) for u in found)

    def _annotated(self, name: Any) -> int:
        chunks = self.chunks.get(name)
        if chunks is None:
            return 0
        return math.prod(max(c, default=0) for c in chunks) * self.itemsize[name]

    def largest(self, name: Any) -> int:
        """Bytes of the largest block of layer ``name`` (0: unknown)."""
        if name in self.sized:
            return self.sized[name]
        return self._annotated(name)

    def block(self, key: Any) -> int:
        """Bytes of the block of ``key`` (0: unknown)."""
        if key in self.sized:
            return self.sized[key]
        if not isinstance(key, tuple) or not key:
            return self.largest(key)
        if key[0] in self.sized:
            return self.sized[key[0]]
        chunks = self.chunks.get(key[0])
        if chunks is None or len(key) != len(chunks) + 1:
            return 0
        try:
            n = math.prod(int(c[i]) for c, i in zip(chunks, key[1:]))
        except (IndexError, TypeError):
            return 0
        return n * self.itemsize[key[0]]

    def learn_reads(self, layer: Any) -> None:
        """Size the read tasks (``getter(array, region)``) of a layer that
        keeps no chunks, from their regions and the array's itemsize."""
        for key, task in layer.items():
            func = getattr(task, "func", None)
            args: tuple[Any, ...] = tuple(getattr(task, "args", ()))
            if getattr(func, "__name__", "") not in _GETTERS or len(args) < 2:
                continue
            region = getattr(args[1], "value", args[1])
            source = layer.get(getattr(args[0], "key", None))
            dtype = getattr(getattr(source, "value", source), "dtype", None)
            if dtype is None or not isinstance(region, tuple):
                continue
            try:
                n = math.prod(s.stop - s.start for s in region)
                self.sized[key] = int(n) * np.dtype(dtype).itemsize
            except (AttributeError, TypeError):
                continue

    def names_in(self, task: Any) -> list[Any]:
        """The keys of this graph that a task of a materialized layer uses."""
        deps = getattr(task, "dependencies", None)
        if deps is not None:
            return list(deps)
        found: list[Any] = []
        stack = [task]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if item in self.graph.layers:
                    found.append(item)
            elif isinstance(item, tuple) and item and isinstance(item[0], str):
                if item[0] in self.graph.layers and all(
                    isinstance(i, int) for i in item[1:]
                ):
                    found.append(item)
                else:
                    stack.extend(item[1:])
            elif isinstance(item, list | tuple):
                stack.extend(item)
        return found


# dask's functions of the tasks that read a region of an array
_GETTERS = ("getter", "getter_nofancy", "getter_inline")


def _task_bytes(layers: _Layers) -> int:
    """The most one task of the graph holds: its inputs and its result.

    A blockwise layer's task takes one block of each input (every block
    along the axes it contracts); a task of another layer (a reduction's
    combine, a delayed function) the blocks it names. A task whose result
    size is unknown (a delayed function's) is taken to hold twice its
    inputs more while it runs: its working copies (a float64 copy of
    float32 data, as the decompositions make).
    """
    blockwise = {}
    other = {}
    for name, layer in layers.graph.layers.items():
        if str(name).startswith("original-"):
            continue  # the file object, not data
        if isinstance(layer, Blockwise):
            blockwise[name] = layer
        else:
            other[name] = layer
            if name not in layers.chunks:
                layers.learn_reads(layer)
    most = 0
    for name, layer in blockwise.items():
        inputs = 0
        out = set(layer.output_indices)
        for arg, index in layer.indices:
            if index is None or not isinstance(arg, str) or arg in layer.io_deps:
                continue
            blocks = layer.numblocks.get(arg, ())
            fan = math.prod(n for i, n in zip(index, blocks) if i not in out)
            inputs += fan * layers.largest(arg)
        result = layers.largest(name)
        most = max(most, inputs + (result or 2 * inputs))
    for layer in other.values():
        for key, task in layer.items():
            inputs = sum(layers.block(k) for k in layers.names_in(task) if k != key)
            result = layers.block(key)
            most = max(most, inputs + (result or 2 * inputs))
    return most


def _is_store(name: Any) -> bool:
    """Whether a layer (or array) is ``dask.array.store``'s writes, whose
    blocks come back empty."""
    return isinstance(name, str) and name.startswith("store-map-")


def _nbytes(obj: Any) -> int:
    """Bytes of a lazy array's computed value (0: unknown, e.g. delayed,
    or nothing: the writes of ``dask.array.store``)."""
    if isinstance(obj, dsa.Array) and _is_store(obj.name):
        return 0
    try:
        return int(getattr(obj, "nbytes", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def _collections(objs: Any, seen: dict[int, Any]) -> list[Any]:
    """The dask collections in ``objs``, as dask.compute finds them (inside
    lists, tuples, sets and dict values too), each once; without dask's
    ``unpack_collections``, which tokenizes every one (a few ms a compute)."""
    for obj in objs:
        if dask.is_dask_collection(obj):
            seen.setdefault(id(obj), obj)
        elif isinstance(obj, list | tuple | set | frozenset):
            _collections(obj, seen)
        elif isinstance(obj, dict):
            _collections(obj.values(), seen)
    return list(seen.values())


def graph_of(*objs: Any) -> tuple[list[Any], HighLevelGraph]:
    """The dask collections among ``objs`` and their merged high-level graph
    (shared layers once, as in one ``dask.compute``)."""
    lazy = _collections(objs, {})
    graphs = [o.__dask_graph__() for o in lazy]
    merged = HighLevelGraph.merge(*graphs) if graphs else HighLevelGraph({}, {})
    return lazy, merged


def footprint(
    *objs: Any, to_caller: bool = True, on: Resources | None = None
) -> Footprint:
    """The memory that computing ``objs`` together needs per worker.

    The model, from the graph alone (nothing is computed): each thread of a
    worker runs one task at a time, and a task holds its inputs and its
    result (the largest task of the graph, e.g. a block read from a file
    and its converted copy; a delayed function, whose result size is
    unknown, twice its inputs more). The results are assembled for the
    caller: their blocks while the tasks run, then the whole, so twice the
    results at the end, when the buffers of the last blocks read are still
    held for the next reads (xsignal's HDF5 reader recycles them)::

        peak = max(threads * per_task + results, 2 * results + threads * read)

    ``to_caller=False`` (a save: blocks go to a file one by one) counts no
    results. The memory of the process itself (its imports) is not in it,
    nor are temporaries inside a function beyond the above.

    Examples
    --------
    >>> import dask.array as dsa
    >>> from xsignal import engine
    >>> x = dsa.ones((8, 1000), chunks=(2, 1000))  # blocks of 16 000 bytes
    >>> two = engine.Resources("threads", workers=1, threads=2, memory=None)
    >>> f = engine.footprint(x * 2, on=two)  # a block in, a block out
    >>> f.per_task, f.results, f.peak
    (32000, 64000, 128000)
    >>> engine.footprint(x * 2, to_caller=False, on=two).peak
    64000
    """
    res = on or resources()
    lazy, graph = graph_of(*objs)
    layers = _Layers(graph)
    per_task = _task_bytes(layers)
    results = sum(_nbytes(o) for o in lazy) if to_caller else 0
    reads = [n for n in layers.chunks if is_read_layer(n)]
    read = max(
        [layers.largest(n) for n in reads]
        + [
            size
            for key, size in layers.sized.items()
            if isinstance(key, tuple) and key and is_read_layer(key[0])
        ],
        default=0,
    )
    peak = max(res.threads * per_task + results, 2 * results + res.threads * read)
    biggest = max(reads or layers.chunks, key=layers.largest, default=None)
    block = block_chunks = None
    if biggest is not None:
        block_chunks = layers.chunks[biggest]
        block = tuple(max(c, default=0) for c in block_chunks)
    return Footprint(per_task, results, peak, res.threads, block, block_chunks, read)


def human_bytes(n: float) -> str:
    """A number of bytes in binary units (B, KiB, MiB, GiB, TiB).

    Examples
    --------
    >>> from xsignal import engine
    >>> engine.human_bytes(512), engine.human_bytes(3 * 2**29)
    ('512 B', '1.50 GiB')
    """
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "TiB":
            break
    digits = 0 if abs(n) >= 100 else 1 if abs(n) >= 10 else 2
    return f"{n:.{digits}f} {unit}"


def fitting_block(fp: Footprint, memory: int) -> tuple[int, ...] | None:
    """A block shape, smaller than ``fp.block`` along its leading dims (the
    navigation dims, which lead in xsignal's layouts; the last dim stays
    whole), with which the graph of ``fp`` fits ``memory`` bytes per worker;
    None when none does (the results alone do not fit, or even one
    navigation pixel per block is too much).

    Examples
    --------
    >>> from xsignal import engine
    >>> fp = engine.Footprint(per_task=2 * 2**30, results=0, peak=4 * 2**30,
    ...                       threads=2, block=(64, 256, 1024))
    >>> engine.fitting_block(fp, 2**30)
    (16, 256, 1024)
    """
    if fp.block is None or not fp.per_task or 2 * fp.results >= memory:
        return None
    budget = memory - fp.results
    shrink = fp.threads * fp.per_task / budget
    shape = list(fp.block)
    for i in range(len(shape) - 1):
        if shrink <= 1:
            break
        size = max(1, math.floor(shape[i] / shrink))
        shrink *= size / shape[i]
        shape[i] = size
    return tuple(shape) if shrink <= 1 else None


def _names(objs: Iterable[Any]) -> str:
    """The arrays of a compute, as a message names them."""
    found = []
    for obj in objs:
        if not dask.is_dask_collection(obj):
            continue
        name = getattr(obj, "name", None) if hasattr(obj, "dims") else None
        found.append(repr(name) if name is not None else "an unnamed array")
    return ", ".join(found) or "the arrays"


def _by_name(objs: Iterable[Any], fp: Footprint, block: tuple[int, ...]) -> str:
    """``block`` as a chunks dict by dim name, from a DataArray of ``objs``
    whose leading dims are chunked as the block's array; else a tuple."""
    changed = [i for i, (a, b) in enumerate(zip(block, fp.block or ())) if a != b]
    for obj in objs:
        dims, chunks = getattr(obj, "dims", None), getattr(obj, "chunks", None)
        if not dims or not chunks or not isinstance(chunks, tuple):
            continue
        if all(
            i < len(dims) and fp.block_chunks and chunks[i] == fp.block_chunks[i]
            for i in changed
        ):
            new = {str(dims[i]): block[i] for i in changed}
            now = {str(dims[i]): (fp.block or ())[i] for i in changed}
            return f"chunks={new} (now {now})"
    return f"chunks={block} (now {fp.block})"


def memory_problem(
    objs: tuple[Any, ...], fp: Footprint, res: Resources, *, to_caller: bool = True
) -> str | None:
    """What to tell the user when ``fp`` does not fit ``res``, or None."""
    if res.memory is None or fp.peak <= res.memory:
        return None
    verb = "computing" if to_caller else "writing"
    has = (
        f"the {human_bytes(res.memory)} memory_limit of each worker"
        if res.where == "distributed"
        else f"the {human_bytes(res.memory)} available to this process"
    )
    need = (
        f"{verb} {_names(objs)} needs about {human_bytes(fp.peak)} per worker "
        f"({res.threads} thread{'s' if res.threads > 1 else ''} x "
        f"{human_bytes(fp.per_task)} per task + {human_bytes(fp.results)} of "
        f"results; see xsignal.plan), more than {has}"
    )
    block = fitting_block(fp, res.memory)
    if block is not None:
        return (
            f"{need}: use smaller blocks along the navigation dims, "
            f"{_by_name(objs, fp, block)}, when opening "
            "(xsignal.open(path, chunks=...)) or with .chunk(...)"
        )
    if 2 * fp.results >= res.memory:
        return (
            f"{need}: the results alone are {human_bytes(fp.results)}; compute "
            "a smaller result (a reduction, a slice) or save it with xsignal.save"
        )
    return (
        f"{need}: even blocks of one navigation pixel would not fit; use fewer "
        "threads or workers with more memory"
    )


def _stacklevel() -> int:
    """The ``stacklevel`` of a warning issued by the caller of this function
    that points at the first frame outside xsignal (the user's line)."""
    inside = (os.path.dirname(os.path.abspath(__file__)), contextlib.__file__)
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(inside):
        frame = frame.f_back
        level += 1
    return level


# set inside memory_checked(): the computes of a checked whole check nothing
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "xsignal_memory_checked", default=False
)


@contextlib.contextmanager
def memory_checked(*objs: Any, to_caller: bool = True) -> Iterator[None]:
    """Check ``objs`` once (:func:`check_memory`), then run the block without
    the check of each compute inside it (its parts: a save's writes).

    Examples
    --------
    >>> import dask.array as dsa
    >>> from xsignal import engine
    >>> x = dsa.ones(4, chunks=2)
    >>> with engine.memory_checked(x, to_caller=False):
    ...     engine.compute(x.sum(), progress=False)
    (np.float64(4.0),)
    """
    if not _CHECKED.get():  # inside another checked block: checked there
        check_memory(*objs, to_caller=to_caller)
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def check_memory(*objs: Any, to_caller: bool = True) -> None:
    """Warn (:class:`MemoryWarning`) before computing ``objs`` together when
    the estimate (:func:`footprint`) exceeds the memory per worker of the
    scheduler (:func:`resources`).

    :func:`compute` calls it before every compute; a save checks the array
    it writes with ``to_caller=False`` (the blocks go to the file, not to
    the caller), around its writes: ``with memory_checked(da,
    to_caller=False): ...`` (one warning, naming the array).
    The warning names the arrays and a chunking that fits. An estimate that
    fails never stops the work: the model's own errors are not raised.

    Examples
    --------
    >>> import warnings, dask.array as dsa
    >>> from xsignal import engine
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error")
    ...     engine.check_memory(dsa.ones(4, chunks=2).sum())  # fits: silent
    """
    try:
        if not _collections(objs, {}):
            return
        res = resources()
        if res.memory is None or res.where == "worker":
            return
        fp = footprint(*objs, to_caller=to_caller, on=res)
        message = memory_problem(objs, fp, res, to_caller=to_caller)
    except Exception:  # an estimate never stops a compute
        return
    if message is not None:
        warnings.warn(message, MemoryWarning, stacklevel=_stacklevel())


# --- compute --------------------------------------------------------------------


def _unfused() -> Any:
    """A context without dask's low-level task fusion (unless the user set
    it): a fused task runs its little graph through ``dask.order`` each
    time, which on the one-task-per-chunk graphs of whole-file passes cost
    more than it saves (12 % of a navigator pass over 4 GiB)."""
    if dask.config.get("optimization.fuse.active", None) is not None:
        return contextlib.nullcontext()
    return dask.config.set({"optimization.fuse.active": False})


ProgressCallback = Callable[[Any, float], None]


def compute(
    *objs: Any,
    progress: bool | None | ProgressCallback = None,
    desc: str | None = None,
) -> tuple[Any, ...]:
    """``dask.compute(*objs)`` on the user's scheduler, with one progress
    bar or a callback fed with partial results.

    Before it starts, :func:`check_memory` warns when the estimate exceeds
    the memory the scheduler has. On dask's threads the scheduler is given
    explicitly, so dask does not import ``distributed`` to look for a
    client that cannot exist (0.2 s). On a client, distributed's own bar
    follows the futures.

    ``progress`` a function ``callback(partial, fraction)``: called in
    this thread as blocks of the results complete (see
    :func:`compute_with_partials`), instead of a bar.

    Examples
    --------
    >>> import dask.array as dsa
    >>> compute(dsa.ones(4, chunks=2).sum(), 3, progress=False)
    (np.float64(4.0), 3)
    """
    found = where()
    if not _CHECKED.get():
        check_memory(*objs)
    if callable(progress):
        return compute_with_partials(*objs, callback=progress)
    if found == "distributed" and _progress.show_progress(progress):
        return _compute_on_client(_client(), objs)
    scheduler = dask.threaded.get if found == "threads" else None
    with _progress.dask_bar(progress, desc), _unfused():
        out: tuple[Any, ...] = dask.compute(*objs, scheduler=scheduler)
        return out


class _Partial:
    """The partial result of one lazy array: its values so far (NaN where
    no block has come) and the blocks, by output key."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.array = obj.data if isinstance(obj, xr.DataArray) else obj
        dtype = self.array.dtype
        self.values = np.full(
            self.array.shape, np.nan, dtype if dtype.kind in "fc" else np.float64
        )
        edges = [np.cumsum((0, *c)) for c in self.array.chunks]
        self.where = {
            (self.array.name, *index): tuple(
                slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index)
            )
            for index in np.ndindex(*self.array.numblocks)
        }
        self.blocks: dict[Any, Any] = {}

    def put(self, key: Any, block: Any, keep: bool = False) -> None:
        self.values[self.where[key]] = block
        if keep:
            self.blocks[key] = block

    def partial(self) -> Any:
        values = self.values.copy()
        if isinstance(self.obj, xr.DataArray):
            return self.obj.copy(deep=False, data=values)
        return values

    def whole(self, like: Any) -> Any:
        """The result from its blocks (kept with ``put(keep=True)``)."""
        out = np.empty(self.array.shape, self.array.dtype)
        for key, region in self.where.items():
            out[region] = self.blocks.pop(key)
        if isinstance(like, xr.DataArray):
            done = like.copy(deep=False, data=out)
            return done.compute() if dask.is_dask_collection(done) else done
        return out


def _partials(objs: tuple[Any, ...]) -> list[_Partial | None]:
    found: list[_Partial | None] = []
    for obj in objs:
        if not dask.is_dask_collection(obj):
            found.append(None)
        elif isinstance(obj, dsa.Array) or (
            isinstance(obj, xr.DataArray) and isinstance(obj.data, dsa.Array)
        ):
            found.append(_Partial(obj))
        else:
            raise TypeError(
                "compute(progress=callback) fills partial results block by "
                "block: it takes DataArrays and dask arrays, not "
                f"{type(obj).__name__}"
            )
    return found


def compute_with_partials(*objs: Any, callback: ProgressCallback) -> tuple[Any, ...]:
    """Compute ``objs`` in one graph, calling ``callback(partial, fraction)``
    in this thread as blocks of the results complete.

    ``partial`` is shaped like the result (a DataArray with its coords,
    dims and name for a DataArray; a numpy array for a dask array; a tuple
    of them for several objects), NaN where no block has come yet (so
    floating point, whatever the result's dtype), a new array at each
    call; ``fraction`` the share of the results' blocks done, increasing.
    The last call gives the computed results themselves, with fraction 1.

    Blocks come as their tasks finish: on dask's threads, sync and
    processes schedulers the graph runs in a helper thread and this
    thread receives the blocks (blocks that finished while the callback ran
    come together, in one call, so a slow callback never holds the
    computation up); on a ``dask.distributed`` client the results are
    persisted as one graph and their blocks gathered as they complete. The
    graph is the one :func:`compute` runs (shared inputs read once). Other
    schedulers call ``callback`` once, with the results. An exception in
    ``callback`` (or Ctrl-C) stops the computation: no new task starts.

    Examples
    --------
    >>> import dask.array as dsa
    >>> from xsignal import engine
    >>> seen = []
    >>> x = dsa.arange(6.0, chunks=2) * 10
    >>> (out,) = engine.compute_with_partials(
    ...     x, callback=lambda part, f: seen.append((part.copy(), f))
    ... )
    >>> out
    array([ 0., 10., 20., 30., 40., 50.])
    >>> seen[-1][1]  # the last call: the whole result
    1.0
    >>> # each partial: the result's values where done, NaN elsewhere (how
    >>> # many partials come depends on how fast the blocks complete)
    >>> all(np.all(np.isnan(p) | (p == out)) for p, _ in seen)
    True
    """
    parts = _partials(objs)
    found = where()
    if not any(parts) or found in ("other", "worker"):
        with _unfused():
            out: tuple[Any, ...] = dask.compute(*objs)
        callback(_one(out), 1.0)
        return out
    if found == "distributed":
        out = _partials_on_client(_client(), objs, parts, callback)
    else:
        out = _partials_here(objs, parts, callback, found)
    callback(_one(out), 1.0)
    return out


def _one(values: tuple[Any, ...] | list[Any]) -> Any:
    """What a callback gets: the one result, or the tuple of them."""
    return values[0] if len(values) == 1 else tuple(values)


class _Stopped(Exception):
    """Raised in the scheduler's loop to stop a computation whose caller
    stopped (an exception in its callback, Ctrl-C)."""


def _partials_here(
    objs: tuple[Any, ...],
    parts: list[_Partial | None],
    callback: ProgressCallback,
    found: Where,
) -> tuple[Any, ...]:
    """Dask's local schedulers: the graph runs in a helper thread, whose
    scheduler loop hands the result blocks over as their tasks finish."""
    watch = {key: part for part in parts if part for key in part.where}
    total = max(1, len(watch))
    handed: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def pretask(key: Any, dsk: Any, state: Any) -> None:
        if stop.is_set():
            raise _Stopped

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        if key in watch:
            handed.put((key, result))

    kwargs: dict[str, Any] = {"callbacks": [(None, None, pretask, posttask, None)]}
    pool = None
    if found == "threads":
        kwargs["scheduler"] = dask.threaded.get
        if dask.config.get("pool", None) is None:
            pool = concurrent.futures.ThreadPoolExecutor(resources().threads)
            kwargs["pool"] = pool

    def run() -> None:
        try:
            outcome["value"] = dask.compute(*objs, **kwargs)
        except BaseException as err:  # handed to the caller
            outcome["error"] = err
        finally:
            handed.put(_END)

    with _unfused():
        helper = threading.Thread(target=run, name="xsignal-compute", daemon=True)
        helper.start()
        try:
            done, finished = 0, False
            while not finished:
                items = [handed.get()]
                with contextlib.suppress(queue.Empty):
                    while True:
                        items.append(handed.get_nowait())
                for item in items:
                    if item is _END:
                        finished = True
                        continue
                    key, block = item
                    watch[key].put(key, block)
                    done += 1
                if not finished and done < total and len(items):
                    callback(
                        _one([p.partial() if p else o for p, o in zip(parts, objs)]),
                        done / total,
                    )
        except BaseException:
            stop.set()
            raise
        finally:
            helper.join()
            if pool is not None:
                pool.shutdown(wait=True)
    if "error" in outcome:
        raise outcome["error"]
    value: tuple[Any, ...] = outcome["value"]
    return value


def _partials_on_client(
    client: Any,
    objs: tuple[Any, ...],
    parts: list[_Partial | None],
    callback: ProgressCallback,
) -> tuple[Any, ...]:
    """A ``dask.distributed`` client: the objects persisted as one graph,
    their result blocks gathered here as they complete."""
    from distributed import as_completed, futures_of

    lazy = [i for i, obj in enumerate(objs) if dask.is_dask_collection(obj)]
    with _unfused():
        persisted = client.persist([objs[i] for i in lazy])
    futures = {f.key: f for p in persisted for f in futures_of(p)}
    watch = {key: part for part in parts if part for key in part.where}
    total = max(1, len(watch))
    try:
        done = 0
        for batch in as_completed([futures[k] for k in watch]).batches():
            for future, block in zip(batch, client.gather(batch)):
                watch[future.key].put(future.key, block, keep=True)
                done += 1
            if done < total:
                callback(
                    _one([p.partial() if p else o for p, o in zip(parts, objs)]),
                    done / total,
                )
        results = list(objs)
        for i, like in zip(lazy, persisted):
            part = parts[i]
            results[i] = part.whole(like) if part else like.compute()
        return tuple(results)
    except BaseException:
        client.cancel(list(futures.values()))
        raise
    finally:
        del persisted, futures


def one_bar(progress: bool | None, desc: str) -> Any:
    """One progress bar, titled ``desc``, over every compute inside the
    block: a computation of several passes (a decomposition) shows one bar,
    not one per pass. On a client, distributed's bars follow each pass.

    Examples
    --------
    >>> import dask.array as dsa
    >>> from xsignal import engine
    >>> with engine.one_bar(False, "two passes"):
    ...     engine.compute(dsa.ones(4, chunks=2).sum())[0] + 1
    np.float64(5.0)
    """
    if where() == "distributed":
        return contextlib.nullcontext()
    return _progress.one_bar(progress, desc)


_BLAS: Any = None
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMIT: Any = None


@contextlib.contextmanager
def blas_one_thread() -> Iterator[None]:
    """A context limiting BLAS to one thread: work already spread over the
    scheduler's threads (a product per block) would otherwise start BLAS
    threads on every core from every task.

    BLAS's thread count is one setting for the whole process, so the
    contexts of concurrent tasks share one limit: the first to enter sets
    it, the last to leave restores it (each restoring its own would leave
    BLAS on all cores in a task still running, or on one after the pass).
    threadpoolctl comes with scikit-learn; its controller is made once.

    Examples
    --------
    >>> import numpy as np
    >>> from xsignal import engine
    >>> with engine.blas_one_thread():
    ...     float((np.ones((2, 2)) @ np.ones((2, 2)))[0, 0])
    2.0
    """
    global _BLAS, _BLAS_USERS, _BLAS_LIMIT
    with _BLAS_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        if _BLAS_USERS == 0:
            _BLAS_LIMIT = _BLAS.limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMIT.restore_original_limits()
                _BLAS_LIMIT = None


def _compute_on_client(client: Any, objs: tuple[Any, ...]) -> tuple[Any, ...]:
    from distributed import progress as distributed_progress

    lazy = [i for i, obj in enumerate(objs) if dask.is_dask_collection(obj)]
    futures = client.compute([objs[i] for i in lazy])
    distributed_progress(futures)
    results = list(objs)
    for i, value in zip(lazy, client.gather(futures)):
        results[i] = value
    return tuple(results)


def read_here(array: Any) -> np.ndarray:
    """The values of a small dask array, computed in this thread.

    The one kind of compute inside a task, for two reasons said here once:
    a sequential learner's chain reads each block in the task that uses it
    (:class:`ReadInTask`), so no block is read before the chain reaches it
    and memory stays one block; and rosettasciio's lazy readers give dask
    arrays, of which a task reads the slice it was given.
    """
    return np.asarray(dask.compute(array, scheduler="sync")[0])


class ReadInTask:
    """One block's dask graph, kept out of the enclosing graph (dask does
    not look inside this object), so the task it is given to reads the
    block itself, where and when it runs (see :func:`read_here`)."""

    def __init__(self, block: Any) -> None:
        self.block = block

    def read(self) -> np.ndarray:
        return read_here(self.block)


# --- loops over blocks ----------------------------------------------------------


def stream(
    pieces: list[Any],
    *,
    window: int | None = None,
    progress: bool | None = None,
    desc: str = "blocks",
) -> Iterator[np.ndarray]:
    """The values of ``pieces`` (small dask arrays, e.g. one block each), in
    order, computed a window ahead of the caller on the user's scheduler.

    On a client: ``window`` futures in flight on the workers (default
    :func:`client_window`); each result is fetched and released when it is
    next, so at most ``window`` exist at once. Locally: batches of
    ``window`` pieces (default the cores, at least 2), the next batch
    computed in a helper thread (through the same scheduler) while the
    caller works on the current one. One progress bar over the pieces.
    """
    on = client()
    with _progress.loop_bar(progress, len(pieces), desc) as update:
        if on is not None:
            window = window or client_window(on, pieces[0] if pieces else None)
            for value in in_order(on.compute, pieces, window):
                update()
                yield value
            return
        size = window or max(2, cores())
        batches = [pieces[i : i + size] for i in range(0, len(pieces), size)]
        with concurrent.futures.ThreadPoolExecutor(1) as ahead:
            futures = iter(batches)
            first = next(futures, None)
            future = ahead.submit(compute, *first, progress=False) if first else None
            while future is not None:
                values = future.result()
                nxt = next(futures, None)
                future = ahead.submit(compute, *nxt, progress=False) if nxt else None
                for value in values:
                    update()
                    yield value


def client_window(client: Any, piece: Any, budget: int = 64 * 2**20) -> int:
    """How many pieces like ``piece`` to keep computing ahead on ``client``:
    twice its threads, more while the pieces in flight fit ``budget`` bytes
    (each result is a network round trip: more in flight hide the latency)."""
    threads: int = 2 * max(1, sum(client.nthreads().values()))
    if piece is None:
        return threads
    nbytes: int = max(1, math.prod(piece.shape) * piece.dtype.itemsize)
    return max(threads, min(32, budget // nbytes))


def in_order(
    submit: Callable[[Any], Any], items: Iterable[Any], window: int
) -> Iterator[Any]:
    """Yield the results of ``submit(item)`` (a ``dask.distributed`` future)
    for every item, in order, with ``window`` futures in flight.

    Each result is fetched and released as soon as it is next in order, so
    at most ``window`` results exist at once (on the workers or here).
    """
    todo = iter(items)
    pending = collections.deque(submit(i) for i in itertools.islice(todo, window))
    try:
        while pending:
            future = pending.popleft()
            value = future.result()
            future.release()
            nxt = next(todo, _END)
            if nxt is not _END:
                pending.append(submit(nxt))
            yield value
    finally:  # the caller stopped early: cancel what is still computing
        for future in pending:
            future.cancel()


_END = object()


# --- the workers of a cluster ----------------------------------------------------


def on_workers(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in every worker of the active client (if any)."""
    on = client()
    if on is not None:
        on.run(fn, *args)


def wait_until_idle(timeout: float) -> None:
    """On a client, wait (up to ``timeout`` seconds) until no task runs:
    after a failure, tasks still running elsewhere may write for a while.
    The workers are asked too: a task the scheduler has already released
    (its compute failed) runs on until it returns."""
    on = client()
    if on is None:
        return
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):  # a cluster gone: no task runs
        while time.monotonic() < deadline:
            if not any(on.processing().values()) and not any(
                on.run(_running_tasks).values()
            ):
                return
            time.sleep(0.05)


def _running_tasks(dask_worker: Any) -> int:
    """On a worker: the tasks it is running, released ones included."""
    state = dask_worker.state
    return len(state.executing) + len(state.long_running)


def write_lock(name: str) -> Any:
    """The lock the tasks writing one file take around each write: on a
    client, a ``distributed.Lock`` of that name (workers are processes,
    each opening the file); else a lock of this process's threads."""
    if client() is not None:
        from distributed import Lock

        return Lock(name)
    return threading.Lock()


@contextlib.contextmanager
def joined_threads() -> Iterator[None]:
    """For writes: on dask's threads, compute in a pool of our own that is
    joined before the block ends, also when a task fails, so no task still
    writing can recreate a file after it was cleaned up. Under dask's
    processes scheduler, threads instead: the tasks hold an open output
    file, which cannot go to other processes. Other schedulers as chosen."""
    found = where()
    if found == "processes":
        with dask.config.set(scheduler="threads"):
            yield
        return
    if found != "threads":
        yield
        return
    workers = dask.config.get("num_workers", None) or cores()
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        with dask.config.set(pool=pool):
            yield
    finally:
        pool.shutdown(wait=True)


# --- the opt-in process route of map ----------------------------------------------


def unguarded_script() -> str | None:
    """The path of the script running as ``__main__`` when the current call
    comes from its top level outside an ``if __name__ == "__main__":``
    block, else None (a guarded call, a notebook, ``python -c``).

    Worker processes started by ``spawn`` or ``forkserver`` import the
    main script again to find its functions: an unguarded top level would
    run again in each of them.
    """
    main = sys.modules.get("__main__")
    path: str | None = getattr(main, "__file__", None)
    if main is None or not path or not os.path.isfile(path):
        return None
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name or "").endswith("__main__"):
        return None  # python -m package: workers do not import it again
    ident = threading.main_thread().ident  # (None only before it starts)
    frame = sys._current_frames().get(ident) if ident is not None else None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    if frame is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                return None
    return path


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    values = [s for s in sides if isinstance(s, ast.Constant)]
    return (
        isinstance(test.ops[0], ast.Eq)
        and len(names) == 1
        and len(values) == 1
        and values[0].value == "__main__"
    )


def check_guard() -> None:
    """Refuse to start worker processes from an unguarded script's top level."""
    path = unguarded_script()
    if path is not None:
        raise RuntimeError(
            f"map_processes=True starts worker processes, which re-run the top "
            f"level of {path}: put the script's work under "
            "'if __name__ == \"__main__\":' (or use threads, or a "
            "dask.distributed Client)"
        )


_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_PID: int | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            check_guard()
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            _POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=cores(),
                mp_context=multiprocessing.get_context(method),
                initializer=_ignore_interrupts,
            )
            _POOL_PID = os.getpid()
        return _POOL


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C (or a notebook's interrupt, sent to the whole
    process group) is the caller's to handle; the workers stop when it
    shuts the pool down, without a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessRoute:
    """A block function run in xsignal's worker processes (one per core,
    started at the first call, once) when the user opted in with
    ``xsignal.set_options(map_processes=True)``: the dask task, in a
    thread, sends the block to a worker and waits. Inside a worker the
    function runs in place."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __dask_tokenize__(self) -> Any:
        return ("xsignal.ProcessRoute", dask.base.tokenize(self.fn))

    def __call__(self, *args: Any) -> Any:
        if where() == "worker":
            return self.fn(*args)
        pool = _pool()
        try:
            return pool.submit(self.fn, *args).result()
        except concurrent.futures.process.BrokenProcessPool as err:
            _forget(pool)
            raise RuntimeError(
                "a worker process of xsignal.map died (killed, or out of "
                "memory); run in threads instead with "
                "xsignal.set_options(map_processes=False)"
            ) from err


def _forget(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is pool:
            _POOL = None


@atexit.register
def shutdown() -> None:
    """Stop the worker processes of the map route (also at exit)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and _POOL_PID == os.getpid():
        pool.shutdown(wait=True, cancel_futures=True)
