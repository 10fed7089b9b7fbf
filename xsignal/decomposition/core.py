"""``xsignal.decomposition``: validation, masks, dispatch, labelled result."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import engine
from ..dims import (
    SIGNAL_DIMS_ATTR,
    encode_signal_dims,
    navigation_dims,
    navigation_size,
    signal_dims,
)
from ..lazy import is_lazy, validate_masks
from . import ornmf, orpca, pca, svd
from .fit import Fit
from .result import Decomposition
from .streaming import Problem

ALGORITHMS: dict[str, Callable[..., Fit]] = {
    "SVD": svd.fit,
    "PCA": pca.fit,
    "ORPCA": orpca.fit,
    "ORNMF": ornmf.fit,
}
CENTRES = (None, "navigation", "signal")


def decomposition(
    da: xr.DataArray,
    algorithm: str = "SVD",
    output_dimension: int | None = None,
    *,
    navigation_mask: Any = None,
    signal_mask: Any = None,
    normalize_poissonian_noise: bool = False,
    centre: str | None = None,
    progress: bool | None = None,
    **algorithm_kwargs: Any,
) -> Decomposition:
    """Decompose the unfolded (pixels x signal) matrix of ``da``.

    Every pass is a dask graph over the navigation blocks: each block's
    partial result is computed where the block is read (on a
    ``dask.distributed`` cluster, on the worker) and merged in a tree, so
    lazy data larger than memory work and only small results reach this
    process. Passes over the data: SVD and PCA one (exact; PCA one more
    with Poisson scaling) or three to six (randomized), plus the lazy
    loadings (a pass of their own for in-memory data); ORPCA and ORNMF a
    learning and a projection pass, plus a statistics pass with Poisson
    scaling or navigation centring.

    Parameters
    ----------
    da : xarray.DataArray
        Float data; the signal dims (see :func:`xsignal.signal_dims`) are the
        features, the navigation dims the samples.
    algorithm : {"SVD", "PCA", "ORPCA", "ORNMF"}
        ``"SVD"``: exact from the Gram matrix, or by randomized subspace
        iteration for a few components of big data (options
        ``svd_solver``, ``n_power_iter``, ``tol``, ``seed``; see
        :mod:`xsignal.decomposition.svd`). ``"PCA"``: exact, from merged
        per-block scatter matrices (``solver="covariance"``), randomized
        where the SVD would be (``solver="randomized"``), or incremental
        (``solver="incremental"``, Ross et al. 2008 as scikit-learn's
        ``IncrementalPCA``, over batches of ``batch_size``; ``"sklearn"``
        runs scikit-learn's ``IncrementalPCA.partial_fit`` itself).
        ``"ORPCA"``: online
        robust PCA (Feng, Xu and Yan 2013; options ``lambda1``, ``lambda2``,
        ``method``, ``init``, ``training_samples``, ``batch_size``,
        ``learning_rate``, ``momentum``, ``n_iter``, ``seed``, documented in
        ``xsignal/decomposition/orpca.py``). ``"ORNMF"``: online robust NMF
        (Zhao and Tan 2016; options ``lambda1``, ``kappa``, ``method``,
        ``training_samples``, ``batch_size``, ``learning_rate``,
        ``momentum``, ``n_iter``, ``sweeps``, ``seed``, documented in
        ``xsignal/decomposition/ornmf.py``).
    output_dimension : int, optional
        Number of components. ``None``: all of them for SVD and PCA (with at
        most 4096 signal elements for SVD); required for ORPCA and ORNMF.
    navigation_mask, signal_mask : bool DataArray or numpy array, optional
        ``True`` marks pixels (signal elements) to leave out: their loadings
        (factors) are NaN. DataArrays are aligned by dim name, numpy arrays
        must be in the array's dim order.
    normalize_poissonian_noise : bool
        Keenan and Kotula scaling before decomposing (see
        :mod:`xsignal.decomposition.poisson`), undone on the results.
    centre : {None, "navigation", "signal"}
        Subtract the mean signal (``"navigation"``) or each signal's mean
        (``"signal"``) first; the mean is kept in ``result.mean`` and added
        back by ``result.model()``. PCA always centres the navigation mean.
    progress : bool, optional
        Progress bars over the passes (``None``: :func:`xsignal.set_options`).
    **algorithm_kwargs
        Options of the algorithm (above).

    Returns
    -------
    xsignal.Decomposition

    Raises
    ------
    TypeError
        For non-float data, or an option the algorithm does not have.
    ValueError
        For fewer than two pixels, a bad ``output_dimension``, algorithm,
        ``centre`` or mask, a mask that masks everything; during the first
        pass, for NaN/inf in unmasked data, or negative data with
        ``normalize_poissonian_noise`` or ORNMF.

    Examples
    --------
    >>> import xsignal
    >>> from xsignal.testing import spectrum_image
    >>> data, factors, loadings = spectrum_image((16, 16, 64), rank=3)
    >>> result = data.signal.decomposition("SVD", 3, normalize_poissonian_noise=True)
    >>> result.factors.dims, result.loadings.dims
    (('component', 'energy'), ('component', 'y', 'x'))
    >>> bool(result.explained_variance_ratio.sum() > 0.9)
    True
    """
    name = _algorithm_name(algorithm)
    problem = _problem(da, navigation_mask, signal_mask, progress)
    fit_fn = ALGORITHMS[name]
    _check_options(name, fit_fn, algorithm_kwargs)
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, not {centre!r}")
    if not isinstance(normalize_poissonian_noise, (bool, np.bool_)):
        raise TypeError(
            "normalize_poissonian_noise must be True or False, not "
            f"{normalize_poissonian_noise!r}"
        )
    k = _output_dimension(name, output_dimension, problem)
    with engine.one_bar(problem.progress, name):  # one bar for all its passes
        fit = fit_fn(
            problem,
            k,
            poisson=bool(normalize_poissonian_noise),
            centre=centre,
            **algorithm_kwargs,
        )
    if name == "PCA":
        centre = "navigation"
    parameters = {
        "algorithm": name,
        "output_dimension": k,
        "normalize_poissonian_noise": bool(normalize_poissonian_noise),
        "centre": centre,
        "navigation_mask": problem.nav_mask is not None,
        "signal_mask": problem.sig_mask is not None,
        **fit.parameters,
    }
    if problem.lazy:
        parameters["_chunks"] = {
            d: da.chunksizes[d] for d in problem.nav_dims if d in da.chunksizes
        }
    return _assemble(problem, fit, k, centre, name, parameters)


def _algorithm_name(algorithm: Any) -> str:
    if isinstance(algorithm, str) and algorithm.upper() in ALGORITHMS:
        return algorithm.upper()
    raise ValueError(
        f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
    )


def _check_options(
    name: str, fit_fn: Callable[..., Fit], options: dict[str, Any]
) -> None:
    params = inspect.signature(fit_fn).parameters
    known = [p for p in params if params[p].kind == inspect.Parameter.KEYWORD_ONLY]
    known = [p for p in known if p not in ("poisson", "centre")]
    for key in options:
        if key not in known:
            raise TypeError(
                f"{name} has no option {key!r}; its options are {', '.join(known)}"
            )


def _problem(
    da: Any, navigation_mask: Any, signal_mask: Any, progress: bool | None
) -> Problem:
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    kind = da.dtype.kind
    if kind in "iub":
        raise TypeError(
            f"decomposition needs float data, not {da.dtype}; convert first, "
            "e.g. xsignal.change_dtype(da, 'float32')"
        )
    if kind != "f":
        raise TypeError(f"decomposition needs real float data, not {da.dtype}")
    nav, sig = navigation_dims(da), signal_dims(da)
    if not sig:
        raise ValueError("the array has no signal dims; mark them with set_signal_dims")
    if navigation_size(da) < 2:
        raise ValueError(
            f"decomposition needs at least 2 navigation pixels; this array has "
            f"{navigation_size(da)} (navigation dims {nav})"
        )
    nav_mask, sig_mask = validate_masks(da, navigation_mask, signal_mask)
    problem = Problem(
        data=da.transpose(*nav, *sig),
        nav_dims=nav,
        sig_dims=sig,
        nav_mask=nav_mask if nav_mask is not None and nav_mask.any() else None,
        sig_mask=sig_mask if sig_mask is not None and sig_mask.any() else None,
        progress=progress,
    )
    if problem.n_pixels == 0:
        raise ValueError("navigation_mask masks every pixel: nothing to decompose")
    if problem.n_pixels < 2:
        raise ValueError(
            "navigation_mask leaves fewer than 2 pixels: decomposition needs at least 2"
        )
    if problem.n_features == 0:
        raise ValueError("signal_mask masks every signal element: nothing to decompose")
    return problem


def _output_dimension(name: str, k: Any, problem: Problem) -> int:
    most = min(problem.n_pixels, problem.n_features)
    if k is None:
        if name in ("ORPCA", "ORNMF"):
            raise ValueError(
                f"{name} needs output_dimension (the number of components)"
            )
        if name == "SVD" and problem.n_features > svd.GRAM_LIMIT:
            raise ValueError(
                f"the signal has {problem.n_features} elements (> "
                f"{svd.GRAM_LIMIT}): pass output_dimension, the number of components"
            )
        return most
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"output_dimension must be a positive int, not {k!r}")
    if k > most:
        raise ValueError(
            f"output_dimension={k} is larger than possible: at most {most} "
            f"({problem.n_pixels} pixels, {problem.n_features} signal elements "
            "decomposed)"
        )
    return int(k)


def _coords(da: xr.DataArray, dims: tuple[Hashable, ...]) -> dict[Hashable, Any]:
    return {
        name: c
        for name, c in da.coords.items()
        if c.dims and set(c.dims) <= set(dims) and name not in ("component",)
    }


def _signal_array(problem: Problem, values: np.ndarray) -> np.ndarray:
    """``(..., features)`` -> ``(..., *signal shape)`` with NaN at masked."""
    full = np.full((*values.shape[:-1], problem.n_sig), np.nan)
    full[..., problem.keep_signal] = values
    return full.reshape((*values.shape[:-1], *problem.sig_shape))


def _assemble(
    problem: Problem,
    fit: Fit,
    k: int,
    centre: str | None,
    name: str,
    parameters: dict[str, Any],
) -> Decomposition:
    data, nav, sig = problem.data, problem.nav_dims, problem.sig_dims
    scaling = fit.scaling
    root_b = scaling.root_b if scaling.poisson else None
    factors = fit.factors if root_b is None else fit.factors * root_b[:, None]
    component = {"component": np.arange(k)}
    factors_da = xr.DataArray(
        _signal_array(problem, factors.T),
        dims=("component", *sig),
        coords={**_coords(data, sig), **component},
        name="factors",
        attrs={SIGNAL_DIMS_ATTR: encode_signal_dims(sig)},
    )
    projected = fit.projected
    if not isinstance(projected, dsa.Array):
        projected = projected.reshape((*problem.nav_shape, k + 2))
    columns = xr.DataArray(projected, dims=(*nav, "_column"), coords=_coords(data, nav))
    loadings = columns.isel(_column=slice(0, k)).rename(_column="component")
    loadings = loadings.transpose("component", *nav).assign_coords(component)
    loadings.name = "loadings"
    loadings.attrs = {SIGNAL_DIMS_ATTR: encode_signal_dims(nav)}
    root_a = columns.isel(_column=k, drop=True)
    mean = mean_weights = None
    if centre == "navigation":
        assert scaling.mu is not None  # set when centring the navigation mean
        mu = scaling.mu if root_b is None else scaling.mu * root_b
        mean = xr.DataArray(
            _signal_array(problem, mu), dims=sig, coords=_coords(data, sig)
        )
        mean_weights = root_a if scaling.poisson else None
    elif centre == "signal":
        mean = columns.isel(_column=k + 1, drop=True) * root_a
        if root_b is not None:
            mean_weights = xr.DataArray(
                _signal_array(problem, root_b), dims=sig, coords=_coords(data, sig)
            )
    if mean is not None:
        mean.name = "mean"
    if mean_weights is not None:
        mean_weights.name = "mean_weights"

    def per_component(values: np.ndarray, label: str) -> xr.DataArray:
        return xr.DataArray(
            np.asarray(values, float), dims="component", coords=component, name=label
        )

    return Decomposition(
        factors_da,
        loadings,
        per_component(fit.explained_variance, "explained_variance"),
        per_component(fit.explained_variance_ratio, "explained_variance_ratio"),
        mean=mean,
        mean_weights=mean_weights,
        algorithm=name,
        parameters=parameters,
        lazy=is_lazy(problem.data),
    )
