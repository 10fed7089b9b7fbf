"""Where work runs: the one module that knows.

Every computation of xsignal is a dask graph run by the scheduler the user
chose, the xarray way: dask's threads by default, ``dask.config.set(
scheduler=...)``, or a ``dask.distributed.Client``. This module is the one
place that asks which one is active (:func:`where`, never importing
``distributed`` unless it is already imported), computes with a progress
bar (:func:`compute`), keeps a window of blocks in flight for loops over
blocks (:func:`stream`), runs a function on every cluster worker
(:func:`on_workers`), and holds the one route the user can opt into for
Python code that holds the GIL: worker processes for :func:`xsignal.map`
(``xsignal.set_options(map_processes=True)``, :class:`ProcessRoute`).
Nothing else in the package probes the scheduler or starts processes.
"""

from __future__ import annotations

import ast
import atexit
import collections
import concurrent.futures
import contextlib
import itertools
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
import numpy as np

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


# --- compute --------------------------------------------------------------------


def _unfused() -> Any:
    """A context without dask's low-level task fusion (unless the user set
    it): a fused task runs its little graph through ``dask.order`` each
    time, which on the one-task-per-chunk graphs of whole-file passes cost
    more than it saves (12 % of a navigator pass over 4 GiB)."""
    if dask.config.get("optimization.fuse.active", None) is not None:
        return contextlib.nullcontext()
    return dask.config.set({"optimization.fuse.active": False})


def compute(
    *objs: Any, progress: bool | None = None, desc: str | None = None
) -> tuple[Any, ...]:
    """``dask.compute(*objs)`` on the user's scheduler, with one progress bar.

    On dask's threads the scheduler is given explicitly, so dask does not
    import ``distributed`` to look for a client that cannot exist (0.2 s).
    On a client, distributed's own bar follows the futures.

    Examples
    --------
    >>> import dask.array as dsa
    >>> compute(dsa.ones(4, chunks=2).sum(), 3, progress=False)
    (np.float64(4.0), 3)
    """
    found = where()
    if found == "distributed" and _progress.show_progress(progress):
        return _compute_on_client(_client(), objs)
    scheduler = dask.threaded.get if found == "threads" else None
    with _progress.dask_bar(progress, desc), _unfused():
        out: tuple[Any, ...] = dask.compute(*objs, scheduler=scheduler)
        return out


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
