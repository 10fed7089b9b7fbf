"""Run a function on every navigation pixel (map), or on dask blocks.

:func:`map` is the general tool: ``func(signal, **kwargs)`` on the numpy
array of each pixel, lazily, with results put back in navigation order.
Its speed comes from doing as little as possible per pixel: each dask block
is reshaped once to ``(pixels, *signal_shape)``, the pixels are walked by a
plain Python loop that only calls ``func`` and appends the result, and the
results of a block are turned into one array by a single ``numpy.array``
call (which also checks that every result has the same shape). With
``vectorized=True`` there is no per-pixel loop at all.

:func:`map_blocks` and :func:`map_overlap` wrap dask's functions of the same
names with dims given by name and a DataArray result.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import sys
import time
import types
import uuid
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import cloudpickle
import dask.array as dsa
import numpy as np
import xarray as xr

from . import engine
from .chunks import auto_chunks
from .dims import (
    SIGNAL_DIMS_ATTR,
    check_dims,
    encode_signal_dims,
    navigation_dims,
    signal_dims,
)
from .lazy import as_lazy, is_lazy
from .options import OPTIONS

__all__ = ["map", "map_blocks", "map_overlap"]


# --- the per-block worker ----------------------------------------------------


def _func_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def _task_label(func: Callable[..., Any]) -> str:
    """A short name for dask's task keys and dashboard (``<lambda>`` -> ``lambda``)."""
    label = re.sub(r"\W", "", _func_name(func).split(".")[-1])
    return label or "func"


def _where(nav: Sequence[Hashable], index: Sequence[int]) -> str:
    if not nav:
        return "the only pixel (no navigation dims)"
    return "pixel (" + ", ".join(f"{d}={i}" for d, i in zip(nav, index)) + ")"


def _rewrap(err: Exception, message: str) -> Exception:
    """``message`` in an exception of ``err``'s type when that type allows it."""
    try:
        new = type(err)(message)
    except Exception:  # exception types with other signatures
        return RuntimeError(message)
    return new if str(new) else RuntimeError(message)


class _PixelLoop:
    """The block function of :func:`map`: runs ``func`` over one block.

    Called as ``loop(block, *iterated, *offsets)``: ``block`` is
    ``(*nav_block, *signal)``, each iterated kwarg ``(*nav_block, *extra)``
    and ``offsets`` one index array per navigation dim (the block's global
    positions). ``first``, when given, is the result of the call that
    inferred the output on pixel 0: the block holding pixel 0 uses it
    instead of calling ``func`` there again.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        nav: tuple[Hashable, ...],
        names: tuple[str, ...],
        constant: dict[str, Any],
        out_shape: tuple[int, ...],
        dtype: np.dtype,
        ragged: bool,
        vectorized: bool,
        first: Any = None,
    ) -> None:
        self.func = func
        self.nav = nav
        self.names = names
        self.constant = constant
        self.out_shape = out_shape
        self.dtype = dtype
        self.ragged = ragged
        self.vectorized = vectorized
        self.first = first
        self.token = uuid.uuid4().hex

    def __dask_tokenize__(self) -> str:
        return self.token

    def __reduce__(self) -> tuple[Callable[[bytes], _PixelLoop], tuple[bytes]]:
        # processes and distributed schedulers pickle the graph: say clearly
        # what cannot be pickled instead of a bare PicklingError deep in dask
        payload = self.__dict__.get("_pickled")
        if payload is None:  # once: every task of a map sends the same loop
            try:
                payload = cloudpickle.dumps(self.__dict__)
            except Exception as err:
                message = _pickle_message(self.func, self.constant, err)
                raise TypeError(message) from err
            self._pickled = payload
        return _unpickle_loop, (payload,)

    def __call__(self, block: np.ndarray, *args: np.ndarray) -> np.ndarray:
        n_nav = len(self.nav)
        block = _unwrap(block)
        args = tuple(_unwrap(a) for a in args)
        iterated = args[: len(self.names)]
        offsets = [int(o[0]) if len(o) else 0 for o in args[len(self.names) :]]
        nav_shape = block.shape[:n_nav]
        if self.vectorized:
            return self._whole(block, iterated, nav_shape, offsets)
        n = math.prod(nav_shape)
        flat = block.reshape(n, *block.shape[n_nav:])
        its = [a.reshape(n, *a.shape[n_nav:]) for a in iterated]
        results: list[Any] = []
        if self.first is not None and n and not any(offsets):
            results.append(self.first)  # pixel 0: already computed
            flat, its = flat[1:], [a[1:] for a in its]
        try:
            self._loop(flat, its, results)
        except Exception as err:
            index = self._index(len(results), nav_shape, offsets)
            message = (
                f"{_func_name(self.func)} raised {type(err).__name__} on "
                f"{_where(self.nav, index)}: {err}"
            )
            raise _rewrap(err, message) from err
        out = self._assemble(results, n, nav_shape, offsets)
        return out.reshape((*nav_shape, *self.out_shape))

    def _loop(
        self, flat: np.ndarray, its: list[np.ndarray], results: list[Any]
    ) -> None:
        # The hot loop: one call and one append per pixel, nothing else.
        # On an exception, len(results) is the failing pixel's position.
        func, constant, append = self.func, self.constant, results.append
        if not its:
            if constant:
                for x in flat:
                    append(func(x, **constant))
            else:
                for x in flat:
                    append(func(x))
        elif len(its) == 1:
            (name,) = self.names
            for x, v in zip(flat, its[0]):
                append(func(x, **{name: v}, **constant))
        else:
            names = self.names
            for x, *vals in zip(flat, *its):
                append(func(x, **dict(zip(names, vals)), **constant))

    def _assemble(
        self, results: list[Any], n: int, nav_shape: tuple[int, ...], offsets: list[int]
    ) -> np.ndarray:
        out: np.ndarray | None
        if self.ragged:
            out = np.empty(n, dtype=object)
            for i, r in enumerate(results):
                out[i] = r
            return out
        if n == 0:
            return np.empty((0, *self.out_shape), self.dtype)
        try:
            # one call builds the block and rejects results of unequal shape
            out = np.array(results, dtype=self.dtype)
        except (ValueError, TypeError):
            out = None
        if out is None or out.shape != (n, *self.out_shape):
            for i, r in enumerate(results):
                if np.shape(r) != self.out_shape:
                    index = self._index(i, nav_shape, offsets)
                    raise ValueError(
                        f"{_func_name(self.func)} returned shape {np.shape(r)} on "
                        f"{_where(self.nav, index)} but shape {self.out_shape} on "
                        "the first pixel; pass ragged=True for outputs whose "
                        "shape changes from pixel to pixel"
                    )
            for i, r in enumerate(results):  # same shapes: find the bad value
                try:
                    np.asarray(r, dtype=self.dtype)
                except (ValueError, TypeError) as err:
                    index = self._index(i, nav_shape, offsets)
                    raise ValueError(
                        f"{_func_name(self.func)} returned {r!r} on "
                        f"{_where(self.nav, index)}, which cannot be converted "
                        f"to {self.dtype} (the dtype of the first pixel's "
                        "result); pass output_dtype, or ragged=True for "
                        "arbitrary objects"
                    ) from err
            raise ValueError(
                f"the results of {_func_name(self.func)} cannot be assembled "
                f"into an array of {self.dtype}"
            )
        return out

    def _whole(
        self,
        block: np.ndarray,
        iterated: tuple[np.ndarray, ...],
        nav_shape: tuple[int, ...],
        offsets: list[int],
    ) -> np.ndarray:
        where = ", ".join(
            f"{d}={o}:{o + s}" for d, o, s in zip(self.nav, offsets, nav_shape)
        )
        try:
            out = self.func(block, **dict(zip(self.names, iterated)), **self.constant)
        except Exception as err:
            message = (
                f"{_func_name(self.func)} raised {type(err).__name__} on the "
                f"block ({where}): {err}"
            )
            raise _rewrap(err, message) from err
        out = np.asarray(out)
        expected = (*nav_shape, *self.out_shape)
        if out.shape != expected:
            raise ValueError(
                f"vectorized {_func_name(self.func)} returned shape {out.shape} for "
                f"the block ({where}) of shape {block.shape}; expected {expected} "
                "(the block's navigation shape, then the output shape of one pixel)"
            )
        return out.astype(self.dtype, copy=False)

    def _index(
        self, i: int, nav_shape: tuple[int, ...], offsets: list[int]
    ) -> tuple[int, ...]:
        if not nav_shape:
            return ()
        local = np.unravel_index(i, nav_shape)
        return tuple(int(a) + o for a, o in zip(local, offsets))


def _unwrap(block: Any) -> np.ndarray:
    # blockwise passes a contracted dim as a list of its chunks; ours have one
    # chunk each, and unwrapping avoids the copy that concatenate=True makes
    while isinstance(block, list):
        (block,) = block
    array: np.ndarray = block
    return array


def _unpickle_loop(payload: bytes) -> _PixelLoop:
    loop = _PixelLoop.__new__(_PixelLoop)
    loop.__dict__.update(pickle.loads(payload))
    return loop


def _pickle_message(
    func: Callable[..., Any], constant: Mapping[str, Any], err: Exception
) -> str:
    culprit = f"the function {_func_name(func)}"
    try:
        cloudpickle.dumps(func)
    except Exception:
        pass
    else:
        for key, value in constant.items():
            try:
                cloudpickle.dumps(value)
            except Exception:
                culprit = f"the keyword argument {key!r} ({type(value).__name__})"
                break
    return (
        f"map cannot send {culprit} to the workers: it cannot be pickled "
        f"({type(err).__name__}: {err}). The processes and distributed "
        "schedulers need picklable functions and arguments: define the "
        "function at module level, pass plain data, or use the threaded "
        "scheduler"
    )


def _check_picklable(loop: _PixelLoop, processes: bool) -> None:
    """Fail early when ``loop`` must be pickled (for the map route's worker
    processes or a scheduler that sends tasks elsewhere) and cannot be."""
    if not processes and not engine.pickles_tasks():
        return
    try:
        cloudpickle.dumps((loop.func, loop.constant))
    except Exception as err:
        raise TypeError(_pickle_message(loop.func, loop.constant, err)) from err


# --- map ---------------------------------------------------------------------


def _split_kwargs(
    da: xr.DataArray, nav: tuple[Hashable, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """Iterated kwargs (DataArrays over every navigation dim) and constant ones."""
    iterated, constant = {}, {}
    for key, value in kwargs.items():
        if not isinstance(value, xr.DataArray) or not nav:
            constant[key] = value
            continue
        shared = [d for d in nav if d in value.dims]
        if not shared:
            constant[key] = value
            continue
        if len(shared) < len(nav):
            missing = tuple(d for d in nav if d not in value.dims)
            raise ValueError(
                f"keyword argument {key!r} has dims {value.dims}: it has the "
                f"navigation dims {tuple(shared)} but not {missing}; an iterated "
                f"argument needs every navigation dim {nav}"
            )
        wrong = [d for d in nav if value.sizes[d] != da.sizes[d]]
        if wrong:
            sizes = ", ".join(
                f"{d!r}: {value.sizes[d]} vs {da.sizes[d]}" for d in wrong
            )
            raise ValueError(
                f"keyword argument {key!r} does not match the navigation shape "
                f"along {tuple(wrong)} ({sizes})"
            )
        extra = [d for d in value.dims if d not in nav]
        iterated[key] = value.transpose(*nav, *extra)
    return iterated, constant


def _infer(
    func: Callable[..., Any],
    data: Any,
    iterated: dict[str, Any],
    constant: dict[str, Any],
    nav: tuple[Hashable, ...],
    vectorized: bool,
) -> tuple[Any, np.ndarray, float]:
    """Call ``func`` on the first pixel (computing only that pixel): its
    result as returned, the result as an array, and the seconds the call
    took."""
    n_nav = len(nav)
    first = (slice(0, 1),) * n_nav if vectorized else (0,) * n_nav
    pieces = [data[first], *(a[first] for a in iterated.values())]
    # a 0-d piece is passed as a numpy scalar, as the pixel loop does
    pieces = [np.asarray(p) for p in engine.compute(*pieces, progress=False)]
    pieces = [p if p.ndim else p[()] for p in pieces]
    kw = dict(zip(iterated, pieces[1:]))
    try:
        start = time.perf_counter()
        returned = func(pieces[0], **kw, **constant)
        seconds = time.perf_counter() - start
    except Exception as err:
        message = (
            f"{_func_name(func)} raised {type(err).__name__} on "
            f"{_where(nav, (0,) * n_nav)}: {err}"
        )
        raise _rewrap(err, message) from err
    result = np.asarray(returned)
    if vectorized:
        if result.shape[:n_nav] != (1,) * n_nav:
            raise ValueError(
                f"vectorized {_func_name(func)} returned shape {result.shape} for "
                f"a block of shape {pieces[0].shape}; it must return the block's "
                "navigation shape followed by the output shape of one pixel"
            )
        result = result.reshape(result.shape[n_nav:])
    return returned, result, seconds


def _output_dims(
    da: xr.DataArray,
    nav: tuple[Hashable, ...],
    sig: tuple[Hashable, ...],
    out_shape: tuple[int, ...],
    output_signal_sizes: Mapping[Hashable, int] | None,
) -> tuple[Hashable, ...]:
    if output_signal_sizes is not None:
        names = tuple(output_signal_sizes)
        sizes = tuple(output_signal_sizes.values())
        if sizes != out_shape:
            raise ValueError(
                f"output_signal_sizes {dict(output_signal_sizes)} do not match the "
                f"output of the function on the first pixel, of shape {out_shape}"
            )
        return names
    if out_shape == tuple(da.sizes[d] for d in sig):
        return sig  # e.g. a filtered spectrum: keep its dims and coords
    made: list[str] = []
    i = 0
    while len(made) < len(out_shape):
        if f"sig_{i}" not in nav:
            made.append(f"sig_{i}")
        i += 1
    return tuple(made)


def _check_output_signal_sizes(
    sizes: Any, nav: tuple[Hashable, ...], ragged: bool
) -> dict[Hashable, int] | None:
    if sizes is None:
        return None
    if ragged:
        raise ValueError("output_signal_sizes cannot be used with ragged=True")
    if not isinstance(sizes, Mapping):
        raise TypeError(
            "output_signal_sizes must be a dict {dim name: size}, not "
            f"{type(sizes).__name__}"
        )
    clash = [d for d in sizes if d in nav]
    if clash:
        raise ValueError(
            f"output_signal_sizes names {clash[0]!r}, which is a navigation dim"
        )
    for d, n in sizes.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(
                f"output_signal_sizes[{d!r}] must be an int >= 0, not {n!r}"
            )
    return {d: int(n) for d, n in sizes.items()}


def map(  # noqa: A001  (the public name, like xarray's Dataset.map)
    da: xr.DataArray,
    func: Callable[..., Any],
    *,
    vectorized: bool = False,
    ragged: bool = False,
    output_dtype: Any = None,
    output_signal_sizes: Mapping[Any, int] | None = None,
    lazy_output: bool | None = None,
    progress: bool | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Call ``func`` on every navigation pixel of ``da`` and assemble the results.

    ``func(signal, **kwargs)`` receives the numpy array of one pixel over the
    signal dims (in signal-dim order) and returns a scalar or an array; any
    Python code is allowed inside.

    Parameters
    ----------
    da : DataArray
    func : callable
        ``func(signal, **kwargs) -> scalar or array``.
    vectorized : bool
        ``func`` receives a whole block instead, shaped ``(*nav_block,
        *signal_shape)`` (the block keeps its navigation dims, in the
        order of :func:`xsignal.navigation_dims`), iterated kwargs shaped
        ``(*nav_block, *extra)``, and must return ``(*nav_block, *out_shape)``.
        No per-pixel Python overhead: the path to numpy speed.
    ragged : bool
        Results may change shape from pixel to pixel: the output is an
        object array over the navigation dims holding each pixel's result.
    output_dtype : numpy dtype, optional
        Output dtype; inferred from the first pixel when not given.
    output_signal_sizes : dict, optional
        ``{name: size}`` of the output's signal dims, in order: names them and
        checks the size of the first pixel's output. By default an output
        with the input's signal shape keeps the input's signal dims (and
        their coords), any other gets new dims ``sig_0, sig_1, ...``.
    lazy_output : bool, optional
        Default: lazy for lazy input, in memory for in-memory input.
    progress : bool, optional
        Progress bar for the work done now (in-memory output); ``None``
        follows :func:`xsignal.set_options`. A lazy output shows its bar
        when it is computed.
    **kwargs
        Passed to ``func``. A DataArray having every navigation dim of ``da``
        is iterated: each call gets the numpy values at that pixel (a scalar,
        or an array over its other dims). It is aligned by dim name, so its
        dim order and chunks may differ from ``da``'s. Every other value is
        passed unchanged to every call.

    Returns
    -------
    DataArray
        Dims ``(*navigation_dims, *output_signal_dims)``, the output signal
        dims marked as signal dims; navigation coords and attrs carried
        over. Lazy output keeps the input's navigation chunks; signal dims
        split over several chunks are first rechunked whole (a pixel's
        signal must be in one block), navigation chunks are never changed.

    Raises
    ------
    TypeError
        If ``func`` is not callable, or if the processes or distributed
        scheduler is active and ``func`` or a kwarg cannot be pickled.
    ValueError
        For iterated kwargs missing some navigation dims or of other sizes,
        ``output_signal_sizes`` not matching, or results changing shape
        without ``ragged=True`` (naming the pixel).
    Exception
        An exception raised by ``func`` is re-raised with the same type
        (or ``RuntimeError``), its message naming the pixel, and chained to
        the original.

    Notes
    -----
    The output shape and dtype are inferred by calling ``func`` once on the
    first pixel, which computes that one pixel of a lazy input; that result
    is pixel 0's (``func`` is called once per pixel, never twice). With
    ``vectorized=True`` the inference is a call on a block of that one
    pixel, made again as part of the first block. Give both
    ``output_dtype`` and ``output_signal_sizes`` (or ``ragged=True``) to
    build the graph without reading or calling anything. A dtype inferred
    from the first pixel is used for every pixel: pass ``output_dtype``
    when, for example, the first result is an int and later ones are floats.

    Where it runs: on the scheduler you chose, as every dask computation
    (dask's threads by default, ``dask.config.set(scheduler=...)``, a
    ``dask.distributed.Client``); in-memory input is cut into blocks and
    computed the same way. Python code that holds the GIL keeps one core
    busy on threads: a per-pixel map estimated (first pixel's time times
    the pixels) to take over 10 s there says once how to use every core.
    ``xsignal.set_options(map_processes=True)`` runs the pixel loops in
    worker processes, one per core (refused at the top level of a script
    without an ``if __name__ == "__main__":`` guard, whose top level the
    workers would run again); ``func`` and ``kwargs`` must pickle for
    that, and for the processes and distributed schedulers.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(
    ...     np.arange(24.0).reshape(2, 3, 4), dims=("y", "x", "energy")
    ... )
    >>> xsignal.map(da, np.max).values
    array([[ 3.,  7., 11.],
           [15., 19., 23.]])
    >>> out = xsignal.map(da.chunk({"y": 1}), lambda s, k: s[:2] * k, k=10)
    >>> out.signal
    <Signal1D lazy float64, (y: 2, x: 3 | sig_0: 2), chunks (1, 3 | 2)>
    >>> shift = xr.DataArray([[0, 1, 2], [3, 0, 1]], dims=("y", "x"))
    >>> xsignal.map(da, lambda s, shift: s[shift], shift=shift).values
    array([[ 0.,  5., 10.],
           [15., 16., 21.]])
    >>> xsignal.map(da, lambda b: b.sum(axis=-1), vectorized=True).values
    array([[ 6., 22., 38.],
           [54., 70., 86.]])
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    if ragged and vectorized:
        raise ValueError("ragged=True works per pixel only, not with vectorized=True")
    nav, sig = navigation_dims(da), signal_dims(da)
    sizes = _check_output_signal_sizes(output_signal_sizes, nav, ragged)
    iterated, constant = _split_kwargs(da, nav, kwargs)
    lazy = is_lazy(da) if lazy_output is None else bool(lazy_output)
    arr = da.transpose(*nav, *sig)

    if is_lazy(da):
        data = as_lazy(arr).data
        split = [i for i in range(len(nav), data.ndim) if len(data.chunks[i]) > 1]
        if split:
            data = data.rechunk(dict.fromkeys(split, -1))
    else:
        data = dsa.from_array(np.asarray(arr.values), chunks=_memory_chunks(arr, nav))
    nav_chunks = data.chunks[: len(nav)]
    its = {k: _aligned(v, nav_chunks) for k, v in iterated.items()}
    n_pixels = math.prod(data.shape[: len(nav)])

    # output shape and dtype
    returned, seconds = None, None  # pixel 0's result and time, when inferred
    out_shape: tuple[int, ...]
    if ragged:
        out_shape, dtype = (), np.dtype(object)
    elif output_dtype is not None and sizes is not None:
        out_shape, dtype = tuple(sizes.values()), np.dtype(output_dtype)
    else:
        if n_pixels == 0:
            raise ValueError(
                "the array has no navigation pixels, so the output cannot be "
                "inferred; pass output_dtype and output_signal_sizes"
            )
        returned, first, seconds = _infer(func, data, its, constant, nav, vectorized)
        out_shape = first.shape
        dtype = np.dtype(output_dtype) if output_dtype is not None else first.dtype
    out_sig = _output_dims(da, nav, sig, out_shape, sizes)

    processes = OPTIONS["map_processes"] and not vectorized
    if processes:
        engine.check_guard()  # before anything starts
    loop = _PixelLoop(
        func,
        nav=nav,
        names=tuple(its),
        constant=constant,
        out_shape=out_shape,
        dtype=dtype,
        ragged=ragged,
        vectorized=vectorized,
        first=None if vectorized else returned,
    )
    _check_picklable(loop, processes)
    if not processes and not vectorized and seconds is not None:
        _say_how_to_use_every_core(func, seconds, n_pixels)
    result = _build_graph(loop, data, its, processes)

    # navigation coords always; signal coords when the signal dims are kept
    kept = set(nav) | (set(sig) if out_sig == sig else set())
    coords = {
        name: coord.variable
        for name, coord in da.coords.items()
        if set(coord.dims) <= kept
    }
    out = xr.DataArray(
        result, dims=(*nav, *out_sig), coords=coords, name=da.name, attrs=dict(da.attrs)
    )
    out.attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims(out_sig)
    if not lazy:
        (out,) = engine.compute(out, progress=progress, desc="map")
    return out


def _memory_chunks(arr: xr.DataArray, nav: tuple[Hashable, ...]) -> tuple[int, ...]:
    """Blocks of an in-memory array for map: the automatic chunking, the
    first navigation dim cut further so every core and a progress bar have
    a few blocks each (blocks of at least 1 MiB)."""
    by_dim = auto_chunks(arr)
    if nav:
        rows = arr.sizes[nav[0]]
        blocks = math.prod(math.ceil(arr.sizes[d] / by_dim[d]) for d in nav)
        want = min(8 * engine.cores(), arr.nbytes // MIN_BLOCK_BYTES)
        if blocks < want:
            by_dim[nav[0]] = max(1, min(by_dim[nav[0]], -(-rows * blocks // want)))
    return tuple(by_dim[d] for d in arr.dims)


MIN_BLOCK_BYTES = 2**20
HINT_SECONDS = 10.0  # a per-pixel map estimated longer than this says how to
_HINTED: set[str] = set()  # use every core, once per function


def _say_how_to_use_every_core(
    func: Callable[..., Any], first: float, pixels: int
) -> None:
    """Once per function, before a long per-pixel run on dask's threads:
    Python code holding the GIL keeps one core busy however many threads
    run it; say in one line how to use every core. The estimate is the
    first pixel's time (the call that inferred the output) times the
    pixels, and says so: a function that caches on its first call runs
    faster after it."""
    name = _func_name(func)
    cores = engine.cores()
    seconds = first * pixels
    if seconds < HINT_SECONDS or cores < 2 or name in _HINTED:
        return
    if engine.where() != "threads":
        return
    _HINTED.add(name)
    warnings.warn(
        f"xsignal.map: {name} took {first * 1e3:.3g} ms on the first pixel, so "
        f"{pixels} pixels would take about {seconds:.0f} s on one core if it "
        f"holds the GIL (pure Python); to use all {cores} cores, call "
        "xsignal.set_options(map_processes=True) in a script with an "
        "'if __name__ == \"__main__\":' guard, or use a dask.distributed Client",
        UserWarning,
        stacklevel=_outside_xsignal(),
    )


def _outside_xsignal() -> int:
    """The ``stacklevel`` of the first caller outside the xsignal package,
    for warnings that should point at the user's line."""
    package = os.path.dirname(__file__)
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _aligned(value: xr.DataArray, nav_chunks: tuple[tuple[int, ...], ...]) -> Any:
    """An iterated kwarg as a dask array with the input's navigation chunks."""
    n_nav = len(nav_chunks)
    chunks = (*nav_chunks, *((n,) for n in value.shape[n_nav:]))
    if is_lazy(value):
        return value.data.rechunk(chunks)
    return dsa.from_array(np.asarray(value.values), chunks=chunks)


def _build_graph(
    loop: _PixelLoop, data: Any, its: dict[str, Any], processes: bool
) -> Any:
    """The lazy result: ``loop`` on every block of ``data`` and the iterated
    kwargs (in the map route's worker processes when ``processes``)."""
    n_nav = len(loop.nav)
    out_shape, dtype = loop.out_shape, loop.dtype
    nav_ind = tuple(f"n{i}" for i in range(n_nav))
    args: list[Any] = [data, nav_ind + tuple(f"s{i}" for i in range(data.ndim - n_nav))]
    for j, a in enumerate(its.values()):
        args += [a, nav_ind + tuple(f"k{j}_{i}" for i in range(a.ndim - n_nav))]
    for i, (size, chunks) in enumerate(zip(data.shape, data.chunks[:n_nav])):
        args += [dsa.from_array(np.arange(size), chunks=(chunks,)), (nav_ind[i],)]
    out_ind = nav_ind + tuple(f"o{i}" for i in range(len(out_shape)))
    return dsa.blockwise(
        engine.ProcessRoute(loop) if processes else loop,
        out_ind,
        *args,
        new_axes=dict(zip(out_ind[n_nav:], out_shape)),
        concatenate=False,
        dtype=dtype,
        meta=np.empty((0,) * len(out_ind), dtype=dtype),
        name=f"map-{_task_label(loop.func)}-{loop.token}",
    )


# --- map_blocks and map_overlap ----------------------------------------------


def _by_axis(
    da: xr.DataArray, spec: Mapping[Hashable, Any], what: str
) -> dict[int, Any]:
    check_dims(da, spec, what)
    return {da.dims.index(d): v for d, v in spec.items()}


def _wrap(
    da: xr.DataArray,
    result: Any,
    dims: tuple[Hashable, ...],
    new_signal: Sequence[Hashable] = (),
) -> xr.DataArray:
    """``result`` as a DataArray with ``da``'s coords on dims whose size is kept."""
    sizes = dict(zip(dims, result.shape))
    coords = {
        name: coord.variable
        for name, coord in da.coords.items()
        if all(d in sizes and sizes[d] == da.sizes[d] for d in coord.dims)
    }
    out = xr.DataArray(
        result, dims=dims, coords=coords, name=da.name, attrs=dict(da.attrs)
    )
    kept = [d for d in signal_dims(da) if d in dims]
    out.attrs[SIGNAL_DIMS_ATTR] = encode_signal_dims([*kept, *new_signal])
    return out


class _CheckedBlocks:
    """Calls ``func`` on a block and checks the shape it returns.

    dask trusts the declared chunks; a function returning another shape
    would give an array whose metadata lie, so say so at once instead.
    """

    def __init__(self, func: Callable[..., Any], dims: tuple[Hashable, ...]) -> None:
        self.func = func
        self.dims = dims

    def __call__(
        self, block: np.ndarray, block_info: Any = None, **kwargs: Any
    ) -> np.ndarray:
        out = np.asarray(self.func(block, **kwargs))
        expected = tuple(block_info[None]["chunk-shape"]) if block_info else None
        if expected is not None and out.shape != expected:
            where = block_info[None]["chunk-location"]
            raise ValueError(
                f"{_func_name(self.func)} returned shape {out.shape} for block "
                f"{where} where {dict(zip(self.dims, expected))} was declared; "
                "pass chunks={dim: size} for dims whose size it changes, "
                "drop_dims for dims it removes and new_dims for dims it adds"
            )
        return out


def map_blocks(
    da: xr.DataArray,
    func: Callable[..., Any],
    *,
    chunks: Mapping[Any, Any] | None = None,
    drop_dims: Sequence[Hashable] = (),
    new_dims: Mapping[Any, int] | None = None,
    dtype: Any = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Call ``func`` on every dask block of ``da`` (dask's ``map_blocks``).

    ``func(block, **kwargs)`` gets a numpy block with the array's dims in
    the array's order and returns a numpy block: the same dims, without
    ``drop_dims``, with ``new_dims`` appended at the end. An in-memory array
    is one block and gives an in-memory result.

    Parameters
    ----------
    da : DataArray
    func : callable
    chunks : dict, optional
        Output chunks of the dims whose size ``func`` changes, by dim name
        (an int for every block or a tuple of chunk sizes); those dims lose
        their coords.
    drop_dims : sequence of names
        Dims that ``func`` removes (reduces over); they are rechunked whole
        first so a block holds all of them.
    new_dims : dict, optional
        ``{name: size}`` of dims that ``func`` adds after the others; they
        are marked as signal dims of the result.
    dtype : numpy dtype, optional
        Output dtype; default ``da``'s.
    **kwargs
        Passed to ``func``.

    Returns
    -------
    DataArray
        Coords of the dims whose size is unchanged, attrs, and the signal
        marking of the remaining signal dims (plus ``new_dims``).

    Raises
    ------
    TypeError
        If ``func`` is not callable.
    ValueError
        If ``chunks`` or ``drop_dims`` name an unknown dim, ``new_dims``
        an existing one, or (at compute) ``func`` returns a block of
        another shape than declared.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(8.0).reshape(4, 2), dims=("x", "e")).chunk(2)
    >>> xsignal.map_blocks(da, lambda b: b - b.mean()).values
    array([[-1.5, -0.5],
           [ 0.5,  1.5],
           [-1.5, -0.5],
           [ 0.5,  1.5]])
    >>> xsignal.map_blocks(da, lambda b: b[:1], chunks={"x": 1}).x.size
    2
    >>> out = xsignal.map_blocks(da, lambda b: b.sum(-1), drop_dims=["e"])
    >>> out.dims, out.values
    (('x',), array([ 1.,  5.,  9., 13.]))
    """
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    by_axis = _by_axis(da, chunks or {}, "chunks dim")
    drop = check_dims(da, drop_dims, "drop_dims dim")
    new = dict(new_dims or {})
    clash = [d for d in new if d in da.dims and d not in drop]
    if clash:
        raise ValueError(f"new_dims names {clash[0]!r}, which is already a dim")
    dtype = np.dtype(dtype) if dtype is not None else da.dtype
    lazy = is_lazy(da)
    data = da.data if lazy else dsa.from_array(np.asarray(da.values), chunks=-1)
    drop_axes = [da.dims.index(d) for d in drop]
    if any(len(data.chunks[i]) > 1 for i in drop_axes):
        data = data.rechunk(dict.fromkeys(drop_axes, -1))
    kept = [i for i in range(data.ndim) if i not in drop_axes]
    out_chunks = tuple(
        _expand(by_axis[i], data.shape[i], len(data.chunks[i]))
        if i in by_axis
        else data.chunks[i]
        for i in kept
    ) + tuple((int(n),) for n in new.values())
    out_dims = (*(da.dims[i] for i in kept), *new)
    n_out = len(out_dims)
    result = dsa.map_blocks(
        _CheckedBlocks(func, out_dims),
        data,
        chunks=out_chunks,
        drop_axis=drop_axes or None,
        new_axis=list(range(len(kept), n_out)) or None,
        dtype=dtype,
        meta=np.empty((0,) * n_out, dtype),
        **kwargs,
    )
    if not lazy:
        (result,) = engine.compute(result, progress=False)
    return _wrap(da, result, out_dims, list(new))


def _expand(spec: Any, size: int, n_blocks: int) -> tuple[int, ...]:
    if isinstance(spec, (int, np.integer)):
        return (int(spec),) * n_blocks
    sizes = tuple(int(c) for c in spec)
    if len(sizes) != n_blocks:
        raise ValueError(
            f"chunks {sizes} give {len(sizes)} blocks where the array has {n_blocks}"
        )
    return sizes


def map_overlap(
    da: xr.DataArray,
    func: Callable[..., Any],
    depth: int | Mapping[Any, int],
    boundary: Any = "reflect",
    *,
    trim: bool = True,
    dtype: Any = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Call ``func`` on every block plus ``depth`` neighbours (dask's ``map_overlap``).

    For neighbourhood operations (filters, gradients) along dims that are
    split over several chunks. ``func(block, **kwargs)`` gets a numpy block
    in the array's dim order, extended by ``depth[dim]`` elements on each
    side, and returns an array of the same shape; the margins are trimmed
    off again.

    Parameters
    ----------
    da : DataArray
    func : callable
    depth : int or dict
        Elements shared with neighbouring blocks, by dim name (dims not
        named: 0); an int applies to every dim.
    boundary : str, number or dict
        Values beyond the array's edges: ``"reflect"``, ``"periodic"``,
        ``"nearest"``, ``"none"`` or a constant, or a dict of these by dim
        name.
    trim : bool
        Remove the margins from ``func``'s output (``False`` when ``func``
        removes them itself).
    dtype : numpy dtype, optional
        Output dtype; default ``da``'s.
    **kwargs
        Passed to ``func``.

    Returns
    -------
    DataArray
        Same dims, coords, attrs and signal marking; lazy when ``da`` is.

    Raises
    ------
    TypeError
        If ``func`` is not callable.
    ValueError
        If ``depth`` or ``boundary`` names an unknown dim or a depth is
        negative.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(6.0) ** 2, dims="x").chunk(2)
    >>> out = xsignal.map_overlap(da, np.gradient, {"x": 1}, boundary="nearest")
    >>> out.values
    array([0.5, 2. , 4. , 6. , 8. , 4.5])
    """
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    if isinstance(depth, Mapping):
        depth_axes = _by_axis(da, depth, "depth dim")
    elif isinstance(depth, (int, np.integer)):
        depth_axes = dict.fromkeys(range(da.ndim), int(depth))
    else:
        raise TypeError(f"depth must be an int or a dict by dim name, not {depth!r}")
    bad = [da.dims[i] for i, n in depth_axes.items() if int(n) < 0]
    if bad:
        raise ValueError(f"depth must be >= 0; it is negative for {bad[0]!r}")
    depth_axes = {i: int(depth_axes.get(i, 0)) for i in range(da.ndim)}
    if isinstance(boundary, Mapping):
        boundary = _by_axis(da, boundary, "boundary dim")
        boundary = {i: boundary.get(i, "none") for i in range(da.ndim)}
    dtype = np.dtype(dtype) if dtype is not None else da.dtype
    lazy = is_lazy(da)
    data = da.data if lazy else dsa.from_array(np.asarray(da.values), chunks=-1)
    result = dsa.map_overlap(
        func,
        data,
        depth=depth_axes,
        boundary=boundary,
        trim=trim,
        dtype=dtype,
        meta=np.empty((0,) * data.ndim, dtype),
        **kwargs,
    )
    if not lazy:
        (result,) = engine.compute(result, progress=False)
    return _wrap(da, result, da.dims)
