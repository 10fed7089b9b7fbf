"""Components of a 1D model over the signal coordinate, with HyperSpy's
names and definitions.

A component is a function of the coordinate ``x`` and of its parameters,
with its derivative by each parameter (for the fit's Jacobian) and an
estimate of its parameters from data (a fit's start). Parameters arrive as
arrays of shape (pixels, 1) and ``x`` of shape (channels,), so one call
evaluates a whole block of pixels.

Each parameter has ``.value`` (a fit's start when the user sets it, and
the value of a fixed parameter), ``.free`` and bounds ``.bmin``/``.bmax``.
A parameter is *linear* when the component is proportional to it (the
Gaussian's area ``A``, polynomial coefficients): a model whose free
parameters are all linear is fitted in one pass
(:meth:`xsignal.fitting.Model.fit`).

Examples
--------
>>> import numpy as np
>>> from xsignal.components import Gaussian
>>> g = Gaussian(A=10.0, centre=5.0, sigma=0.5)
>>> g.centre.free = False
>>> round(float(g.function(np.array([5.0]))[0]), 4)  # A / (sigma sqrt(2 pi))
7.9788
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "Component",
    "Exponential",
    "Gaussian",
    "Lorentzian",
    "Offset",
    "Parameter",
    "Polynomial",
    "PowerLaw",
    "Voigt",
]

SQRT2PI = math.sqrt(2.0 * math.pi)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# a Gaussian is evaluated within this many sigmas of its centre in a fit
PEAK_SIGMAS = 6.0
Arrays = dict[str, np.ndarray]


class Parameter:
    """One parameter of a component.

    Attributes
    ----------
    value : float or None
        Set by the user, a fit's start (HyperSpy's rule) and the value when
        fixed; left unset, the component's estimate is the start.
    free : bool
    bmin, bmax : float or None
        Bounds, honoured by the ``"trf"`` fit.
    linear : bool
        Whether the component is proportional to this parameter.
    """

    def __init__(self, name: str, value: float | None, linear: bool) -> None:
        self.name = name
        self.linear = linear
        self.free = True
        self.bmin: float | None = None
        self.bmax: float | None = None
        self.set_by_user = value is not None
        self._value = None if value is None else float(value)

    @property
    def value(self) -> float | None:
        return self._value

    @value.setter
    def value(self, value: float | None) -> None:
        self._value = None if value is None else float(value)
        self.set_by_user = value is not None

    def __repr__(self) -> str:
        state = "free" if self.free else "fixed"
        return f"<Parameter {self.name}={self._value} ({state})>"


class Component:
    """A component from a user's function ``func(x, **params)`` (numpy code
    broadcasting the parameters, which arrive with shape (pixels, 1)). Its
    derivatives are taken by central differences; its start is the values
    given, which every parameter needs.

    Examples
    --------
    >>> import numpy as np
    >>> from xsignal.components import Component
    >>> def step(x, height, at):
    ...     return height * (x > at)
    >>> Component(step, height=2.0, at=1.0).function(np.array([0.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    names: tuple[str, ...] = ()
    linear: tuple[str, ...] = ()
    # derivatives good enough in float32 for a fit's steps (analytic and
    # well scaled; the final errors use float64 ones)
    single_precision_gradients = False

    def __init__(
        self, func: Callable[..., Any] | None = None, **params: float | None
    ) -> None:
        self._func = func
        if func is not None:
            self.names = tuple(params)
            self.linear = ()
        self.name: str = (
            type(self).__name__ if func is None else getattr(func, "__name__", "f")
        )
        for key in self.names:
            setattr(self, key, Parameter(key, params.get(key), key in self.linear))

    @property
    def parameters(self) -> list[Parameter]:
        found: list[Parameter] = [getattr(self, key) for key in self.names]
        return found

    def __repr__(self) -> str:
        values = ", ".join(f"{p.name}={p.value}" for p in self.parameters)
        return f"<{self.name}({values})>"

    # --- numerics (parameters of shape (pixels, 1)) -------------------------------

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        """The component at ``x`` for the parameter arrays ``p``."""
        assert self._func is not None
        out: np.ndarray = np.asarray(self._func(x, **p), dtype=np.float64)
        return np.broadcast_to(out, (_pixels(p), x.size))

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        """The derivative by parameter ``name`` (central differences)."""
        value = p[name]
        step = 1e-6 * np.maximum(np.abs(value), 1e-3)
        up = self.evaluate(x, {**p, name: value + step})
        down = self.evaluate(x, {**p, name: value - step})
        out: np.ndarray = (up - down) / (2 * step)
        return out

    def evaluate_and_gradients(
        self, x: np.ndarray, names: list[str], p: Arrays
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The component and its derivatives by each of ``names``, together
        (a component may share the work between them)."""
        return self.evaluate(x, p), [self.gradient(x, name, p) for name in names]

    def support(self, p: Arrays) -> tuple[np.ndarray, np.ndarray] | None:
        """Where the component is not negligible, per pixel: (low, high) in
        coordinate units, arrays like the parameters; None (the default)
        for everywhere. A fit evaluates the component and its derivatives
        only there (a peak's few hundred channels rather than the whole
        spectrum), taking it as zero outside."""
        return None

    def valid(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        """Which pixels' fitted parameters make sense (pixels,): a fit that
        ends elsewhere is marked not converged, never silently wrong. Peaks
        must keep their centre on the fitted coordinate and a positive
        width."""
        ok = np.ones(_pixels(p), dtype=bool)
        if "centre" in p:
            centre = p["centre"][:, 0]
            ok &= (centre >= x.min()) & (centre <= x.max())
        for width in ("sigma", "gamma"):
            if width in p:
                ok &= p[width][:, 0] > 0
        return ok

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        """Starting values from spectra ``y`` (pixels, channels) given the
        ``known`` ones (set by the user or fixed). A user's component is not
        estimated: every parameter needs a value."""
        missing = [q.name for q in self.parameters if q.name not in known]
        if missing:
            raise ValueError(
                f"{self.name}.{missing[0]} has no value: give it one, it is the "
                "fit's start"
            )
        return {}

    def function(self, x: Any) -> np.ndarray:
        """The component at ``x`` with its current values."""
        xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
        p = {q.name: np.array([[q.value]], dtype=np.float64) for q in self.parameters}
        out: np.ndarray = self.evaluate(xs, p)[0]
        return out


def _pixels(p: Arrays) -> int:
    return max((np.shape(v)[0] for v in p.values() if np.ndim(v)), default=1)


# a row's median for a start is taken on at most about this many channels
# (every k-th): a background level needs no more, and a full partition of
# every spectrum of a block costs a third of a fast fit
MEDIAN_CHANNELS = 256


def _median(y: np.ndarray) -> np.ndarray:
    """Each row's median, of every k-th channel beyond ``MEDIAN_CHANNELS``
    (NaN ignored; numpy's nanmedian goes row by row, four times slower, so
    only where there is NaN)."""
    every = max(y.shape[-1] // MEDIAN_CHANNELS, 1)
    sample = y[..., ::every]
    found: np.ndarray = (
        np.nanmedian(sample, axis=-1, keepdims=True)
        if np.isnan(sample).any()
        else np.median(sample, axis=-1, keepdims=True)
    )
    return found


def _near(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The channel nearest each pixel's ``centre`` (pixels, 1)."""
    if x.size > 1 and bool((np.diff(x) > 0).all()):  # rising: a binary search
        right = np.clip(np.searchsorted(x, centre[:, 0]), 1, x.size - 1)
        nearer = np.abs(x[right - 1] - centre[:, 0]) <= np.abs(x[right] - centre[:, 0])
        rising: np.ndarray = np.where(nearer, right - 1, right)[:, None]
        return rising
    found: np.ndarray = np.abs(x[None, :] - centre).argmin(-1)[:, None]
    return found


def _peak_estimate(
    x: np.ndarray, y: np.ndarray, known: Arrays, width_name: str, area_name: str
) -> Arrays:
    """A peak's centre, width and area: given values kept; a centre from
    the spectrum's moments (HyperSpy's estimate for one peak); a width from
    the half maximum around the centre; the area from the height above
    the spectrum's minimum times the width."""
    finite = np.nan_to_num(y)
    step = float(np.abs(np.diff(x)).mean()) if x.size > 1 else 1.0
    centre = known.get("centre")
    if centre is None:
        w = np.clip(finite, 0, None)
        total = w.sum(-1, keepdims=True)
        centre = (w @ x)[:, None] / np.where(total > 0, total, 1.0)
    at = _near(x, np.broadcast_to(centre, (y.shape[0], 1)))
    base = _median(y)  # most channels: background
    height = np.take_along_axis(finite, at, -1) - base
    width = known.get(width_name)
    if width is None:  # the run of channels above half maximum through the centre
        index = np.arange(x.size)
        below = finite < base + height / 2
        left = np.where(below & (index < at), index, -1).max(-1, keepdims=True)
        right = np.where(below & (index > at), index, x.size).min(-1, keepdims=True)
        fwhm = np.maximum(right - left - 1, 1) * step
        width = fwhm / 2 if width_name == "gamma" else fwhm / FWHM_PER_SIGMA
    area = np.maximum(height, 0) * width * SQRT2PI
    return {"centre": centre, width_name: width, area_name: area}


class Gaussian(Component):
    """A Gaussian of area ``A``: ``A / (sigma sqrt(2 pi)) exp(-(x -
    centre)^2 / (2 sigma^2))``."""

    A: Parameter
    centre: Parameter
    sigma: Parameter
    single_precision_gradients = True
    names = ("A", "centre", "sigma")
    linear = ("A",)

    def __init__(
        self,
        A: float | None = None,
        centre: float | None = None,
        sigma: float | None = None,
    ) -> None:
        super().__init__(A=A, centre=centre, sigma=sigma)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        return self._unit(x, p)[1] * p["A"]

    @staticmethod
    def _unit(x: np.ndarray, p: Arrays) -> tuple[np.ndarray, np.ndarray]:
        """``z = (x - centre) / sigma`` and the peak of unit area, computed
        in place (a fit evaluates them over a block's pixels many times)."""
        inverse = 1.0 / p["sigma"]
        z = (x - p["centre"]) * inverse
        unit = z * z
        unit *= -0.5
        np.exp(unit, out=unit)
        unit *= inverse * (1.0 / SQRT2PI)
        return z, unit

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        return self.evaluate_and_gradients(x, [name], p)[1][0]

    def evaluate_and_gradients(
        self, x: np.ndarray, names: list[str], p: Arrays
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        z, unit = self._unit(x, p)
        value = unit * p["A"]
        grads = []
        for name in names:
            if name == "A":
                grads.append(unit)
                continue
            scaled = value * (1.0 / p["sigma"])
            if name == "centre":
                scaled *= z
            else:  # sigma: (z^2 - 1) value / sigma
                square = z * z
                square -= 1.0
                scaled *= square
            grads.append(scaled)
        return value, grads

    def support(self, p: Arrays) -> tuple[np.ndarray, np.ndarray]:
        """``centre +- PEAK_SIGMAS * sigma``: beyond, the peak is below
        ``exp(-PEAK_SIGMAS**2 / 2)`` (1.5e-8) of its height, below float32's
        resolution of it.

        Examples
        --------
        >>> import numpy as np
        >>> low, high = Gaussian().support(
        ...     {"A": np.ones((1, 1)), "centre": np.full((1, 1), 10.0),
        ...      "sigma": np.full((1, 1), 0.5)})
        >>> float(low[0, 0]), float(high[0, 0])
        (7.0, 13.0)
        """
        reach = PEAK_SIGMAS * np.abs(p["sigma"])
        return p["centre"] - reach, p["centre"] + reach

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        return _peak_estimate(x, y, known, "sigma", "A")


class Lorentzian(Component):
    """A Lorentzian of area ``A`` and half width at half maximum ``gamma``:
    ``A / pi * gamma / ((x - centre)^2 + gamma^2)``."""

    A: Parameter
    centre: Parameter
    gamma: Parameter
    single_precision_gradients = True
    names = ("A", "centre", "gamma")
    linear = ("A",)

    def __init__(
        self,
        A: float | None = None,
        centre: float | None = None,
        gamma: float | None = None,
    ) -> None:
        super().__init__(A=A, centre=centre, gamma=gamma)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        d = x - p["centre"]
        out: np.ndarray = p["A"] / np.pi * p["gamma"] / (d * d + p["gamma"] ** 2)
        return out

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        d = x - p["centre"]
        g = p["gamma"]
        den = d * d + g * g
        if name == "A":
            out: np.ndarray = g / np.pi / den
        elif name == "centre":
            out = p["A"] / np.pi * g * 2 * d / den**2
        else:
            out = p["A"] / np.pi * (den - 2 * g * g) / den**2
        return out

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        found = _peak_estimate(x, y, known, "gamma", "A")
        found["A"] = found["A"] / SQRT2PI * np.pi  # height * pi * gamma
        return found


class Voigt(Component):
    """A Voigt profile of area ``area`` at ``x - centre`` (a Gaussian of
    ``sigma`` convolved with a Lorentzian of half width ``gamma``,
    :func:`scipy.special.voigt_profile`)."""

    area: Parameter
    centre: Parameter
    sigma: Parameter
    gamma: Parameter
    names = ("area", "centre", "sigma", "gamma")
    linear = ("area",)

    def __init__(
        self,
        area: float | None = None,
        centre: float | None = None,
        sigma: float | None = None,
        gamma: float | None = None,
    ) -> None:
        super().__init__(area=area, centre=centre, sigma=sigma, gamma=gamma)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        from scipy.special import voigt_profile

        shape = voigt_profile(x - p["centre"], np.abs(p["sigma"]), np.abs(p["gamma"]))
        out: np.ndarray = p["area"] * shape
        return out

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        if name == "area":
            return self.evaluate(x, {**p, "area": np.ones_like(p["area"])})
        return super().gradient(x, name, p)

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        found = _peak_estimate(x, y, known, "sigma", "area")
        found.setdefault("gamma", known.get("gamma", found["sigma"] / 2))
        found["sigma"] = known.get("sigma", found["sigma"] / 2)
        return found


class PowerLaw(Component):
    """A power law, ``A * (x - origin)^-r`` above ``origin``, 0 below; ``origin`` fixed
    unless freed. Estimated by the two-area method on the fitting range, as
    :func:`xsignal.remove_background` (HyperSpy's estimate)."""

    A: Parameter
    r: Parameter
    origin: Parameter
    names = ("A", "r", "origin")
    linear = ("A",)

    def __init__(
        self, A: float | None = None, r: float | None = None, origin: float = 0.0
    ) -> None:
        super().__init__(A=A, r=r, origin=origin)
        self.origin.free = False

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        d = x - p["origin"]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.where(d > 0, p["A"] * np.abs(d) ** -p["r"], 0.0)
        result: np.ndarray = np.nan_to_num(out)
        return result

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        d = x - p["origin"]
        unit = self.evaluate(x, {**p, "A": np.ones_like(p["A"])})
        if name == "A":
            return unit
        with np.errstate(divide="ignore", invalid="ignore"):
            if name == "r":
                out = -p["A"] * unit * np.log(np.where(d > 0, d, 1.0))
            else:
                out = p["A"] * p["r"] * unit / np.where(d > 0, d, np.inf)
        result: np.ndarray = np.nan_to_num(out)
        return result

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        from .spectra import _power_law_parameters

        origin = known.get("origin", np.zeros((y.shape[0], 1)))
        amp, r = _power_law_parameters(
            np.asarray(y, np.float64), x - float(np.mean(origin)), 0, x.size - 1
        )
        return {"A": amp[:, None], "r": r[:, None], "origin": origin}


class Exponential(Component):
    """An exponential decay, ``A * exp(-x / tau)``; estimated by a line
    through ``log(y)``."""

    A: Parameter
    tau: Parameter
    names = ("A", "tau")
    linear = ("A",)

    def __init__(self, A: float | None = None, tau: float | None = None) -> None:
        super().__init__(A=A, tau=tau)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        with np.errstate(over="ignore"):
            out: np.ndarray = p["A"] * np.exp(-x / p["tau"])
        return out

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        with np.errstate(over="ignore"):
            unit: np.ndarray = np.exp(-x / p["tau"])
        if name == "A":
            return unit
        out: np.ndarray = p["A"] * unit * x / p["tau"] ** 2
        return out

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.where(y > 0, y, np.nan))
        ok = np.isfinite(logs)
        n = np.maximum(ok.sum(-1, keepdims=True), 1)
        xm = np.where(ok, x, 0).sum(-1, keepdims=True) / n
        ym = np.where(ok, logs, 0).sum(-1, keepdims=True) / n
        dx = np.where(ok, x - xm, 0)
        spread = np.maximum((dx * dx).sum(-1, keepdims=True), 1e-300)
        slope = (dx * np.where(ok, logs - ym, 0)).sum(-1, keepdims=True) / spread
        slope = np.where(slope < 0, slope, -1e-6)
        return {"A": np.exp(ym - slope * xm), "tau": -1.0 / slope}


class Polynomial(Component):
    """A polynomial, ``a0 + a1 x + a2 x^2`` up to ``order``, linear in every
    coefficient;
    estimated by least squares."""

    def __init__(self, order: int = 2, **coefficients: float) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise ValueError(f"order must be a non-negative int, not {order!r}")
        self.order = order
        self.names = tuple(f"a{i}" for i in range(order + 1))
        self.linear = self.names
        unknown = set(coefficients) - set(self.names)
        if unknown:
            raise TypeError(f"Polynomial({order}) has no parameter {sorted(unknown)}")
        super().__init__(None, **coefficients)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        out = np.zeros((_pixels(p), x.size))
        for i in range(self.order, -1, -1):
            out = out * x + p[f"a{i}"]
        return out

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        """``x ** i``, the same for every pixel: shape (1, channels)."""
        out: np.ndarray = (x ** int(name[1:]))[None, :]
        return out

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        coeffs = np.polynomial.polynomial.polyfit(x, np.nan_to_num(y).T, self.order)
        return {f"a{i}": coeffs[i][:, None] for i in range(self.order + 1)}


class Offset(Component):
    """A constant ``offset``; estimated as the spectrum's median (the level
    under the peaks where most channels are background; HyperSpy's
    estimate is the mean)."""

    offset: Parameter
    single_precision_gradients = True
    names = ("offset",)
    linear = ("offset",)

    def __init__(self, offset: float | None = None) -> None:
        super().__init__(offset=offset)

    def evaluate(self, x: np.ndarray, p: Arrays) -> np.ndarray:
        return np.broadcast_to(p["offset"], (_pixels(p), x.size))

    def gradient(self, x: np.ndarray, name: str, p: Arrays) -> np.ndarray:
        """Ones, the same for every pixel: shape (1, channels)."""
        return np.ones((1, x.size))

    def estimate(self, x: np.ndarray, y: np.ndarray, known: Arrays) -> Arrays:
        return {"offset": _median(y)}
