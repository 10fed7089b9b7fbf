"""Worker processes for Python code that holds the GIL.

A per-pixel Python function keeps one core busy however many threads run
it. :func:`xsignal.map` therefore hands long pixel loops to a pool of
worker processes (one per core, started once and reused): each dask
thread sends one block's work and waits, and the worker reads the block
itself from the file (file sources pickle as path and dataset, and reopen
there), so no data passes through the calling process.

Workers are started with ``forkserver`` where the platform has it (fresh
processes, nothing inherited from threads holding locks), else ``spawn``.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dask
import numpy as np

_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_PID: int | None = None
_LOCK = threading.Lock()


class Unread:
    """One block's dask graph, kept out of the enclosing graph (dask does not
    look inside this object), so the task it is given to reads the block
    itself, where it runs, when it runs."""

    def __init__(self, block: Any) -> None:
        self.block = block

    def read(self) -> np.ndarray:
        return np.asarray(self.block.compute(scheduler="sync"))


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def inside_worker() -> bool:
    """Whether this code already runs in a worker process (a pool worker,
    dask's processes scheduler, a ``dask.distributed`` worker): then work is
    done here, never handed on."""
    if multiprocessing.parent_process() is not None:
        return True
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            get_worker()
        except ValueError:
            return False
        return True
    return False


def scheduler_chosen() -> bool:
    """Whether the user chose a dask scheduler (config or a distributed
    client): xsignal then starts no processes of its own."""
    if dask.config.get("scheduler", None) is not None:
        return True
    if "distributed" in sys.modules:
        from distributed import default_client

        try:
            default_client()
        except ValueError:
            return False
        return True
    return False


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL, _POOL_PID
    with _LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            _POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=cores(), mp_context=multiprocessing.get_context(method)
            )
            _POOL_PID = os.getpid()
        return _POOL


def run_all(fn: Callable[..., Any], calls: list[tuple]) -> Iterator[Any]:
    """``fn(*args)`` for each ``args`` of ``calls`` in the worker processes
    (here, one by one, when this already is a worker), results in order as
    they are ready. A worker that dies (killed, out of memory) raises
    ``RuntimeError`` and the pool is started afresh."""
    if inside_worker():
        yield from (fn(*args) for args in calls)
        return
    global _POOL
    pool = _pool()
    futures = [pool.submit(fn, *args) for args in calls]
    try:
        for future in futures:
            yield future.result()
    except concurrent.futures.process.BrokenProcessPool as err:
        with _LOCK:
            if _POOL is pool:
                _POOL = None
        raise RuntimeError(
            "a worker process of xsignal.map died (killed, or out of memory); "
            "run in threads instead with xsignal.set_options(map_processes=False)"
        ) from err
    finally:
        for future in futures:
            future.cancel()


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker process, waiting for the result."""
    return next(run_all(fn, [args]))


@atexit.register
def shutdown() -> None:
    """Stop the worker processes (also at exit)."""
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and _POOL_PID == os.getpid():
        pool.shutdown(wait=True, cancel_futures=True)
