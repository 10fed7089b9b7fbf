"""Fits against HyperSpy 2.5's multifit on the same data (stored in
tests/data/reference/fitting.npz with the script that made them): the
parameters agree within their standard errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xsignal.components import Gaussian, Offset

REF = np.load(Path(__file__).parent / "data" / "reference" / "fitting.npz")
KEYS = ["Gaussian.A", "Gaussian.centre", "Gaussian.sigma", "Gaussian_2.A",
        "Gaussian_2.centre", "Gaussian_2.sigma", "Offset.offset"]  # fmt: skip


def data(case: str, chunks: dict | None) -> xr.DataArray:
    offset, scale, size = REF[f"{case}_axis"]
    x = offset + scale * np.arange(int(size))
    da = xr.DataArray(
        REF[f"{case}_data"].astype("f8"), dims=("y", "x", "e"), coords={"e": x}
    ).signal.set_signal_dims("e")
    return da.chunk(chunks) if chunks else da


@pytest.mark.parametrize("chunks", [None, {"y": 3}])
def test_two_gaussians_and_an_offset_as_hyperspy_lm(chunks):
    """From the starts HyperSpy estimated: every parameter within its
    combined standard error of HyperSpy's (a few in a hundred may differ
    by more: two least-squares runs stop at slightly different points)."""
    da = data("a", chunks)
    initial = {
        k: xr.DataArray(REF[f"a_start__{k}"], dims=("y", "x"))
        for k in KEYS
        if f"a_start__{k}" in REF
    }
    fit = da.signal.create_model([Gaussian(), Gaussian(), Offset()]).fit(
        initial=initial
    )
    params, errors = fit.parameters.compute(), fit.errors.compute()
    assert bool(fit.converged.all())
    for key in KEYS:
        theirs, their_std = REF[f"a_lm__{key}"], REF[f"a_lm__{key}__std"]
        combined = np.hypot(errors[key].values, their_std)
        z = np.abs(params[key].values - theirs) / combined
        assert np.mean(z < 1) >= 0.95, key
        # both near the truth
        truth = REF[f"a_truth__{key}"]
        assert (
            np.mean(np.abs(params[key].values - truth) < 4 * errors[key].values) >= 0.95
        )


def test_the_linear_case_equals_hyperspy_lstsq():
    da = data("d", {"y": 4})
    comps = [
        Gaussian(centre=40.0, sigma=3.0),
        Gaussian(centre=62.0, sigma=2.0),
        Offset(),
    ]
    for comp in comps[:2]:
        comp.centre.free = comp.sigma.free = False
    fit = da.signal.create_model(comps).fit()
    assert fit.method == "linear"
    for key in ("Gaussian.A", "Gaussian_2.A", "Offset.offset"):
        np.testing.assert_allclose(
            fit.parameters[key].values, REF[f"d_lstsq__{key}"], rtol=1e-8, atol=1e-8
        )
        # HyperSpy scales the covariance by the reduced chi-square, as xsignal
        # does unweighted
        np.testing.assert_allclose(
            fit.errors[key].values, REF[f"d_lstsq__{key}__std"], rtol=1e-6
        )
