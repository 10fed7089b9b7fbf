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

from typing import Any

import numpy as np

from .fit import Fit, flip_signs
from .online import (
    OnlineState,
    check_positive,
    check_positive_int,
    clip_outliers,
    learning_pass,
    noise_scale,
    projection_pass,
    soft_threshold,
    top_subspace,
)
from .poisson import scaling_pass
from .streaming import Problem, blas_one_thread

METHODS = ("CF", "BCD", "SGD", "MomentumSGD")


def solve_batch(
    z: np.ndarray, basis: np.ndarray, lambda1: float, threshold: float, n_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``R`` (batch x k) and sparse errors ``E`` of a batch."""
    k = basis.shape[1]
    ridge = np.linalg.solve(basis.T @ basis + lambda1 * np.eye(k), basis.T)  # k x m
    r = z @ ridge.T.astype(z.dtype)
    e = np.zeros_like(z)
    basis_t = basis.T.astype(z.dtype)
    ridge_t = ridge.T.astype(z.dtype)
    tolerance = 0.05 * np.asarray(threshold, z.dtype)
    for i in range(n_iter):
        previous = e
        e = soft_threshold(z - r @ basis_t, threshold)
        r = (z - e) @ ridge_t
        if i and (np.abs(e - previous) <= tolerance).all():
            break  # the sparse errors have settled
    return r, e


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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    lambda1 = check_positive(lambda1, "lambda1", allow_zero=True)
    lambda2 = check_positive(lambda2, "lambda2")
    learning_rate = check_positive(learning_rate, "learning_rate")
    momentum = check_positive(momentum, "momentum", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    n_iter = check_positive_int(n_iter, "n_iter")
    m = problem.n_features
    if training_samples is None:
        training_samples = max(10 * k, 256)
    training_samples = check_positive_int(training_samples, "training_samples")
    given = _initial_basis(init, m, k)
    check = "normalize_poissonian_noise" if poisson else None
    scaling = scaling_pass(
        problem, poisson=poisson, centre=centre, nonnegative=check, desc="ORPCA"
    )

    def start(y: np.ndarray) -> OnlineState:
        if given is not None:
            basis = given
        elif init == "rand":
            rng = np.random.default_rng(seed)
            basis = np.linalg.qr(rng.standard_normal((m, k)))[0]
        else:  # leading subspace of the samples, outliers clipped per feature
            basis = top_subspace(clip_outliers(y, lambda2), k, seed=seed)
        basis, sigma = robust_training(y, basis, lambda1, lambda2, n_iter, seed)
        return OnlineState(basis, sigma, np.zeros((k, k)), np.zeros((m, k)))

    def update(state: OnlineState, z: np.ndarray) -> None:
        threshold = lambda2 * state.sigma
        r, e = solve_batch(z, state.basis, lambda1, threshold, n_iter)
        clean = z - e
        state.a += r.T @ r
        state.b += clean.T @ r
        state.seen += len(z)
        _update_basis(state, method, lambda1, r, clean, learning_rate, momentum)

    # float32 data: float32 work (half the memory traffic), float64 sums
    scaling.dtype = np.dtype("f4" if problem.data.dtype == np.float32 else "f8")
    with blas_one_thread():
        state, sumsq = learning_pass(
            problem,
            scaling,
            training_samples=training_samples,
            batch_size=batch_size,
            init=start,
            update=update,
            desc="ORPCA: learning pass",
            nonnegative=check,
        )
        threshold = lambda2 * state.sigma
        basis = state.basis
        projected, gram = projection_pass(
            problem,
            scaling,
            lambda y: solve_batch(y, basis, lambda1, threshold, n_iter)[0],
            k,
            "ORPCA: loadings",
        )
    # rotate L R^T = Q (Rl C Rl^T) Q^T... to orthonormal factors by variance
    q, rl = np.linalg.qr(basis)
    evals, u = np.linalg.eigh(rl @ gram @ rl.T)
    order = np.argsort(evals)[::-1]
    evals, u = np.maximum(evals[order], 0), u[:, order]
    factors = q @ u
    flipped = flip_signs(factors)
    u = u * np.sign((flipped * factors).sum(axis=0))  # same flips on loadings
    factors = flipped
    transform = rl.T @ u  # loadings_new = R @ Rl^T @ U
    projected[:, :k] = projected[:, :k] @ transform
    n = problem.n_pixels
    return Fit(
        factors=factors,
        projected=projected,
        explained_variance=evals / max(n - 1, 1),
        explained_variance_ratio=evals / sumsq if sumsq > 0 else evals * 0,
        scaling=scaling,
        parameters={
            "lambda1": lambda1,
            "lambda2": lambda2,
            "method": method,
            "init": init if isinstance(init, str) else "array",
            "training_samples": training_samples,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "momentum": momentum,
            "n_iter": n_iter,
            "seed": seed,
            "noise_scale": float(np.median(state.sigma)),
        },
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
    state: OnlineState,
    method: str,
    lambda1: float,
    r: np.ndarray,
    clean: np.ndarray,
    learning_rate: float,
    momentum: float,
) -> None:
    k = state.basis.shape[1]
    a = state.a + lambda1 * np.eye(k)
    if method == "CF":
        state.basis = np.linalg.solve(a, state.b.T).T  # B (A + l1 I)^-1, A symmetric
    elif method == "BCD":
        basis = state.basis
        for j in range(k):
            if a[j, j] > 0:
                basis[:, j] += (state.b[:, j] - basis @ a[:, j]) / a[j, j]
    else:
        # gradient of the batch's mean loss; step relative to its curvature
        n = len(r)
        grad = (state.basis @ (r.T @ r + lambda1 * np.eye(k)) - clean.T @ r) / n
        curvature = np.linalg.eigvalsh(a / state.seen)[-1]
        step = learning_rate / max(curvature, 1e-12)
        if method == "SGD":
            state.basis = state.basis - step * grad
        else:
            if state.velocity is None:
                state.velocity = np.zeros_like(state.basis)
            state.velocity = momentum * state.velocity + step * grad
            state.basis = state.basis - state.velocity
