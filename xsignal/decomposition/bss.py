"""Blind source separation of a decomposition's components.

A decomposition gives ``data ~ L F^T`` with ``n`` loadings ``L`` and factors
``F``, which are orthogonal mixtures of the physical sources. Independent
component analysis finds an unmixing matrix ``W`` (``n x n``) that makes
the components of one side statistically independent: on the factors,
``F' = F W^T``; the other side takes the inverse, the mixing matrix
``A = W^-1``: ``L' = L A``. The model is unchanged
(``L' F'^T = L A W F^T = L F^T``). Each separated component is scaled so
that its largest value is +1 on the side that was separated (peaks point
up, as in spectra), the other side taking the inverse scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_ALGORITHMS = ("FastICA",)


def _estimator(
    algorithm: Any, n: int, random_state: Any, kwargs: dict[str, Any]
) -> Any:
    """A scikit-learn estimator with ``fit``, ``components_`` and ``mixing_``."""
    if not isinstance(algorithm, str):
        return algorithm  # an estimator object, configured by the caller
    if algorithm.lower() != "fastica":
        raise ValueError(
            f"unknown algorithm {algorithm!r}: choose one of {_ALGORITHMS} or "
            "pass a scikit-learn estimator with components_ and mixing_"
        )
    from sklearn.decomposition import FastICA

    options = {"whiten": "unit-variance", "max_iter": 1000, "tol": 1e-6}
    options.update(kwargs)
    return FastICA(n_components=n, random_state=random_state, **options)


def unmix(
    samples: np.ndarray,
    n: int,
    *,
    algorithm: Any = "FastICA",
    random_state: Any = 0,
    what: str = "factors",
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(unmixing, mixing, estimator name)`` for ``samples`` of ``n``
    mixed components, shaped (samples, n) with NaN rows (masked samples)
    left out of the fit. Each separated component is scaled so that its
    largest value is +1; ``what`` names the side in errors.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sources = np.stack([np.sign(np.sin(np.arange(500) / 7)),
    ...                     rng.laplace(size=500)], axis=1)
    >>> mixed = sources @ np.array([[1.0, 0.5], [0.3, 1.0]])
    >>> w, a, name = unmix(mixed, 2)
    >>> name, bool(np.allclose(w @ a, np.eye(2)))
    ('FastICA', True)
    """
    finite = np.isfinite(samples).all(axis=1)
    if finite.sum() <= n:
        raise ValueError(
            f"blind source separation on the {what} needs more than {n} "
            f"unmasked samples, there are {int(finite.sum())}"
        )
    estimator = _estimator(algorithm, n, random_state, kwargs)
    estimator.fit(samples[finite])
    unmixing = np.asarray(estimator.components_, dtype=float)
    mixing = np.linalg.pinv(unmixing)
    # scale each component so that its largest value is +1 on this side
    separated = samples[finite] @ unmixing.T
    peak = separated[np.abs(separated).argmax(axis=0), np.arange(n)]
    peak[peak == 0] = 1.0
    return unmixing / peak[:, None], mixing * peak[None, :], type(estimator).__name__
