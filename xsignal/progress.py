"""Progress bars for computes: tqdm when installed, else dask's text bar."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

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
