"""The result of a decomposition: labelled factors, loadings and variances;
and of a blind source separation of them (:class:`Separation`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import dask.array as dsa
import numpy as np
import xarray as xr

from ..dims import SIGNAL_DIMS_ATTR, encode_signal_dims
from ..plotting import plot_decomposition
from .bss import unmix


class Decomposition:
    """Factors, loadings and explained variance of a decomposition.

    ``data ~ (loadings * factors).sum("component") + mean * mean_weights``,
    where the mean term is present only when the data were centred.

    Attributes
    ----------
    factors : xarray.DataArray
        ``(component, *signal dims)`` with the input's signal coords; NaN at
        masked signal elements. Marked with the signal dims of the input.
    loadings : xarray.DataArray
        ``(component, *navigation dims)`` with the input's navigation
        coords; NaN at masked pixels. Lazy (dask) when the input was lazy
        and the algorithm's projection is linear (SVD, PCA).
    explained_variance, explained_variance_ratio : xarray.DataArray
        ``(component,)``; the ratio is relative to the total variance of the
        decomposed (scaled, centred) data, so it sums to at most 1.
    mean : xarray.DataArray or None
        The subtracted mean: ``(*signal dims)`` for ``centre="navigation"``
        and PCA, ``(*navigation dims)`` for ``centre="signal"``.
    mean_weights : xarray.DataArray or None
        The other side of the rank-one mean term when Poisson scaling was
        undone (``None`` means ones).
    algorithm : str
    parameters : dict
        Every option used, including the algorithm's defaults.

    Examples
    --------
    >>> import xsignal
    >>> from xsignal.testing import spectrum_image
    >>> data = spectrum_image((8, 8, 32), rank=2, noise=None).data
    >>> result = xsignal.decomposition(data, "SVD", 2)
    >>> result  # doctest: +NORMALIZE_WHITESPACE
    <Decomposition SVD: 2 components, factors (component: 2, energy: 32),
     loadings (component: 2, y: 8, x: 8)>
    >>> float(abs(result.model() - data).max()) < 1e-3
    True
    """

    def __init__(
        self,
        factors: xr.DataArray,
        loadings: xr.DataArray,
        explained_variance: xr.DataArray,
        explained_variance_ratio: xr.DataArray,
        *,
        mean: xr.DataArray | None = None,
        mean_weights: xr.DataArray | None = None,
        algorithm: str = "SVD",
        parameters: dict[str, Any] | None = None,
        lazy: bool | None = None,
    ) -> None:
        self.factors = factors
        self.loadings = loadings
        self.explained_variance = explained_variance
        self.explained_variance_ratio = explained_variance_ratio
        self.mean = mean
        self.mean_weights = mean_weights
        self.algorithm = algorithm
        self.parameters = dict(parameters or {})
        self.lazy = loadings.chunks is not None if lazy is None else bool(lazy)

    @property
    def n_components(self) -> int:
        return int(self.factors.sizes["component"])

    def __repr__(self) -> str:
        def sizes(da: xr.DataArray) -> str:
            return ", ".join(f"{d}: {n}" for d, n in da.sizes.items())

        return (
            f"<Decomposition {self.algorithm}: {self.n_components} components, "
            f"factors ({sizes(self.factors)}), loadings ({sizes(self.loadings)})>"
        )

    def _components(self, components: int | Sequence[int] | None) -> list[int]:
        k = self.n_components
        if components is None:
            return list(range(k))
        if isinstance(components, (int, np.integer)) and not isinstance(
            components, bool
        ):
            if not 1 <= components <= k:
                raise ValueError(
                    f"components={components} must be between 1 and the {k} "
                    "components of this decomposition"
                )
            return list(range(int(components)))
        # a bool, refused as a count above, fails here: it is not iterable
        chosen = [int(c) for c in cast(Sequence[int], components)]
        bad = [c for c in chosen if not 0 <= c < k]
        if bad:
            raise ValueError(f"component index {bad[0]} is out of range 0..{k - 1}")
        return chosen

    def model(self, components: int | Sequence[int] | None = None) -> xr.DataArray:
        """The reconstruction from some or all components, plus the mean.

        Parameters
        ----------
        components : int, list of int or None
            An int ``n`` uses the first ``n`` components, a list the
            components with those indices, ``None`` all of them.

        Returns
        -------
        xarray.DataArray
            ``(*navigation dims, *signal dims)``, lazy when the input was
            lazy (nothing is computed here), marked like the input.

        Examples
        --------
        >>> import xsignal
        >>> from xsignal.testing import spectrum_image
        >>> data = spectrum_image((8, 8, 32), rank=2, noise=None).data
        >>> result = xsignal.decomposition(data, "SVD", 2, centre="navigation")
        >>> float(abs(result.model() - data).max()) < 1e-3
        True
        >>> result.model(1).dims
        ('y', 'x', 'energy')
        """
        chosen = self._components(components)
        loadings = self.loadings.isel(component=chosen)
        if self.lazy and loadings.chunks is None:
            loadings = loadings.chunk(self.parameters.get("_chunks") or {})
        factors = self.factors.isel(component=chosen)
        nav = [d for d in self.loadings.dims if d != "component"]
        sig = [d for d in self.factors.dims if d != "component"]
        loadings = loadings.transpose(*nav, "component")
        factors = factors.transpose("component", *sig)
        if loadings.chunks is not None:
            # one matrix product per navigation block, signals whole (xr.dot
            # lets dask's einsum split both sides into thousands of tasks)
            left = loadings.data.rechunk({len(nav): -1})
            product = dsa.tensordot(left, factors.values, axes=1)
        else:
            product = np.tensordot(loadings.values, factors.values, axes=1)
        coords = {**loadings.drop_vars("component", errors="ignore").coords}
        coords.update(factors.drop_vars("component", errors="ignore").coords)
        out = xr.DataArray(product, dims=(*nav, *sig), coords=coords)
        if self.mean is not None:
            term = self.mean
            if self.mean_weights is not None:
                term = term * self.mean_weights
            out = out + term
        out = out.transpose(*nav, *sig)
        out.attrs = {SIGNAL_DIMS_ATTR: encode_signal_dims(sig)}
        out.name = "model"
        return out

    def to_dataset(self) -> xr.Dataset:
        """Everything in one Dataset, saveable with netCDF/HDF5 writers.

        Examples
        --------
        >>> import xsignal
        >>> from xsignal.testing import spectrum_image
        >>> data = spectrum_image((8, 8, 32), rank=2).data
        >>> ds = xsignal.decomposition(data, "SVD", 2).to_dataset()
        >>> sorted(ds.data_vars)
        ['explained_variance', 'explained_variance_ratio', 'factors', 'loadings']
        >>> xsignal.Decomposition.from_dataset(ds).algorithm
        'SVD'
        """
        variables = {
            "factors": self.factors,
            "loadings": self.loadings,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
        }
        if self.mean is not None:
            variables["mean"] = self.mean
        if self.mean_weights is not None:
            variables["mean_weights"] = self.mean_weights
        cleaned = {}
        for name, var in variables.items():
            var = var.copy(deep=False)
            # each variable keeps its own marking; attrs must be netCDF-safe
            var.attrs = {k: v for k, v in var.attrs.items() if isinstance(v, str)}
            cleaned[name] = var
        params = {k: v for k, v in self.parameters.items() if not k.startswith("_")}
        return xr.Dataset(
            cleaned,
            attrs={
                "algorithm": self.algorithm,
                "parameters": json.dumps(params, default=repr),
                "lazy": int(self.lazy),
            },
        )

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Decomposition:
        """Rebuild a result written by :meth:`to_dataset` (e.g. after a round
        trip through a netCDF file)."""
        missing = [
            v
            for v in ("factors", "loadings", "explained_variance")
            if v not in ds.data_vars
        ]
        if missing:
            raise ValueError(f"not a decomposition dataset: no variable {missing[0]!r}")
        params = json.loads(ds.attrs.get("parameters", "{}"))
        return cls(
            ds["factors"],
            ds["loadings"],
            ds["explained_variance"],
            ds["explained_variance_ratio"],
            mean=ds.get("mean"),
            mean_weights=ds.get("mean_weights"),
            algorithm=str(ds.attrs.get("algorithm", "unknown")),
            parameters=params,
            lazy=bool(ds.attrs.get("lazy", False)),
        )

    def blind_source_separation(
        self,
        n_components: int | None = None,
        *,
        algorithm: Any = "FastICA",
        on: str = "factors",
        random_state: Any = 0,
        **kwargs: Any,
    ) -> Separation:
        """Call :func:`xsignal.blind_source_separation` on this result."""
        return blind_source_separation(
            self,
            n_components,
            algorithm=algorithm,
            on=on,
            random_state=random_state,
            **kwargs,
        )

    def plot(self, components: int | Sequence[int] | None = None, **kwargs: Any) -> Any:
        """Call :func:`xsignal.plot_decomposition` on this result."""
        return plot_decomposition(self, components, **kwargs)

    def plot_explained_variance_ratio(
        self, *, log: bool = True, ax: Any = None, **kwargs: Any
    ) -> Any:
        """Scree plot: explained variance ratio against component index.

        Needs matplotlib (an optional dependency). Returns the Axes.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import xsignal
        >>> from xsignal.testing import spectrum_image
        >>> data = spectrum_image((8, 8, 32), rank=2).data
        >>> ax = xsignal.decomposition(data, "SVD", 5).plot_explained_variance_ratio()
        >>> ax.get_ylabel()
        'explained variance ratio'
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError(
                "plot_explained_variance_ratio needs matplotlib: pip install matplotlib"
            ) from err
        if ax is None:
            _, ax = plt.subplots()
        ratio = np.asarray(self.explained_variance_ratio.values, float)
        kwargs.setdefault("marker", "o")
        kwargs.setdefault("linestyle", "none")
        ax.plot(np.arange(len(ratio)), ratio, **kwargs)
        if log and (ratio > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("component")
        ax.set_ylabel("explained variance ratio")
        ax.set_title(f"{self.algorithm} scree plot")
        return ax


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
    unmixing, mixing, name = unmix(
        samples,
        n,
        algorithm=algorithm,
        random_state=random_state,
        what=on,
        **kwargs,
    )

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
