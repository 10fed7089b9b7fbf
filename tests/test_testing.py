"""Synthetic data with known truth, the file writer, raise_if_dask_computes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from xsignal.testing import (
    raise_if_dask_computes,
    spectrum_image,
    write_spectrum_image,
)


def test_spectrum_image_is_low_rank_plus_noise():
    data, factors, loadings = spectrum_image((8, 9, 64), rank=3, noise=None)
    assert data.dims == ("y", "x", "energy") and data.dtype == np.float32
    assert factors.dims == ("component", "energy") and factors.sizes["component"] == 3
    assert loadings.dims == ("component", "y", "x")
    model = (loadings * factors).sum("component").transpose(*data.dims)
    np.testing.assert_allclose(data.values, model.values, rtol=1e-5)
    singular = np.linalg.svd(data.values.reshape(72, 64), compute_uv=False)
    assert singular[3] < 1e-4 * singular[0]  # exactly rank 3
    assert (factors >= 0).all() and (loadings >= 0).all()
    assert data.coords["energy"].attrs["units"] == "eV"
    assert data.signal.signal_dims == ("energy",)


def test_spectrum_image_poisson_noise_is_counts_around_the_model():
    data, factors, loadings = spectrum_image((16, 16, 128), noise="poisson")
    assert np.array_equal(data.values, np.round(data.values))
    model = (loadings * factors).sum("component").transpose(*data.dims).values
    counts = model > 5  # where Poisson is close to Gaussian
    residual = (data.values - model)[counts] / np.sqrt(model[counts])
    assert abs(residual.mean()) < 0.05 and 0.95 < residual.std() < 1.05


def test_spectrum_image_is_reproducible_and_seeded():
    a = spectrum_image((4, 5, 32), seed=3).data
    b = spectrum_image((4, 5, 32), seed=3).data
    c = spectrum_image((4, 5, 32), seed=4).data
    assert a.equals(b) and not a.equals(c)


def test_spectrum_image_lazy_with_chunks():
    data = spectrum_image((4, 5, 32), chunks={"y": 2}).data
    assert data.chunks == ((2, 2), (5,), (32,))


@pytest.mark.parametrize("shape", [(10, 32), (2, 3, 4, 16)])
def test_spectrum_image_other_navigation_dims(shape):
    data = spectrum_image(shape).data
    assert data.shape == shape
    assert data.signal.signal_dims == ("energy",)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"noise": "salt"}, "noise"), ({"shape": (5,)}, "shape"), ({"rank": 0}, "rank")],
)
def test_spectrum_image_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spectrum_image(**kwargs)


def test_written_file_equals_the_in_memory_image(tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (10, 6, 48), rank=3, seed=2)
    expected = spectrum_image((10, 6, 48), rank=3, seed=2).data
    with xr.open_dataarray(path, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), expected)
        assert back.signal.signal_dims == ("energy",)


def test_written_file_is_chunked_by_rows(tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (40, 64, 256), chunks=None)
    with h5py.File(path) as f:
        # 64 x 256 float32 = 64 KiB a row: 64 rows make 4 MiB, capped at 40
        assert f["data"].chunks == (40, 64, 256)
    path = write_spectrum_image(
        tmp_path / "gz.nc", (5, 4, 16), chunks=(2, 4, 16), compression="gzip"
    )
    with h5py.File(path) as f:
        assert f["data"].chunks == (2, 4, 16)
        assert f["data"].compression == "gzip"


def test_writer_holds_one_row_block_at_a_time(tmp_path):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    before = proc.memory_info().rss
    # 256 MiB of float32 written in 4 MiB blocks
    write_spectrum_image(tmp_path / "big.nc", (256, 256, 1024), noise=None)
    grown = proc.memory_info().rss - before
    assert grown < 128 * 2**20


def test_raise_if_dask_computes_counts():
    lazy = xr.DataArray(np.ones(4)).chunk(2)
    with raise_if_dask_computes(max_computes=2) as scheduler:
        lazy.sum().compute()
        lazy.mean().compute()
    assert scheduler.total_computes == 2
    with pytest.raises(RuntimeError, match="computed 1 time"):
        with raise_if_dask_computes():
            lazy.max().compute()
