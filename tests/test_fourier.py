"""fft/ifft over the signal dims: numpy's transform on every signal, the
frequencies as coordinates, lazily at two chunkings."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes


def frames() -> xr.DataArray:
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.random((3, 4, 8, 10)).astype("f4"),
        dims=("y", "x", "ky", "kx"),
        coords={
            "ky": ("ky", np.arange(8) * 0.2, {"units": "1/nm"}),
            "kx": ("kx", -1 + np.arange(10) * 0.25, {"units": "1/nm"}),
        },
    ).signal.set_signal_dims("ky", "kx")


@pytest.mark.parametrize("chunks", [None, {"y": 1}, {"y": 2, "kx": 5}])
@pytest.mark.parametrize("shift", [False, True])
def test_fft_over_the_signal_dims(chunks, shift):
    da = frames()
    data = da.chunk(chunks) if chunks else da
    with raise_if_dask_computes():
        out = xsignal.fft(data, shift=shift)
    assert xsignal.is_lazy(out) == bool(chunks)
    want = np.fft.fftn(da.values, axes=(-2, -1))
    freq_x = np.fft.fftfreq(10, 0.25)
    if shift:
        want = np.fft.fftshift(want, axes=(-2, -1))
        freq_x = np.fft.fftshift(freq_x)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out.values, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.kx.values, freq_x)
    assert out.kx.attrs["units"] == "nm"  # the inverse of 1/nm
    assert out.signal.signal_dims == ("ky", "kx")
    back = xsignal.ifft(out)
    np.testing.assert_allclose(back.real.values, da.values, atol=1e-5)
    np.testing.assert_allclose(back.kx.values, da.kx.values)
    assert back.kx.attrs == {"units": "1/nm"}


def test_fft_of_spectra_via_the_accessor():
    e = 300 + np.arange(64) * 0.5
    da = xr.DataArray(
        np.cos(2 * np.pi * e / 4.0)[None].repeat(3, 0),
        dims=("x", "energy"),
        coords={"energy": ("energy", e, {"units": "eV"})},
    )
    out = da.signal.fft(shift=True)
    peak = float(abs(out).isel(x=0).idxmax())
    assert abs(peak) == pytest.approx(0.25)  # 1 / (4 eV)
    assert out.energy.attrs["units"] == "1/eV"
    assert np.allclose(da.signal.fft().signal.ifft().real, da)


def test_fft_needs_uniform_coordinates_and_signal_dims():
    da = frames().assign_coords(kx=np.sort(np.random.default_rng(1).random(10)))
    with pytest.raises(NotImplementedError, match="uniform coordinate"):
        xsignal.fft(da)
    with pytest.raises(ValueError, match="no signal dims"):
        xsignal.fft(frames().signal.set_signal_dims())
