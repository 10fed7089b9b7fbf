"""Online robust NMF (Zhao and Tan, ICASSP 2016, arXiv:1604.02634), vectorized.

Each sample ``v`` (a pixel's signal, non-negative) is modelled as
``W h + r`` with a non-negative basis ``W`` (features x k) whose columns
have norm at most one, non-negative coefficients ``h`` and, for the robust
method, a sparse outlier vector ``r``:

    min_{h >= 0, r} 1/2 ||v - W h - r||^2 + lambda1 ||r||_1

For a mini-batch, all ``h`` are solved at once (coordinate descent over the
k coefficient columns, vectorized over the pixels), alternating with
soft-thresholding for ``r``. The paper's accumulators ``A = sum h h^T``
and ``B = sum (v - r) h^T`` then define the basis objective
``1/2 Tr(W^T W A) - Tr(W^T B)``, decreased by projected gradient steps onto
the constraint set (one step per column of size ``kappa / A_jj``,
"PGD"/"RobustPGD"), or by momentum stochastic gradient steps on the
mini-batch ("MomentumSGD"). "PGD" has no outlier term; "RobustPGD" is the
paper's robust algorithm. ``lambda1`` is in robust noise units (see
:mod:`xsignal.decomposition.orpca`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .fit import Fit
from .online import (
    OnlineLearner,
    OnlineOptions,
    OnlineState,
    check_positive,
    check_positive_int,
    clip_outliers,
    fit_online,
    momentum_step,
    noise_scale,
    soft_threshold,
    sparse_errors,
    top_subspace,
)
from .streaming import Problem

METHODS = ("PGD", "RobustPGD", "MomentumSGD")


def project_basis(w: np.ndarray) -> np.ndarray:
    """Euclidean projection on {W >= 0, ||W_j|| <= 1} (orthant, then ball)."""
    w = np.maximum(w, 0)
    norms = np.sqrt((w**2).sum(axis=0))
    projected: np.ndarray = w / np.maximum(norms, 1.0)
    return projected


def solve_coefficients(
    p: np.ndarray, q: np.ndarray, h: np.ndarray, sweeps: int
) -> np.ndarray:
    """Non-negative least squares for all rows: minimise
    ``1/2 h Q h^T - h p^T`` per row (``p = v W``, ``Q = W^T W``) by cyclic
    coordinate descent over the k columns, starting from ``h``."""
    k = q.shape[0]
    for _ in range(sweeps):
        for j in range(k):
            if q[j, j] > 0:
                h[:, j] = np.maximum(0, h[:, j] + (p[:, j] - h @ q[:, j]) / q[j, j])
    return h


def solve_batch(
    v: np.ndarray,
    basis: np.ndarray,
    threshold: float | np.ndarray | None,
    n_iter: int,
    sweeps: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Coefficients ``H`` (batch x k) and outliers (None without ``threshold``)."""
    q = basis.T @ basis
    p = v @ basis
    h = np.maximum(np.linalg.lstsq(q, p.T, rcond=None)[0].T, 0)
    h = solve_coefficients(p, q, h, sweeps)
    if threshold is None:
        return h, None
    return sparse_errors(
        v,
        h,
        basis.T,
        threshold,
        n_iter,
        lambda r, h: solve_coefficients((v - r) @ basis, q, h, sweeps),
    )


def training_nmf(
    v: np.ndarray, k: int, lambda1: float | None, seed: int, rounds: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Initial basis and noise level from a short batch NMF of the training
    samples. With ``lambda1`` (robust), outliers are first clipped per
    feature (median +- lambda1 x MAD) for the starting subspace, then the
    batch NMF alternates with the outlier term and re-estimates the noise
    level from its residual, so large outliers cannot capture the start."""
    start = v if lambda1 is None else clip_outliers(v, lambda1)
    basis = top_subspace(start, k, seed=seed)
    sigma = noise_scale(start, basis)
    w = _nonnegative_start(start, basis, seed)
    h = np.zeros((len(v), k))
    outliers = np.zeros_like(v) if lambda1 is None else v - start
    for i in range(rounds):
        clean = v - outliers
        h = solve_coefficients(clean @ w, w.T @ w, h, 2)
        w = _basis_step(w, h.T @ h, clean.T @ h, 1.0)
        if lambda1 is not None:
            resid = v - h @ w.T
            if i % 5 == 4:
                sigma = noise_scale(resid, np.zeros((v.shape[1], 0)))
            outliers = soft_threshold(resid, lambda1 * sigma)
    if lambda1 is not None:
        sigma = noise_scale(v - h @ w.T, np.zeros((v.shape[1], 0)))
    return w, sigma


@dataclass(frozen=True)
class ORNMFOptions(OnlineOptions):
    """ORNMF's options (see :func:`fit`)."""

    lambda1: float = 3.0
    kappa: float = 1.0
    method: str = "PGD"
    sweeps: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        check_positive(self.lambda1, "lambda1")
        check_positive(self.kappa, "kappa")
        check_positive_int(self.sweeps, "sweeps")


class ORNMF(OnlineLearner):
    """Online (robust) NMF as an :class:`OnlineLearner`."""

    name = "ORNMF"
    options: ORNMFOptions
    nonnegative = "ORNMF"

    def __init__(self, options: ORNMFOptions, k: int, m: int) -> None:
        self.options, self.k, self.m = options, k, m

    @property
    def robust(self) -> bool:
        return self.options.method == "RobustPGD"

    def _threshold(self, state: OnlineState) -> np.ndarray | None:
        return self.options.lambda1 * state.sigma if self.robust else None

    def start(self, v: np.ndarray) -> OnlineState:
        o, k = self.options, self.k
        w, sigma = training_nmf(v, k, o.lambda1 if self.robust else None, o.seed)
        return OnlineState(w, sigma, np.zeros((k, k)), np.zeros((self.m, k)))

    def update(self, state: OnlineState, v: np.ndarray) -> None:
        o = self.options
        h, r = solve_batch(v, state.basis, self._threshold(state), o.n_iter, o.sweeps)
        clean = v if r is None else v - r
        state.a += h.T @ h
        state.b += clean.T @ h
        state.seen += len(v)
        if o.method == "MomentumSGD":
            grad = (state.basis @ (h.T @ h) - clean.T @ h) / len(v)
            step = momentum_step(state, grad, o.learning_rate, o.momentum)
            state.basis = project_basis(step)
        else:
            state.basis = _basis_step(state.basis, state.a, state.b, o.kappa)

    def solver(self, state: OnlineState) -> Any:
        o = self.options
        basis, threshold = state.basis, self._threshold(state)
        return lambda v: solve_batch(v, basis, threshold, o.n_iter, o.sweeps)[0]

    def finish(
        self, state: OnlineState, projected: np.ndarray, gram: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # variance of each rank-one term, components sorted by it
        basis, k = state.basis, self.k
        variance = np.diag(gram) * (basis**2).sum(axis=0)
        order = np.argsort(variance)[::-1]
        projected[:, :k] = projected[:, :k][:, order]
        return basis[:, order], projected, variance[order]


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    lambda1: float = 3.0,
    kappa: float = 1.0,
    method: str = "PGD",
    training_samples: int | None = None,
    batch_size: int = 256,
    learning_rate: float = 1.0,
    momentum: float = 0.5,
    n_iter: int = 10,
    sweeps: int = 10,
    seed: int = 0,
) -> Fit:
    """Online (robust) NMF; see :func:`xsignal.decomposition`.

    Options
    -------
    lambda1 : float
        Outlier threshold of "RobustPGD", in robust noise units.
    kappa : float
        Step of the projected-gradient basis update, relative to ``1 / A_jj``.
    method : {"PGD", "RobustPGD", "MomentumSGD"}
    training_samples : int, optional
        Pixels of the initial batch NMF (default ``max(10 k, 512)``).
    batch_size : int
        Pixels per mini-batch.
    learning_rate, momentum : float
        Of "MomentumSGD" (step relative to ``1 / ||A / t||``).
    n_iter : int
        Alternations between coefficients and outliers ("RobustPGD").
    sweeps : int
        Coordinate-descent sweeps of each coefficient solve.
    seed : int
        Of the initialisation.
    """
    if centre is not None:
        raise ValueError("ORNMF needs non-negative data: centre must be None")
    options = ORNMFOptions(
        lambda1=lambda1,
        kappa=kappa,
        method=method,
        sweeps=sweeps,
        training_samples=training_samples,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        n_iter=n_iter,
        seed=seed,
    )
    learner = ORNMF(options, k, problem.n_features)
    return fit_online(
        problem, k, learner, poisson=poisson, centre=None, default_training=512
    )


def _nonnegative_start(v: np.ndarray, basis: np.ndarray, seed: int) -> np.ndarray:
    """Non-negative starting basis from the leading subspace: the positive and
    negative parts of each singular vector, keeping the larger (as NNDSVD)."""
    k = basis.shape[1]
    w = np.empty_like(basis)
    for j in range(k):
        pos, neg = np.maximum(basis[:, j], 0), np.maximum(-basis[:, j], 0)
        w[:, j] = pos if np.linalg.norm(pos) >= np.linalg.norm(neg) else neg
    rng = np.random.default_rng(seed)
    w += 1e-3 * rng.random(w.shape) * (w.max() or 1.0)
    return project_basis(w / np.maximum(np.linalg.norm(w, axis=0), 1e-12))


def _basis_step(
    w: np.ndarray, a: np.ndarray, b: np.ndarray, kappa: float
) -> np.ndarray:
    """One projected gradient step per column of ``1/2 Tr(W^T W A) - Tr(W^T B)``
    with step ``kappa / A_jj`` (columns in turn, each projected)."""
    w = w.copy()
    for j in range(w.shape[1]):
        if a[j, j] > 0:
            col = w[:, j] + kappa * (b[:, j] - w @ a[:, j]) / a[j, j]
            col = np.maximum(col, 0)
            w[:, j] = col / max(np.linalg.norm(col), 1.0)
    return w
