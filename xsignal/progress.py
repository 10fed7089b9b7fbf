"""Progress bars: drawing only (:mod:`xsignal.engine` decides what runs
where and asks for a bar). Over dask computes: tqdm's dask callback when
tqdm is installed, else dask's text bar; over a loop: tqdm. Labels say
what runs ("SVD: Gram pass", "map")."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

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


@contextlib.contextmanager
def dask_bar(progress: bool | None = None, desc: str | None = None) -> Iterator[None]:
    """A bar over the local dask computes inside the block.

    With ``progress=None`` the bar appears only once a compute has lasted
    ``set_options(progress_delay=...)`` seconds; ``progress=True`` shows it
    at once.
    """
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
