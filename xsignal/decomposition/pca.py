"""PCA: an exact covariance from mergeable per-block partials, randomized
subspace iteration, or incremental PCA streamed over blocks in batches.

Exact (``solver="covariance"``): each block yields its count, mean and
centred scatter matrix where it is read; partials merge exactly in a tree
(Chan, Golub and LeVeque's parallel variance, for matrices: the scatter of
a union is the sum of the scatters plus ``n_i (mean_i - mean)(mean_i -
mean)^T`` of each part), and the eigenpairs of the merged scatter are found
where it is merged: only the components reach the caller.

Randomized (``solver="randomized"``, the default for a few components of
big, wide data and for signals of over 4096 elements): the SVD of the
centred matrix by :mod:`xsignal.decomposition.randomized`.

Incremental PCA (``solver="incremental"``) holds only ``k`` components. The
update is Ross, Lim, Lin and Yang's (2008) incremental SVD with a mean
correction, the one scikit-learn's ``IncrementalPCA`` implements; each step
takes the SVD of the small stacked matrix ``A`` (previous components scaled
by their singular values, the centred batch, one mean-correction row) from
the eigenvectors of ``A A^T``: a matrix product and a ``(batch + k + 1)``
square ``eigh`` instead of a LAPACK SVD of ``A``, several times faster for
the same span and variances (measured on the W4 benchmark: 0.259 degrees
from the true factors both ways, variances equal to 1e-8).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, cast

import dask
import numpy as np

from .fit import Fit, eigen_fit, flip_signs, project
from .poisson import scaling_pass
from .randomized import randomized_eigenpairs
from .streaming import (
    Problem,
    Scaling,
    block_chain,
    block_tasks,
    check_block,
    compute_pass,
    tree_reduce,
)
from .svd import choose_solver, top_eigenpairs

DEFAULT_BATCH = 64
SOLVERS = ("auto", "covariance", "randomized", "incremental", "sklearn", "xsignal")


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    batch_size: int | None = None,
    solver: str = "auto",
) -> Fit:
    """Centred PCA; see :func:`xsignal.decomposition`.

    The incremental solvers merge or cut blocks into batches of
    ``batch_size`` rows (at least ``output_dimension``; default 64 or twice
    ``output_dimension``), so any chunking works, down to one pixel per
    chunk. Short batches make each update fast: it costs
    ``(batch + k)^2 x features`` multiply-adds.

    Options
    -------
    batch_size : int, optional
        Pixels per ``partial_fit`` call (incremental solvers).
    solver : {"auto", "covariance", "randomized", "incremental", "sklearn"}
        ``"covariance"``: the exact PCA from merged per-block scatter
        matrices, computed where the data are (a graph; on a cluster only
        the components travel); ``"randomized"``: subspace iteration on
        the centred matrix, three passes that each cost about a read
        (:mod:`xsignal.decomposition.randomized`); ``"incremental"``
        (also ``"xsignal"``): this module's :class:`IncrementalPCA` in the
        calling process;
        ``"sklearn"``: scikit-learn's ``IncrementalPCA.partial_fit``, the
        same update with a LAPACK SVD per batch (the reference
        implementation); ``"auto"`` (default): ``"randomized"`` where
        :func:`xsignal.decomposition.svd.choose_solver` takes it (a few
        components of big, wide data, and every signal of over 4096
        elements), else ``"covariance"``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, not {solver!r}")
    if centre == "signal":
        raise ValueError(
            "PCA always centres the navigation mean; centre='signal' is "
            "available for SVD, ORPCA"
        )
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    size = max(k, batch_size or max(DEFAULT_BATCH, 2 * k))
    if solver == "auto":  # the randomized passes, or the exact scatter
        solver = "covariance" if choose_solver(problem, k) == "gram" else "randomized"
    if solver == "randomized":
        return _fit_randomized(problem, k, poisson)
    scaling = scaling_pass(
        problem,
        poisson=poisson,
        centre=None,
        nonnegative="normalize_poissonian_noise",
        desc="PCA",
    )
    if solver == "covariance":
        return _fit_covariance(problem, scaling, k)
    if solver == "sklearn":
        from sklearn.decomposition import IncrementalPCA as SklearnIncrementalPCA

        ipca = SklearnIncrementalPCA(n_components=k)
    else:
        ipca = IncrementalPCA(k)
    ipca = _stream(problem, scaling, ipca, size)
    factors = flip_signs(ipca.components_.T)
    scaling.mu = ipca.mean_
    projected = project(problem, scaling, lambda y: y @ factors, k, "PCA: loadings")
    return Fit(
        factors=factors,
        projected=projected,
        explained_variance=np.asarray(ipca.explained_variance_),
        explained_variance_ratio=np.asarray(ipca.explained_variance_ratio_),
        scaling=scaling,
        parameters={"batch_size": size, "solver": solver},
    )


@dataclass
class Scatter:
    """Count, mean and centred scatter matrix of a set of rows."""

    n: int
    mean: np.ndarray  # (features,)
    scatter: np.ndarray  # (features, features), sum of (y - mean)(y - mean)^T


def _block_scatter(x: np.ndarray, scaling: Scaling) -> Scatter:
    check_block(x)
    y = scaling.apply(x)[0]
    mean = y.mean(axis=0, dtype="f8")
    centred = y - mean.astype(y.dtype)
    return Scatter(len(y), mean, (centred.T @ centred).astype("f8"))


def merge_scatter(*parts: Scatter) -> Scatter:
    """The exact scatter of the union of disjoint sets of rows."""
    n = sum(p.n for p in parts)
    # parts is never empty, so sum() never returns its start, 0
    mean = cast(np.ndarray, sum(p.n * p.mean for p in parts)) / n
    scatter = parts[0].scatter.copy()
    for p in parts[1:]:
        scatter += p.scatter
    for p in parts:
        d = p.mean - mean
        scatter += p.n * np.outer(d, d)
    return Scatter(n, mean, scatter)


def solve_scatter(
    merged: Scatter, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """(mean, top ``k`` eigenvalues and eigenvectors, total scatter, rows)."""
    evals, evecs = top_eigenpairs(merged.scatter, k)
    return merged.mean, evals, evecs, float(np.trace(merged.scatter)), merged.n


def _fit_covariance(problem: Problem, scaling: Scaling, k: int) -> Fit:
    working = dataclasses.replace(scaling, dtype=problem.work_dtype)
    partials = block_tasks(problem, _block_scatter, working)
    solved = dask.delayed(solve_scatter, pure=True)(
        tree_reduce(partials, merge_scatter), k
    )
    mean, evals, evecs, total, n = compute_pass(solved, problem, "PCA: scatter pass")
    scaling.mu = mean
    parameters = {"solver": "covariance"}
    return eigen_fit(problem, scaling, evals, evecs, total, n, "PCA", parameters)


def _fit_randomized(problem: Problem, k: int, poisson: bool) -> Fit:
    """PCA as the SVD of the navigation-centred matrix, by subspace iteration."""
    scaling, evals, evecs, total, n, passes = randomized_eigenpairs(
        problem,
        k,
        poisson=poisson,
        centre="navigation",
        nonnegative="normalize_poissonian_noise" if poisson else None,
        desc="PCA",
    )
    parameters = {"solver": "randomized", "passes": passes}
    return eigen_fit(problem, scaling, evals, evecs, total, n, "PCA", parameters)


class IncrementalPCA:
    """The incremental PCA state: ``partial_fit`` one batch at a time.

    Attributes as scikit-learn's: ``components_`` ``(k, features)``,
    ``mean_``, ``explained_variance_``, ``explained_variance_ratio_``.
    """

    def __init__(self, n_components: int) -> None:
        self.k = n_components
        self.n = 0
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.singular_values_: np.ndarray | None = None
        self.sum_squares = 0.0  # of all rows seen about their running mean

    def partial_fit(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype="f8")
        b = len(x)
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        self.sum_squares += float(np.einsum("ij,ij->", centred, centred))
        if self.n == 0:
            if b < self.k:
                raise ValueError(
                    f"PCA needs at least output_dimension={self.k} pixels in its "
                    f"first batch, got {b}"
                )
            stacked, self.mean_ = centred, batch_mean
        else:
            # the batch's mean moved from the running one: one row restores
            # the variance between the two means (Ross et al. 2008)
            n = self.n
            assert self.mean_ is not None  # set by the first batch
            assert self.singular_values_ is not None and self.components_ is not None
            shift = np.sqrt(n * b / (n + b)) * (self.mean_ - batch_mean)
            self.sum_squares += float(shift @ shift)
            stacked = np.vstack(
                [self.singular_values_[:, None] * self.components_, centred, shift]
            )
            self.mean_ = self.mean_ + (batch_mean - self.mean_) * (b / (n + b))
        self.n += b
        # SVD of the short, wide ``stacked`` from its small Gram matrix
        values, vectors = np.linalg.eigh(stacked @ stacked.T)
        top = np.argsort(values)[::-1][: self.k]
        sv = np.sqrt(np.maximum(values[top], 0))
        inverse = np.divide(1.0, sv, out=np.zeros_like(sv), where=sv > 0)
        self.components_ = (vectors[:, top].T @ stacked) * inverse[:, None]
        self.singular_values_ = sv

    @property
    def explained_variance_(self) -> np.ndarray:
        assert self.singular_values_ is not None  # fitted
        return self.singular_values_**2 / max(self.n - 1, 1)

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        assert self.singular_values_ is not None  # fitted
        if self.sum_squares <= 0:  # constant data: no variance to explain
            return np.zeros_like(self.singular_values_)
        return self.singular_values_**2 / self.sum_squares


@dataclass
class _Batches:
    """The incremental PCA and the rows waiting for a full batch, handed from
    one block's task to the next."""

    ipca: Any
    size: int
    pending: list[np.ndarray] = field(default_factory=list)
    count: int = 0


def _learn(carry: _Batches, x: np.ndarray, scaling: Scaling) -> _Batches:
    """``partial_fit`` the full batches of ``size`` rows that this block
    completes (keeping at least ``size`` rows back for the last batch)."""
    check_block(x)
    carry.pending.append(scaling.apply(x)[0])
    carry.count += len(carry.pending[-1])
    size = carry.size
    if carry.count >= 2 * size:
        rows = np.concatenate(carry.pending)
        stop = (len(rows) // size - 1) * size
        for start in range(0, stop, size):
            carry.ipca.partial_fit(rows[start : start + size])
        carry.pending, carry.count = [rows[stop:]], len(rows) - stop
    return carry


def _last_batch(carry: _Batches) -> Any:
    if carry.count:  # the last batch: up to 2 x size rows
        carry.ipca.partial_fit(np.concatenate(carry.pending))
    return carry.ipca


def _stream(problem: Problem, scaling: Scaling, ipca: Any, size: int) -> Any:
    """The fitted ``ipca``: a chain of tasks over the blocks in order (each
    reading its block where it runs), the model handed on."""
    last = block_chain(
        problem, functools.partial(_learn, scaling=scaling), _Batches(ipca, size)
    )
    finished = dask.delayed(_last_batch, pure=False)(last)
    return compute_pass(finished, problem, "PCA: incremental pass")
