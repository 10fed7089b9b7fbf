"""Tools along one signal dim (xsignal.spectra): against numpy/scipy
definitions, in memory and lazily at two chunkings, reading nothing until
computed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage
import scipy.signal
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes

E = 300.0 + 0.5 * np.arange(200)


def eels(seed: int = 0) -> xr.DataArray:
    """A power-law background with two peaks, Poisson noise, 4 x 5 pixels."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.8, 1.2, (4, 5, 1))
    background = amplitude * 5e8 * E**-3.0
    peaks = 40 * np.exp(-0.5 * ((E - 350) / 3) ** 2) + 25 * np.exp(
        -0.5 * ((E - 360) / 2) ** 2
    )
    counts = rng.poisson(background + peaks).astype("f8")
    return xr.DataArray(
        counts,
        dims=("y", "x", "energy"),
        coords={"energy": ("energy", E, {"units": "eV"})},
        attrs={"title": "EELS", "units": "counts"},
    ).signal.set_signal_dims("energy")


KINDS = ["memory", "lazy-rows", "lazy-split-signal"]


def as_kind(da: xr.DataArray, kind: str) -> xr.DataArray:
    if kind == "lazy-rows":
        return da.chunk({"y": 1})
    if kind == "lazy-split-signal":  # the signal dim in several chunks
        return da.chunk({"y": 3, "x": 2, "energy": 64})
    return da


def run(tool, da: xr.DataArray, kind: str, *args, **kwargs):
    """``tool`` on ``da`` as ``kind``: lazy calls read nothing; the values."""
    data = as_kind(da, kind)
    if kind == "memory":
        out = tool(data, *args, **kwargs)
    else:
        with raise_if_dask_computes():
            out = tool(data, *args, **kwargs)
        assert xsignal.is_lazy(out)
    return out.compute()


@pytest.mark.parametrize("kind", KINDS)
def test_integrate_simpson_and_integrate1D(kind):
    da = eels()
    want = scipy.integrate.simpson(da.values, x=E, axis=-1)
    for tool in (xsignal.integrate_simpson, xsignal.integrate1D):
        out = run(tool, da, kind)
        assert out.dims == ("y", "x")
        np.testing.assert_allclose(out.values, want, rtol=1e-12)
        assert out.signal.signal_dims == ()
        assert out.attrs["title"] == "EELS"
    via_accessor = run(lambda d: d.signal.integrate1D(), da, kind)
    np.testing.assert_allclose(via_accessor.values, want, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order", [1, 2])
def test_derivative_is_numpy_gradient_on_the_coordinate(kind, order):
    da = eels()
    want = da.values
    for _ in range(order):
        want = np.gradient(want, E, axis=-1)
    out = run(xsignal.derivative, da, kind, order=order)
    np.testing.assert_allclose(out.values, want, rtol=1e-12)
    assert out.signal.signal_dims == ("energy",)
    assert out.coords["energy"].attrs["units"] == "eV"


@pytest.mark.parametrize("kind", KINDS)
def test_savitzky_golay_and_its_derivative(kind):
    da = eels()
    want = scipy.signal.savgol_filter(da.values, 11, 3, axis=-1)
    np.testing.assert_allclose(
        run(xsignal.smooth_savitzky_golay, da, kind, 11, 3).values, want, rtol=1e-12
    )
    slope = scipy.signal.savgol_filter(da.values, 11, 3, deriv=1, delta=0.5, axis=-1)
    np.testing.assert_allclose(
        run(xsignal.smooth_savitzky_golay, da, kind, 11, 3, deriv=1).values,
        slope,
        rtol=1e-12,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_filter_fwhm_in_coordinate_units(kind):
    da = eels()
    sigma_channels = 2.0 / 0.5 / (2 * np.sqrt(2 * np.log(2)))
    want = scipy.ndimage.gaussian_filter1d(da.values, sigma_channels, axis=-1)
    out = run(xsignal.gaussian_filter, da, kind, 2.0)
    np.testing.assert_allclose(out.values, want, rtol=1e-12)
    # a spike becomes a Gaussian of that FWHM: half maximum 1 eV either side
    spike = xr.DataArray(np.eye(1, 200, 100)[0], dims=("e",), coords={"e": E})
    shape = xsignal.gaussian_filter(spike, 2.0).values
    half = shape.max() / 2
    assert np.interp(half, shape[96:101], E[96:101]) == pytest.approx(349.0, abs=0.03)


def test_gaussian_filter_needs_a_uniform_axis():
    da = eels().assign_coords(energy=np.sort(np.random.default_rng(1).random(200)))
    with pytest.raises(NotImplementedError, match="uniform coordinate"):
        xsignal.gaussian_filter(da, 2.0)
    with pytest.raises(ValueError, match="FWHM"):
        xsignal.gaussian_filter(eels(), 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_poissonian_noise_variance(kind):
    da = eels()
    out = run(
        xsignal.estimate_poissonian_noise_variance,
        da,
        kind,
        gain_factor=2.0,
        gain_offset=3.0,
        correlation_factor=0.5,
    )
    want = np.clip((da.values * 2.0 + 3.0) * 0.5, 1.5, None)
    np.testing.assert_allclose(out.values, want)
    assert out.attrs["title"] == "Variance of EELS"
    with pytest.raises(ValueError, match="gain_factor must be positive"):
        xsignal.estimate_poissonian_noise_variance(da, gain_factor=-1)


@pytest.mark.parametrize("kind", KINDS)
def test_power_law_background_on_a_noise_free_power_law(kind):
    """The two-area estimate on a pure power law: within its bias (2.7 % on
    this window; HyperSpy 2.5 gives the same numbers to the last bit, see
    test_spectra_hyperspy), the same for every pixel whatever the chunking."""
    amplitude = np.linspace(1.0, 2.0, 20).reshape(4, 5, 1)
    clean = xr.DataArray(
        amplitude * 5e8 * E**-3.0, dims=("y", "x", "energy"), coords={"energy": E}
    ).signal.set_signal_dims("energy")
    out = run(xsignal.remove_background, clean, kind, (305.0, 340.0))
    window = (E >= 305) & (E <= 340)
    assert np.abs(out.values[..., window] / clean.values[..., window]).max() < 0.03
    bg = clean.values - out.values
    np.testing.assert_allclose(
        bg / amplitude, np.broadcast_to(bg[0, 0] / amplitude[0, 0], bg.shape), rtol=1e-9
    )


@pytest.mark.parametrize("kind", KINDS)
def test_polynomial_and_offset_backgrounds(kind):
    rng = np.random.default_rng(3)
    coeffs = rng.uniform(-1, 1, (4, 5, 3))
    x = E - 350
    poly = coeffs[..., :1] + coeffs[..., 1:2] * x + coeffs[..., 2:] * x**2
    da = xr.DataArray(poly, dims=("y", "x", "energy"), coords={"energy": E})
    out = run(xsignal.remove_background, da, kind, (310.0, 390.0), "Polynomial", 2)
    np.testing.assert_allclose(out.values, 0.0, atol=1e-8)
    flat = run(xsignal.remove_background, da + 7.0 - da, kind, (310.0, 390.0), "Offset")
    np.testing.assert_allclose(flat.values, 0.0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_exponential_background(kind):
    tau = np.linspace(20.0, 40.0, 20).reshape(4, 5, 1)
    da = xr.DataArray(
        1e6 * np.exp(-E / tau), dims=("y", "x", "energy"), coords={"energy": E}
    )
    out, bg = run(
        lambda d, *a: xr.concat(
            xsignal.remove_background(d, *a, return_background=True), "part"
        ),
        da,
        kind,
        (310.0, 380.0),
        "Exponential",
    )
    np.testing.assert_allclose(bg.values, da.values, rtol=1e-9)
    np.testing.assert_allclose(out.values, 0.0, atol=1e-6)


def test_background_arguments_are_checked():
    da = eels()
    with pytest.raises(ValueError, match="background_type must be one of"):
        xsignal.remove_background(da, (310.0, 340.0), "Gaussian")
    with pytest.raises(ValueError, match="outside the coordinate"):
        xsignal.remove_background(da, (10.0, 20.0))
    with pytest.raises(ValueError, match="start < end"):
        xsignal.remove_background(da, (340.0, 310.0))
    with pytest.raises(ValueError, match="fewer than 3 channels"):
        xsignal.remove_background(da, (310.0, 310.4))


def test_the_signal_dim_must_be_known():
    da = xr.DataArray(np.ones((3, 4, 5)), dims=("a", "b", "c")).signal.set_signal_dims(
        "b", "c"
    )
    with pytest.raises(ValueError, match="dim must be given"):
        xsignal.derivative(da)
    np.testing.assert_allclose(xsignal.derivative(da, "c").values, 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_find_peaks1D_is_scipy_on_every_spectrum(kind):
    da = eels()
    smooth = xsignal.gaussian_filter(da, 3.0).compute()
    out = run(xsignal.find_peaks1D, smooth, kind, prominence=5.0, distance=2.0)
    assert out.dims == ("y", "x") and out.dtype == object
    assert out.attrs["units"] == "eV"
    for iy in range(4):
        for ix in range(5):
            where, _ = scipy.signal.find_peaks(
                smooth.values[iy, ix], prominence=5.0, distance=4
            )
            np.testing.assert_array_equal(out.values[iy, ix], E[where])
    # the two peaks at 350 and 360 eV are found in every spectrum
    for found in out.values.ravel():
        assert np.min(np.abs(found - 350.0)) <= 1.0
        assert np.min(np.abs(found - 360.0)) <= 1.0


def peaks_at(centres: np.ndarray) -> xr.DataArray:
    """Gaussian peaks (sigma 3 eV) at ``centres`` (eV), one spectrum each."""
    values = 100 * np.exp(-0.5 * ((E - centres[..., None]) / 3.0) ** 2)
    return xr.DataArray(
        values,
        dims=("y", "x", "energy"),
        coords={"energy": ("energy", E, {"units": "eV"})},
    ).signal.set_signal_dims("energy")


@pytest.mark.parametrize("kind", KINDS)
def test_estimate_shift1D_finds_known_shifts(kind):
    rng = np.random.default_rng(4)
    # multiples of 1/12 channel: exact on the 6-points-per-channel grid
    offsets = np.round(rng.uniform(-8, 8, (4, 5)) * 12) / 12 * 0.5
    offsets[0, 0] = 0.0
    da = peaks_at(350.0 + offsets)
    out = run(xsignal.estimate_shift1D, da, kind, 320.0, 380.0)
    assert out.dims == ("y", "x") and out.attrs["units"] == "eV"
    np.testing.assert_allclose(out.values, -offsets, atol=0.5 / 6 + 1e-9)
    aligned = run(lambda d: xsignal.align1D(d, 320.0, 380.0).idxmax("energy"), da, kind)
    np.testing.assert_allclose(aligned.values, 350.0, atol=0.5)


def test_estimate_shift1D_is_the_argmax_of_numpy_correlate():
    """Whole channels (interpolate=False) on noise: the lag of the maximum of
    ``np.correlate(ref, spectrum, "full")``, as HyperSpy computes it."""
    da = eels(5)
    window = slice(20, 180)
    out = xsignal.estimate_shift1D(
        da, E[20], E[180], reference_indices={"y": 1, "x": 2}, interpolate=False
    )
    ref = da.values[1, 2, window] - da.values[1, 2, window].mean()
    for iy, ix in [(0, 0), (3, 4), (2, 1)]:
        lane = da.values[iy, ix, window] - da.values[iy, ix, window].mean()
        lag = np.argmax(np.correlate(ref, lane, "full")) - lane.size + 1
        assert out.values[iy, ix] == lag * 0.5


def test_max_shift_limits_the_search():
    da = peaks_at(np.array([[350.0, 362.0]]))
    free = xsignal.estimate_shift1D(da).values
    bounded = xsignal.estimate_shift1D(da, max_shift=5.0).values
    assert free[0, 1] == pytest.approx(-12.0)
    assert abs(bounded[0, 1]) <= 5.0


@pytest.mark.parametrize("kind", KINDS)
def test_shift1D_moves_each_spectrum(kind):
    da = eels()
    moves = xr.DataArray(np.linspace(-3.0, 3.0, 20).reshape(4, 5), dims=("y", "x"))
    out = run(xsignal.shift1D, da, kind, moves.chunk() if kind != "memory" else moves)
    for iy, ix in [(0, 0), (1, 3), (3, 4)]:
        shift = float(moves[iy, ix])
        want = np.interp(E - shift, E, da.values[iy, ix], left=np.nan, right=np.nan)
        np.testing.assert_allclose(out.values[iy, ix], want, rtol=1e-12)
    cropped = xsignal.shift1D(da, moves.values, crop=True)
    assert not np.isnan(cropped.values).any()
    assert cropped.sizes["energy"] == 200 - 6 - 6
    with pytest.raises(ValueError, match="in memory"):
        xsignal.shift1D(da, moves.chunk(), crop=True)
    with pytest.raises(ValueError, match="do not match"):
        xsignal.shift1D(da, np.zeros(3))


@pytest.mark.parametrize("dtype", ["f8", "f4", "i2"])
@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_shift1D_is_linear_interpolation_at_any_shift(dtype, fill):
    """Whole and part channels, shifts beyond the spectrum's length either
    way and a NaN shift (all fill), against ``np.interp``."""
    rng = np.random.default_rng(8)
    data = (rng.random((7, 200)) * 1000).astype(dtype)
    da = xr.DataArray(data, dims=("x", "energy"), coords={"energy": E})
    moves = np.array([0.0, 1.0, -0.25, 7.3, -150.0, 300.0, np.nan])
    lazy = da.chunk({"x": 3}).signal.set_signal_dims("energy")
    with raise_if_dask_computes():
        out = xsignal.shift1D(lazy, moves, fill_value=fill)
    assert out.dtype == (np.float32 if dtype == "f4" else np.float64)
    for i, shift in enumerate(moves):
        want = (
            np.full(E.size, fill)
            if np.isnan(shift)
            else np.interp(E - shift, E, data[i].astype("f8"), left=fill, right=fill)
        )
        np.testing.assert_allclose(out.values[i], want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("spacing", ["uniform", "uneven", "decreasing"])
def test_simpson_weights_are_scipys_rule(spacing):
    """Odd and even numbers of points (Cartwright's last interval), one and
    two points, to rounding of scipy's own sums."""
    rng = np.random.default_rng(9)
    for n in range(1, 12):
        x = {
            "uniform": 0.5 * np.arange(n),
            "uneven": np.sort(rng.uniform(0, 10, n)),
            "decreasing": np.sort(rng.uniform(0, 10, n))[::-1],
        }[spacing]
        y = rng.normal(size=(3, n))
        got = y @ xsignal.spectra.simpson_weights(x)
        want = scipy.integrate.simpson(y, x=x, axis=-1)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_spectra_are_integrated_and_cleaned_in_float32(kind):
    """float32 data: float32 results within float32 rounding of the float64
    computation (the product and the power law's exp run in float32)."""
    wide = eels()
    narrow = wide.astype("f4")
    total = run(xsignal.integrate_simpson, narrow, kind)
    assert total.dtype == np.float32
    want = scipy.integrate.simpson(wide.values, x=E, axis=-1)
    np.testing.assert_allclose(total.values, want, rtol=2e-6)
    cleaned = run(xsignal.remove_background, narrow, kind, (305.0, 340.0))
    assert cleaned.dtype == np.float32
    reference = xsignal.remove_background(wide, (305.0, 340.0)).values
    background = wide.values - reference
    np.testing.assert_allclose(
        cleaned.values, reference, atol=1e-5 * float(np.abs(background).max())
    )


def test_simpson_weights_take_a_repeated_coordinate_as_scipy_does():
    x = np.array([0.0, 1.0, 1.0, 2.5, 3.0, 3.0])
    y = np.random.default_rng(10).normal(size=(2, x.size))
    for n in (5, 6):
        want = scipy.integrate.simpson(y[:, :n], x=x[:n], axis=-1)
        got = y[:, :n] @ xsignal.spectra.simpson_weights(x[:n])
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_float16_spectra_are_integrated_to_float16_rounding():
    """float16 results of a 1024-term sum that a float16 running sum would
    round off (numpy's float16 product accumulates in float32)."""
    x = np.arange(1024.0)
    da = xr.DataArray(
        np.full((2, x.size), 0.7, "f2"), dims=("p", "e"), coords={"e": x}
    ).signal.set_signal_dims("e")
    out = xsignal.integrate_simpson(da.chunk({"p": 1})).values
    assert out.dtype == np.float16
    want = scipy.integrate.simpson(da.values.astype("f8"), x=x, axis=-1)
    np.testing.assert_allclose(out, want, rtol=1e-3)
