"""Keenan and Kotula's Poisson noise scaling, and centring, from one pass.

For Poisson counts the variance of each value is its mean, which a rank-k
model approximates by ``a_i b_j`` with ``a`` the mean image (each pixel's
mean over the signal) and ``b`` the mean spectrum. Dividing the data by
``sqrt(a_i b_j)`` makes the noise nearly homoscedastic, so the leading
components are signal, not noise (M. R. Keenan and P. G. Kotula, Surf.
Interface Anal. 36 (2004) 203). ``a`` is local to each pixel; ``b`` comes
from the statistics pass. Results are scaled back: factors times
``sqrt(b)``, loadings times ``sqrt(a)``.
"""

from __future__ import annotations

import numpy as np

from .streaming import Problem, Scaling, Statistics, statistics_pass


def scaling_from_statistics(
    stats: Statistics,
    *,
    poisson: bool,
    centre: str | None,
    dtype: np.dtype | str = "float64",
) -> Scaling:
    """The :class:`Scaling` of the decomposed matrix from a statistics pass."""
    root_b = np.sqrt(np.maximum(stats.col_sums / stats.n, 0)) if poisson else None
    scaling = Scaling(
        poisson=poisson,
        root_b=root_b,
        centre_signal=centre == "signal",
        dtype=np.dtype(dtype),
    )
    if centre == "navigation":
        mu = stats.weighted_sums / stats.n
        if poisson:
            wb = scaling.wb
            assert wb is not None  # root_b is set when poisson
            mu = mu * wb
        scaling.mu = mu
    return scaling


def scaling_pass(
    problem: Problem,
    *,
    poisson: bool,
    centre: str | None,
    nonnegative: str | None = None,
    desc: str = "decomposition",
) -> Scaling:
    """The :class:`Scaling` of ``problem``, reading the data only if it must.

    ``desc`` names the algorithm on the progress bar.

    Poisson weights and the navigation mean need a statistics pass (which
    also checks for NaN, and for negative values when ``nonnegative`` names
    the option that forbids them); signal centring and no scaling do not.
    """
    if not (poisson or centre == "navigation"):
        return Scaling(centre_signal=centre == "signal")
    stats = statistics_pass(
        problem,
        poisson=poisson,
        nonnegative=nonnegative,
        desc=f"{desc}: statistics pass",
    )
    return scaling_from_statistics(stats, poisson=poisson, centre=centre)


def covariance(stats: Statistics, scaling: Scaling) -> np.ndarray:
    """``Y^T Y`` of the decomposed matrix from the Gram of the weighted data.

    ``Z = Xw diag(wb)``; navigation centring subtracts ``n mu mu^T``; signal
    centring (``Y = Z - r 1^T`` with ``r`` the row means of ``Z``) expands
    into terms of the same Gram matrix.
    """
    g = stats.gram
    assert g is not None  # statistics with their Gram matrix
    if scaling.poisson:
        wb = scaling.wb
        assert wb is not None  # root_b is set when poisson
    else:
        wb = np.ones(len(g))
    zz: np.ndarray = g * np.outer(wb, wb)
    if scaling.mu is not None:
        zz -= stats.n * np.outer(scaling.mu, scaling.mu)
    if scaling.centre_signal:
        m = len(g)
        zr = zz.sum(axis=1) / m  # Z^T r
        rr = zz.sum() / m**2  # r^T r
        zz = zz - zr[:, None] - zr[None, :] + rr
    return zz
