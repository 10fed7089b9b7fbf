"""Top eigenpairs of ``Y^T Y`` by randomized subspace iteration, in passes.

For a few components of a wide signal, forming the Gram matrix costs
``pixels x features^2`` multiply-adds, about ten reads of the data for 1024
features on a 2-core machine. Subspace iteration (Halko, Martinsson and
Tropp, SIAM Review 53 (2011) 217) needs only ``A Q`` for a thin ``Q``
(``features x l``, ``l = k + oversampling``): each pass computes
``Xw^T (Xw G)`` per block where the block is read, summed in a tree, so a
pass costs little more than a read. The eigenpairs come from the
Nyström approximation ``A Q (Q^T A Q)^-1 (A Q)^T`` of the last pass
(Tropp, Yurtsever, Udell and Cevher, NeurIPS 2017), which is as accurate
as another half pass.

``A`` is the matrix the exact solvers decompose: ``Z = Xw diag(wb)`` with
``Xw`` the rows scaled by ``1/root_a`` (Poisson) and ``wb = 1/root_b``,
minus ``n mu mu^T`` (navigation centring), wrapped in ``C = I - 11^T/m``
(signal centring). ``wb`` and ``mu`` come from the first pass, which
therefore multiplies by ``Xw^T Xw`` alone: its result, scaled and centred,
is the starting subspace of the passes that follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .poisson import scaling_from_statistics
from .streaming import (
    Problem,
    Scaling,
    Statistics,
    block_tasks,
    compute_pass,
    merge_statistics,
    tree_reduce,
    weighted_block,
)

OVERSAMPLING = 10
TOL = 1e-4  # radians: 0.006 degrees, far below what noise does to factors


@dataclass
class Products:
    """One pass's sums: ``Xw^T Xw G`` and, on the first pass, statistics."""

    product: np.ndarray  # (features, columns of G)
    stats: Statistics | None = None
    col_sumsq: np.ndarray | None = None  # per feature, of Xw

    def __add__(self, other: Products) -> Products:
        if self.stats is None:
            return Products(self.product + other.product)
        # first-pass products, all of which carry their statistics
        assert other.stats is not None
        assert self.col_sumsq is not None and other.col_sumsq is not None
        return Products(
            self.product + other.product,
            merge_statistics(self.stats, other.stats),
            self.col_sumsq + other.col_sumsq,
        )


def _merge(*parts: Products) -> Products:
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _block_products(
    x: np.ndarray,
    poisson: bool,
    dtype: str,
    right: np.ndarray,
    first: bool,
    nonnegative: str | None,
) -> Products:
    """``Xw^T (Xw right)`` of one block (float32 products for float32
    data, float64 sums), with the statistics on the first pass."""
    if not first:
        xw = Scaling(poisson=poisson, dtype=np.dtype(dtype)).apply(x)[0]
        return Products(_product(xw, right))
    sums, xw, weighted = weighted_block(x, poisson, dtype, nonnegative)
    col_sumsq = np.einsum("ij,ij->j", xw, xw, dtype="f8")
    stats = Statistics(len(x), sums, weighted, float(col_sumsq.sum()), None)
    return Products(_product(xw, right), stats, col_sumsq)


def _product(xw: np.ndarray, right: np.ndarray) -> np.ndarray:
    out: np.ndarray = (xw.T @ (xw @ right.astype(xw.dtype, copy=False))).astype("f8")
    return out


def _pass(
    problem: Problem,
    poisson: bool,
    right: np.ndarray,
    first: bool,
    nonnegative: str | None,
    desc: str,
) -> Products:
    partials = block_tasks(
        problem,
        _block_products,
        poisson,
        problem.work_dtype.str,
        right,
        first,
        nonnegative,
    )
    out: Products = compute_pass(tree_reduce(partials, _merge), problem, desc)
    return out


def randomized_eigenpairs(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    n_power_iter: int = 4,
    tol: float = TOL,
    seed: int = 0,
    nonnegative: str | None = None,
    desc: str = "SVD",
) -> tuple[Scaling, np.ndarray, np.ndarray, float, int, int]:
    """(scaling, top ``k`` eigenvalues and eigenvectors of ``A = Y^T Y``,
    its trace, pixels, passes made).

    The first pass gives the statistics and a starting subspace; each
    pass after it multiplies the subspace by ``A``. Passes stop when the
    residuals of the top ``k`` Ritz pairs over the spectral gap bound the
    angle to the exact eigenvectors by ``tol`` radians (the Nyström
    vectors returned are closer still: 10-100 times on the test data),
    or after ``2 + n_power_iter`` passes.

    Examples
    --------
    >>> import xsignal
    >>> from xsignal.decomposition.streaming import Problem
    >>> from xsignal.testing import spectrum_image
    >>> da, _, _ = spectrum_image((32, 32, 256), rank=3, seed=0)
    >>> problem = Problem(da, ("y", "x"), ("energy",), None, None, progress=False)
    >>> evals, evecs = randomized_eigenpairs(
    ...     problem, 3, poisson=False, centre=None
    ... )[1:3]
    >>> evecs.shape
    (256, 3)
    """
    m = problem.n_features
    width = min(m, k + OVERSAMPLING)
    start = np.random.default_rng(seed).standard_normal((m, width))
    first = _pass(problem, poisson, start, True, nonnegative, f"{desc}: pass 1")
    stats, col_sumsq = first.stats, first.col_sumsq
    assert stats is not None and col_sumsq is not None  # the first pass has them
    scaling = scaling_from_statistics(stats, poisson=poisson, centre=centre)
    operator = _Operator(scaling, stats.n, m)
    q = _orth(operator.finish(first.product, None))
    for i in range(n_power_iter + 1):
        products = _pass(
            problem,
            poisson,
            operator.right(q),
            False,
            None,
            f"{desc}: pass {i + 2}",
        )
        z = operator.finish(products.product, q)
        if i == n_power_iter or _angle_bound(q, z, k) <= tol:
            break
        q = _orth(z)
    evals, evecs = _nystrom(q, z)
    total = operator.trace(col_sumsq, products.product)
    return scaling, evals[:k], evecs[:, :k], total, stats.n, i + 2


@dataclass
class _Operator:
    """``A Q`` from a pass's ``Xw^T Xw G``: what ``G`` to multiply by and
    how to finish the product (``d = wb``, ``mu``, ``C``)."""

    scaling: Scaling
    n: int
    m: int

    @property
    def d(self) -> np.ndarray:
        if self.scaling.poisson:
            wb = self.scaling.wb
            assert wb is not None  # root_b is set when poisson
            return wb
        return np.ones(self.m)

    def _centre(self, q: np.ndarray) -> np.ndarray:
        return q - q.mean(axis=0) if self.scaling.centre_signal else q

    def right(self, q: np.ndarray) -> np.ndarray:
        """``G = diag(d) C Q``, and the column ``d`` (whose product gives
        ``||Z 1||^2`` for the trace) when centring each signal."""
        g: np.ndarray = self.d[:, None] * self._centre(q)
        if self.scaling.centre_signal:
            g = np.column_stack([g, self.d])
        return g

    def finish(self, product: np.ndarray, q: np.ndarray | None) -> np.ndarray:
        """``A Q`` from ``Xw^T Xw G`` (``q=None``: the first pass, whose
        ``G`` was the random start: a scaled, centred sketch)."""
        width = product.shape[1] - (self.scaling.centre_signal and q is not None)
        z = self.d[:, None] * product[:, :width]
        if self.scaling.mu is not None and q is not None:
            mu = self.scaling.mu
            z -= self.n * np.outer(mu, mu @ self._centre(q))
        return self._centre(z)

    def trace(self, col_sumsq: np.ndarray, product: np.ndarray) -> float:
        """``trace(A)`` from the first pass's column sums of squares (and,
        centring each signal, the last pass's extra column)."""
        mu = self.scaling.mu
        total = float(self.d**2 @ col_sumsq)
        if mu is not None:
            total -= self.n * float(mu @ mu)
        if self.scaling.centre_signal:
            z1 = float(self.d @ product[:, -1])  # ||Z 1||^2
            if mu is not None:
                z1 -= self.n * float(mu.sum()) ** 2
            total -= z1 / self.m
        return max(total, 0.0)


def _orth(z: np.ndarray) -> np.ndarray:
    q: np.ndarray = scipy.linalg.qr(z, mode="economic")[0]
    return q


def _nystrom(q: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``A`` (largest first) from ``z = A q``, ``q``
    orthonormal: the Nyström approximation, with a tiny shift for
    stability; Rayleigh-Ritz if ``q^T A q`` is not positive definite."""
    shift = np.sqrt(len(z)) * np.finfo("f8").eps * np.linalg.norm(z)
    shifted = z + shift * q
    core = q.T @ shifted
    core = (core + core.T) / 2
    try:
        upper = scipy.linalg.cholesky(core)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh((q.T @ z + z.T @ q) / 2)
        order = np.argsort(values)[::-1]
        return values[order], q @ vectors[:, order]
    f = scipy.linalg.solve_triangular(upper, shifted.T, trans="T").T
    u, s, _ = scipy.linalg.svd(f, full_matrices=False)
    return np.maximum(s**2 - shift, 0), u


def _angle_bound(q: np.ndarray, z: np.ndarray, k: int) -> float:
    """An estimate of the largest angle (radians) between the top ``k``
    Ritz vectors of ``z = A q`` and the true eigenvectors: the largest
    residual ``||A v - theta v||`` over the gap ``theta_k - theta_k+1``."""
    values, vectors = np.linalg.eigh((q.T @ z + z.T @ q) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    if len(values) <= k:
        return 0.0
    residual = z @ vectors[:, :k] - (q @ vectors[:, :k]) * values[:k]
    gap = values[k - 1] - values[k]
    norm = np.linalg.norm(residual, axis=0).max()
    return float(norm / gap) if gap > 0 else np.inf
