"""Lazy arrays: as_lazy, compute (progress, close_file), change_dtype, blocks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr
from dask.array.core import normalize_chunks

from . import engine
from .chunks import auto_chunks, rechunk, warn_if_many_chunks
from .dims import check_dims, navigation_dims, signal_dims
from .sources import close_sources, close_tokens


def is_lazy(da: xr.DataArray) -> bool:
    """True when ``da`` is backed by a dask array.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((4, 8)))
    >>> xsignal.is_lazy(da), xsignal.is_lazy(da.chunk())
    (False, True)
    """
    return da.chunks is not None


def as_lazy(
    da: xr.DataArray, chunks: Mapping[Any, Any] | str | None = None
) -> xr.DataArray:
    """Return a dask-backed version of ``da``.

    Parameters
    ----------
    chunks : None, "auto" or dict
        ``None``: keep the chunks of an array that is already lazy, else the
        automatic chunking of :func:`xsignal.chunks.auto_chunks` (signal dims
        whole, navigation dims split so a chunk is near dask's
        ``array.chunk-size``). ``"auto"`` (dask's own rule) and a dict by dim
        name are passed to :meth:`xarray.DataArray.chunk` as given.

    Raises
    ------
    ValueError
        If ``chunks`` names a dim the array does not have.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((8, 6, 4)), dims=("y", "x", "energy"))
    >>> xsignal.as_lazy(da).chunks
    ((8,), (6,), (4,))
    >>> xsignal.as_lazy(da, {"y": 2}).chunks
    ((2, 2, 2, 2), (6,), (4,))
    """
    if chunks is None:
        if is_lazy(da):
            return da
        return da.chunk(auto_chunks(da))
    if isinstance(chunks, Mapping):
        check_dims(da, chunks, "chunk dim")
    elif chunks != "auto":
        raise ValueError(f"chunks must be None, 'auto' or a dict, not {chunks!r}")
    return da.chunk(chunks)


def compute(
    da: xr.DataArray, *, progress: bool | None = None, close_file: bool = False
) -> xr.DataArray:
    """Load ``da`` into memory, with an optional progress bar.

    Parameters
    ----------
    progress : bool or None
        ``None`` follows :func:`xsignal.set_options` (a bar for computes
        lasting over a second on a terminal, none under CI).
    close_file : bool
        Close the files ``da`` was read from once the data is in memory.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> lazy = xr.DataArray(np.arange(6.0)).chunk(2)
    >>> lazy.signal.compute(progress=False).values
    array([0., 1., 2., 3., 4., 5.])
    """
    out: xr.DataArray
    (out,) = engine.compute(da, progress=progress, desc="compute")
    if close_file:
        _close_file(da)
    return out


def close_file(da: xr.DataArray) -> None:
    """Close the files that a lazy ``da`` was read from.

    Every file handle that ``xsignal.open`` opened for ``da`` (and for
    other arrays of the same ``xsignal.open`` call) is closed, in this
    process and in the workers of a running ``dask.distributed`` client, so
    the file can be rewritten or deleted. Computing ``da`` (or anything
    built from it) afterwards raises ``ValueError`` rather than reopening
    the file. An array in memory has nothing to close.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> xsignal.close_file(xr.DataArray(np.zeros(3)))  # nothing to close
    """
    tokens = close_sources(da)
    if tokens:
        engine.on_workers(close_tokens, tokens)
    if isinstance(da, xr.DataArray):
        da.close()  # arrays from xarray's own backends


_close_file = close_file  # the parameter of compute() shadows the function


def compute_all(
    *objs: Any, progress: bool | None | engine.ProgressCallback = None
) -> tuple[Any, ...]:
    """Compute several objects in one pass over their shared inputs.

    One ``dask.compute`` call, so a file read by two results is read once.
    Objects that are not lazy are returned as they are. Before it starts, a
    :class:`xsignal.MemoryWarning` says when the estimate of
    :func:`xsignal.plan` exceeds the memory the scheduler has.

    Parameters
    ----------
    *objs
        DataArrays, dask collections, or anything else (returned as is).
    progress : bool, None or callable
        ``True``/``False``: a progress bar or none; ``None`` follows
        :func:`xsignal.set_options`. A function ``callback(partial,
        fraction)`` is instead called in this thread as blocks of the
        results complete: ``partial`` is shaped like the result (a
        DataArray with its coords, dims and name; a tuple of them for
        several objects), NaN where nothing is computed yet, a new array
        at each call; ``fraction`` is the share of the results' blocks
        done. The last call holds the computed results, with a fraction
        of one. Made for passes whose results gather per-block values
        (navigators, sums, virtual images): a picture can be drawn as they
        come. Blocks that finish while the callback runs come together in
        its next call; an exception in it stops the computation.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(6.0), dims="energy").chunk(2)
    >>> total, peak = xsignal.compute(da.sum(), da.max(), progress=False)
    >>> float(total), float(peak)
    (15.0, 5.0)

    A callback sees the result fill in, block by block:

    >>> seen = []
    >>> (doubled,) = xsignal.compute(
    ...     da * 2, progress=lambda part, done: seen.append(done)
    ... )
    >>> seen[-1], doubled.values
    (1.0, array([ 0.,  2.,  4.,  6.,  8., 10.]))
    """
    return engine.compute(*objs, progress=progress, desc="compute")


def change_dtype(
    da: xr.DataArray, dtype: Any, *, rechunk: bool = False
) -> xr.DataArray:
    """Convert ``da`` to ``dtype``, lazily when it is lazy.

    Parameters
    ----------
    dtype : numpy dtype or name
    rechunk : bool
        Re-apply the automatic chunking for the new item size (the chunks
        are kept otherwise).

    Raises
    ------
    TypeError
        If ``dtype`` is not a numpy dtype.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> xsignal.change_dtype(xr.DataArray(np.arange(3)), "float32").dtype
    dtype('float32')
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{dtype!r} is not a numpy dtype") from err
    out = da.astype(dtype)
    if rechunk and is_lazy(out):
        out = out.chunk(auto_chunks(out))
    return out


def _as_mask(
    mask: Any, da: xr.DataArray, dims: tuple[Hashable, ...], name: str
) -> np.ndarray | None:
    """Validate a navigation or signal mask; return a bool array over ``dims``."""
    if mask is None:
        return None
    shape = tuple(da.sizes[d] for d in dims)
    values: np.ndarray
    if isinstance(mask, xr.DataArray):
        if set(mask.dims) != set(dims):
            kind = name.split("_")[0]
            raise ValueError(
                f"{name} has dims {mask.dims} but the {kind} dims are {dims}"
            )
        mask = mask.transpose(*dims)
        wrong = [d for d in dims if mask.sizes[d] != da.sizes[d]]
        if wrong:
            d = wrong[0]
            raise ValueError(
                f"{name} has {mask.sizes[d]} elements along {d!r} but the array "
                f"has {da.sizes[d]}"
            )
        values = mask.values
    else:
        values = np.asarray(mask)
        if values.shape != shape:
            raise ValueError(
                f"{name} has shape {values.shape} but the array's dims {dims} have "
                f"shape {shape}"
            )
    if values.dtype != bool:
        raise TypeError(f"{name} must be boolean (True = masked), not {values.dtype}")
    return values


def validate_masks(
    da: xr.DataArray, navigation_mask: Any = None, signal_mask: Any = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check both masks against ``da`` and return them as numpy bool arrays.

    A mask is ``True`` where a pixel or signal element is to be left out.
    DataArray masks are aligned by dim name; numpy masks must be in the
    array's dim order.
    """
    return (
        _as_mask(navigation_mask, da, navigation_dims(da), "navigation_mask"),
        _as_mask(signal_mask, da, signal_dims(da), "signal_mask"),
    )


def _block_slices(chunks: tuple[tuple[int, ...], ...]) -> list[list[slice]]:
    """Per dim, the slice each chunk covers."""
    out = []
    for dim_chunks in chunks:
        edges = np.cumsum((0, *dim_chunks))
        out.append([slice(int(a), int(b)) for a, b in itertools.pairwise(edges)])
    return out


def blocks(
    da: xr.DataArray,
    *,
    navigation_mask: Any = None,
    signal_mask: Any = None,
    flat: bool = True,
    prefetch: int | None = None,
) -> Iterator[tuple[dict[Hashable, slice], np.ndarray]]:
    """Iterate over the blocks of ``da`` as numpy arrays, in block order.

    Each item is ``(where, block)``: ``where`` maps every navigation dim to
    the slice of it that the block covers. Signal dims are made whole first
    (a block always holds whole signals); in-memory arrays are cut with the
    automatic chunking. Blocks are read a few at a time, in parallel, and
    the next few are read while the caller works on the current ones; this
    works the same under a ``dask.distributed`` client.

    Parameters
    ----------
    navigation_mask, signal_mask : bool DataArray or numpy array, optional
        ``True`` marks pixels (signal elements) to leave out. A DataArray is
        aligned by dim name; a numpy array must be in the array's dim order.
    flat : bool
        ``True``: each block is ``(pixels, signal_size)`` (navigation dims
        first, in array order) without the masked pixels and signal
        elements, and blocks with every pixel masked are skipped without
        being read. ``False``: the block keeps the array's dim order and
        shape, masked values set to NaN (float) or 0 (other dtypes).
    prefetch : int, optional
        Blocks read together; default the number of CPUs (at least 2). On a
        ``dask.distributed`` client: blocks being computed on the workers
        ahead of the caller; default twice the workers' threads, or more
        when they fit in 64 MiB.

    Raises
    ------
    ValueError, TypeError
        For masks with the wrong dims or shape, or that are not boolean.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.arange(24.0).reshape(4, 2, 3), dims=("y", "x", "e"))
    >>> for where, block in xsignal.blocks(da.chunk({"y": 2})):
    ...     print(where["y"], block.shape)
    slice(0, 2, None) (4, 3)
    slice(2, 4, None) (4, 3)
    """
    nav, sig = navigation_dims(da), signal_dims(da)
    nav_mask, sig_mask = validate_masks(da, navigation_mask, signal_mask)
    order = (*nav, *sig)
    arr = da.transpose(*order)
    chunks: tuple[tuple[int, ...], ...]
    if is_lazy(arr):  # (the dask array's chunks: DataArray.chunks is Optional)
        if any(len(c) > 1 for d, c in zip(arr.dims, arr.data.chunks) if d in sig):
            arr = rechunk(arr, navigation={}, signal=-1)
        chunks = arr.data.chunks
    else:
        auto = auto_chunks(arr)
        chunks = normalize_chunks(tuple(auto[d] for d in arr.dims), arr.shape)
    warn_if_many_chunks(arr, {d: max(c) for d, c in zip(arr.dims, chunks)})
    nav_slices = _block_slices(chunks[: len(nav)])
    keep_cols = None if sig_mask is None else ~sig_mask.ravel()
    back = [order.index(d) for d in da.dims]  # block axes -> array dim order

    def jobs() -> Iterator[tuple[tuple[slice, ...], np.ndarray | None]]:
        for index in itertools.product(*nav_slices):
            pixels = None if nav_mask is None else ~nav_mask[index].ravel()
            empty = any(sl.start == sl.stop for sl in index)
            if flat and (empty or (pixels is not None and not pixels.any())):
                continue
            yield index, pixels

    def finish(
        index: tuple[slice, ...], pixels: np.ndarray | None, block: np.ndarray
    ) -> np.ndarray:
        if flat:
            block = block.reshape(-1, math.prod(block.shape[len(nav) :]))
            if pixels is not None:
                block = block[pixels]
            if keep_cols is not None:
                block = block[:, keep_cols]
            return block
        if nav_mask is not None or sig_mask is not None:
            block = _mask_values(block, nav_mask, sig_mask, index)
        return np.transpose(block, back) if back != sorted(back) else block

    todo = list(jobs())
    if is_lazy(arr):
        # one small graph per block (slicing culls it), never the whole graph
        data = arr.data
        values = engine.stream(
            [data[index] for index, _ in todo], window=prefetch, desc="blocks"
        )
    else:
        values = (np.asarray(arr.data[index]) for index, _ in todo)
    for (index, pixels), block in zip(todo, values):
        yield dict(zip(nav, index)), finish(index, pixels, block)


def _mask_values(
    block: np.ndarray,
    nav_mask: np.ndarray | None,
    sig_mask: np.ndarray | None,
    index: tuple[slice, ...],
) -> np.ndarray:
    """Copy of ``block`` (nav dims first) with masked values set to NaN or 0."""
    n_nav = len(index)
    masked = np.zeros(block.shape, dtype=bool)
    if nav_mask is not None:
        masked |= nav_mask[index].reshape(
            nav_mask[index].shape + (1,) * (block.ndim - n_nav)
        )
    if sig_mask is not None:
        masked |= sig_mask
    fill = np.nan if block.dtype.kind in "fc" else 0
    return np.where(masked, fill, block).astype(block.dtype, copy=False)
