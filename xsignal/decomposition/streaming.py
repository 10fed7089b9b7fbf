"""Passes over the unfolded (pixels x signal) matrix, block by block.

Everything an algorithm sees goes through :class:`Problem` (the validated
input: array in ``(*navigation, *signal)`` order, masks, sizes) and
:class:`Scaling` (Poisson weights and centring applied to each raw block).
Passes are dask graphs over the blocks of :attr:`Problem.dask_data`: the
statistics pass (:func:`statistics_graph`) computes a partial result where
each block is read and merges them in a tree; the projections
(:func:`lazy_projection`) are one task per block; the sequential learners
(ORPCA, ORNMF, incremental PCA) are a chain of tasks in block order
(:func:`block_chain`), each reading its own block.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from .. import engine
from ..chunks import auto_chunks
from ..lazy import is_lazy


@dataclass
class Problem:
    """The validated input of a decomposition."""

    data: xr.DataArray  # (*nav, *sig) order, float
    nav_dims: tuple[Hashable, ...]
    sig_dims: tuple[Hashable, ...]
    nav_mask: np.ndarray | None  # True = masked, navigation shape
    sig_mask: np.ndarray | None  # True = masked, signal shape
    progress: bool | None = None

    @property
    def nav_shape(self) -> tuple[int, ...]:
        return tuple(self.data.sizes[d] for d in self.nav_dims)

    @property
    def sig_shape(self) -> tuple[int, ...]:
        return tuple(self.data.sizes[d] for d in self.sig_dims)

    @property
    def n_nav(self) -> int:
        return math.prod(self.nav_shape)

    @property
    def n_sig(self) -> int:
        return math.prod(self.sig_shape)

    @functools.cached_property
    def keep_pixels(self) -> np.ndarray:
        """Flat bool over all pixels: True where a pixel is decomposed."""
        if self.nav_mask is None:
            return np.ones(self.n_nav, bool)
        return ~self.nav_mask.ravel()

    @functools.cached_property
    def keep_signal(self) -> np.ndarray:
        """Flat bool over all signal elements: True where one is decomposed."""
        if self.sig_mask is None:
            return np.ones(self.n_sig, bool)
        return ~self.sig_mask.ravel()

    @property
    def n_pixels(self) -> int:
        return int(self.keep_pixels.sum())

    @property
    def n_features(self) -> int:
        return int(self.keep_signal.sum())

    @property
    def lazy(self) -> bool:
        return is_lazy(self.data)

    @property
    def work_dtype(self) -> np.dtype:
        """float32 data: float32 products (half the memory traffic, BLAS's
        fastest), float64 sums; anything else in float64."""
        return np.dtype("f4" if self.data.dtype == np.float32 else "f8")

    @functools.cached_property
    def dask_data(self) -> dsa.Array:
        """The data as dask, signal dims whole: the lazy array itself, or
        in-memory data in blocks near dask's chunk size. Every pass is a
        graph over these blocks, computed where each block is read."""
        data = self.data
        if not self.lazy:
            auto = auto_chunks(data)
            data = data.chunk({d: auto[d] for d in data.dims})
        assert data.chunks is not None  # lazy, or chunked just above
        if any(len(c) > 1 for c in data.chunks[len(self.nav_dims) :]):
            data = data.chunk(dict.fromkeys(self.sig_dims, -1))
        out: dsa.Array = data.data
        return out


def check_block(
    block: np.ndarray,
    *,
    nonnegative: str | None = None,
    sums: np.ndarray | None = None,
) -> None:
    """Errors for data no algorithm can use: NaN/inf, or negative values.

    ``sums``: the block's column sums when already computed (a NaN or inf
    anywhere makes its column sum non-finite, so no extra pass is needed).
    """
    finite = np.isfinite(sums).all() if sums is not None else np.isfinite(block).all()
    if not finite:
        raise ValueError(
            "the data contain NaN or infinite values; mask those pixels with "
            "navigation_mask (or signal elements with signal_mask), or fill them"
        )
    if nonnegative and block.size and block.min() < 0:
        raise ValueError(
            f"{nonnegative} needs non-negative data; found negative values"
        )


@dataclass
class Scaling:
    """Poisson weights and centring, applied to raw blocks.

    The decomposed matrix is ``Y = Z - centring`` with
    ``Z = diag(1/root_a) X diag(1/root_b)`` (Keenan and Kotula) when
    ``poisson``, else ``Z = X``. ``root_a`` is the square root of each
    pixel's mean over the signal (local to a block), ``root_b`` the square
    root of the mean spectrum (from a statistics pass).
    """

    poisson: bool = False
    root_b: np.ndarray | None = None  # (features,)
    mu: np.ndarray | None = None  # (features,) subtracted from every row of Z
    centre_signal: bool = False
    dtype: np.dtype = np.dtype("float64")

    @property
    def wb(self) -> np.ndarray | None:
        return None if self.root_b is None else _inverse(self.root_b)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(Y, root_a, row_means)`` of a raw block; ``row_means`` of ``Z``
        when centring each signal, else None."""
        y = np.asarray(x, dtype=self.dtype)
        if self.poisson:
            root_a = np.sqrt(np.maximum(y.mean(axis=1), 0))
            y = y * _inverse(root_a)[:, None]
            if self.root_b is not None:
                y *= _inverse(self.root_b).astype(self.dtype)[None, :]  # = self.wb
        else:
            root_a = np.ones(len(y))
        if self.mu is not None:
            y = y - self.mu.astype(self.dtype)
        rows = None
        if self.centre_signal:
            rows = y.mean(axis=1, dtype="f8")
            y = y - rows.astype(self.dtype)[:, None]
        return y, root_a, rows


def _inverse(root: np.ndarray) -> np.ndarray:
    """1/root where root > 0, else 0 (all-zero pixels or channels stay zero)."""
    out = np.zeros(root.shape)
    pos = root > 0
    out[pos] = 1.0 / root[pos]
    return out


def lazy_projection(
    problem: Problem, fn: Callable[[np.ndarray], np.ndarray], ncols: int
) -> dsa.Array:
    """Dask array ``(*navigation, ncols)``: ``fn`` on each block's kept
    ``(pixels, features)`` matrix; NaN rows at masked pixels. Reads nothing."""
    arr = problem.dask_data
    n_nav_dims, n_sig = len(problem.nav_dims), problem.n_sig
    nav_mask, keep_signal = problem.nav_mask, problem.keep_signal
    all_signal = bool(keep_signal.all())

    def block_fn(x: np.ndarray, block_info: Any = None) -> np.ndarray:
        nav_shape = x.shape[:n_nav_dims]
        flat = x.reshape(-1, n_sig)
        if not all_signal:
            flat = flat[:, keep_signal]
        out = np.full((flat.shape[0], ncols), np.nan)
        if nav_mask is None:
            out[:] = fn(flat)
        else:
            loc = block_info[0]["array-location"][:n_nav_dims]
            keep = ~nav_mask[tuple(slice(a, b) for a, b in loc)].ravel()
            if keep.any():
                out[keep] = fn(flat[keep])
        return out.reshape((*nav_shape, ncols))

    sig_axes = list(range(n_nav_dims, arr.ndim))
    out: dsa.Array = dsa.map_blocks(
        block_fn,
        arr,
        drop_axis=sig_axes[1:],
        chunks=(*arr.chunks[:n_nav_dims], (ncols,)),
        dtype="f8",
        meta=np.empty((0,) * (n_nav_dims + 1), "f8"),
    )
    return out


def eager_projection(
    problem: Problem, fn: Callable[[np.ndarray], np.ndarray], ncols: int, desc: str
) -> np.ndarray:
    """``(n_nav, ncols)`` numpy array of ``fn`` over every block (NaN at masked
    pixels): the graph of :func:`lazy_projection`, computed at once."""
    (out,) = engine.compute(
        lazy_projection(problem, fn, ncols), progress=problem.progress, desc=desc
    )
    return np.asarray(out).reshape(problem.n_nav, ncols)


# --- map-reduce passes ------------------------------------------------------------
# A pass is a dask graph: a partial result per navigation block, computed
# where the block is read, merged in a tree; only the merged result (a few
# vectors, or one small matrix) reaches the caller.


def _block_rows(problem: Problem) -> Iterator[tuple[tuple[int, ...], Any]]:
    """``(block index, kept rows or None)`` of each navigation block of
    :attr:`Problem.dask_data` with a kept pixel, in block order."""
    arr = problem.dask_data
    n_nav_dims = len(problem.nav_dims)
    edges = [np.cumsum((0, *c)) for c in arr.chunks[:n_nav_dims]]
    for index in np.ndindex(*arr.numblocks[:n_nav_dims]):
        rows = None
        if problem.nav_mask is not None:
            where = tuple(slice(e[i], e[i + 1]) for e, i in zip(edges, index))
            rows = ~problem.nav_mask[where].ravel()
            if not rows.any():
                continue  # fully masked: never read
        yield index + (0,) * (arr.ndim - n_nav_dims), rows


def block_tasks(problem: Problem, fn: Callable[..., Any], *args: Any) -> list[Delayed]:
    """``fn(x, *args)`` for each navigation block as a delayed task, ``x`` the
    block's kept ``(pixels, features)`` matrix (masked pixels and signal
    elements left out; fully masked blocks are not read)."""
    keep_signal = None if problem.sig_mask is None else problem.keep_signal
    tiles = problem.dask_data.to_delayed()
    return [
        dask.delayed(_on_block, pure=True)(
            tiles[index], problem.n_sig, rows, keep_signal, fn, *args
        )
        for index, rows in _block_rows(problem)
    ]


def block_chain(
    problem: Problem, step: Callable[[Any, np.ndarray], Any], carry: Any
) -> Delayed:
    """``carry = step(carry, x)`` over the navigation blocks in order, one
    task per block, ``x`` its kept ``(pixels, features)`` matrix.

    For sequential learners: each task reads its own block when it runs
    (no block is read ahead of the chain, so memory stays one block), on
    the worker it runs on, and only ``carry`` moves from task to task.
    """
    arr = problem.dask_data
    keep_signal = None if problem.sig_mask is None else problem.keep_signal
    out: Delayed = dask.delayed(carry)
    for index, rows in _block_rows(problem):
        out = dask.delayed(_chain_step, pure=False)(
            out,
            engine.ReadInTask(arr.blocks[index]),
            problem.n_sig,
            rows,
            keep_signal,
            step,
        )
    return out


def _chain_step(
    carry: Any,
    block: engine.ReadInTask,
    n_sig: int,
    rows: np.ndarray | None,
    keep_signal: np.ndarray | None,
    step: Callable[[Any, np.ndarray], Any],
) -> Any:
    return step(carry, _kept(block.read(), n_sig, rows, keep_signal))


def _kept(
    tile: np.ndarray,
    n_sig: int,
    rows: np.ndarray | None,
    keep_signal: np.ndarray | None,
) -> np.ndarray:
    """A block as its kept ``(pixels, features)`` matrix."""
    x = tile.reshape(-1, n_sig)
    if rows is not None:
        x = x[rows]
    if keep_signal is not None:
        x = x[:, keep_signal]
    return x


def _on_block(
    tile: np.ndarray,
    n_sig: int,
    rows: np.ndarray | None,
    keep_signal: np.ndarray | None,
    fn: Callable[..., Any],
    *args: Any,
) -> Any:
    return fn(_kept(tile, n_sig, rows, keep_signal), *args)


blas_one_thread = engine.blas_one_thread


def compute_pass(graph: Any, problem: Problem, desc: str) -> Any:
    """Compute one pass's graph (with a progress bar labelled ``desc``).

    On local threads every task runs its own BLAS products, so BLAS gets
    one thread each instead of oversubscribing the cores.
    """
    with contextlib.ExitStack() as stack:
        if engine.where() != "distributed":
            stack.enter_context(blas_one_thread())
        (out,) = engine.compute(graph, progress=problem.progress, desc=desc)
    return out


def tree_reduce(
    partials: list[Delayed], merge: Callable[..., Any], fan_in: int = 8
) -> Delayed:
    """Merge delayed partial results in a tree of ``merge(*group)`` tasks."""
    level = list(partials)
    while len(level) > 1:
        level = [
            dask.delayed(merge, pure=True)(*level[i : i + fan_in])
            for i in range(0, len(level), fan_in)
        ]
    return level[0]


@dataclass
class Statistics:
    """Sums over the kept pixels of one pass (``Xw = diag(1/root_a) X``)."""

    n: int
    col_sums: np.ndarray  # X^T 1 (raw): the mean spectrum times n
    weighted_sums: np.ndarray  # Xw^T 1
    weighted_sumsq: float  # ||Xw||_F^2
    gram: np.ndarray | None  # Xw^T Xw


def weighted_block(
    x: np.ndarray, poisson: bool, dtype: str, nonnegative: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X^T 1, Xw, Xw^T 1)`` of one block, after its NaN/sign checks:
    what every statistics pass starts from."""
    sums = x.sum(axis=0, dtype="f8")
    check_block(x, nonnegative=nonnegative, sums=sums)
    xw, _, _ = Scaling(poisson=poisson, dtype=np.dtype(dtype)).apply(x)
    weighted = xw.sum(axis=0, dtype="f8") if poisson else sums
    return sums, xw, weighted


def _block_statistics(
    x: np.ndarray,
    poisson: bool,
    gram: bool,
    gram_dtype: str,
    nonnegative: str | None,
) -> Statistics:
    """The :class:`Statistics` of one block (and its NaN/sign checks)."""
    sums, xw, weighted = weighted_block(x, poisson, gram_dtype, nonnegative)
    if gram:
        g = (xw.T @ xw).astype("f8")  # float32 BLAS products, float64 sums
        return Statistics(len(x), sums, weighted, float(np.trace(g)), g)
    sumsq = float(np.einsum("ij,ij->", xw, xw, dtype="f8"))
    return Statistics(len(x), sums, weighted, sumsq, None)


def merge_statistics(*parts: Statistics) -> Statistics:
    """The statistics of the union of disjoint sets of pixels."""
    gram = None
    if parts[0].gram is not None:
        gram = parts[0].gram.copy()
        for p in parts[1:]:
            gram += p.gram  # in place: one copy per merge, not one per part
    # parts is never empty, so sum() never returns its start, 0
    return Statistics(
        sum(p.n for p in parts),
        cast(np.ndarray, sum(p.col_sums for p in parts)),
        cast(np.ndarray, sum(p.weighted_sums for p in parts)),
        sum(p.weighted_sumsq for p in parts),
        gram,
    )


def statistics_graph(
    problem: Problem,
    *,
    poisson: bool,
    gram: bool = False,
    gram_dtype: np.dtype | str = "float64",
    nonnegative: str | None = None,
) -> Delayed:
    """The statistics pass as a dask graph (a delayed :class:`Statistics`):
    column sums, weighted sums and optionally the Gram matrix, per block
    where the block is read, merged in a tree. Also checks for NaN and,
    with ``nonnegative`` (a name for the error), for negative values."""
    partials = block_tasks(
        problem,
        _block_statistics,
        poisson,
        gram,
        np.dtype(gram_dtype).str,
        nonnegative,
    )
    return tree_reduce(partials, merge_statistics)


def statistics_pass(
    problem: Problem,
    *,
    poisson: bool,
    gram: bool = False,
    gram_dtype: np.dtype | str = "float64",
    nonnegative: str | None = None,
    desc: str = "statistics",
) -> Statistics:
    """:func:`statistics_graph`, computed (the merged sums reach the caller)."""
    graph = statistics_graph(
        problem,
        poisson=poisson,
        gram=gram,
        gram_dtype=gram_dtype,
        nonnegative=nonnegative,
    )
    stats: Statistics = compute_pass(graph, problem, desc)
    return stats
