"""Shared machinery of the online algorithms (ORPCA, ORNMF).

One learning pass: the first ``training_samples`` pixels initialise the
model, then every block is cut into mini-batches that update it; it is a
chain of tasks, each reading its block where it runs and handing the model
on, so the data never travel to the caller. One projection pass: the final
model's coefficients for every pixel, one task per block. Small matrix
algebra runs on one BLAS thread (faster than contended threads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from .fit import Fit, project, variances
from .poisson import scaling_pass
from .streaming import (
    Problem,
    Scaling,
    blas_one_thread,
    block_chain,
    check_block,
    compute_pass,
)


@dataclass
class OnlineState:
    """What an online algorithm carries from batch to batch."""

    basis: np.ndarray  # features x k (ORNMF: non-negative, column norms <= 1)
    sigma: np.ndarray  # noise level of each feature
    a: np.ndarray  # sum of r r^T over the samples seen
    b: np.ndarray  # sum of (z - e) r^T over the samples seen
    seen: int = 0
    velocity: np.ndarray | None = None  # for momentum SGD


@dataclass(frozen=True)
class OnlineOptions:
    """The options every online learner has, checked when made; a learner's
    own options extend it. ``dataclasses.asdict`` of the options is the
    result's ``parameters``."""

    batch_size: int = 256
    learning_rate: float = 1.0
    momentum: float = 0.5
    n_iter: int = 10
    seed: int = 0
    training_samples: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.batch_size, "batch_size")
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.momentum, "momentum", allow_zero=True)
        check_positive_int(self.n_iter, "n_iter")
        if self.training_samples is not None:
            check_positive_int(self.training_samples, "training_samples")

    def replace(self, **changes: Any) -> OnlineOptions:
        return dataclasses.replace(self, **changes)


class OnlineLearner:
    """What :func:`fit_online` drives: start a model from the training
    samples, update it with a mini-batch, solve a batch's coefficients with
    the final model, and turn the final model and coefficients into sorted
    factors and variances. Subclasses implement the four methods."""

    name: str
    options: OnlineOptions
    nonnegative: str | None = None  # the option that forbids negative data

    def start(self, y: np.ndarray) -> OnlineState:
        raise NotImplementedError

    def update(self, state: OnlineState, y: np.ndarray) -> None:
        raise NotImplementedError

    def solver(self, state: OnlineState) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def finish(
        self, state: OnlineState, projected: np.ndarray, gram: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(factors, projected with its first k columns transformed to
        match, variance of each component), sorted by variance."""
        raise NotImplementedError


def fit_online(
    problem: Problem,
    k: int,
    learner: OnlineLearner,
    *,
    poisson: bool,
    centre: str | None,
    default_training: int,
) -> Fit:
    """The online algorithms' driver: a statistics pass when scaling or
    centring needs one, the learning pass (a chain of tasks), the
    projection pass (a task per block), then the learner's own finish."""
    options = learner.options
    training_samples = options.training_samples
    if training_samples is None:
        training_samples = max(10 * k, default_training)
        options = options.replace(training_samples=training_samples)
        learner.options = options
    check = learner.nonnegative or ("normalize_poissonian_noise" if poisson else None)
    scaling = scaling_pass(
        problem, poisson=poisson, centre=centre, nonnegative=check, desc=learner.name
    )
    scaling.dtype = problem.work_dtype
    with blas_one_thread():
        state, sumsq = learning_pass(
            problem,
            scaling,
            training_samples=training_samples,
            batch_size=options.batch_size,
            init=learner.start,
            update=learner.update,
            desc=f"{learner.name}: learning pass",
            nonnegative=check,
        )
        projected, gram = projection_pass(
            problem, scaling, learner.solver(state), k, f"{learner.name}: loadings"
        )
    factors, projected, variance = learner.finish(state, projected, gram)
    explained, ratio = variances(variance, sumsq, problem.n_pixels)
    parameters = {
        **dataclasses.asdict(options),
        "noise_scale": float(np.median(state.sigma)),
    }
    return Fit(factors, projected, explained, ratio, scaling, parameters)


def momentum_step(
    state: OnlineState, grad: np.ndarray, learning_rate: float, momentum: float
) -> np.ndarray:
    """The basis after one momentum SGD step along ``grad`` (the batch's
    mean gradient), its size relative to the curvature ``||A / t||``."""
    curvature = np.linalg.eigvalsh(state.a / state.seen)[-1]
    step: float = learning_rate / max(curvature, 1e-12)
    if momentum == 0:
        return state.basis - step * grad
    if state.velocity is None:
        state.velocity = np.zeros_like(state.basis)
    state.velocity = momentum * state.velocity + step * grad
    return state.basis - state.velocity


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    return int(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a positive number, not {number!r}")
    return number


@dataclass
class _Carry:
    """What the learning pass hands from one block's task to the next."""

    state: Any = None  # the model (None until the training samples are in)
    # rows awaiting initialisation
    pending: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    sumsq: float = 0.0


def _learn_block(
    carry: _Carry,
    y: np.ndarray,
    training_samples: int,
    batch_size: int,
    init: Callable[[np.ndarray], Any],
    update: Callable[[Any, np.ndarray], None],
) -> _Carry:
    """Learn from one block's scaled rows ``y``."""
    carry.sumsq += float(np.einsum("ij,ij->", y, y, dtype="f8"))
    if carry.state is None:
        carry.pending.append(y)
        carry.count += len(y)
        if carry.count < training_samples:
            return carry
        y = np.concatenate(carry.pending)
        carry.pending = []
        carry.state = init(y[:training_samples])
    for start in range(0, len(y), batch_size):
        update(carry.state, y[start : start + batch_size])
    return carry


def _finish(
    carry: _Carry,
    batch_size: int,
    init: Callable[[np.ndarray], Any],
    update: Callable[[Any, np.ndarray], None],
) -> tuple[Any, float]:
    if carry.state is None:  # fewer pixels than training samples
        y = np.concatenate(carry.pending)
        carry.state = init(y)
        for start in range(0, len(y), batch_size):
            update(carry.state, y[start : start + batch_size])
    return carry.state, carry.sumsq


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
    """One pass in block order; return the model state and ``||Y||^2``.

    A chain of tasks (:func:`~xsignal.decomposition.streaming.block_chain`):
    each reads its own block where it runs and learns from it, and hands
    the model (a few small matrices) to the next; only the final model
    reaches the caller.
    """

    def step(carry: _Carry, x: np.ndarray) -> _Carry:
        check_block(x, nonnegative=nonnegative)
        y = scaling.apply(x)[0]
        return _learn_block(carry, y, training_samples, batch_size, init, update)

    last = block_chain(problem, step, _Carry())
    finished = dask.delayed(_finish, pure=False)(last, batch_size, init, update)
    out: tuple[Any, float] = compute_pass(finished, problem, desc)
    return out


def projection_pass(
    problem: Problem,
    scaling: Scaling,
    solve: Callable[[np.ndarray], np.ndarray],
    k: int,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of every pixel: ``(projected, R^T R)`` with ``projected``
    as in :class:`xsignal.decomposition.fit.Fit` and ``R`` in scaled units.
    One task per block (:func:`~xsignal.decomposition.fit.project`)."""
    projected = project(problem, scaling, solve, k, desc, lazy=False)
    kept = problem.keep_pixels
    root_a = projected[kept, k]
    coef = np.divide(
        projected[kept, :k],
        root_a[:, None],
        out=np.zeros((int(kept.sum()), k)),
        where=root_a[:, None] > 0,
    )
    return projected, coef.T @ coef


def noise_scale(y: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Robust noise level of each feature: 1.4826 x the median absolute
    residual of ``y`` after projecting its rows on the orthonormal ``basis``
    (features x k). Per feature, because counting noise grows with the
    signal; floored at 1% of the typical level so no threshold is zero."""
    resid = np.abs(y - (y @ basis) @ basis.T)
    sigma: np.ndarray = 1.4826 * np.median(resid, axis=0)
    typical = float(np.median(sigma[sigma > 0])) if (sigma > 0).any() else 0.0
    if typical <= 0:
        typical = (
            float(np.sqrt(np.mean(resid**2))) or float(np.sqrt(np.mean(y**2))) or 1.0
        )
    floored: np.ndarray = np.maximum(sigma, 0.01 * typical)
    return floored


def top_subspace(y: np.ndarray, k: int, seed: int = 0, n_iter: int = 4) -> np.ndarray:
    """Orthonormal basis (features x k) of the leading right singular space
    of ``y``: QR-based subspace iteration from a random start."""
    rng = np.random.default_rng(seed)
    q: np.ndarray = np.linalg.qr(y.T @ (y @ rng.standard_normal((y.shape[1], k))))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(y.T @ (y @ q))[0]
    return q


def clip_outliers(y: np.ndarray, threshold: float) -> np.ndarray:
    """``y`` with values over ``threshold`` robust spreads from their feature's
    median pulled back to that distance (spread: 1.4826 x the MAD, the
    standard deviation for Gaussian noise), for outlier-proof starts."""
    median = np.median(y, axis=0)
    spread = 1.4826 * np.median(np.abs(y - median), axis=0)
    clipped: np.ndarray = y - soft_threshold(y - median, threshold * spread)
    return clipped


def sparse_errors(
    z: np.ndarray,
    coef: np.ndarray,
    basis_t: np.ndarray,
    threshold: Any,
    n_iter: int,
    refit: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """``(coefficients, sparse errors)`` of a batch ``z``: alternate the
    errors ``E = S(Z - C L^T)`` (soft-thresholding at ``threshold``) with
    ``C = refit(E, C)``, up to ``n_iter`` times, until no error moves by
    more than 5 % of the threshold.

    Each step is a pass over batch-sized memory, so the batch-sized arrays
    are two buffers reused in place.
    """
    errors = np.zeros_like(z)
    if not n_iter:
        return coef, errors
    t = np.asarray(threshold, z.dtype)
    tolerance = 0.05 * t
    basis_t = basis_t.astype(z.dtype, copy=False)
    new, work = np.empty_like(z), np.empty_like(z)
    for i in range(n_iter):
        np.matmul(coef.astype(z.dtype, copy=False), basis_t, out=new)
        np.subtract(z, new, out=new)  # the residual Z - C L^T
        shrink(new, t, work)
        settled = i > 0 and _within(new, errors, tolerance, work)
        errors, new = new, errors
        coef = refit(errors, coef)
        if settled:
            break
    return coef, errors


def _within(a: np.ndarray, b: np.ndarray, tolerance: Any, work: np.ndarray) -> bool:
    """Whether ``|a - b| <= tolerance`` everywhere (``work``: a buffer)."""
    np.subtract(a, b, out=work)
    np.abs(work, out=work)
    return bool((work.max(axis=0) <= tolerance).all())


def soft_threshold(x: np.ndarray, threshold: Any) -> np.ndarray:
    """``sign(x) max(|x| - t, 0)``, computed as ``x - clip(x, -t, t)``."""
    out = np.array(x, copy=True)
    shrink(out, np.asarray(threshold, out.dtype), np.empty_like(out))
    return out


def shrink(x: np.ndarray, threshold: np.ndarray, work: np.ndarray) -> None:
    """Soft-threshold ``x`` in place (``work``: a buffer of its shape).

    ``minimum`` then ``maximum``, not ``np.clip``: several times faster
    with per-feature bounds.
    """
    np.minimum(x, threshold, out=work)
    np.maximum(work, -threshold, out=work)
    x -= work
