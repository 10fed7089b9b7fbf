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


# A Jacobian in pieces: per component, (indices of its free parameters in
# theta, first channel, end channel, derivatives (pixels or 1, k_c, end -
# first)), zero outside its channels; a leading 1 is the same for every
# pixel (an offset's ones, a polynomial's powers).
Pieces = list[tuple[list[int], int, int, np.ndarray]]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_n a[p, i, n] b[p, j, n]`` (pixels or 1, i, j), a leading 1 of
    either the same for every pixel: BLAS products either way."""
    if a.shape[0] == 1 and b.shape[0] == 1:
        found: np.ndarray = (a[0] @ b[0].T)[None]
        return found
    if a.shape[0] == 1:
        found = _dot(b, a).transpose(0, 2, 1)
    elif b.shape[0] == 1:
        p, i, n = a.shape
        found = (np.ascontiguousarray(a).reshape(p * i, n) @ b[0].T).reshape(p, i, -1)
    else:
        found = np.matmul(a, b.transpose(0, 2, 1))
    return found


def normal_equations(
    pieces: Pieces, w: np.ndarray | None, resid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``J^T W J`` (pixels, k, k) and ``J^T W r`` (pixels, k) from a
    Jacobian in pieces (``Pieces``): each piece times the others only where
    their channels meet (two peaks far apart: nothing), ``w`` (pixels, n)
    the weights or None (unweighted).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 6)
    >>> dense = np.stack([np.ones(6), x])[None]            # (1, 2, 6)
    >>> pieces = [([0], 0, 6, dense[:, :1]), ([1], 2, 6, dense[:, 1:, 2:])]
    >>> r = np.ones((1, 6))
    >>> normal, grad = normal_equations(pieces, None, r, 2)
    >>> full = dense.copy(); full[:, 1, :2] = 0
    >>> bool(np.allclose(normal, full @ full.transpose(0, 2, 1)))
    True
    >>> bool(np.allclose(grad, (full @ r[..., None])[..., 0]))
    True
    """
    p = resid.shape[0]
    normal = np.zeros((p, k, k))
    grad = np.zeros((p, k))
    weighted = []
    for cols, lo, hi, jac in pieces:
        # in each piece's precision (float32 derivatives: float32 products)
        wj = jac if w is None else jac * w[:, None, lo:hi].astype(jac.dtype)
        weighted.append(wj)
        part = resid[:, lo:hi].astype(jac.dtype, copy=False)
        if wj.shape[0] == 1:
            grad[:, cols] = part @ wj[0].T
        else:
            grad[:, cols] = np.matmul(wj, part[:, :, None])[..., 0]
    for a, (cols_a, lo_a, hi_a, _) in enumerate(pieces):
        for b in range(a, len(pieces)):
            cols_b, lo_b, hi_b, jac_b = pieces[b]
            lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
            if hi <= lo:
                continue
            block = _dot(
                weighted[a][..., lo - lo_a : hi - lo_a],
                jac_b[..., lo - lo_b : hi - lo_b],
            )
            ia, ib = np.ix_(cols_a, cols_b)
            normal[:, ia, ib] = block
            if a != b:
                normal[:, ib.T, ia.T] = block.transpose(0, 2, 1)
    return normal, grad


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
    # y @ X: OpenBLAS (numpy 2.4) takes it 5-40 % faster than (X^T y^T)^T,
    # one thread or several, rows contiguous or a window of them
    projected = (rows @ columns.astype(work)).astype(np.float64)
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
        # X^T y of every pixel: the one pass over y
        projected = y @ design
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


def _solve(matrices: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched ``matrices^-1 rhs``; NaN for a singular matrix."""
    try:
        found: np.ndarray = np.linalg.solve(matrices, rhs[..., None])[..., 0]
        return found
    except np.linalg.LinAlgError:
        found = np.einsum("pkl,pl->pk", covariance(matrices), rhs)
        return found


def levenberg_marquardt(
    y: np.ndarray,
    residual: Callable[[np.ndarray, np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray, np.ndarray, bool], Pieces],
    start: np.ndarray,
    weights: np.ndarray | None,
    lower: np.ndarray,
    upper: np.ndarray,
    max_iterations: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt (Marquardt's scaling of the diagonal) for every
    pixel at once. For the pixels ``rows`` (indices) with parameters
    ``theta`` (len(rows), k), ``residual(theta, rows)`` gives the data less
    the model (len(rows), n) and ``jacobian(theta, rows, exact)`` the
    model's derivatives in pieces (``Pieces``: a peak's only where it is
    not negligible; float32 where the components allow it unless
    ``exact``, float64 for the final covariance). Each pixel has its own
    damping; a step that lowers its chi-square is taken (projected on
    ``lower``/``upper``, the bounds), else its damping grows; only the
    pixels still improving are computed. A pixel is done when the
    Gauss-Newton step could gain at most ``TOLERANCE`` of its chi-square
    (at the minimum, without waiting for its damping to run away), when
    a taken step gains no more, or when no step lowers it. Chi-squares,
    steps and the covariance are float64.

    Returns (parameters, covariance of the parameters without scaling
    (pixels, k, k), chi-square (pixels,), converged (pixels,) bool).
    """
    p, k = start.shape
    w = weights

    def chi2(r: np.ndarray, rows: np.ndarray) -> np.ndarray:
        found: np.ndarray = (
            np.einsum("pn,pn->p", r, r)
            if w is None
            else np.einsum("pn,pn->p", r * w[rows], r)
        )
        return found

    theta = np.clip(start, lower, upper)
    every = np.arange(p)
    resid = residual(theta, every)
    chisq = chi2(resid, every)
    damping = np.full(p, 1e-3)
    started = np.isfinite(chisq)
    active = started.copy()
    eye = np.eye(k)
    for _ in range(max_iterations):
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        everyone = idx.size == p
        current = resid if everyone else resid[idx]
        normal, grad = normal_equations(
            jacobian(theta[idx], idx, False),
            None if w is None else (w if everyone else w[idx]),
            current,
            k,
        )
        # done: the most the local quadratic model could still gain (the
        # Gauss-Newton step's) is below the tolerance: at the minimum
        newton = _solve(normal + 1e-12 * eye, grad)
        left = np.einsum("pk,pk->p", grad, newton)
        done = left <= TOLERANCE * chisq[idx]
        if done.any():
            active[idx[done]] = False
            keep = ~done
            idx, normal, grad = idx[keep], normal[keep], grad[keep]
            if not idx.size:
                break
        diag = np.einsum("pkk->pk", normal)
        marquardt = diag[:, :, None] * eye + 1e-12 * eye
        step = _solve(normal + damping[idx, None, None] * marquardt, grad)
        trial = np.clip(theta[idx] + step, lower, upper)
        trial_resid = residual(trial, idx)
        trial_chisq = chi2(trial_resid, idx)
        better = np.isfinite(trial_chisq) & (trial_chisq <= chisq[idx])
        gain = chisq[idx] - np.where(better, trial_chisq, chisq[idx])
        take = idx[better]
        theta[take] = trial[better]
        resid[take] = trial_resid[better]
        chisq[take] = trial_chisq[better]
        damping[idx] = np.where(better, damping[idx] / 10, damping[idx] * 10)
        # done: a taken step that hardly lowers chi-square, or no step that
        # lowers it at all however small (at the minimum)
        small = better & (gain <= TOLERANCE * np.maximum(chisq[idx], 1e-300))
        stuck = damping[idx] > MAX_LAMBDA
        active[idx[small | stuck]] = False
    normal, _ = normal_equations(jacobian(theta, every, True), w, resid, k)
    converged = started & ~active & np.isfinite(chisq)
    return theta, covariance(normal), chisq, converged
