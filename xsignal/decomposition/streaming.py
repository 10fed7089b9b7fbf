"""Passes over the unfolded (pixels x signal) matrix, block by block.

Everything an algorithm sees goes through :class:`Problem` (the validated
input: array in ``(*navigation, *signal)`` order, masks, sizes) and
:class:`Scaling` (Poisson weights and centring applied to each raw block).
Eager passes use :func:`xsignal.lazy.blocks`; the linear projections of SVD
and PCA can instead be built lazily with :func:`lazy_projection`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import dask.array as dsa
import numpy as np
import xarray as xr

from ..lazy import blocks, is_lazy
from ..progress import show_progress


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

    def n_blocks(self) -> int:
        """Number of navigation blocks a pass visits (an upper bound with masks)."""
        if self.lazy:
            chunks = self.data.chunks[: len(self.nav_dims)]
            return math.prod(len(c) for c in chunks)
        from ..chunks import auto_chunks

        auto = auto_chunks(self.data)
        return math.prod(math.ceil(self.data.sizes[d] / auto[d]) for d in self.nav_dims)

    def iter_blocks(self, desc: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(pixel_index, block)``: flat indices of the block's pixels
        among all pixels, and the raw ``(pixels, features)`` float block."""
        flat_index = np.arange(self.n_nav).reshape(self.nav_shape)
        with _bar(self.progress, self.n_blocks(), desc) as step:
            for where, block in blocks(
                self.data, navigation_mask=self.nav_mask, signal_mask=self.sig_mask
            ):
                index = flat_index[tuple(where[d] for d in self.nav_dims)].ravel()
                if self.nav_mask is not None:
                    index = index[self.keep_pixels[index]]
                step()
                if len(index):
                    yield index, block


@contextlib.contextmanager
def _bar(progress: bool | None, total: int, desc: str) -> Iterator[Callable]:
    """A tqdm bar over blocks when progress is on and tqdm is installed."""
    bar = None
    if show_progress(progress) and total > 1:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            bar = None
        else:
            bar = tqdm(total=total, desc=desc, delay=0 if progress else 1.0)
    try:
        yield (bar.update if bar is not None else lambda: None)
    finally:
        if bar is not None:
            bar.close()


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
                y *= self.wb.astype(self.dtype)[None, :]
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
    data = problem.data
    if any(len(c) > 1 for c in data.chunks[len(problem.nav_dims) :]):
        data = data.chunk(dict.fromkeys(problem.sig_dims, -1))
    arr = data.data
    n_nav_dims, n_sig = len(problem.nav_dims), problem.n_sig
    nav_mask, keep_signal = problem.nav_mask, problem.keep_signal
    all_signal = bool(keep_signal.all())

    def block_fn(x: np.ndarray, block_info=None) -> np.ndarray:
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
    return dsa.map_blocks(
        block_fn,
        arr,
        drop_axis=sig_axes[1:],
        chunks=(*arr.chunks[:n_nav_dims], (ncols,)),
        dtype="f8",
        meta=np.empty((0,) * (n_nav_dims + 1), "f8"),
    )


def eager_projection(
    problem: Problem, fn: Callable[[np.ndarray], np.ndarray], ncols: int, desc: str
) -> np.ndarray:
    """``(n_nav, ncols)`` numpy array of ``fn`` over every block (NaN at masked
    pixels), in one pass."""
    out = np.full((problem.n_nav, ncols), np.nan)
    for index, block in problem.iter_blocks(desc):
        out[index] = fn(block)
    return out


@dataclass
class Statistics:
    """Sums over the kept pixels of one pass (``Xw = diag(1/root_a) X``)."""

    n: int
    col_sums: np.ndarray  # X^T 1 (raw): the mean spectrum times n
    weighted_sums: np.ndarray  # Xw^T 1
    weighted_sumsq: float  # ||Xw||_F^2
    gram: np.ndarray | None  # Xw^T Xw


def statistics_pass(
    problem: Problem,
    *,
    poisson: bool,
    gram: bool = False,
    gram_dtype: np.dtype | str = "float64",
    nonnegative: str | None = None,
    desc: str = "statistics",
) -> Statistics:
    """One pass: column sums, weighted sums and optionally the Gram matrix.

    Also the check for NaN and, with ``nonnegative`` (a name for the error),
    for negative values.
    """
    m = problem.n_features
    n = 0
    col_sums = np.zeros(m)
    weighted = np.zeros(m)
    sumsq = 0.0
    g = np.zeros((m, m)) if gram else None
    first_pass = Scaling(poisson=poisson, dtype=np.dtype(gram_dtype))
    for _, block in problem.iter_blocks(desc):
        sums = block.sum(axis=0, dtype="f8")
        check_block(block, nonnegative=nonnegative, sums=sums)
        n += len(block)
        col_sums += sums
        xw, _, _ = first_pass.apply(block)
        weighted += xw.sum(axis=0, dtype="f8") if poisson else sums
        if g is not None:
            g += xw.T @ xw
        else:
            sumsq += float(np.einsum("ij,ij->", xw, xw, dtype="f8"))
    if g is not None:
        sumsq = float(np.trace(g))
    return Statistics(n, col_sums, weighted, sumsq, g)
