"""Every progress bar: over dask computes (tqdm's dask callback when tqdm is
installed, else dask's text bar), on a ``dask.distributed`` client
(distributed's own bar, following the futures), and over a loop in this
process (tqdm). Labels say what runs ("SVD: Gram pass", "map")."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import dask

from .options import OPTIONS


def _interactive() -> bool:
    """True on a terminal or in a Jupyter kernel, False under CI."""
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def show_progress(progress: bool | None = None) -> bool:
    """Whether to show a bar: the argument, else the option, else auto-detection."""
    if progress is None:
        progress = OPTIONS["progress"]
    if progress is None:
        return _interactive()
    return bool(progress)


@contextlib.contextmanager
def progress_bar(
    progress: bool | None = None, desc: str | None = None
) -> Iterator[None]:
    """Context manager showing a bar for the dask computes inside it.

    With ``progress=None`` the bar appears only once a compute has lasted
    ``set_options(progress_delay=...)`` seconds; ``progress=True`` shows it
    at once. Uses tqdm's dask callback when tqdm is installed, else
    :class:`dask.diagnostics.ProgressBar`.
    """
    if not show_progress(progress):
        yield
        return
    delay = OPTIONS["progress_delay"] if progress is None else 0.0
    try:
        from tqdm.dask import TqdmCallback
    except ImportError:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar(minimum=delay)
    else:
        bar = TqdmCallback(delay=delay, desc=desc, leave=True)
    with bar:
        yield


@contextlib.contextmanager
def loop_bar(
    progress: bool | None, total: int, desc: str
) -> Iterator[Callable[..., Any]]:
    """A bar over a loop of ``total`` steps in this process; yields
    ``update(n=1)`` (a no-op when no bar is shown or tqdm is missing)."""
    if not show_progress(progress) or total <= 1:
        yield _no_update
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _no_update
        return
    delay = OPTIONS["progress_delay"] if progress is None else 0.0
    with tqdm(total=total, desc=desc, delay=delay) as bar:
        yield bar.update


def _no_update(n: int = 1) -> None:
    """What :func:`loop_bar` yields when there is no bar."""


def distributed_client() -> Any:
    """The ``dask.distributed`` client that computes run on, or None.

    None without a client, and also when a local scheduler was chosen over
    an existing client (``dask.config.set(scheduler="threads")``). Never
    imports distributed itself.
    """
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    return client if dask.base.get_scheduler() == client.get else None


def unfused() -> Any:
    """A context without dask's low-level task fusion (unless the user set
    it): a fused task runs its little graph through ``dask.order`` each
    time, which on the one-task-per-chunk graphs of whole-file passes cost
    more than it saves (12 % of a navigator pass over 4 GiB)."""
    if dask.config.get("optimization.fuse.active", None) is not None:
        return contextlib.nullcontext()
    return dask.config.set({"optimization.fuse.active": False})


def compute_with_progress(
    *objs: Any, progress: bool | None = None, desc: str | None = None
) -> tuple[Any, ...]:
    """``dask.compute(*objs)`` with a progress bar when one is wanted.

    Local schedulers get :func:`progress_bar`; on a ``dask.distributed``
    client, whose tasks run elsewhere, distributed's own progress bar
    follows the futures instead.
    """
    client = distributed_client() if show_progress(progress) else None
    if client is None:
        with progress_bar(progress, desc), unfused():
            return dask.compute(*objs)
    from distributed import progress as distributed_progress

    lazy = [i for i, obj in enumerate(objs) if dask.is_dask_collection(obj)]
    futures = client.compute([objs[i] for i in lazy])
    distributed_progress(futures)
    results = list(objs)
    for i, value in zip(lazy, client.gather(futures)):
        results[i] = value
    return tuple(results)
