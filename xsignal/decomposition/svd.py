"""SVD of the unfolded matrix: exact from the Gram matrix, or randomized.

When the signal has at most :data:`GRAM_LIMIT` elements, one streaming pass
accumulates ``Y^T Y`` (and the sums that centring and Poisson scaling
need); its eigenvectors are the right singular vectors. Larger signals use
dask's randomized ``svd_compressed`` with power iterations and a seed.
"""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ..progress import compute_with_progress
from .fit import Fit, eigen_fit
from .poisson import covariance, scaling_from_statistics, scaling_pass
from .streaming import (
    Problem,
    Scaling,
    Statistics,
    blas_one_thread,
    compute_pass,
    statistics_graph,
)

GRAM_LIMIT = 4096
SOLVERS = ("auto", "gram", "randomized")


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    svd_solver: str = "auto",
    n_power_iter: int = 3,
    seed: int = 0,
) -> Fit:
    """SVD of the decomposed matrix; see :func:`xsignal.decomposition`.

    Options
    -------
    svd_solver : {"auto", "gram", "randomized"}
        ``"gram"``: eigen-decomposition of ``Y^T Y`` from one pass (exact);
        ``"randomized"``: :func:`dask.array.linalg.svd_compressed`;
        ``"auto"``: ``"gram"`` up to 4096 signal elements.
    n_power_iter : int
        Power iterations of the randomized solver.
    seed : int
        Seed of the randomized solver.
    """
    if svd_solver not in SOLVERS:
        raise ValueError(f"svd_solver must be one of {SOLVERS}, not {svd_solver!r}")
    if not isinstance(n_power_iter, (int, np.integer)) or n_power_iter < 0:
        raise ValueError(f"n_power_iter must be an int >= 0, not {n_power_iter!r}")
    solver = svd_solver
    if solver == "auto":
        solver = "gram" if problem.n_features <= GRAM_LIMIT else "randomized"
    check = "normalize_poissonian_noise" if poisson else None
    if solver == "gram":
        stats = statistics_graph(
            problem,
            poisson=poisson,
            gram=True,
            gram_dtype=problem.work_dtype,
            nonnegative=check,
        )
        # the eigenpairs are found where the Gram matrix is merged: only the
        # k factors and a few vectors reach the caller
        solved = dask.delayed(solve_gram, pure=True)(stats, poisson, centre, k)
        scaling, evals, evecs, total, n = compute_pass(
            solved, problem, "SVD: Gram pass"
        )
    else:
        scaling = scaling_pass(
            problem, poisson=poisson, centre=centre, nonnegative=check, desc="SVD"
        )
        y = dask_matrix(problem, scaling)
        _, s, v = dsa.linalg.svd_compressed(
            y, k, n_power_iter=int(n_power_iter), seed=seed, compute=problem.lazy
        )
        s, v, total = compute_with_progress(
            s, v, (y**2).sum(), progress=problem.progress, desc="SVD: randomized"
        )
        evals, evecs, total = s**2, v.T, float(total)
        n = problem.n_pixels
    parameters = {"svd_solver": solver, "n_power_iter": n_power_iter, "seed": seed}
    return eigen_fit(problem, scaling, evals, evecs, total, n, "SVD", parameters)


def solve_gram(
    stats: Statistics, poisson: bool, centre: str | None, k: int
) -> tuple[Scaling, np.ndarray, np.ndarray, float, int]:
    """(scaling, top ``k`` eigenvalues and eigenvectors of ``Y^T Y``, its
    trace, pixels) from the merged statistics with their Gram matrix."""
    scaling = scaling_from_statistics(stats, poisson=poisson, centre=centre)
    cov = covariance(stats, scaling)
    evals, evecs = top_eigenpairs(cov, k)
    return scaling, evals, evecs, float(np.trace(cov)), stats.n


def top_eigenpairs(cov: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of a symmetric matrix, largest first.

    Lanczos (ARPACK) when few are wanted: ten times faster than LAPACK's
    subset ``eigh`` for 4 of 1024 and as accurate; else ``eigh``. One BLAS
    thread: threaded LAPACK gains little here and loses a lot on a busy
    machine.
    """
    m = len(cov)
    with blas_one_thread():
        if k < m // 4:
            start = np.random.default_rng(0).standard_normal(m)
            evals, evecs = scipy.sparse.linalg.eigsh(cov, k=k, which="LA", v0=start)
        else:
            evals, evecs = scipy.linalg.eigh(cov, subset_by_index=[m - k, m - 1])
    order = np.argsort(evals)[::-1]
    return evals[order], evecs[:, order]


def dask_matrix(problem: Problem, scaling: Scaling) -> dsa.Array:
    """The decomposed matrix ``Y`` (kept pixels x kept features) as dask."""
    arr = problem.dask_data
    # whole trailing dims so the reshape to (pixels, features) keeps chunks
    arr = arr.rechunk({i: -1 for i in range(1, arr.ndim)})
    arr = arr.reshape(problem.n_nav, problem.n_sig)
    if problem.nav_mask is not None:
        arr = arr[problem.keep_pixels]
    if problem.sig_mask is not None:
        arr = arr[:, problem.keep_signal]
    return arr.map_blocks(lambda x: scaling.apply(x)[0], dtype="f8")
