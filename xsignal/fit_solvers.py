"""Least-squares solvers for a block of spectra at once (xsignal.fitting).

Every function takes the spectra of a block as rows, (pixels, channels),
and works on all rows together with numpy: the linear solve is one
product (or one batched solve when each pixel has its own weights or
design), the non-linear one a Levenberg-Marquardt iteration whose every
step is a batched solve of small normal equations, one per pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# an iteration stops improving a pixel when chi-square changes by less
TOLERANCE = 1e-9
MAX_LAMBDA = 1e12


def covariance(normal: np.ndarray) -> np.ndarray:
    """Inverses of the normal matrices (pixels, k, k); NaN where singular."""
    try:
        return np.linalg.inv(normal)
    except np.linalg.LinAlgError:  # one singular: the others one by one
        out = np.full_like(normal, np.nan)
        for i, matrix in enumerate(normal):
            try:
                out[i] = np.linalg.inv(matrix)
            except np.linalg.LinAlgError:
                pass
        return out


def _normal_equations(
    jac: np.ndarray, w: np.ndarray, resid: np.ndarray, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """``J^T W J`` (pixels, k, k) and ``J^T W r`` (pixels, k) from the
    derivatives ``jac`` (pixels, k, n), by batched matrix products (BLAS)
    in ``dtype``; returned in float64."""
    j: np.ndarray = jac.astype(dtype, copy=False)
    weighted = j * w.astype(dtype, copy=False)[:, None, :]
    normal = np.matmul(weighted, j.transpose(0, 2, 1))
    grad = np.matmul(weighted, resid.astype(dtype, copy=False)[:, :, None])[..., 0]
    return normal.astype(np.float64), grad.astype(np.float64)


# a shared linear fit recomputes a pixel's chi-square from its residual in
# float64 when rounding in |y|^2 - b.X^T y could exceed this share of it
CHISQ_RTOL = 1e-3


def work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a block is multiplied in: float32 data (and integers that
    float32 holds exactly) in float32, anything else in float64."""
    if dtype == np.float32 or (dtype.kind in "biu" and dtype.itemsize <= 2):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def shared_linear(
    y: np.ndarray, design: np.ndarray, base: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of every row of ``y`` (pixels, n), the block as read,
    on one ``design`` (n, k) after the fixed part ``base`` (n,), with
    ``inverse`` the inverse of ``design.T @ design``. Returns (coefficients
    (pixels, k), chi-square (pixels,)), in float64.

    One pass over ``y`` in its own precision (float32 data stays float32:
    no converted copy): ``y @ [X, base]`` by one BLAS product and ``|y|^2``,
    then ``b = (X^T X)^-1 X^T (y - base)`` and ``chi^2 = |y - base|^2 -
    b.X^T (y - base)``, all (pixels, k) work. That difference loses the
    digits the two terms share: where the rounding of float32 sums (about
    ``eps * sqrt(n)`` of ``|y|^2``) could exceed ``CHISQ_RTOL`` of the
    chi-square (high counts, little noise), those pixels are solved again
    in float64 from their residual.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 50)
    >>> design = np.stack([np.ones(50), x], axis=1)
    >>> inverse = np.linalg.inv(design.T @ design)
    >>> y = np.stack([2 + 3 * x, 1 - x]).astype(np.float32)
    >>> beta, chisq = shared_linear(y, design, np.zeros(50), inverse)
    >>> beta.round(5).tolist(), bool(chisq.max() < 1e-8)
    ([[2.0, 3.0], [1.0, -1.0]], True)
    """
    work = work_dtype(y.dtype)
    rows = y.astype(work, copy=False)
    k = design.shape[1]
    shifted = bool(np.any(base))
    columns = np.concatenate([design, base[:, None]], axis=1) if shifted else design
    # (X^T y^T)^T: a shape BLAS takes as fast as y @ X or faster
    projected = (columns.T.astype(work) @ rows.T).T.astype(np.float64)
    square = np.einsum("pn,pn->p", rows, rows).astype(np.float64)
    xty = projected[:, :k]
    size = square.copy()  # the magnitude the rounding is relative to
    if shifted:
        xty = xty - design.T @ base
        along = projected[:, k]
        square += float(base @ base) - 2 * along
        size += float(base @ base) + 2 * np.abs(along)
    beta = xty @ inverse
    chisq = square - np.einsum("pk,pk->p", beta, xty)
    rounding = np.finfo(work).eps * np.sqrt(y.shape[1]) * size
    redo = np.nonzero(chisq * CHISQ_RTOL < rounding)[0]  # (NaN rows stay NaN)
    if redo.size:
        exact = y[redo].astype(np.float64) - base
        beta[redo] = (exact @ design) @ inverse
        resid = exact - beta[redo] @ design.T
        chisq[redo] = np.einsum("pn,pn->p", resid, resid)
    return beta, chisq


def linear(
    y: np.ndarray, design: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of ``y`` (pixels, n) on ``design``: one (n, k) matrix
    for every pixel, or (pixels, n, k). Returns (coefficients (pixels, k),
    their covariance without scaling (pixels, k, k), chi-square (pixels,))
    with ``weights`` (pixels, n) the inverse variances, or unweighted."""
    if design.ndim == 2 and weights is None:  # one matrix for every pixel
        normal = design.T @ design
        inverse = covariance(normal[None])[0]
        # X^T y of every pixel, the one pass over y (as (X^T y^T)^T: BLAS
        # takes that shape 5-30x faster than y @ X with X three columns wide)
        projected = (design.T @ y.T).T
        beta = projected @ inverse
        # |y - X b|^2 = |y|^2 - 2 b.X^T y + b X^T X b: no residual array
        chisq = (
            np.einsum("pn,pn->p", y, y)
            - 2 * np.einsum("pk,pk->p", beta, projected)
            + np.einsum("pk,kl,pl->p", beta, normal, beta)
        )
        cov = np.broadcast_to(inverse, (y.shape[0], *normal.shape))
        return beta, np.asarray(cov), np.maximum(chisq, 0.0)
    else:
        d = np.broadcast_to(design, (y.shape[0], *design.shape[-2:]))
        w = np.ones_like(y) if weights is None else weights
        normal = np.einsum("pnk,pn,pnl->pkl", d, w, d)
        rhs = np.einsum("pnk,pn,pn->pk", d, w, y)
        cov = covariance(normal)
        beta = np.einsum("pkl,pl->pk", cov, rhs)
        fitted = np.einsum("pnk,pk->pn", d, beta)
    resid = y - fitted
    chisq = (resid * resid * (1.0 if weights is None else weights)).sum(-1)
    return beta, np.asarray(cov), chisq


def levenberg_marquardt(
    y: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    start: np.ndarray,
    weights: np.ndarray | None,
    lower: np.ndarray,
    upper: np.ndarray,
    max_iterations: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt (Marquardt's scaling of the diagonal) for every
    pixel at once. ``evaluate(theta, rows)`` gives, for the pixels ``rows``
    (indices) with parameters ``theta`` (len(rows), k), the model
    (len(rows), n) and its derivatives (len(rows), k, n), computed together
    (a component shares its exponentials between them): a trial step's
    derivatives are the next iteration's when it is taken. Each pixel has
    its own damping; a step that lowers its chi-square is taken (projected
    on ``lower``/``upper``, the bounds), else its damping grows. The normal
    equations are formed in float32 (a step's direction needs no more; the
    chi-squares deciding the steps and the final covariance are float64).

    Returns (parameters, covariance of the parameters without scaling
    (pixels, k, k), chi-square (pixels,), converged (pixels,) bool).
    """
    w = np.ones_like(y) if weights is None else weights
    theta = np.clip(start, lower, upper)
    every = np.arange(y.shape[0])
    fitted, jac = evaluate(theta, every)
    resid = y - fitted
    chisq = (w * resid * resid).sum(-1)
    damping = np.full(y.shape[0], 1e-3)
    started = np.isfinite(chisq)
    active = started.copy()
    eye = np.eye(theta.shape[1])
    jac32 = jac.astype(np.float32)
    for _ in range(max_iterations):
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        wi = w[idx]
        normal, grad = _normal_equations(jac32[idx], wi, resid[idx], np.float32)
        diag = np.einsum("pkk->pk", normal)
        marquardt = diag[:, :, None] * eye + 1e-12 * eye
        scaled = normal + damping[idx, None, None] * marquardt
        try:
            step = np.linalg.solve(scaled, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("pkl,pl->pk", covariance(scaled), grad)
        trial = np.clip(theta[idx] + step, lower, upper)
        trial_fit, trial_jac = evaluate(trial, idx)
        trial_resid = y[idx] - trial_fit
        trial_chisq = (wi * trial_resid * trial_resid).sum(-1)
        better = np.isfinite(trial_chisq) & (trial_chisq <= chisq[idx])
        gain = chisq[idx] - np.where(better, trial_chisq, chisq[idx])
        take = idx[better]
        theta[take] = trial[better]
        resid[take] = trial_resid[better]
        chisq[take] = trial_chisq[better]
        jac32[take] = trial_jac[better]
        damping[idx] = np.where(better, damping[idx] / 10, damping[idx] * 10)
        # done: a taken step that hardly lowers chi-square, or no step that
        # lowers it at all however small (at the minimum)
        small = better & (gain <= TOLERANCE * np.maximum(chisq[idx], 1e-300))
        stuck = damping[idx] > MAX_LAMBDA
        active[idx[small | stuck]] = False
    _, jac = evaluate(theta, every)
    normal, _ = _normal_equations(jac, w, resid, np.float64)
    converged = started & ~active & np.isfinite(chisq)
    return theta, covariance(normal), chisq, converged
