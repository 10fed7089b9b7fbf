"""SVD of the unfolded matrix: exact from the Gram matrix, or randomized.

The exact solver makes one streaming pass that accumulates ``Y^T Y`` (and
the sums that centring and Poisson scaling need); its eigenvectors are the
right singular vectors. The randomized one
(:mod:`xsignal.decomposition.randomized`) makes a few passes that each cost
little more than a read: :func:`choose_solver` takes it when few
components of a wide signal are asked for, where it is faster at the same
accuracy, and always above :data:`GRAM_LIMIT` signal elements.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from .fit import Fit, eigen_fit
from .poisson import covariance, scaling_from_statistics
from .randomized import OVERSAMPLING, TOL, randomized_eigenpairs
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
# below these the Gram matrix costs less than the randomized passes: its
# products take about features / 100 reads of the data on this kind of
# machine (float32 BLAS at ~130 GFLOP/s per core, reads at ~5 GiB/s),
# against three reads for the randomized solver
RANDOMIZED_MIN_FEATURES = 512
RANDOMIZED_MIN_VALUES = 2**24


def choose_solver(problem: Problem, k: int) -> str:
    """``"randomized"`` or ``"gram"``: the faster one at the same accuracy.

    Randomized for wide signals (more than :data:`GRAM_LIMIT` elements, where
    the Gram matrix would not fit), and for a few components (``k`` plus the
    oversampling at most an eighth of the features) of data big enough for
    the Gram products to dominate; the Gram matrix otherwise.
    """
    m = problem.n_features
    if m > GRAM_LIMIT:
        return "randomized"
    few = 8 * (k + OVERSAMPLING) <= m
    big = m >= RANDOMIZED_MIN_FEATURES and problem.n_pixels * m >= RANDOMIZED_MIN_VALUES
    return "randomized" if few and big else "gram"


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    svd_solver: str = "auto",
    n_power_iter: int = 4,
    tol: float = TOL,
    seed: int = 0,
) -> Fit:
    """SVD of the decomposed matrix; see :func:`xsignal.decomposition`.

    Options
    -------
    svd_solver : {"auto", "gram", "randomized"}
        ``"gram"``: eigen-decomposition of ``Y^T Y`` from one pass (exact);
        ``"randomized"``: subspace iteration in 3 to ``2 + n_power_iter``
        passes (:mod:`xsignal.decomposition.randomized`); ``"auto"``: see
        :func:`choose_solver`.
    n_power_iter : int
        Most passes of the randomized solver after its first two.
    tol : float
        The randomized solver stops when the factors are within about this
        many radians of the exact ones (default 1e-4).
    seed : int
        Seed of the randomized solver.
    """
    if svd_solver not in SOLVERS:
        raise ValueError(f"svd_solver must be one of {SOLVERS}, not {svd_solver!r}")
    if not isinstance(n_power_iter, (int, np.integer)) or n_power_iter < 0:
        raise ValueError(f"n_power_iter must be an int >= 0, not {n_power_iter!r}")
    if not isinstance(tol, (int, float, np.floating)) or not tol > 0:
        raise ValueError(f"tol must be a number > 0, not {tol!r}")
    solver = svd_solver
    if solver == "auto":
        solver = choose_solver(problem, k)
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
        scaling, evals, evecs, total, n, passes = randomized_eigenpairs(
            problem,
            k,
            poisson=poisson,
            centre=centre,
            n_power_iter=int(n_power_iter),
            tol=tol,
            seed=seed,
            nonnegative=check,
            desc="SVD",
        )
    parameters: dict[str, Any] = {"svd_solver": solver}
    if solver == "randomized":
        parameters.update(n_power_iter=n_power_iter, tol=tol, seed=seed, passes=passes)
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
