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
import xarray as xr

from .result import Decomposition

_ALGORITHMS = ("FastICA",)


class Separation(Decomposition):
    """The result of :func:`blind_source_separation`: a
    :class:`~xsignal.Decomposition` of the same model (``model()``,
    ``plot()``, ``to_dataset()`` work the same) with independent components.

    Attributes
    ----------
    factors, loadings : xarray.DataArray
        As for a decomposition; the loadings are lazy when the
        decomposition's were.
    mixing : xarray.DataArray
        ``(decomposition_component, component)``: decomposition component
        ``i`` of the separated side is ``sum_j mixing[i, j] * new_j``.
    unmixing : xarray.DataArray
        ``(component, decomposition_component)``, the inverse of ``mixing``.
    on : {"factors", "loadings"}
        The side that was made independent.
    explained_variance, explained_variance_ratio : xarray.DataArray
        NaN: independent components are not ordered by variance.
    """

    mixing: xr.DataArray
    unmixing: xr.DataArray
    on: str

    def __repr__(self) -> str:
        return super().__repr__().replace("<Decomposition", "<Separation", 1)


def _estimator(algorithm: Any, n: int, random_state: Any, kwargs: dict) -> Any:
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


def blind_source_separation(
    dec: Decomposition,
    n_components: int | None = None,
    *,
    algorithm: Any = "FastICA",
    on: str = "factors",
    random_state: Any = 0,
    **kwargs: Any,
) -> Separation:
    """Unmix the first ``n_components`` of a decomposition into independent
    components (scikit-learn's FastICA).

    Parameters
    ----------
    dec : Decomposition
        The result of :func:`xsignal.decomposition` (SVD or PCA: their
        components are mixtures; choose ``n_components`` from the scree
        plot).
    n_components : int, optional
        How many of the decomposition's first components to unmix (default
        all).
    algorithm : "FastICA" or a scikit-learn estimator
        An estimator object needs ``fit(X)``, ``components_`` (unmixing) and
        ``mixing_`` after fitting, with ``X`` shaped (samples, components).
    on : {"factors", "loadings"}
        The side to make independent (HyperSpy's ``on_loadings=False`` is
        "factors"): "factors" for sources that are spectra (samples are the
        signal elements), "loadings" for sources that are maps (samples are
        the pixels; lazy loadings are computed for the fit, n numbers per
        pixel).
    random_state : int, optional
        Seed of FastICA's starting point, for repeatable results.
    **kwargs
        Passed to ``FastICA`` (``max_iter``, ``tol``, ``fun``...).

    Returns
    -------
    Separation
        ``.factors``, ``.loadings``, ``.mixing``, ``.unmixing``, ``.model()``,
        ``.plot()``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> e = np.linspace(0, 1, 200)
    >>> sources = np.stack([np.exp(-((e - c) / 0.03) ** 2) for c in (0.3, 0.6)])
    >>> maps = np.random.default_rng(0).random((2, 10, 10))
    >>> data = xr.DataArray(np.einsum("kyx,ke->yxe", maps, sources),
    ...                     dims=("y", "x", "energy"))
    >>> dec = xsignal.decomposition(data, "SVD", 2)
    >>> bss = dec.blind_source_separation(2)
    >>> peaks = sorted(float(e[i]) for i in bss.factors.argmax("energy").values)
    >>> [round(p, 2) for p in peaks]
    [0.3, 0.6]
    >>> bool(abs(bss.model() - dec.model()).max() < 1e-9)
    True
    """
    if on not in ("factors", "loadings"):
        raise ValueError(f"on must be 'factors' or 'loadings', not {on!r}")
    chosen = dec._components(n_components)
    n = len(chosen)
    factors = dec.factors.isel(component=chosen)
    loadings = dec.loadings.isel(component=chosen)
    side, other = (factors, loadings) if on == "factors" else (loadings, factors)

    samples = np.asarray(side.values, dtype=float).reshape(n, -1).T
    finite = np.isfinite(samples).all(axis=1)  # masked elements are NaN
    if finite.sum() <= n:
        raise ValueError(
            f"blind source separation on the {on} needs more than {n} "
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
    unmixing = unmixing / peak[:, None]
    mixing = mixing * peak[None, :]

    old = "decomposition_component"
    w = xr.DataArray(unmixing, dims=("component", old))
    a = xr.DataArray(mixing, dims=(old, "component"))
    new_side = xr.dot(w, side.rename(component=old), dim=old)
    new_other = xr.dot(a, other.rename(component=old), dim=old)
    new_side = new_side.transpose("component", *side.dims[1:])
    new_other = new_other.transpose("component", *other.dims[1:])
    for new, like in ((new_side, side), (new_other, other)):
        new.attrs = dict(like.attrs)
        new.name = like.name
    new_factors, new_loadings = (
        (new_side, new_other) if on == "factors" else (new_other, new_side)
    )
    index = np.arange(n)
    new_factors = new_factors.assign_coords(component=index)
    new_loadings = new_loadings.assign_coords(component=index)
    nan = xr.DataArray(
        np.full(n, np.nan), dims="component", coords={"component": index}
    )
    name = type(estimator).__name__
    result = Separation(
        new_factors,
        new_loadings,
        nan,
        nan.copy(),
        mean=dec.mean,
        mean_weights=dec.mean_weights,
        algorithm=f"{name} on the {on} of {dec.algorithm}",
        parameters={
            **dec.parameters,
            "bss_algorithm": name,
            "bss_on": on,
            "bss_components": chosen,
            "bss_random_state": random_state,
        },
        lazy=dec.lazy,
    )
    result.mixing = a.assign_coords(component=index)
    result.unmixing = w.assign_coords(component=index)
    result.on = on
    return result
