"""Model fitting (xsignal.fitting): known truths recovered, lazily at two
chunkings and in memory, honest errors, the model's options honoured."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.components import (
    Component,
    Exponential,
    Gaussian,
    Lorentzian,
    Offset,
    Polynomial,
    PowerLaw,
    Voigt,
)
from xsignal.testing import raise_if_dask_computes

E = np.linspace(0.0, 100.0, 400)
RNG = np.random.default_rng(7)
N = (6, 7)


def gauss(A, centre, sigma):
    return (
        A[..., None]
        / (sigma[..., None] * np.sqrt(2 * np.pi))
        * np.exp(-0.5 * ((E - centre[..., None]) / sigma[..., None]) ** 2)
    )


TRUTH = {
    "Gaussian.A": RNG.uniform(800, 1200, N),
    "Gaussian.centre": 40 + RNG.normal(0, 0.5, N),
    "Gaussian.sigma": 3.0 + RNG.normal(0, 0.1, N),
    "Gaussian_2.A": RNG.uniform(300, 600, N),
    "Gaussian_2.centre": 62 + RNG.normal(0, 0.5, N),
    "Gaussian_2.sigma": 2.0 + RNG.normal(0, 0.1, N),
    "Offset.offset": np.full(N, 5.0),
}


def clean() -> np.ndarray:
    t = TRUTH
    return (
        gauss(t["Gaussian.A"], t["Gaussian.centre"], t["Gaussian.sigma"])
        + gauss(t["Gaussian_2.A"], t["Gaussian_2.centre"], t["Gaussian_2.sigma"])
        + t["Offset.offset"][..., None]
    )


def spectra(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("y", "x", "energy"),
        coords={"energy": ("energy", E, {"units": "eV"})},
    ).signal.set_signal_dims("energy")


def two_peaks():
    return [Gaussian(centre=40.0), Gaussian(centre=62.0), Offset()]


KINDS = ["memory", "lazy-rows", "lazy-blocks"]


def as_kind(da, kind):
    return {
        "memory": da,
        "lazy-rows": da.chunk({"y": 1}),
        "lazy-blocks": da.chunk({"y": 4, "x": 3}),
    }[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_noise_free_peaks_are_recovered_exactly(kind):
    da = as_kind(spectra(clean()), kind)
    with raise_if_dask_computes():
        fit = da.signal.create_model(two_peaks()).fit()
    assert fit.method == "lm"
    params = fit.parameters.compute()
    for key, truth in TRUTH.items():
        np.testing.assert_allclose(params[key].values, truth, rtol=1e-6, atol=1e-6)
    assert bool(fit.converged.all())
    np.testing.assert_allclose(fit.residual().values, 0.0, atol=1e-6)
    np.testing.assert_allclose((da - fit.model()).values, fit.residual().values)


@pytest.mark.parametrize("kind", KINDS)
def test_linear_fit_when_only_areas_are_free(kind):
    comps = two_peaks()
    for comp, name in zip(comps[:2], ("Gaussian", "Gaussian_2")):
        comp.centre.value = float(TRUTH[f"{name}.centre"].mean())
        comp.sigma.value = float(TRUTH[f"{name}.sigma"].mean())
        comp.centre.free = comp.sigma.free = False
    fixed = {
        k: np.full(N, TRUTH[k].mean()) for k in TRUTH if "centre" in k or "sigma" in k
    }
    values = clean()
    t = {**TRUTH, **fixed}
    values = (
        gauss(t["Gaussian.A"], t["Gaussian.centre"], t["Gaussian.sigma"])
        + gauss(t["Gaussian_2.A"], t["Gaussian_2.centre"], t["Gaussian_2.sigma"])
        + 5.0
    )
    fit = as_kind(spectra(values), kind).signal.create_model(comps).fit()
    assert fit.method == "linear"
    np.testing.assert_allclose(
        fit.parameters["Gaussian.A"].values, TRUTH["Gaussian.A"], rtol=1e-9
    )
    np.testing.assert_allclose(fit.parameters["Offset.offset"].values, 5.0, rtol=1e-9)
    assert np.isnan(fit.errors["Gaussian.centre"].values).all()  # fixed
    np.testing.assert_allclose(
        fit.parameters["Gaussian.centre"].values, fixed["Gaussian.centre"]
    )


def test_poisson_weighted_errors_are_honest():
    """With variance="poisson" the truth lies within 3 standard errors for
    at least 98 % of the pixels, for every parameter."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(np.repeat(clean(), 6, axis=0)).astype("f4")
    da = spectra(counts).chunk({"y": 12})
    fit = da.signal.create_model(two_peaks()).fit(variance="poisson")
    params, errors, converged = xsignal.compute(
        fit.parameters, fit.errors, fit.converged, progress=False
    )
    assert bool(converged.all())
    for key, truth in TRUTH.items():
        z = (
            np.abs(params[key].values - np.repeat(truth, 6, axis=0))
            / errors[key].values
        )
        assert np.mean(z < 3) >= 0.98, key


def test_fixed_parameters_initial_maps_and_signal_range():
    da = spectra(clean() + 3.0 * (E > 80))  # a step the range leaves out
    comps = two_peaks()
    comps[1].centre.free = False
    initial = {
        "Gaussian_2.centre": xr.DataArray(TRUTH["Gaussian_2.centre"], dims=("y", "x")),
        "Gaussian.centre": 39.0,
    }
    fit = (
        da.chunk({"y": 3})
        .signal.create_model(comps, signal_range=(10.0, 78.0))
        .fit(initial=initial)
    )
    np.testing.assert_allclose(
        fit.parameters["Gaussian_2.centre"].values, TRUTH["Gaussian_2.centre"]
    )
    np.testing.assert_allclose(
        fit.parameters["Gaussian.A"].values, TRUTH["Gaussian.A"], rtol=1e-6
    )
    assert fit.model().sizes["energy"] == E.size  # the model covers the coordinate
    with pytest.raises(ValueError, match="not parameters of the model"):
        da.signal.create_model(two_peaks()).fit(initial={"Gauss.A": 1.0})


def test_bounds_are_honoured():
    da = spectra(clean())
    comps = two_peaks()
    comps[0].sigma.bmax = 2.5  # below the truth (3)
    fit = da.signal.create_model(comps).fit()
    assert fit.method == "trf"
    assert float(fit.parameters["Gaussian.sigma"].max()) <= 2.5 + 1e-12


def test_every_component_against_its_definition():
    x = E
    one = lambda v: np.array([[v]])  # noqa: E731
    cases = [
        (
            Lorentzian(),
            {"A": 10.0, "centre": 50.0, "gamma": 2.0},
            lambda: 10.0 / np.pi * 2.0 / ((x - 50) ** 2 + 4.0),
        ),
        (
            PowerLaw(),
            {"A": 1e4, "r": 2.5, "origin": 0.0},
            lambda: np.where(x > 0, 1e4 * np.abs(x) ** -2.5, 0.0),
        ),
        (Exponential(), {"A": 50.0, "tau": 20.0}, lambda: 50.0 * np.exp(-x / 20.0)),
        (
            Polynomial(2),
            {"a0": 1.0, "a1": 0.5, "a2": -0.01},
            lambda: 1.0 + 0.5 * x - 0.01 * x**2,
        ),
        (Offset(), {"offset": 3.0}, lambda: np.full_like(x, 3.0)),
    ]
    for comp, params, want in cases:
        p = {k: one(v) for k, v in params.items()}
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(comp.evaluate(x, p)[0], want(), rtol=1e-12)
        # analytic derivatives agree with central differences
        for name in comp.names:
            analytic = comp.gradient(x, name, p)[0]
            numeric = Component.gradient(comp, x, name, p)[0]
            away = x > 1  # not across the power law's step at its origin
            np.testing.assert_allclose(
                analytic[away], numeric[away], rtol=1e-4, atol=1e-6
            )
    from scipy.special import voigt_profile

    v = Voigt()
    p = {"area": one(5.0), "centre": one(50.0), "sigma": one(1.5), "gamma": one(0.7)}
    np.testing.assert_allclose(
        v.evaluate(x, p)[0], 5.0 * voigt_profile(x - 50, 1.5, 0.7)
    )


def test_a_users_component():
    def step(x, height, at):
        return height / (1 + np.exp(-(x - at)))

    truth = 4.0 / (1 + np.exp(-(E - 55.0)))
    da = spectra(np.broadcast_to(truth, (*N, E.size)).copy())
    fit = da.signal.create_model([Component(step, height=3.0, at=50.0)]).fit()
    np.testing.assert_allclose(fit.parameters["step.height"].values, 4.0, rtol=1e-6)
    np.testing.assert_allclose(fit.parameters["step.at"].values, 55.0, rtol=1e-6)
    with pytest.raises(ValueError, match="has no value"):
        da.signal.create_model([Component(step, height=3.0, at=None)]).fit()


def test_pixels_that_cannot_be_fitted_are_marked():
    values = clean()
    values[0, 0] = np.nan
    fit = spectra(values).signal.create_model(two_peaks()).fit()
    assert not bool(fit.converged[0, 0])
    assert np.isnan(fit.parameters["Gaussian.A"][0, 0])
    assert bool(fit.converged[1:].all())


def test_to_dataset_round_trip(tmp_path):
    da = spectra(clean())
    fit = da.signal.create_model(two_peaks()).fit()
    ds = fit.to_dataset()
    path = tmp_path / "fit.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xsignal.FitResult.from_dataset(xr.open_dataset(path, engine="h5netcdf"), da)
    np.testing.assert_allclose(back.model().values, fit.model().values)
    np.testing.assert_allclose(
        back.errors["Gaussian.A"].values, fit.errors["Gaussian.A"].values
    )


@pytest.mark.parametrize("method", ["linear", "lm"])
def test_compute_gives_every_map_in_one_pass(method):
    """FitResult.compute: the same maps as computing them lazily, in
    memory, each block of the data read once for all of them."""
    comps = two_peaks()
    if method == "linear":
        for comp in comps[:2]:
            comp.centre.free = comp.sigma.free = False
            comp.sigma.value = 3.0
    da = spectra(RNG.poisson(clean()).astype("f4")).chunk({"y": 2})
    with raise_if_dask_computes():
        fit = da.signal.create_model(comps).fit(method=method)
    reads = []
    counted = da.copy(data=da.data.map_blocks(lambda b: reads.append(b.size) or b))
    done = counted.signal.create_model(comps).fit(method=method).compute()
    assert reads.count(2 * 7 * E.size) == 3, reads  # each block once, for every map
    assert "computed" in repr(done) and done.chisq.chunks is None
    params, errors, chisq, converged = xsignal.compute(
        fit.parameters, fit.errors, fit.chisq, fit.converged
    )
    xr.testing.assert_allclose(done.parameters, params, rtol=1e-12)
    xr.testing.assert_allclose(done.errors, errors, rtol=1e-12)
    xr.testing.assert_allclose(done.chisq, chisq, rtol=1e-12)
    xr.testing.assert_equal(done.converged, converged)
    np.testing.assert_allclose(done.residual().values, fit.residual().values)


def test_an_iterative_fit_in_batches_gives_the_same(monkeypatch):
    """A block's pixels are solved in batches (memory bounded): the same
    maps as one batch, including a batch shorter than the others."""
    from xsignal import fitting

    values = np.tile(RNG.poisson(clean()), (2, 3, 1))  # 12 x 21 = 252 pixels
    da = spectra(values.astype("f8"))
    whole = da.signal.create_model(two_peaks()).fit(method="lm").compute()
    monkeypatch.setattr(fitting, "BATCH_BYTES", 1)  # 64 pixels a batch
    batched = da.signal.create_model(two_peaks()).fit(method="lm").compute()
    # a pixel stops within the solver's tolerance: where is decided in its
    # batch, so the values agree to far within their standard errors
    for key in whole.parameters:
        gap = abs(batched.parameters[key] - whole.parameters[key])
        assert float((gap / whole.errors[key]).max()) < 1e-3, key
    xr.testing.assert_allclose(batched.errors, whole.errors, rtol=1e-3)
    xr.testing.assert_equal(batched.converged, whole.converged)


def test_plot_shows_data_model_and_components():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fit = spectra(clean()).signal.create_model(two_peaks()).fit()
    figure = fit.plot(pixel={"y": 1, "x": 2})
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["data", "model", "Gaussian", "Gaussian_2", "Offset"]


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_a_shared_linear_fit_of_float32_data_matches_float64(scale):
    """float32 data is multiplied in float32 (one pass, no converted copy);
    chi-square and errors still match float64's: pixels where the rounding
    of |y|^2 - b.X^T y could matter (high counts, little noise: scale 1e4)
    are solved again in float64."""
    rng = np.random.default_rng(5)
    comps = two_peaks()
    for comp, sigma in zip(comps[:2], (3.0, 2.0)):
        comp.sigma.value = sigma
        comp.centre.free = comp.sigma.free = False
    A1, A2 = rng.uniform(800, 1200, N) * scale, rng.uniform(300, 600, N) * scale
    mean = (
        gauss(A1, np.full(N, 40.0), np.full(N, 3.0))
        + gauss(A2, np.full(N, 62.0), np.full(N, 2.0))
        + 5.0 * scale
    )
    counts = rng.poisson(mean).astype("f4")
    fits = [
        spectra(counts.astype(dtype)).chunk({"y": 2}).signal.create_model(comps).fit()
        for dtype in ("f4", "f8")
    ]
    single, double = (xsignal.compute(f.to_dataset(), progress=False)[0] for f in fits)
    for key in ("Gaussian.A", "Gaussian_2.A", "Offset.offset"):
        np.testing.assert_allclose(single[key], double[key], rtol=1e-5)
        np.testing.assert_allclose(
            single[f"{key} error"], double[f"{key} error"], rtol=1e-3
        )
    np.testing.assert_allclose(single["chisq"], double["chisq"], rtol=2e-3)
    # and near the truth (unweighted errors under Poisson noise are too
    # small for a 3-sigma check: the module doc)
    np.testing.assert_allclose(single["Gaussian.A"], A1, rtol=0.15)


@pytest.mark.parametrize("descending", [False, True])
def test_overlapping_peaks_evaluated_on_their_channels(descending):
    """Peaks are evaluated only within 6 sigma of their centres: two that
    overlap (their derivatives meet) are still recovered exactly, on a
    rising or a falling coordinate, and a peak near the end of the range."""
    t = {
        "Gaussian.A": RNG.uniform(800, 1200, N),
        "Gaussian.centre": 40 + RNG.normal(0, 0.5, N),
        "Gaussian.sigma": np.full(N, 3.0),
        "Gaussian_2.A": RNG.uniform(300, 600, N),
        "Gaussian_2.centre": 47 + RNG.normal(0, 0.5, N),
        "Gaussian_2.sigma": np.full(N, 2.5),
        "Gaussian_3.A": np.full(N, 200.0),
        "Gaussian_3.centre": np.full(N, 98.0),
        "Gaussian_3.sigma": np.full(N, 1.5),
    }
    values = sum(
        gauss(t[f"{g}.A"], t[f"{g}.centre"], t[f"{g}.sigma"])
        for g in ("Gaussian", "Gaussian_2", "Gaussian_3")
    )
    da = spectra(values + 2.0)
    if descending:
        da = da.isel(energy=slice(None, None, -1))
    comps = [
        Gaussian(centre=40.0, sigma=3.0),
        Gaussian(centre=47.0, sigma=2.0),
        Gaussian(centre=98.0, sigma=1.0),
        Offset(),
    ]
    fit = da.chunk({"y": 3}).signal.create_model(comps).fit()
    params = fit.parameters.compute()
    assert bool(fit.converged.all())
    for key, truth in t.items():
        np.testing.assert_allclose(params[key].values, truth, rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(params["Offset.offset"].values, 2.0, rtol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_normal_equations_from_pieces_equal_the_dense_ones(weighted):
    from xsignal.fit_solvers import normal_equations

    rng = np.random.default_rng(2)
    p, n = 5, 40
    pieces = [
        ([0, 1], 5, 25, rng.normal(size=(p, 2, 20))),  # a peak
        ([2], 18, 30, rng.normal(size=(p, 1, 12))),  # overlapping it
        ([3], 0, n, np.ones((1, 1, n))),  # an offset, shared
        ([4], 0, n, np.linspace(0, 1, n)[None, None]),  # shared, meets all
    ]
    dense = np.zeros((p, 5, n))
    for cols, lo, hi, jac in pieces:
        dense[:, cols, lo:hi] = jac
    w = rng.uniform(0.5, 2, (p, n)) if weighted else None
    r = rng.normal(size=(p, n))
    normal, grad = normal_equations(pieces, w, r, 5)
    wd = dense * (1.0 if w is None else w[:, None, :])
    np.testing.assert_allclose(normal, wd @ dense.transpose(0, 2, 1), atol=1e-12)
    np.testing.assert_allclose(grad, (wd @ r[..., None])[..., 0], atol=1e-12)
