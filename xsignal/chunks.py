"""Automatic chunking and explicit rechunking by navigation/signal kind.

The rule everywhere: signal dims whole (algorithms work on whole signals),
navigation dims split so that one chunk is near dask's ``array.chunk-size``.
Trailing navigation dims are kept whole first, so a chunk is a run of whole
rows: contiguous in memory and in row-chunked HDF5 files.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from dask.utils import parse_bytes

from . import engine
from .dims import check_dims, navigation_dims, signal_dims
from .options import OPTIONS

ChunkSpec = int | str | Mapping[Any, Any]

WHOLE = -1  # a chunk length meaning the whole dim


def per_dim(
    dims: Sequence[Hashable],
    spec: Any,
    *,
    default: Sequence[Any],
    what: str = "chunks",
    auto: bool = False,
) -> list[Any]:
    """The one reading of a chunk spec (open, save, shards): a list in dim
    order.

    ``None`` or ``{}``: ``default``. One int, or ``"auto"`` where
    ``auto``: for every dim. A dict by dim name (dims not named:
    ``default``) or a sequence in dim order. Each given entry is a positive
    int, ``-1`` or ``None`` (the whole dim, returned as ``-1``), or
    ``"auto"`` where ``auto``.

    Raises
    ------
    ValueError
        Naming ``what``: a dim the array does not have, a sequence of
        another length, or an entry of another kind.

    Examples
    --------
    >>> per_dim(("y", "x", "e"), {"y": 4}, default=[8, 8, 64])
    [4, 8, 64]
    >>> per_dim(("y", "x"), (2, None), default=[1, 1])
    [2, -1]
    >>> per_dim(("y", "x"), {"z": 2}, default=[1, 1])
    Traceback (most recent call last):
    ...
    ValueError: chunks names 'z', which is not a dim of this array; its dims ...
    """
    dims = tuple(dims)
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return list(default)
    if isinstance(spec, str) or _is_int(spec):
        given = dict.fromkeys(dims, spec)
    elif isinstance(spec, Mapping):
        unknown = [d for d in spec if d not in dims]
        if unknown:
            raise ValueError(
                f"{what} names {unknown[0]!r}, which is not a dim of this array; "
                f"its dims are {dims}"
            )
        given = dict(spec)
    elif isinstance(spec, Sequence):
        if len(spec) != len(dims):
            raise ValueError(
                f"{what} {tuple(spec)} has {len(spec)} entries but the array has "
                f"{len(dims)} dims {dims}"
            )
        given = dict(zip(dims, spec))
    else:
        kinds = "None, 'auto', " if auto else "None, "
        raise ValueError(
            f"{what} must be {kinds}an int, a dict by dim name or a tuple in dim "
            f"order, not {spec!r}"
        )
    return [
        _entry(given[d], d, what, auto) if d in given else dflt
        for d, dflt in zip(dims, default)
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _entry(value: Any, dim: Hashable, what: str, auto: bool) -> Any:
    if value is None or (_is_int(value) and value == WHOLE):
        return WHOLE
    if _is_int(value) and value > 0:
        return int(value)
    if auto and value == "auto":
        return value
    kinds = "a positive int, -1, None" + (" or 'auto'" if auto else "")
    raise ValueError(f"{what} for {dim!r} must be {kinds}, not {value!r}")


def whole(da: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """``da`` with each of ``dims`` in one chunk, for tools that take whole
    signals or frames per block (in-memory arrays, and dims already whole,
    as they are).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xsignal.chunks import whole
    >>> da = xr.DataArray(np.ones((4, 6)), dims=("x", "e")).chunk({"e": 2})
    >>> whole(da, ["e"]).chunks
    ((4,), (6,))
    """
    if da.chunks is None:
        return da
    split = {d: -1 for d in dims if len(da.chunksizes[d]) > 1}
    return da.chunk(split) if split else da


def apply_blocks(
    func: Any,
    da: xr.DataArray,
    input_core: Sequence[Hashable],
    output_core: Mapping[Hashable, int],
    dtype: Any,
    *,
    others: Sequence[xr.DataArray] = (),
    keep_attrs: bool = False,
) -> xr.DataArray:
    """``func`` on every block of ``da`` (``input_core`` dims last, made
    whole), giving a block with ``output_core`` dims (and sizes) last;
    ``others`` (with the same core dims: a reference) come as further
    arguments, their blocks matched to ``da``'s (whole when they lack its
    loop dims);
    ``xr.apply_ufunc(..., dask="parallelized")`` for a function that
    changes the core dims, without its copy of every block: dask's gufunc
    path concatenates each block along the input's core dims, a full copy
    (into fresh memory) even of one block.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xsignal.chunks import apply_blocks
    >>> da = xr.DataArray(np.ones((4, 6)), dims=("x", "e")).chunk({"x": 2})
    >>> out = apply_blocks(lambda b: b.sum(-1, keepdims=True) * [1, 2], da,
    ...                    ["e"], {"pair": 2}, float)
    >>> out.dims, out.chunks, out.values[0].tolist()
    (('x', 'pair'), ((2, 2), (2,)), [6.0, 12.0])
    """

    def per_block(data: Any, *more: Any) -> Any:
        if not any(isinstance(x, dsa.Array) for x in (data, *more)):
            return func(data, *more)
        data = dsa.asarray(data)
        loop = data.ndim - len(input_core)
        index = [f"d{i}" for i in range(data.ndim)]
        new = {f"o{i}": n for i, n in enumerate(output_core.values())}
        pairs: list[Any] = [data, index]
        for x in more:  # blocks aligned (from the right, as numpy broadcasts)
            x = dsa.asarray(x)
            pairs += [x, index[data.ndim - x.ndim :]]
        return _per_block(func, [*index[:loop], *new], pairs, dtype, new_axes=new)

    out: xr.DataArray = xr.apply_ufunc(
        per_block,
        whole(da, input_core),
        *(whole(other, input_core) for other in others),
        input_core_dims=[list(input_core)] * (1 + len(others)),
        output_core_dims=[list(output_core)],
        dask="allowed",
        keep_attrs=keep_attrs,
    )
    return out


def reduce_blocks(
    func: Any,
    array: dsa.Array,
    axes: Sequence[int],
    dtype: Any,
    *,
    regions: bool = False,
) -> dsa.Array:
    """``func(block)`` (or ``func(block, region)`` with ``regions``: the
    block's slices in ``array``) on every block, dropping ``axes`` (each one
    chunk): ``array.map_blocks(func, drop_axis=axes)`` without dask's copy
    of every block (its concatenation along dropped axes copies even one).

    Examples
    --------
    >>> import dask.array as dsa
    >>> from xsignal.chunks import reduce_blocks
    >>> x = dsa.ones((4, 3), chunks=(2, 3))
    >>> reduce_blocks(lambda b: b.sum(1), x, [1], float).compute()
    array([3., 3., 3., 3.])
    """
    index = [f"d{i}" for i in range(array.ndim)]
    pairs: list[Any] = [array, index]
    if regions:
        edges = [np.cumsum((0, *c)) for c in array.chunks]
        where = np.empty(array.numblocks, dtype=object)
        for block in np.ndindex(*array.numblocks):
            where[block] = tuple(
                slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, block)
            )
        pairs += [dsa.from_array(where, chunks=1, name=False), index]
    kept = [d for i, d in enumerate(index) if i not in set(axes)]
    # align_arrays=False: the regions are one per block, not per element
    return _per_block(func, kept, pairs, dtype, align_arrays=False)


def _per_block(
    func: Any, out_index: list[str], pairs: list[Any], dtype: Any, **kwargs: Any
) -> dsa.Array:
    """``blockwise`` of ``func`` (:func:`_shared`) over ``pairs`` (arrays and
    their indices) without concatenation: dask's would copy every block,
    so the function gets the single block along each contracted dim in
    nested lists (:func:`_unwrapped`)."""
    out: dsa.Array = dsa.blockwise(
        _call,
        out_index,
        _shared(func),
        None,
        *pairs,
        concatenate=False,
        meta=np.empty((0,) * len(out_index), dtype),
        **kwargs,
    )
    return out


def _shared(func: Any) -> Any:
    """``func`` (unwrapped, :func:`_unwrapped`) as one key of the graph that
    every block's task refers to: held once, sent once to each worker, not
    once a task. A block's task then has two inputs, so dask's low-level
    fusion leaves it apart from the read before it: a fused task runs its
    little graph through ``dask.order`` every time, which costs more than
    the hand-over it saves (the centre of mass of a 0.5 GiB file: 1.25x
    the raw read pass fused, 1.12x apart)."""
    return dask.delayed(_unwrapped(func), name=f"xsignal-function-{uuid.uuid4().hex}")


def _call(func: Any, *blocks: Any) -> Any:
    """A block's task: the shared function on its blocks, BLAS on one
    thread (the scheduler's threads already share the cores: a LAPACK fit
    in every task starting threads on every core halved Savitzky-Golay's
    rate on 2 cores)."""
    with engine.blas_one_thread():
        return func(*blocks)


def _unwrapped(func: Any) -> Any:
    """``func`` on blocks handed in nested one-element lists (the single
    block along each contracted dim of a ``blockwise(concatenate=False)``)."""

    def call(*blocks: Any) -> Any:
        inner = []
        for block in blocks:
            while isinstance(block, list):
                (block,) = block
            inner.append(block)
        return func(*inner)

    return call


def target_chunk_bytes() -> int:
    """Dask's ``array.chunk-size`` in bytes."""
    return parse_bytes(dask.config.get("array.chunk-size"))


def _balanced(size: int, most: int) -> int:
    """Chunk length <= ``most`` that splits ``size`` into equal-ish parts."""
    most = max(1, min(size, most))
    return math.ceil(size / math.ceil(size / most))


def navigation_chunks(
    shape: Mapping[Hashable, int], bytes_per_pixel: int, target: int | None = None
) -> dict[Hashable, int]:
    """Chunk lengths for navigation dims so a chunk holds about ``target`` bytes.

    ``shape`` maps the navigation dims, in array order, to their sizes;
    ``bytes_per_pixel`` is the size of the signal part of one chunk. The
    last dims are kept whole while they fit, then one dim is split evenly
    and the dims before it get length 1.

    Examples
    --------
    >>> navigation_chunks({"y": 256, "x": 256}, 4096, target=2**27)
    {'y': 128, 'x': 256}
    >>> navigation_chunks({"y": 10, "x": 10}, 2**30, target=2**27)
    {'y': 1, 'x': 1}
    """
    target = target_chunk_bytes() if target is None else target
    budget = max(1, target // max(1, bytes_per_pixel))
    chunks: dict[Hashable, int] = {}
    for dim in reversed(list(shape)):
        size = shape[dim]
        chunks[dim] = size if size <= budget else _balanced(size, budget)
        budget = max(1, budget // max(1, size))  # empty dims take no budget
    return {d: chunks[d] for d in shape}


def auto_chunks(da: xr.DataArray) -> dict[Hashable, int]:
    """The automatic chunking of ``da``: signal dims whole, navigation near the target.

    Warns (``UserWarning``) when the result has more chunks than the
    ``max_tasks`` option, which happens only for arrays whose single signal
    is about as large as a chunk.
    """
    sig = signal_dims(da)
    pixel_bytes = math.prod(da.sizes[d] for d in sig) * da.dtype.itemsize
    chunks = navigation_chunks(
        {d: da.sizes[d] for d in navigation_dims(da)}, pixel_bytes
    )
    chunks.update({d: da.sizes[d] for d in sig})
    warn_if_many_chunks(da, chunks)
    return chunks


def count_chunks(da: xr.DataArray, chunks: Mapping[Hashable, int]) -> int:
    """Number of blocks ``da`` would have with regular ``chunks`` by dim."""
    return math.prod(math.ceil(da.sizes[d] / max(1, chunks[d])) for d in chunks)


def warn_if_many_chunks(da: xr.DataArray, chunks: Mapping[Hashable, int]) -> None:
    n = count_chunks(da, chunks)
    if n > OPTIONS["max_tasks"]:
        warnings.warn(
            f"this chunking makes {n} chunks (over {OPTIONS['max_tasks']}), so "
            "dask's per-task overhead will dominate; pass larger chunks or raise "
            "dask's 'array.chunk-size'",
            UserWarning,
            stacklevel=3,
        )


def _spec_by_dim(
    da: xr.DataArray, spec: ChunkSpec, dims: tuple[Hashable, ...], kind: str
) -> dict[Hashable, Any]:
    """Expand one rechunk argument (``"auto"``, ``-1``, int, dict) over ``dims``."""
    if isinstance(spec, Mapping):
        check_dims(da, spec, f"{kind} chunk dim")
        wrong = [d for d in spec if d not in dims]
        if wrong:
            raise ValueError(
                f"{wrong[0]!r} is not a {kind} dim; the {kind} dims are {dims}"
            )
        return dict(spec)
    if spec == "auto" or spec == -1 or spec is None:
        return dict.fromkeys(dims, spec)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool) and spec > 0:
        return dict.fromkeys(dims, int(spec))
    raise ValueError(
        f"{kind} chunks must be 'auto', -1, a positive int or a dict by dim "
        f"name, not {spec!r}"
    )


def resolve_chunks(
    da: xr.DataArray, navigation: ChunkSpec = "auto", signal: ChunkSpec = -1
) -> dict[Hashable, int | tuple[int, ...]]:
    """Chunk lengths by dim for :func:`rechunk` (``"auto"`` resolved to numbers)."""
    nav, sig = navigation_dims(da), signal_dims(da)
    by_dim = _spec_by_dim(da, navigation, nav, "navigation")
    by_dim.update(_spec_by_dim(da, signal, sig, "signal"))
    current = dict(zip(da.dims, da.chunks)) if da.chunks is not None else {}
    out: dict[Hashable, Any] = {}
    for d in da.dims:
        spec = by_dim.get(d, current.get(d, -1))
        if spec is None:
            spec = current.get(d, -1)
        out[d] = da.sizes[d] if spec == -1 else spec
    if any(v == "auto" for v in out.values()):
        # signal "auto": let dask size those dims with the others fixed
        sig_auto = [d for d in sig if out[d] == "auto"]
        if sig_auto:
            normalized = dsa.core.normalize_chunks(
                tuple(out[d] if d in sig_auto else -1 for d in da.dims),
                da.shape,
                dtype=da.dtype,
            )
            for d, c in zip(da.dims, normalized):
                if d in sig_auto:
                    out[d] = c
        pixel_bytes = da.dtype.itemsize * math.prod(
            max(out[d]) if isinstance(out[d], tuple) else out[d] for d in sig
        )
        fixed = {d: out[d] for d in nav if out[d] != "auto"}
        # fixed navigation chunks take their share of the budget first
        pixel_bytes *= math.prod(
            max(c) if isinstance(c, tuple) else c for c in fixed.values()
        )
        auto = navigation_chunks(
            {d: da.sizes[d] for d in nav if d not in fixed}, pixel_bytes
        )
        out.update(auto)
    return out


def rechunk(
    da: xr.DataArray, navigation: ChunkSpec = "auto", signal: ChunkSpec = -1
) -> xr.DataArray:
    """Rechunk ``da`` by kind of dim; the result is always dask-backed.

    Parameters
    ----------
    da : DataArray
    navigation, signal : "auto", -1, int or dict
        For the navigation and signal dims: ``"auto"`` (the automatic rule of
        :func:`auto_chunks`), ``-1`` (whole), an int for every dim of that
        kind, or a dict by dim name (dims not named keep their chunks).

    Raises
    ------
    ValueError
        If a dict names an unknown dim or a dim of the other kind.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros((8, 6, 4)), dims=("y", "x", "energy"))
    >>> xsignal.rechunk(da, navigation={"y": 2}).chunks
    ((2, 2, 2, 2), (6,), (4,))
    >>> xsignal.rechunk(da, navigation=3, signal=2).chunks
    ((3, 3, 2), (3, 3), (2, 2))
    """
    chunks = resolve_chunks(da, navigation, signal)
    return da.chunk(chunks)
