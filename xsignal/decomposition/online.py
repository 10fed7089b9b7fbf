"""Shared machinery of the online algorithms (ORPCA, ORNMF).

One learning pass: the first ``training_samples`` pixels initialise the
model, then every block is cut into mini-batches that update it. One
projection pass: the final model's coefficients for every pixel. Small
matrix algebra runs on one BLAS thread (faster than contended threads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .streaming import Problem, Scaling, check_block


@dataclass
class OnlineState:
    """What an online algorithm carries from batch to batch."""

    basis: np.ndarray  # features x k (ORNMF: non-negative, column norms <= 1)
    sigma: np.ndarray  # noise level of each feature
    a: np.ndarray  # sum of r r^T over the samples seen
    b: np.ndarray  # sum of (z - e) r^T over the samples seen
    seen: int = 0
    velocity: np.ndarray | None = None  # for momentum SGD


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    return int(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return value


def learning_pass(
    problem: Problem,
    scaling: Scaling,
    *,
    training_samples: int,
    batch_size: int,
    init: Callable[[np.ndarray], Any],
    update: Callable[[Any, np.ndarray], None],
    desc: str,
    nonnegative: str | None = None,
) -> tuple[Any, float]:
    """Stream over the blocks once; return the model state and ``||Y||^2``."""
    state = None
    pending: list[np.ndarray] = []
    count = 0
    sumsq = 0.0
    for _, block in problem.iter_blocks(desc):
        check_block(block, nonnegative=nonnegative)
        y = scaling.apply(block)[0]
        sumsq += float(np.einsum("ij,ij->", y, y, dtype="f8"))
        if state is None:
            pending.append(y)
            count += len(y)
            if count < training_samples:
                continue
            y = np.concatenate(pending)
            pending = []
            state = init(y[:training_samples])
        for start in range(0, len(y), batch_size):
            update(state, y[start : start + batch_size])
    if state is None:  # fewer pixels than training samples
        y = np.concatenate(pending)
        state = init(y)
        for start in range(0, len(y), batch_size):
            update(state, y[start : start + batch_size])
    return state, sumsq


def projection_pass(
    problem: Problem,
    scaling: Scaling,
    solve: Callable[[np.ndarray], np.ndarray],
    k: int,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of every pixel: ``(projected, R^T R)`` with ``projected``
    as in :class:`xsignal.decomposition.fit.Fit` and ``R`` in scaled units."""
    out = np.full((problem.n_nav, k + 2), np.nan)
    gram = np.zeros((k, k))
    for index, block in problem.iter_blocks(desc):
        y, root_a, rows = scaling.apply(block)
        coef = solve(y)
        gram += (coef.T @ coef).astype("f8")
        out[index, :k] = coef * root_a[:, None]
        out[index, k] = root_a
        out[index, k + 1] = 0 if rows is None else rows
    return out, gram


def noise_scale(y: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Robust noise level of each feature: 1.4826 x the median absolute
    residual of ``y`` after projecting its rows on the orthonormal ``basis``
    (features x k). Per feature, because counting noise grows with the
    signal; floored at 1% of the typical level so no threshold is zero."""
    resid = np.abs(y - (y @ basis) @ basis.T)
    sigma = 1.4826 * np.median(resid, axis=0)
    typical = float(np.median(sigma[sigma > 0])) if (sigma > 0).any() else 0.0
    if typical <= 0:
        typical = (
            float(np.sqrt(np.mean(resid**2))) or float(np.sqrt(np.mean(y**2))) or 1.0
        )
    return np.maximum(sigma, 0.01 * typical)


def top_subspace(y: np.ndarray, k: int, seed: int = 0, n_iter: int = 4) -> np.ndarray:
    """Orthonormal basis (features x k) of the leading right singular space
    of ``y``: QR-based subspace iteration from a random start."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(y.T @ (y @ rng.standard_normal((y.shape[1], k))))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(y.T @ (y @ q))[0]
    return q


def clip_outliers(y: np.ndarray, threshold: float) -> np.ndarray:
    """``y`` with values over ``threshold`` robust spreads from their feature's
    median pulled back to that distance (spread: 1.4826 x the MAD, the
    standard deviation for Gaussian noise), for outlier-proof starts."""
    median = np.median(y, axis=0)
    spread = 1.4826 * np.median(np.abs(y - median), axis=0)
    return y - soft_threshold(y - median, threshold * spread)


def soft_threshold(x: np.ndarray, threshold: float) -> np.ndarray:
    """``sign(x) max(|x| - t, 0)``, computed as ``x - clip(x, -t, t)``."""
    return x - np.clip(x, -threshold, threshold)
