"""Library options, set globally or for a ``with`` block (no state on accessors)."""

from __future__ import annotations

from typing import Any

OPTIONS: dict[str, Any] = {
    # None: a bar when a compute lasts over `progress_delay` seconds on a
    # terminal or notebook, never under CI; True/False force it on/off.
    "progress": None,
    "progress_delay": 1.0,
    # warn when an automatic chunking would make more tasks than this
    "max_tasks": 10_000,
    # per-pixel map in xsignal's worker processes (opt-in)
    "map_processes": False,
}

_VALIDATORS = {
    "progress": lambda v: v is None or isinstance(v, bool),
    "progress_delay": lambda v: isinstance(v, (int, float)) and v >= 0,
    "max_tasks": lambda v: isinstance(v, int) and v > 0,
    "map_processes": lambda v: isinstance(v, bool),
}


class set_options:
    """Set xsignal options globally or, as a context manager, for a block.

    Parameters
    ----------
    progress : bool or None
        ``None`` (default) shows a progress bar for computes lasting longer
        than ``progress_delay`` seconds on a terminal or notebook and never
        when the ``CI`` environment variable is set; ``True``/``False`` force it.
    progress_delay : float
        Seconds a compute must last before its bar appears.
    max_tasks : int
        Automatic chunkings that would create more tasks than this warn.
    map_processes : bool
        ``False`` (default): :func:`xsignal.map` runs on the dask scheduler
        you chose, as everything else (threads by default, where Python
        code holding the GIL keeps one core busy). ``True``: per-pixel
        loops run in worker processes, one per core, started at the first
        such map; only from a notebook, or in a script under an
        ``if __name__ == "__main__":`` guard (the workers import the script
        again), with a function that pickles.

    Examples
    --------
    >>> import xsignal
    >>> with xsignal.set_options(progress=False):
    ...     xsignal.get_options()["progress"]
    False
    >>> xsignal.get_options()["progress"] is None
    True
    """

    def __init__(self, **kwargs: Any) -> None:
        self.old = {}
        for key, value in kwargs.items():
            if key not in OPTIONS:
                raise ValueError(
                    f"{key!r} is not an xsignal option; valid options are "
                    f"{sorted(OPTIONS)}"
                )
            if not _VALIDATORS[key](value):
                raise ValueError(f"invalid value {value!r} for option {key!r}")
            self.old[key] = OPTIONS[key]
        OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self.old)


def get_options() -> dict[str, Any]:
    """Return a copy of the current xsignal options.

    Examples
    --------
    >>> import xsignal
    >>> sorted(xsignal.get_options())
    ['map_processes', 'max_tasks', 'progress', 'progress_delay']
    """
    return dict(OPTIONS)
