"""Online robust PCA (Feng, Xu and Yan, NIPS 2013), in vectorized mini-batches.

Each sample ``z`` (a pixel's signal) is modelled as ``L r + e`` with a
basis ``L`` (features x k), coefficients ``r`` and a sparse error ``e``:

    min_{r, e} 1/2 ||z - L r - e||^2 + lambda1/2 ||r||^2 + lambda2 ||e||_1

solved for a whole mini-batch at once by alternating a ridge solve for the
coefficients with soft-thresholding for the errors. The paper's
accumulators ``A = sum r r^T`` and ``B = sum (z - e) r^T`` then give the
basis update, which minimises ``1/2 Tr(L^T (A + lambda1 I) L) - Tr(L^T B)``:
in closed form ``L = B (A + lambda1 I)^-1`` ("CF"), by one sweep of block
coordinate descent over the columns ("BCD"), or by (momentum) stochastic
gradient steps on the mini-batch ("SGD", "MomentumSGD").

``lambda2`` is in units of a robust noise level (1.4826 x the median
absolute residual of the training samples after their rank-k fit), so the
defaults suit any data scale; ``lambda1`` is relative to a unit basis.
The final basis and coefficients are rotated to orthonormal factors sorted
by explained variance (the low-rank part ``L R^T`` is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .fit import Fit, flip_signs
from .online import (
    OnlineLearner,
    OnlineOptions,
    OnlineState,
    check_positive,
    clip_outliers,
    fit_online,
    momentum_step,
    noise_scale,
    sparse_errors,
    top_subspace,
)
from .streaming import Problem

METHODS = ("CF", "BCD", "SGD", "MomentumSGD")


def solve_batch(
    z: np.ndarray,
    basis: np.ndarray,
    lambda1: float,
    threshold: float | np.ndarray,
    n_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``R`` (batch x k) and sparse errors ``E`` of a batch:
    the ridge solve ``R = (Z - E) W = Z W - E W`` alternated with the
    errors (:func:`~xsignal.decomposition.online.sparse_errors`)."""
    k = basis.shape[1]
    ridge = np.linalg.solve(basis.T @ basis + lambda1 * np.eye(k), basis.T)  # k x m
    ridge_t = ridge.T.astype(z.dtype)
    start = z @ ridge_t  # Z W
    return sparse_errors(
        z, start, basis.T, threshold, n_iter, lambda e, _: start - e @ ridge_t
    )


def robust_training(
    y: np.ndarray,
    basis: np.ndarray,
    lambda1: float,
    lambda2: float,
    n_iter: int,
    seed: int,
    rounds: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine the initial basis and the noise level on the training samples.

    Alternates the batch solve (coefficients and sparse errors) with a new
    basis from the cleaned samples and a new noise level from the residual,
    so that a start spoiled by outliers (or random) converges before
    streaming.
    """
    sigma = noise_scale(y, np.linalg.qr(basis)[0])
    n_iter = max(n_iter, 20)
    for _ in range(rounds):
        r, e = solve_batch(y, basis, lambda1, lambda2 * sigma, n_iter)
        basis = top_subspace(y - e, basis.shape[1], seed=seed)
        r = (y - e) @ basis
        sigma = noise_scale(y - r @ basis.T, np.zeros((y.shape[1], 0)))
    return basis, sigma


@dataclass(frozen=True)
class ORPCAOptions(OnlineOptions):
    """ORPCA's options (see :func:`fit`)."""

    lambda1: float = 0.1
    lambda2: float = 3.0
    method: str = "CF"
    init: str = "qr"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        check_positive(self.lambda1, "lambda1", allow_zero=True)
        check_positive(self.lambda2, "lambda2")


class ORPCA(OnlineLearner):
    """Online robust PCA as an :class:`OnlineLearner`."""

    name = "ORPCA"
    options: ORPCAOptions

    def __init__(self, options: ORPCAOptions, k: int, m: int, given: Any) -> None:
        self.options, self.k, self.m, self.given = options, k, m, given

    def start(self, y: np.ndarray) -> OnlineState:
        o, k = self.options, self.k
        if self.given is not None:
            basis = self.given
        elif o.init == "rand":
            rng = np.random.default_rng(o.seed)
            basis = np.linalg.qr(rng.standard_normal((self.m, k)))[0]
        else:  # leading subspace of the samples, outliers clipped per feature
            basis = top_subspace(clip_outliers(y, o.lambda2), k, seed=o.seed)
        basis, sigma = robust_training(y, basis, o.lambda1, o.lambda2, o.n_iter, o.seed)
        return OnlineState(basis, sigma, np.zeros((k, k)), np.zeros((self.m, k)))

    def update(self, state: OnlineState, z: np.ndarray) -> None:
        o = self.options
        r, e = solve_batch(z, state.basis, o.lambda1, o.lambda2 * state.sigma, o.n_iter)
        clean = z - e
        state.a += r.T @ r
        state.b += clean.T @ r
        state.seen += len(z)
        _update_basis(state, o, r, clean)

    def solver(self, state: OnlineState) -> Any:
        o = self.options
        basis, threshold = state.basis, o.lambda2 * state.sigma
        return lambda y: solve_batch(y, basis, o.lambda1, threshold, o.n_iter)[0]

    def finish(
        self, state: OnlineState, projected: np.ndarray, gram: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # rotate L R^T = Q (Rl C Rl^T) Q^T to orthonormal factors by variance
        k = self.k
        q, rl = np.linalg.qr(state.basis)
        evals, u = np.linalg.eigh(rl @ gram @ rl.T)
        order = np.argsort(evals)[::-1]
        evals, u = np.maximum(evals[order], 0), u[:, order]
        factors = q @ u
        flipped = flip_signs(factors)
        u = u * np.sign((flipped * factors).sum(axis=0))  # same flips on loadings
        projected[:, :k] = projected[:, :k] @ (rl.T @ u)  # loadings R Rl^T U
        return flipped, projected, evals


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    lambda1: float = 0.1,
    lambda2: float = 3.0,
    method: str = "CF",
    init: str | np.ndarray = "qr",
    training_samples: int | None = None,
    batch_size: int = 256,
    learning_rate: float = 1.0,
    momentum: float = 0.5,
    n_iter: int = 10,
    seed: int = 0,
) -> Fit:
    """Online robust PCA; see :func:`xsignal.decomposition`.

    Options
    -------
    lambda1 : float
        Ridge penalty on the coefficients (and the basis).
    lambda2 : float
        Sparse-error threshold, in robust noise units (default 3).
    method : {"CF", "BCD", "SGD", "MomentumSGD"}
        Basis update (see the module docstring).
    init : {"qr", "rand"} or array
        ``"qr"``: QR subspace iteration on the training samples (outliers
        clipped per feature first); ``"rand"``: a random orthonormal basis;
        an array ``(features, k)`` (or ``(k, features)``) of kept signal
        elements. Any start is then refined by a few robust rounds on the
        training samples (:func:`robust_training`), which also set the noise
        level that ``lambda2`` is measured in.
    training_samples : int, optional
        Pixels used to initialise (default ``max(10 k, 256)``).
    batch_size : int
        Pixels per mini-batch.
    learning_rate, momentum : float
        Step (relative to ``1 / ||A / t||``) and momentum of the SGD methods.
    n_iter : int
        Alternations between coefficients and sparse errors per batch.
    seed : int
        For ``init="rand"`` and the QR iteration.
    """
    given = _initial_basis(init, problem.n_features, k)
    options = ORPCAOptions(
        lambda1=lambda1,
        lambda2=lambda2,
        method=method,
        init=init if isinstance(init, str) else "array",
        training_samples=training_samples,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        n_iter=n_iter,
        seed=seed,
    )
    learner = ORPCA(options, k, problem.n_features, given)
    return fit_online(
        problem, k, learner, poisson=poisson, centre=centre, default_training=256
    )


def _initial_basis(init: Any, m: int, k: int) -> np.ndarray | None:
    if isinstance(init, str):
        if init not in ("qr", "rand"):
            raise ValueError(f"init must be 'qr', 'rand' or an array, not {init!r}")
        return None
    arr = np.asarray(init, dtype=float)
    if arr.shape == (k, m) and arr.shape != (m, k):
        arr = arr.T
    if arr.shape != (m, k):
        raise ValueError(
            f"init array has shape {np.shape(init)}; expected ({m}, {k}) "
            "(kept signal elements x components)"
        )
    if not np.isfinite(arr).all():
        raise ValueError("init array contains NaN or infinite values")
    return arr.copy()


def _update_basis(
    state: OnlineState, options: ORPCAOptions, r: np.ndarray, clean: np.ndarray
) -> None:
    k = state.basis.shape[1]
    a = state.a + options.lambda1 * np.eye(k)
    if options.method == "CF":
        state.basis = np.linalg.solve(a, state.b.T).T  # B (A + l1 I)^-1, A symmetric
    elif options.method == "BCD":
        basis = state.basis
        for j in range(k):
            if a[j, j] > 0:
                basis[:, j] += (state.b[:, j] - basis @ a[:, j]) / a[j, j]
    else:  # gradient of the batch's mean loss; step relative to its curvature
        grad = state.basis @ (r.T @ r + options.lambda1 * np.eye(k)) - clean.T @ r
        momentum = options.momentum if options.method == "MomentumSGD" else 0.0
        state.basis = momentum_step(
            state, grad / len(r), options.learning_rate, momentum
        )
