"""Progress bars: drawing only (:mod:`xsignal.engine` decides what runs
where and asks for a bar). Over dask computes: tqdm's dask callback when
tqdm is installed, else dask's text bar; over a loop: tqdm. Labels say
what runs ("SVD: Gram pass", "map")."""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from dask.callbacks import Callback

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


def _delay(progress: bool | None) -> float:
    """Seconds before a bar appears: the option's when it was not asked for."""
    return OPTIONS["progress_delay"] if progress is None else 0.0


# the bar of a computation made of several computes (a decomposition's
# passes), fed by each of them instead of one bar per compute
_SHARED: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "xsignal_bar", default=None
)


@contextlib.contextmanager
def one_bar(progress: bool | None, desc: str) -> Iterator[None]:
    """One bar, titled ``desc``, over every local dask compute inside the
    block (its total grows with each compute's tasks; each compute's own
    label becomes its postfix, "pass 2"). No bar without tqdm."""
    if not show_progress(progress) or _SHARED.get() is not None:
        yield
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield
        return
    with tqdm(total=0, desc=desc, delay=_delay(progress)) as bar:
        token = _SHARED.set((bar, desc))
        try:
            yield
        finally:
            _SHARED.reset(token)


class _Feed(Callback):
    """A dask callback adding one compute's tasks to a shared bar."""

    def __init__(self, bar: Any, label: str | None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.bar, self.label = bar, label

    def _start_state(self, dsk: Any, state: Any) -> None:
        keys = ("ready", "waiting", "running", "finished")
        self.bar.total += sum(len(state[k]) for k in keys)
        if self.label:
            self.bar.set_postfix_str(self.label, refresh=False)
        self.bar.refresh()

    def _posttask(self, *args: Any) -> None:
        self.bar.update(1)


@contextlib.contextmanager
def dask_bar(progress: bool | None = None, desc: str | None = None) -> Iterator[None]:
    """A bar over the local dask computes inside the block (inside
    :func:`one_bar`, that bar instead).

    With ``progress=None`` the bar appears only once a compute has lasted
    ``set_options(progress_delay=...)`` seconds; ``progress=True`` shows it
    at once.
    """
    shared = _SHARED.get()
    if shared is not None:
        shared_bar, title = shared
        label = (desc or "").removeprefix(title).lstrip(": ") or None
        with _Feed(shared_bar, label):
            yield
        return
    if not show_progress(progress):
        yield
        return
    try:
        from tqdm.dask import TqdmCallback
    except ImportError:
        from dask.diagnostics import ProgressBar

        bar: Any = ProgressBar(minimum=_delay(progress))
    else:
        bar = TqdmCallback(delay=_delay(progress), desc=desc, leave=True)
    with bar:
        yield


@contextlib.contextmanager
def loop_bar(
    progress: bool | None, total: int, desc: str
) -> Iterator[Callable[..., Any]]:
    """A bar over a loop of ``total`` steps; yields ``update(n=1)`` (a no-op
    when no bar is shown or tqdm is missing)."""
    if not show_progress(progress) or total <= 1:
        yield _no_update
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _no_update
        return
    with tqdm(total=total, desc=desc, delay=_delay(progress)) as bar:
        yield bar.update


def _no_update(n: int = 1) -> None:
    """What :func:`loop_bar` yields when there is no bar."""
