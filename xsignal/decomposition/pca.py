"""PCA with scikit-learn's IncrementalPCA, streamed over blocks in batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from .fit import Fit, flip_signs, project
from .online import blas_one_thread
from .poisson import scaling_pass
from .streaming import Problem, Scaling, check_block

DEFAULT_BATCH = 64


def fit(
    problem: Problem,
    k: int,
    *,
    poisson: bool,
    centre: str | None,
    batch_size: int | None = None,
) -> Fit:
    """Centred PCA; see :func:`xsignal.decomposition`.

    Blocks are merged or cut into batches of ``batch_size`` rows (at least
    ``output_dimension``; default 64 or twice ``output_dimension``), so any
    chunking works, down to one pixel per chunk. Short batches make
    ``partial_fit`` fast: each costs a thin SVD of ``(batch + k) x features``.

    Options
    -------
    batch_size : int, optional
        Pixels per ``partial_fit`` call.
    """
    from sklearn.decomposition import IncrementalPCA

    if centre == "signal":
        raise ValueError(
            "PCA always centres the navigation mean; centre='signal' is "
            "available for SVD, ORPCA"
        )
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    size = max(k, batch_size or max(DEFAULT_BATCH, 2 * k))
    scaling = scaling_pass(
        problem, poisson=poisson, centre=None, nonnegative="normalize_poissonian_noise"
    )
    ipca = IncrementalPCA(n_components=k)
    with blas_one_thread():  # small SVDs: contended BLAS threads slow them
        _stream(problem, scaling, ipca, size)
    factors = flip_signs(ipca.components_.T)
    scaling.mu = ipca.mean_
    projected = project(problem, scaling, lambda y: y @ factors, k, "PCA loadings")
    return Fit(
        factors=factors,
        projected=projected,
        explained_variance=np.asarray(ipca.explained_variance_),
        explained_variance_ratio=np.asarray(ipca.explained_variance_ratio_),
        scaling=scaling,
        parameters={"batch_size": size},
    )


def _stream(problem: Problem, scaling: Scaling, ipca: Any, size: int) -> None:
    """``partial_fit`` over batches of ``size`` rows (the last up to 2 x size)."""
    pending: list[np.ndarray] = []
    count = 0
    for _, block in problem.iter_blocks("PCA"):
        check_block(block)
        pending.append(scaling.apply(block)[0])
        count += len(pending[-1])
        if count >= 2 * size:  # keep >= size rows back for the last batch
            rows = np.concatenate(pending)
            stop = (len(rows) // size - 1) * size
            for start in range(0, stop, size):
                ipca.partial_fit(rows[start : start + size])
            pending, count = [rows[stop:]], len(rows) - stop
    if count:
        ipca.partial_fit(np.concatenate(pending))
