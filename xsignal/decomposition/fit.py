"""What every algorithm returns, and the projection shared by all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import dask.array as dsa
import numpy as np

from .streaming import Problem, Scaling, eager_projection, lazy_projection


@dataclass
class Fit:
    """An algorithm's output, in the scaled space of :class:`Scaling`.

    ``projected`` holds, per pixel, the loadings in data units (Poisson
    scaling undone), then ``root_a`` and the row mean of ``Z`` (zero unless
    centring each signal): ``(n_nav, k + 2)`` numpy or ``(*nav, k + 2)``
    dask.
    """

    factors: np.ndarray  # (features, k)
    projected: np.ndarray | dsa.Array
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    scaling: Scaling
    parameters: dict[str, Any] = field(default_factory=dict)


def variances(
    variance: np.ndarray, total: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(explained variance, its ratio to ``total``) of ``n`` pixels."""
    ratio = variance / total if total > 0 else variance * 0
    return variance / max(n - 1, 1), ratio


def eigen_fit(
    problem: Problem,
    scaling: Scaling,
    evals: np.ndarray,
    evecs: np.ndarray,
    total: float,
    n: int,
    name: str,
    parameters: dict[str, Any],
) -> Fit:
    """The :class:`Fit` of a linear decomposition from the eigenpairs of
    ``Y^T Y`` (SVD, PCA): signed factors and their lazy projection."""
    evals = np.maximum(evals, 0)
    factors = flip_signs(evecs)
    k = factors.shape[1]
    projected = project(problem, scaling, lambda y: y @ factors, k, f"{name}: loadings")
    variance, ratio = variances(evals, total, n)
    return Fit(factors, projected, variance, ratio, scaling, parameters)


def projection_fn(
    scaling: Scaling, solve: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """Raw block -> ``[loadings * root_a | root_a | row means]``."""

    def fn(block: np.ndarray) -> np.ndarray:
        y, root_a, rows = scaling.apply(block)
        coef = solve(y)
        rows = np.zeros(len(y)) if rows is None else rows
        return np.column_stack([coef * root_a[:, None], root_a, rows])

    return fn


@overload
def project(
    problem: Problem,
    scaling: Scaling,
    solve: Callable[[np.ndarray], np.ndarray],
    k: int,
    desc: str,
    *,
    lazy: Literal[False],
) -> np.ndarray: ...


@overload
def project(
    problem: Problem,
    scaling: Scaling,
    solve: Callable[[np.ndarray], np.ndarray],
    k: int,
    desc: str,
    *,
    lazy: bool | None = None,
) -> np.ndarray | dsa.Array: ...


def project(
    problem: Problem,
    scaling: Scaling,
    solve: Callable[[np.ndarray], np.ndarray],
    k: int,
    desc: str,
    *,
    lazy: bool | None = None,
) -> np.ndarray | dsa.Array:
    """Loadings of every pixel: lazily for lazy input (unless ``lazy=False``),
    else in one pass over the blocks."""
    fn = projection_fn(scaling, solve)
    if problem.lazy if lazy is None else lazy:
        return lazy_projection(problem, fn, k + 2)
    return eager_projection(problem, fn, k + 2, desc)


def flip_signs(factors: np.ndarray) -> np.ndarray:
    """Deterministic signs: each factor's largest-magnitude element positive."""
    factors = np.array(factors, dtype="f8")
    if factors.size:
        idx = np.abs(factors).argmax(axis=0)
        signs = np.sign(factors[idx, np.arange(factors.shape[1])])
        signs[signs == 0] = 1
        factors *= signs
    return factors
