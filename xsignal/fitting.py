"""Model fitting on every pixel, lazily and vectorized: HyperSpy's
``create_model`` and ``multifit`` without its per-pixel loop.

A :class:`Model` is a sum of components (:mod:`xsignal.components`) over
the signal dim. :meth:`Model.fit` builds one dask graph: each block of
spectra is fitted at once by :mod:`xsignal.fit_solvers`, so the fit runs
where the data is read, on the user's scheduler, and reads each block
once.

- ``"linear"``: every free parameter is linear (areas, polynomial
  coefficients, offsets), the others fixed: one least-squares solve per
  block, shared by all its pixels when the fixed parameters are the same
  everywhere and the fit is unweighted (then a matrix product per block).
- ``"lm"``: Levenberg-Marquardt for all pixels of a block at once, from
  each component's estimate or the values given.
- ``"trf"``: the same, each step projected on the bounds (``bmin``,
  ``bmax``). (scipy's trust-region reflective method is not used; the
  projected steps honour the bounds the same way.)
- ``"auto"``: ``"linear"`` when it can, else ``"trf"`` when a free
  non-linear parameter has bounds, else ``"lm"``.

Standard errors are the square roots of the covariance's diagonal, the
inverse of ``J^T W J`` at the solution: with ``variance`` given (or
``"poisson"``) the weights are its inverse and the errors are the model's
own; unweighted, the covariance is scaled by the reduced chi-square (the
noise estimated from the residual), as scipy's ``curve_fit`` does.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import components as _components
from . import engine
from .chunks import whole
from .components import Component
from .dims import coordinate_values, navigation_dims, signal_dims, with_marking
from .fit_solvers import (
    Pieces,
    covariance,
    levenberg_marquardt,
    linear,
    shared_linear,
)
from .reductions import _check_one_dim

__all__ = ["FitResult", "Model", "create_model"]

METHODS = ("auto", "linear", "lm", "trf")
Values = dict[str, np.ndarray]


class Model:
    """A sum of components over the signal dim of ``da`` (see the module
    doc); made by :func:`create_model`.

    Attributes
    ----------
    components : list of Component
        Named uniquely: a repeated name gets ``_2``, ``_3``... in order.
    signal_range : (float, float) or None
        The part of the coordinate fitted (coordinate units, both ends in).
    """

    def __init__(
        self,
        da: xr.DataArray,
        components: Sequence[Component],
        signal_range: tuple[float, float] | None = None,
        dim: Hashable | None = None,
    ) -> None:
        self.da = da
        self.dim = _check_one_dim(da, dim)
        if isinstance(components, Component):
            components = [components]
        if not components or not all(isinstance(c, Component) for c in components):
            raise TypeError("components must be a list of xsignal.components objects")
        self.components = list(components)
        seen: dict[str, int] = {}
        for comp in self.components:
            base = comp.name.split("_")[0] if comp.name in seen else comp.name
            seen[base] = seen.get(base, 0) + 1
            if seen[base] > 1:
                comp.name = f"{base}_{seen[base]}"
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must differ, not {names}")
        self.signal_range = signal_range
        x = coordinate_values(da, self.dim)
        keep = np.ones(x.size, dtype=bool)
        if signal_range is not None:
            lo, hi = sorted(float(v) for v in signal_range)
            keep = (x >= lo) & (x <= hi)
            if keep.sum() < 2:
                raise ValueError(
                    f"signal_range {signal_range!r} holds fewer than 2 channels of "
                    f"{self.dim!r}"
                )
        self.channels = np.nonzero(keep)[0]

    def __repr__(self) -> str:
        parts = ", ".join(repr(c) for c in self.components)
        return f"<Model of {self.dim!r}: {parts}>"

    @property
    def keys(self) -> list[str]:
        """``"<component>.<parameter>"`` for every parameter, in order."""
        return [f"{c.name}.{p.name}" for c in self.components for p in c.parameters]

    def fit(
        self,
        method: str = "auto",
        initial: dict[str, Any] | None = None,
        variance: xr.DataArray | str | None = None,
        progress: bool | None = None,
        max_iterations: int = 100,
    ) -> FitResult:
        """Fit every pixel (lazily when the data is lazy): see the module
        doc for the methods, starts and errors.

        Parameters
        ----------
        method : {"auto", "linear", "lm", "trf"}
        initial : dict, optional
            Keyed like ``fit.parameters`` (``"Gaussian.centre"``): a number
            or a DataArray over navigation dims, the start of that
            parameter (its value when fixed).
        variance : DataArray or "poisson", optional
            The data's noise variance (like the data), or ``"poisson"``
            (the data itself, at least 1): a weighted fit.
        progress : bool, optional
            Unused until the result is computed (kept for the API).
        max_iterations : int
            For ``"lm"``/``"trf"``; a pixel still improving then is marked
            not converged.

        Returns
        -------
        FitResult
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        plan = _Plan(self, method, initial or {})
        plan.max_iterations = int(max_iterations)
        return _run(self, plan, variance)


def create_model(
    da: xr.DataArray,
    components: Sequence[Component],
    signal_range: tuple[float, float] | None = None,
    dim: Hashable | None = None,
) -> Model:
    """A model of ``da``'s signal dim as a sum of ``components``
    (HyperSpy's ``create_model``); fit it with :meth:`Model.fit`.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> from xsignal.components import Gaussian, Offset
    >>> e = np.linspace(0, 10, 101)
    >>> truth = 5 * np.exp(-0.5 * ((e - 4.0) / 0.8) ** 2) / (0.8 * np.sqrt(2 * np.pi))
    >>> da = xr.DataArray(np.stack([truth + 1.0, 2 * truth + 0.5]), dims=("x", "e"),
    ...                   coords={"e": e})
    >>> fit = xsignal.create_model(da, [Gaussian(), Offset()]).fit()
    >>> fit.parameters["Gaussian.A"].values.round(6)
    array([ 5., 10.])
    >>> fit.parameters["Gaussian.centre"].values.round(6)
    array([4., 4.])
    >>> bool(abs(fit.residual()).max() < 1e-6)
    True
    """
    return Model(da, components, signal_range, dim)


# --- what a fit computes --------------------------------------------------------------


class _Plan:
    """Which parameters are free, fixed or given per pixel, and how the
    model is fitted; small and picklable (it goes into the graph)."""

    def __init__(self, model: Model, method: str, initial: dict[str, Any]) -> None:
        unknown = set(initial) - set(model.keys)
        if unknown:
            raise ValueError(
                f"initial names {sorted(unknown)}, not parameters of the model "
                f"{model.keys}"
            )
        self.components = model.components
        self.x = coordinate_values(model.da, model.dim)[model.channels]
        self.keys = model.keys
        steps = np.diff(self.x)
        # 1 or -1 for a coordinate rising or falling, 0 for neither: peaks
        # are evaluated on a run of channels only when it is monotonic
        self.order = 1 if (steps > 0).all() else -1 if (steps < 0).all() else 0
        self.free: list[str] = []
        self.scalars: dict[str, float] = {}  # known values, the same everywhere
        self._maps = {k: v for k, v in initial.items() if isinstance(v, xr.DataArray)}
        self.maps = list(self._maps)
        lower, upper, linear_free = [], [], []
        for comp in self.components:
            for param in comp.parameters:
                key = f"{comp.name}.{param.name}"
                if key in initial and not isinstance(initial[key], xr.DataArray):
                    self.scalars[key] = float(initial[key])
                elif param.set_by_user and param.value is not None:
                    self.scalars[key] = float(param.value)
                if param.free:
                    self.free.append(key)
                    linear_free.append(param.linear)
                    lower.append(-np.inf if param.bmin is None else param.bmin)
                    upper.append(np.inf if param.bmax is None else param.bmax)
                elif key not in self.scalars and key not in self.maps:
                    raise ValueError(
                        f"{key} is fixed but has no value: set it or give it in "
                        "initial="
                    )
        self.lower, self.upper = np.array(lower), np.array(upper)
        self.max_iterations = 100
        bounded = np.isfinite(self.lower) | np.isfinite(self.upper)
        # (fixed values given per pixel only make the design per pixel)
        can_be_linear = all(linear_free)
        if method == "auto":
            if can_be_linear and not bounded.any():
                method = "linear"
            else:
                nonlinear_bounds = bounded & ~np.array(linear_free, dtype=bool)
                method = "trf" if nonlinear_bounds.any() else "lm"
        if method == "linear" and not all(linear_free):
            raise ValueError(
                "method='linear' needs every free parameter to be linear; free "
                "non-linear parameters: "
                f"{[k for k, lin in zip(self.free, linear_free) if not lin]}"
            )
        if method == "lm" and bounded.any():
            method = "trf"  # bounds are honoured whatever the method asked
        self.method = method
        # a linear fit with every fixed value the same everywhere: one design
        # for every pixel, its normal matrix inverted once here
        self.shared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if method == "linear" and not self.maps:
            one = {k: np.full((1, 1), v) for k, v in self.scalars.items()}
            one.update({key: np.zeros((1, 1)) for key in self.free})
            design = self._jacobian(self.free, one)[0].T
            base = self.curve(one, self.x)[0]
            inverse = covariance((design.T @ design)[None])[0]
            self.shared = (design, base, inverse)

    # --- per block ------------------------------------------------------------------

    def start(
        self, y: np.ndarray, maps: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Every parameter (pixels, 1): known values, then estimates, the
        backgrounds (components without a centre) first and the peaks on
        what remains, each after the ones before it subtracted."""
        n = y.shape[0]
        values: dict[str, np.ndarray] = {}
        for key, value in self.scalars.items():
            values[key] = np.full((n, 1), value)
        for key, given in maps.items():
            values[key] = given.reshape(n, 1)
        if self.method == "linear":  # one solve from the design: no start
            for key in self.free:
                values.setdefault(key, np.zeros((n, 1)))
            return values
        rest = y.copy()
        order = sorted(self.components, key=lambda c: "centre" in c.names)
        for comp in order:
            known = {
                p: values[f"{comp.name}.{p}"]
                for p in comp.names
                if f"{comp.name}.{p}" in values
            }
            guess = (
                comp.estimate(self.x, rest, known)
                if len(known) < len(comp.names)
                else {}
            )
            for p in comp.names:
                if f"{comp.name}.{p}" not in values:
                    values[f"{comp.name}.{p}"] = guess[p]
            own = {p: values[f"{comp.name}.{p}"] for p in comp.names}
            rest = rest - comp.evaluate(self.x, own)
        return values

    def curve(self, values: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        first = next(iter(values.values()))
        out = np.zeros((first.shape[0], x.size))
        for comp in self.components:
            own = {p: values[f"{comp.name}.{p}"] for p in comp.names}
            out = out + comp.evaluate(x, own)
        return out

    def fit_block(
        self,
        y: np.ndarray,
        maps: dict[str, np.ndarray],
        weights: np.ndarray | None,
        poisson: bool = False,
    ) -> np.ndarray:
        """(values of every parameter, their errors, chi-square, reduced
        chi-square, converged) for each row of ``y``: (pixels, 2P + 3).

        ``poisson``: an unweighted solve first (unbiased, and cheaper than
        a weighted one), then a second weighted by its model's variance:
        data-weighted fits of low counts are biased low (Neyman's
        chi-square), model-weighted ones are not (Pearson's)."""
        if self.shared is not None and weights is None and not poisson:
            return self._shared_linear(y)
        batch = max(64, BATCH_BYTES // (8 * y.shape[1] * (len(self.free) + 4)))
        if y.shape[0] > batch:  # the solver's arrays, a few times y's, bounded
            return np.concatenate(
                [
                    self.fit_block(
                        y[i : i + batch],
                        {k: v[i : i + batch] for k, v in maps.items()},
                        None if weights is None else weights[i : i + batch],
                        poisson,
                    )
                    for i in range(0, y.shape[0], batch)
                ]
            )
        y = np.asarray(y, dtype=np.float64)
        with warnings.catch_warnings():  # all-NaN pixels: marked below
            warnings.simplefilter("ignore", RuntimeWarning)
            values = self.start(y, maps)
        if poisson:  # the model's variance, from an unweighted fit first
            values, _, _, _ = self._solve(y, values, None)
            fitted = self.curve(values, self.x)
            weights = 1.0 / np.maximum(np.nan_to_num(fitted, nan=1.0), 1e-3)
        values, cov, chisq, converged = self._solve(y, values, weights)
        dof = max(self.x.size - len(self.free), 1)
        if weights is None:  # unweighted: the noise from the residual
            cov = cov * (chisq / dof)[:, None, None]
        errors = {key: np.full((y.shape[0], 1), np.nan) for key in self.keys}
        diag = np.sqrt(np.abs(np.einsum("pkk->pk", cov)))
        for i, key in enumerate(self.free):
            errors[key] = np.where(converged[:, None], diag[:, i : i + 1], np.nan)
        columns = [values[key] for key in self.keys]
        columns += [errors[key] for key in self.keys]
        columns += [chisq[:, None], (chisq / dof)[:, None], converged[:, None]]
        return np.concatenate(
            [np.broadcast_to(c, (y.shape[0], 1)).astype(np.float64) for c in columns],
            axis=1,
        )

    def _shared_linear(self, y: np.ndarray) -> np.ndarray:
        """:meth:`fit_block` of a linear fit with one design for every pixel,
        unweighted: :func:`~xsignal.fit_solvers.shared_linear` on the rows
        as read; the errors are the design's, scaled by each pixel's
        reduced chi-square."""
        assert self.shared is not None
        design, base, inverse = self.shared
        with warnings.catch_warnings():  # NaN pixels: NaN chi-square, marked
            warnings.simplefilter("ignore", RuntimeWarning)
            beta, chisq = shared_linear(y, design, base, inverse)
            dof = max(self.x.size - len(self.free), 1)
            reduced = chisq / dof
            converged = np.isfinite(chisq)
            beta[~converged] = np.nan
            unit = np.sqrt(np.abs(np.diag(inverse)))
            errors = np.sqrt(np.maximum(reduced, 0.0))[:, None] * unit
        n = len(self.keys)
        out = np.full((y.shape[0], 2 * n + 3), np.nan)
        where = {key: i for i, key in enumerate(self.free)}
        for j, key in enumerate(self.keys):
            if key in where:
                out[:, j] = beta[:, where[key]]
                out[:, n + j] = errors[:, where[key]]
            else:
                out[:, j] = self.scalars[key]
        out[:, 2 * n] = chisq
        out[:, 2 * n + 1] = reduced
        out[:, 2 * n + 2] = converged
        return out

    def _solve(
        self, y: np.ndarray, values: Values, weights: np.ndarray | None
    ) -> tuple[Values, np.ndarray, np.ndarray, np.ndarray]:
        """The fitted values from the start ``values``: (values, covariance
        of the free ones without scaling, chi-square, converged)."""
        free = self.free
        values = dict(values)
        if self.method == "linear":
            # the same design for every pixel unless fixed values are maps:
            # then built from one pixel, one solve for the block
            same = not self.maps
            one = {k: v[:1] for k, v in values.items()} if same else values
            zero = dict(one, **{key: np.zeros_like(one[key]) for key in free})
            base = self.curve(zero, self.x)
            design = self._jacobian(free, one).transpose(0, 2, 1)
            if same and weights is None:
                design = design[0]
            beta, cov, chisq = linear(y - base, design, weights)
            for i, key in enumerate(free):
                values[key] = beta[:, i : i + 1]
            return values, cov, chisq, np.isfinite(chisq)
        start = np.concatenate([values[key] for key in free], axis=1)
        start = np.where(np.isfinite(start), start, 0.0)
        where = {key: i for i, key in enumerate(free)}
        every = y.shape[0]

        def at(theta: np.ndarray, rows: np.ndarray) -> Values:
            out = {key: v[rows] for key, v in values.items()}
            out.update({key: theta[:, i : i + 1] for i, key in enumerate(free)})
            return out

        def residual(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
            """The data less the model, each component on its channels."""
            current = at(theta, rows)
            r = np.array(y if rows.size == every else y[rows], dtype=np.float64)
            for comp in self.components:
                own = {p: current[f"{comp.name}.{p}"] for p in comp.names}
                lo, hi = self._channels(comp, own)
                r[:, lo:hi] -= comp.evaluate(self.x[lo:hi], own)
            return r

        def jacobian(theta: np.ndarray, rows: np.ndarray, exact: bool) -> Pieces:
            """Each component's derivatives on its channels; in float32 for
            the components that allow it unless ``exact`` (a float64 exp
            costs four float32 ones)."""
            current = at(theta, rows)
            pieces: Pieces = []
            for comp in self.components:
                names = [p for p in comp.names if f"{comp.name}.{p}" in where]
                if not names:
                    continue
                own = {p: current[f"{comp.name}.{p}"] for p in comp.names}
                lo, hi = self._channels(comp, own)
                x = self.x[lo:hi]
                if comp.single_precision_gradients and not exact:
                    own = {p: v.astype(np.float32) for p, v in own.items()}
                    x = x.astype(np.float32)
                _, grads = comp.evaluate_and_gradients(x, names, own)
                lead = 1 if all(g.shape[0] == 1 for g in grads) else rows.size
                jac = np.stack([np.broadcast_to(g, (lead, hi - lo)) for g in grads], 1)
                cols = [where[f"{comp.name}.{p}"] for p in names]
                pieces.append((cols, lo, hi, jac))
            return pieces

        theta, cov, chisq, converged = levenberg_marquardt(
            y,
            residual,
            jacobian,
            start,
            weights,
            self.lower,
            self.upper,
            self.max_iterations,
        )
        ended = at(theta, np.arange(y.shape[0]))
        for comp in self.components:
            own = {p: ended[f"{comp.name}.{p}"] for p in comp.names}
            converged &= comp.valid(self.x, own)
        for i, key in enumerate(free):
            values[key] = np.where(converged[:, None], theta[:, i : i + 1], np.nan)
        return values, cov, chisq, converged

    def _channels(self, comp: Component, own: Values) -> tuple[int, int]:
        """The channels (first, end) where ``comp`` is not negligible for
        any of these pixels (:meth:`~xsignal.components.Component.support`),
        all of them when it is everywhere, unknown or the coordinate not
        monotonic; at least one."""
        n = self.x.size
        found = comp.support(own) if self.order else None
        if found is None:
            return 0, n
        low, high = (np.asarray(v)[np.isfinite(v)] for v in found)
        if not low.size or not high.size:
            return 0, n
        lo, hi = float(low.min()), float(high.max())
        if self.order > 0:
            first = int(np.searchsorted(self.x, lo, "left"))
            end = int(np.searchsorted(self.x, hi, "right"))
        else:  # descending: the same run counted from the end
            backwards = self.x[::-1]
            first = n - int(np.searchsorted(backwards, hi, "right"))
            end = n - int(np.searchsorted(backwards, lo, "left"))
        if end <= first:  # the whole peak outside: its nearest channel
            first = min(max(first, 0), n - 1)
            end = first + 1
        return first, end

    def _jacobian(self, free: list[str], values: Values) -> np.ndarray:
        """The model's derivatives by the ``free`` parameters, (pixels, k,
        channels)."""
        return self._model_and_jacobian(free, values)[1]

    def _model_and_jacobian(
        self, free: list[str], values: Values
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model (pixels, channels) and its derivatives by the ``free``
        parameters (pixels, k, channels): each component computes both at
        once."""
        n = next(iter(values.values())).shape[0]
        total = np.zeros((n, self.x.size))
        jac = np.empty((n, len(free), self.x.size))
        where = {key: i for i, key in enumerate(free)}
        for comp in self.components:
            names = [p for p in comp.names if f"{comp.name}.{p}" in where]
            own = {p: values[f"{comp.name}.{p}"] for p in comp.names}
            value, grads = comp.evaluate_and_gradients(self.x, names, own)
            total += value
            for name, grad in zip(names, grads):
                jac[:, where[f"{comp.name}.{name}"], :] = grad
        return total, jac


# an iterative fit solves this many bytes of float64 spectra and Jacobian at a
# time (a block's pixels in batches): its memory stays a few blocks' worth
BATCH_BYTES = 16 * 2**20

# a shared linear fit takes about this much of the data a task (several
# stored chunks, each multiplied as read): its tasks are quick, and fewer
# of them mean fewer outputs for the scheduler (one a parameter a task)
GROUP_BYTES = 16 * 2**20


def _run(model: Model, plan: _Plan, variance: xr.DataArray | str | None) -> FitResult:
    """The fit's graph: every block of spectra fitted by ``plan``; several
    stored chunks a task for a shared linear fit (``GROUP_BYTES``)."""
    dim = model.dim
    window = model.da.isel({dim: _as_slice(model.channels)})
    nav = [d for d in window.dims if d != dim]
    window = whole(window, [dim]).transpose(*nav, dim)
    template = window.isel({dim: 0}, drop=True)
    poisson = isinstance(variance, str)
    if poisson and variance != "poisson":
        raise ValueError(f"variance must be a DataArray or 'poisson', not {variance!r}")
    maps = []
    for key, value in plan._maps.items():
        value = xr.align(template, _over(nav, value, key), join="exact")[1]
        maps.append(value.broadcast_like(template).transpose(*nav))
    var = None
    if isinstance(variance, xr.DataArray):
        var = variance.isel({dim: model.channels}) if dim in variance.dims else variance
        var = var.broadcast_like(window).transpose(*nav, dim)
    n_out = 2 * len(plan.keys) + 3
    fit = _Block(plan, poisson, n_out)
    inputs = [window, *maps] + ([] if var is None else [var])
    coords = {k: c for k, c in window.coords.items() if dim not in c.dims}
    dims = [*nav, "fit_output"]
    if all(a.chunks is None for a in inputs):
        v = None if var is None else var.values
        found = fit(window.values, [m.values for m in maps], v)
        return FitResult(
            model, plan, xr.DataArray(found, dims=dims, coords=coords), var is not None
        )
    if window.chunks is None:
        window = window.chunk()
    y = window.data
    nav_chunks = dict(zip(nav, y.chunks[:-1]))
    lazy_maps = [m.chunk(nav_chunks).data for m in maps]
    v = None if var is None else var.chunk({**nav_chunks, dim: -1}).data
    shared = plan.shared is not None and var is None and not poisson
    group = GROUP_BYTES if shared else 0
    out = _grouped(fit, y, lazy_maps, v, n_out, group)
    return FitResult(
        model, plan, xr.DataArray(out, dims=dims, coords=coords), var is not None
    )


def _as_slice(channels: np.ndarray) -> slice | np.ndarray:
    """Contiguous channels as a slice (a view per block, not a copy)."""
    first, last = int(channels[0]), int(channels[-1])
    if last - first + 1 == channels.size:
        return slice(first, last + 1)
    return channels


class _Block:
    """A block's fit: spectra (..., channels), per-pixel maps (...) and the
    variance (..., channels) or None, to (..., n_out)."""

    def __init__(self, plan: _Plan, poisson: bool, n_out: int) -> None:
        self.plan, self.poisson, self.n_out = plan, poisson, n_out

    def __call__(
        self, y: np.ndarray, maps: list[np.ndarray], var: np.ndarray | None
    ) -> np.ndarray:
        lead = y.shape[:-1]
        if not y.size:
            return np.zeros((*lead, self.n_out))
        rows = y.reshape(-1, y.shape[-1])
        given = {
            k: np.asarray(m, dtype=np.float64).reshape(-1)
            for k, m in zip(self.plan.maps, maps)
        }
        weights = None if var is None else 1.0 / np.asarray(var, np.float64)
        if weights is not None:
            weights = weights.reshape(rows.shape)
        with engine.blas_one_thread():  # blocks run on every core already
            out = self.plan.fit_block(rows, given, weights, poisson=self.poisson)
        return out.reshape(*lead, self.n_out)


def _fit_group(
    fit: _Block,
    ys: list[np.ndarray],
    maps: list[list[np.ndarray]],
    vs: list[np.ndarray] | None,
) -> np.ndarray:
    """One task: the chunks of a group fitted one by one (no joined copy of
    the data), their results joined along the first axis."""
    found = [
        fit(y, [m[i] for m in maps], None if vs is None else vs[i])
        for i, y in enumerate(ys)
    ]
    return found[0] if len(found) == 1 else np.concatenate(found, axis=0)


def _grouped(
    fit: _Block,
    y: Any,
    maps: list[Any],
    var: Any,
    n_out: int,
    group_bytes: int,
) -> Any:
    """A dask array (..., n_out): ``fit`` on the chunks of ``y`` (the signal
    in one chunk), consecutive chunks along the first axis grouped into one
    task up to ``group_bytes`` of ``y``; ``maps`` chunked like ``y``'s
    navigation and ``var`` like ``y``."""
    import uuid

    import dask.array as dsa
    from dask.highlevelgraph import HighLevelGraph

    first = y.chunks[0]
    per_row = (
        y.dtype.itemsize
        * y.shape[-1]
        * max((int(np.prod([max(c) for c in y.chunks[1:-1]])), 1))
    )
    groups: list[tuple[int, int]] = []
    for i in range(len(first)):
        if groups and sum(first[groups[-1][0] : i + 1]) * per_row <= group_bytes:
            groups[-1] = (groups[-1][0], i + 1)
        else:
            groups.append((i, i + 1))
    name = f"fit-{uuid.uuid4().hex}"
    counts = [len(c) for c in y.chunks[1:-1]]
    graph: dict[Any, Any] = {}
    for g, (a, b) in enumerate(groups):
        for idx in np.ndindex(*counts):
            ys = [(y.name, i, *idx, 0) for i in range(a, b)]
            ms = [[(m.name, i, *idx) for i in range(a, b)] for m in maps]
            vs = None if var is None else [(var.name, i, *idx, 0) for i in range(a, b)]
            graph[(name, g, *idx, 0)] = (_fit_group, fit, ys, ms, vs)
    deps = [y, *maps] + ([] if var is None else [var])
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=deps)
    chunks = (
        tuple(sum(first[a:b]) for a, b in groups),
        *y.chunks[1:-1],
        (n_out,),
    )
    return dsa.Array(hlg, name, chunks, dtype=np.float64)


def _over(nav: list[Hashable], value: xr.DataArray, key: str) -> xr.DataArray:
    extra = [d for d in value.dims if d not in nav]
    if extra:
        raise ValueError(
            f"initial[{key!r}] has dims {value.dims}; it must be over the "
            f"navigation dims {tuple(nav)}"
        )
    return value


def _columns(out: Any, n: int) -> list[Any]:
    """The ``n`` columns of the last axis of ``out`` (numpy or dask): for
    dask, one getitem task a block and column, its graph built directly
    (dask's slicing costs about a millisecond a column to set up)."""
    if not hasattr(out, "__dask_graph__"):
        return [out[..., i] for i in range(n)]
    import operator

    import dask.array as dsa
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph

    keys = list(flatten(out.__dask_keys__()))
    found = []
    for i in range(n):
        name = f"{out.name}-{i}"
        graph: dict[Any, Any] = {
            (name, *key[1:-1]): (operator.getitem, key, (Ellipsis, i)) for key in keys
        }
        hlg = HighLevelGraph.from_collections(name, graph, dependencies=[out])
        found.append(dsa.Array(hlg, name, out.chunks[:-1], dtype=out.dtype))
    return found


class FitResult:
    """The result of :meth:`Model.fit`: parameter maps and their errors,
    lazy when the data is.

    Attributes
    ----------
    parameters : xarray.Dataset
        One DataArray per parameter, ``"<component>.<parameter>"``, over
        the navigation dims (NaN where the fit did not converge).
    errors : xarray.Dataset
        Their standard errors (NaN for fixed parameters).
    chisq, reduced_chisq : xarray.DataArray
        Chi-square (weighted when a variance was given) and divided by the
        degrees of freedom.
    converged : xarray.DataArray
        Boolean map.
    method : str
        The method used.
    """

    def __init__(
        self, model: Model, plan: _Plan, out: xr.DataArray, weighted: bool
    ) -> None:
        self.model_ = model
        self.plan = plan
        self.method = plan.method
        self.weighted = weighted
        self._out = out

    @functools.cached_property
    def _maps(
        self,
    ) -> tuple[xr.Dataset, xr.Dataset, xr.DataArray, xr.DataArray, xr.DataArray]:
        """(parameters, errors, chisq, reduced_chisq, converged), each sliced
        from the fit's one array when first asked for (a FitResult only
        computed with :meth:`compute` never builds the lazy ones)."""
        out, keys = self._out, self.plan.keys
        n = len(keys)
        # each output sliced from the array (xarray's isel costs more, and
        # a fit has 2 P + 3 of them)
        nav = [d for d in out.dims if d != "fit_output"]
        values = out.transpose(*nav, "fit_output")
        coords = {k: c for k, c in out.coords.items() if "fit_output" not in c.dims}
        columns = _columns(values.data, 2 * n + 3)
        pick = {
            i: xr.DataArray(column, dims=nav, coords=coords)
            for i, column in enumerate(columns)
        }
        return (
            xr.Dataset({k: pick[i] for i, k in enumerate(keys)}),
            xr.Dataset({k: pick[n + i] for i, k in enumerate(keys)}),
            pick[2 * n].rename("chisq"),
            pick[2 * n + 1].rename("reduced_chisq"),
            (pick[2 * n + 2] > 0.5).rename("converged"),
        )

    @property
    def parameters(self) -> xr.Dataset:
        return self._maps[0]

    @property
    def errors(self) -> xr.Dataset:
        return self._maps[1]

    @property
    def chisq(self) -> xr.DataArray:
        return self._maps[2]

    @property
    def reduced_chisq(self) -> xr.DataArray:
        return self._maps[3]

    @property
    def converged(self) -> xr.DataArray:
        return self._maps[4]

    def __repr__(self) -> str:
        lazy = self._out.chunks is not None
        return (
            f"<FitResult {self.method}{' (weighted)' if self.weighted else ''}, "
            f"{len(self.plan.free)} free of {len(self.plan.keys)} parameters, "
            f"{'lazy' if lazy else 'computed'}>"
        )

    def compute(self, progress: bool | None = None) -> FitResult:
        """Every map of the fit (parameters, errors, chi-squares, the
        convergence map) computed in one pass, as a new FitResult in memory.

        Computing the maps as one array skips the per-map split of every
        block (a task each, 2 P + 3 maps a block): faster than
        ``xsignal.compute(fit.parameters, fit.errors, ...)``, same values.

        Examples
        --------
        >>> import numpy as np, xarray as xr, xsignal
        >>> from xsignal.components import Offset
        >>> da = xr.DataArray(np.full((4, 5), 2.0), dims=("x", "e")).chunk(x=2)
        >>> fit = da.signal.set_signal_dims("e").signal.create_model([Offset()])
        >>> done = fit.fit(method="linear").compute()
        >>> done
        <FitResult linear, 1 free of 1 parameters, computed>
        >>> done.parameters["Offset.offset"].values.tolist()
        [2.0, 2.0, 2.0, 2.0]
        """
        (out,) = engine.compute(self._out, progress=progress)
        return FitResult(self.model_, self.plan, out, self.weighted)

    def model(self, component: str | None = None) -> xr.DataArray:
        """The fitted model (or one component of it) over the whole signal
        coordinate, shaped like the data; lazy when the fit is."""
        da = self.model_.da
        dim = self.model_.dim
        x = coordinate_values(da, dim)
        comps = self.plan.components
        if component is not None:
            comps = [c for c in comps if c.name == component]
            if not comps:
                raise ValueError(
                    f"no component {component!r}; the model has "
                    f"{[c.name for c in self.plan.components]}"
                )
        params = self.parameters[[f"{c.name}.{p}" for c in comps for p in c.names]]
        stacked = params.to_array("parameter")
        if stacked.chunks is not None:
            stacked = stacked.chunk({"parameter": -1})
        names = list(stacked["parameter"].values)

        def curve(values: np.ndarray) -> np.ndarray:
            lead = values.shape[:-1]
            rows = values.reshape(-1, values.shape[-1])
            p = {name: rows[:, i : i + 1] for i, name in enumerate(names)}
            total = np.zeros((rows.shape[0], x.size))
            for comp in comps:
                own = {q: p[f"{comp.name}.{q}"] for q in comp.names}
                total = total + comp.evaluate(x, own)
            return total.reshape(*lead, x.size)

        out = xr.apply_ufunc(
            curve,
            stacked,
            input_core_dims=[["parameter"]],
            output_core_dims=[[dim]],
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {dim: x.size}},
        )
        out = out.assign_coords({dim: da.coords[dim]} if dim in da.coords else {})
        out = out.transpose(*da.dims)
        out.attrs = dict(da.attrs)
        return with_marking(out, signal_dims(da))

    def residual(self) -> xr.DataArray:
        """The data minus the model, shaped like the data; lazy when both are."""
        out = self.model_.da - self.model()
        out.attrs = dict(self.model_.da.attrs)
        return with_marking(out, signal_dims(self.model_.da))

    def to_dataset(self) -> xr.Dataset:
        """Parameters, errors (``"<key> error"``), chi-squares and the
        convergence map in one Dataset, the model described in its attrs
        (JSON), to save with ``to_netcdf``/``to_zarr``."""
        ds = self.parameters.copy()
        for key in self.plan.keys:
            ds[f"{key} error"] = self.errors[key]
        ds["chisq"] = self.chisq
        ds["reduced_chisq"] = self.reduced_chisq
        ds["converged"] = self.converged
        ds.attrs["model"] = json.dumps(
            {
                "dim": str(self.model_.dim),
                "method": self.method,
                "weighted": self.weighted,
                "components": [
                    {
                        "class": type(c).__name__,
                        "name": c.name,
                        "order": getattr(c, "order", None),
                        "free": [p.name for p in c.parameters if p.free],
                    }
                    for c in self.plan.components
                ],
            }
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, da: xr.DataArray) -> FitResult:
        """A FitResult from :meth:`to_dataset`'s Dataset and the data it was
        fitted on (for ``model()`` and ``residual()``); built-in components
        only."""
        desc = json.loads(ds.attrs["model"])
        comps: list[Component] = []
        for entry in desc["components"]:
            kind = getattr(_components, entry["class"], None)
            if kind is None or entry["class"] == "Component":
                raise ValueError(
                    f"component {entry['name']!r} is a user's function: it cannot "
                    "be rebuilt from a Dataset"
                )
            comp = kind(entry["order"]) if entry["class"] == "Polynomial" else kind()
            comp.name = entry["name"]
            for param in comp.parameters:
                param.free = param.name in entry["free"]
                if not param.free:
                    param.value = 0.0
            comps.append(comp)
        model = Model(da, comps, dim=desc["dim"])
        model.components = comps
        plan = _Plan.__new__(_Plan)
        plan.components = comps
        plan.keys = model.keys
        plan.free = [
            f"{c.name}.{p.name}" for c in comps for p in c.parameters if p.free
        ]
        plan.method = desc["method"]
        out = xr.concat(
            [ds[k] for k in plan.keys]
            + [ds[f"{k} error"] for k in plan.keys]
            + [ds["chisq"], ds["reduced_chisq"], ds["converged"].astype(float)],
            dim="fit_output",
        )
        return cls(model, plan, out.transpose(..., "fit_output"), desc["weighted"])

    def plot(self, pixel: dict[Hashable, int] | None = None) -> Any:
        """The data, the model and each component at ``pixel`` (navigation
        indices; default the first), on one axes; returns the Figure."""
        import matplotlib.pyplot as plt

        from .lazy import compute_all

        da = self.model_.da
        where = {d: 0 for d in navigation_dims(da)}
        where.update(pixel or {})
        parts = [da.isel(where), self.model().isel(where)] + [
            self.model(c.name).isel(where) for c in self.plan.components
        ]
        values = compute_all(*parts, progress=False)
        x = coordinate_values(da, self.model_.dim)
        figure, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
        ax.plot(x, values[0], ".", ms=3, color="0.4", label="data")
        ax.plot(x, values[1], "-", lw=2, label="model")
        for comp, part in zip(self.plan.components, values[2:]):
            ax.plot(x, part, "--", lw=1, label=comp.name)
        ax.legend(fontsize="small")
        ax.set_xlabel(str(self.model_.dim))
        ax.set_title(", ".join(f"{d}={i}" for d, i in where.items()) or "fit")
        return figure
