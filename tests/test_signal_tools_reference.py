"""Signal tools against what HyperSpy 2.5, exspy and pyxem 0.21 give on the
same data (tests/data/reference: stored results, the script that made
them, and the conventions found, in its README). Each tool runs lazily at
two chunkings and in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xsignal

REF = np.load(Path(__file__).parent / "data" / "reference" / "signal_tools.npz")
CALLS = json.loads(str(REF["calls"]))
KINDS = ["memory", "lazy-rows", "lazy-blocks"]


def kind_of(da: xr.DataArray, kind: str) -> xr.DataArray:
    if kind == "memory":
        return da
    nav = xsignal.navigation_dims(da)
    if kind == "lazy-rows":
        return da.chunk({nav[0]: 1})
    return da.chunk({d: 2 for d in nav})


def eels(kind: str = "memory") -> xr.DataArray:
    offset, scale, size = REF["eels_axis"]
    energy = offset + scale * np.arange(int(size))
    da = xr.DataArray(
        REF["eels"], dims=("y", "x", "energy"), coords={"energy": energy}
    ).signal.set_signal_dims("energy")
    return kind_of(da, kind)


def stem(kind: str = "memory") -> xr.DataArray:
    offset, scale, size = REF["stem4d_sig_axis"]
    k = offset + scale * np.arange(int(size))
    da = xr.DataArray(
        REF["stem4d"], dims=("y", "x", "ky", "kx"), coords={"ky": k, "kx": k}
    ).signal.set_signal_dims("ky", "kx")
    return kind_of(da, kind)


def images() -> xr.DataArray:
    return xr.DataArray(REF["images"], dims=("t", "y", "x")).signal.set_signal_dims(
        "y", "x"
    )


# --- spectra ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("key", "tool"),
    [
        ("hs_integrate1D", lambda d: d.signal.integrate1D()),
        ("hs_integrate_simpson", lambda d: d.signal.integrate_simpson()),
        ("hs_derivative1", lambda d: d.signal.derivative(order=1)),
        ("hs_derivative2", lambda d: d.signal.derivative(order=2)),
        ("hs_savgol", lambda d: d.signal.smooth_savitzky_golay(11, 3)),
        ("hs_savgol_deriv1", lambda d: d.signal.smooth_savitzky_golay(11, 3, 1)),
        ("hs_gaussian_filter", lambda d: d.signal.gaussian_filter(2.0)),
        ("hs_noise_variance", lambda d: d.signal.estimate_poissonian_noise_variance()),
        (
            "hs_noise_variance_gain",
            lambda d: d.signal.estimate_poissonian_noise_variance(
                gain_factor=2.0, gain_offset=10.0, correlation_factor=0.5
            ),
        ),
        ("hs_bg_powerlaw", lambda d: d.signal.remove_background((310.0, 340.0))),
        (
            "hs_bg_polynomial",
            lambda d: d.signal.remove_background((310.0, 340.0), "Polynomial", 2),
        ),
        (
            "hs_bg_offset",
            lambda d: d.signal.remove_background((310.0, 340.0), "Offset"),
        ),
    ],
)
def test_spectra_tools_equal_hyperspy(kind, key, tool):
    out = tool(eels(kind))
    assert xsignal.is_lazy(out) == (kind != "memory")
    # the Gaussian's constant: HyperSpy divides by 2.35482, the exact
    # 2 sqrt(2 ln 2) differs in the sixth digit
    rtol = 2e-6 if key == "hs_gaussian_filter" else 1e-9
    np.testing.assert_allclose(out.values, REF[key], rtol=rtol, atol=1e-9)


def test_estimate_shift1D_and_shift1D_equal_hyperspy():
    stack = xr.DataArray(
        REF["shift_stack"],
        dims=("i", "energy"),
        coords={"energy": 300 + 0.5 * np.arange(200)},
    ).signal.set_signal_dims("energy")
    shifts = stack.chunk({"i": 2}).signal.estimate_shift1D(
        320.0, 380.0, reference_indices={"i": 0}
    )
    np.testing.assert_array_equal(shifts.values, REF["hs_estimate_shift1D"])
    # HyperSpy extrapolates at the ends with crop=False: compare inside
    moved = stack.signal.shift1D(-REF["shift_stack_true_shifts_channels"] * 0.5)
    inside = np.isfinite(moved.values)
    np.testing.assert_allclose(moved.values[inside], REF["hs_shift1D_nocrop"][inside])
    aligned = stack.signal.align1D(320.0, 380.0, reference_indices={"i": 0})
    inside = np.isfinite(aligned.values)
    np.testing.assert_allclose(aligned.values[inside], REF["hs_align1D_nocrop"][inside])


def test_fft_equals_hyperspy_with_numpy_frequencies():
    """The values equal HyperSpy's; the frequencies are numpy's fftfreq,
    HyperSpy's shifted axis sits half a bin off for even sizes."""
    out = eels("lazy-rows").signal.fft(shift=True)
    np.testing.assert_allclose(out.values, REF["hs_fft_shift"], rtol=1e-9, atol=1e-6)
    offset, scale, size = REF["hs_fft_shift_axis"]
    np.testing.assert_allclose(np.diff(out.energy.values), scale)
    assert out.energy.values[0] == pytest.approx(offset - scale / 2)


# --- images -------------------------------------------------------------------------


def test_estimate_shift2D_equals_hyperspy_phase_correlation():
    out = images().chunk({"t": 2}).signal.estimate_shift2D(sub_pixel_factor=10)
    assert list(out.vector.values) == ["y", "x"]
    np.testing.assert_allclose(out.values, REF["hs_estimate_shift2D_phase_sub10"])
    np.testing.assert_allclose(out.values, REF["images_true_shifts_yx"])


def test_align2D_equals_hyperspy_without_crop():
    shifts = xr.DataArray(REF["hs_estimate_shift2D_sub10"], dims=("t", "vector"))
    out = images().chunk({"t": 1}).signal.align2D(shifts)
    want = REF["hs_align2D_shifts10_nocrop"]
    np.testing.assert_array_equal(np.isnan(out.values), np.isnan(want))
    np.testing.assert_allclose(out.values, want, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_find_peaks2D_equals_pyxem(kind):
    out = stem(kind).signal.find_peaks2D(min_distance=3, threshold_rel=0.1).compute()
    offset, scale, _ = REF["stem4d_sig_axis"]
    # pyxem: pixel (row, col); HyperSpy's inav is (x, y)
    for (iy, ix), key in [((0, 0), "px_find_peaks_00"), ((2, 3), "px_find_peaks_32")]:
        pixels = np.round((out.values[iy, ix] - offset) / scale).astype(int)
        assert sorted(pixels.tolist()) == sorted(REF[key].astype(int).tolist())


# --- 4D-STEM -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_virtual_images_equal_pyxem_on_pyxem_pixel_sets(kind):
    """With the pixel sets pyxem's ROIs select, the sums equal pyxem's; the
    ROIs themselves select by xsignal's rule (the pixel's centre in the
    shape), which differs from HyperSpy's half-pixel offset at the edge."""
    masks = list(REF["px_vimg_masks"])
    out = stem(kind).signal.virtual_images(masks)
    np.testing.assert_allclose(
        np.moveaxis(out.values, -1, 0), REF["px_vimg"], rtol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_center_of_mass_equals_pyxem_calibrated(kind):
    offset, scale, _ = REF["stem4d_sig_axis"]
    da = stem(kind)
    plain = da.signal.center_of_mass()
    np.testing.assert_allclose(
        plain.values, offset + scale * REF["px_com_center_px_xy"], atol=1e-6
    )
    thresholded = da.signal.center_of_mass(threshold=2.0)
    np.testing.assert_allclose(
        thresholded.values,
        offset + scale * REF["px_com_threshold_center_px_xy"],
        atol=1e-6,
    )
    masked = da.signal.center_of_mass(mask=REF["px_com_mask"])
    np.testing.assert_allclose(
        masked.values, offset + scale * REF["px_com_mask_center_px_xy"], atol=1e-6
    )


def test_azimuthal_integral_is_close_to_pyxem_mean():
    """pyxem splits pixels exactly between annuli, xsignal gives each pixel
    to the annulus of its centre (pyxem's radius labels are the inner
    edges, xsignal's the mid radii): the profiles differ at the disc's
    sharp edge and in the inner annuli of few pixels by up to 15 % of their
    range, correlate closely, and
    hold the same intensity."""
    out = stem().signal.azimuthal_integral1d(
        16, center=(0.0, 0.0), radial_range=(0, 1.6)
    )
    offset, scale, size = REF["px_azim1d_range_axis"]
    np.testing.assert_allclose(
        out.radius.values, offset + scale * (np.arange(16) + 0.5)
    )
    want = REF["px_azim1d_mean_range"]
    span = want.max() - want.min()
    assert np.abs(out.values - want).max() < 0.15 * span
    for ours, theirs in zip(out.values.reshape(-1, 16), want.reshape(-1, 16)):
        assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    k = offset_k = REF["stem4d_sig_axis"][0] + 0.1 * np.arange(32)
    inside = np.hypot(k[None, :], offset_k[:, None]) < 1.6
    ours_total = REF["stem4d"][..., inside].sum(-1)
    theirs_total = (want * REF["px_azim1d_ones_sum_range"]).sum(-1)
    np.testing.assert_allclose(ours_total, theirs_total, rtol=0.02)
