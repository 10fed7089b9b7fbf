"""as_lazy, compute (progress, close_file), xsignal.compute, change_dtype, blocks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from clusters import local_client

import xsignal
from xsignal.testing import raise_if_dask_computes, spectrum_image


def test_is_lazy(si, backend):
    assert si.signal.is_lazy is (backend == "dask")


def test_lazy_calls_compute_nothing():
    da = spectrum_image((6, 5, 32), chunks={"y": 2}).data
    with raise_if_dask_computes():
        out = da.signal.as_lazy()
        out = out.signal.rechunk(navigation=3, signal=8)
        out = out.signal.change_dtype("float64")
        out = out.signal.set_signal_dims("x", "energy")
        out = out.signal.as_lazy({"y": 1})
        repr(out.signal)
        out = (out + 1) * 2
    assert out.signal.is_lazy


def test_compute_gives_numpy_values_and_keeps_everything(si, scheduler):
    out = si.signal.compute()
    assert not out.signal.is_lazy
    np.testing.assert_array_equal(out.values, si.values)
    assert out.attrs == si.attrs
    assert out.signal.signal_dims == ("energy",)
    xr.testing.assert_identical(out.coords.to_dataset(), si.coords.to_dataset())


def test_compute_progress_bar_is_shown_when_asked(capsys):
    da = spectrum_image((6, 5, 32), chunks={"y": 1}).data
    da.signal.compute(progress=True)
    assert "100%" in capsys.readouterr().err


def test_compute_progress_follows_options(capsys):
    da = spectrum_image((6, 5, 32), chunks={"y": 1}).data
    with xsignal.set_options(progress=False):
        da.signal.compute()
    assert capsys.readouterr().err == ""


def test_progress_auto_is_off_under_ci(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    da = spectrum_image((6, 5, 32), chunks={"y": 1}).data
    with xsignal.set_options(progress=None):
        da.signal.compute()
    assert capsys.readouterr().err == ""


def test_progress_auto_waits_for_slow_computes(monkeypatch):
    from xsignal.progress import show_progress

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    with xsignal.set_options(progress=None):
        assert show_progress(None) is True
        assert show_progress(False) is False


def test_compute_close_file_releases_the_file(tmp_path):
    path = tmp_path / "data.nc"
    data = spectrum_image((4, 3, 8)).data
    data.to_netcdf(path, engine="h5netcdf")
    lazy = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    out = lazy.signal.compute(close_file=True)
    np.testing.assert_array_equal(out.values, data.values)
    path.unlink()  # nothing holds it open
    data.to_netcdf(path, engine="h5netcdf")


def test_xsignal_compute_runs_one_pass():
    da = spectrum_image((6, 5, 32), chunks={"y": 2}).data
    with raise_if_dask_computes(max_computes=1):
        total, spectrum, untouched = xsignal.compute(da.sum(), da.mean(("y", "x")), 3)
    np.testing.assert_allclose(float(total), float(da.values.sum(dtype="f8")), 1e-5)
    np.testing.assert_allclose(spectrum.values, da.values.mean((0, 1)), 1e-5)
    assert untouched == 3


@pytest.mark.parametrize("rechunk", [False, True])
def test_change_dtype(si, backend, rechunk, scheduler):
    out = si.signal.change_dtype("float64", rechunk=rechunk)
    assert out.dtype == np.float64
    assert out.signal.is_lazy is (backend == "dask")
    np.testing.assert_array_equal(out.values, si.values.astype("f8"))
    if backend == "dask" and not rechunk:
        assert out.chunks == si.chunks
    if backend == "dask" and rechunk:
        assert out.chunks == xsignal.as_lazy(out.compute()).chunks


def test_change_dtype_rejects_non_dtypes(si):
    with pytest.raises(TypeError, match="not a numpy dtype"):
        si.signal.change_dtype("spectrum")


# --- blocks ------------------------------------------------------------------


def assemble(da, blocks_iter, nav_mask=None):
    """Put flat blocks back into a (pixels..., signal) array, NaN where masked."""
    nav = da.signal.navigation_shape
    out = np.full((*nav, da.signal.signal_size), np.nan)
    keep = np.ones(nav, bool) if nav_mask is None else ~nav_mask
    for where, block in blocks_iter:
        index = tuple(where[d] for d in da.signal.navigation_dims)
        target = out[index].reshape(-1, out.shape[-1])
        target[keep[index].ravel()] = block
        out[index] = target.reshape(out[index].shape)
    return out


def test_blocks_cover_the_array_in_order(si, backend, scheduler):
    items = list(si.signal.blocks())
    starts = [(w["y"].start, w["x"].start) for w, _ in items]
    assert starts == sorted(starts)
    expected = si.values.reshape(6, 5, 32)
    np.testing.assert_array_equal(assemble(si, items), expected)
    if backend == "dask":
        assert len(items) == 3 * 2  # y chunks of 2, x chunks of 3


def test_blocks_make_split_signals_whole():
    da = spectrum_image((4, 3, 32), chunks={"energy": 8}).data
    shapes = {block.shape for _, block in da.signal.blocks()}
    assert shapes == {(12, 32)}


def test_blocks_with_masks_leave_masked_parts_out(si):
    rng = np.random.default_rng(3)
    nav_mask = rng.random((6, 5)) < 0.3
    sig_mask = np.zeros(32, bool)
    sig_mask[:4] = True
    items = list(si.signal.blocks(navigation_mask=nav_mask, signal_mask=sig_mask))
    n_rows = sum(block.shape[0] for _, block in items)
    assert n_rows == (~nav_mask).sum()
    assert all(block.shape[1] == 28 for _, block in items)
    expected = si.values[~nav_mask][:, 4:]
    got = np.concatenate([block for _, block in items])
    # the same rows, in block order rather than C order: compare sorted sums
    np.testing.assert_allclose(np.sort(got.sum(1)), np.sort(expected.sum(1)), rtol=1e-6)


def test_blocks_skip_fully_masked_blocks_without_reading_them():
    da = spectrum_image((6, 5, 32), chunks={"y": 2, "x": -1}).data
    nav_mask = np.zeros((6, 5), bool)
    nav_mask[:4] = True  # the first two blocks entirely
    with raise_if_dask_computes(max_computes=1):
        items = list(xsignal.blocks(da, navigation_mask=nav_mask, prefetch=8))
    assert [w["y"] for w, _ in items] == [slice(4, 6)]


def test_blocks_masks_as_dataarrays_are_aligned_by_name(si):
    nav_mask = xr.DataArray(np.zeros((5, 6), bool), dims=("x", "y"))
    nav_mask[0, 1] = True  # x=0, y=1
    items = list(si.signal.blocks(navigation_mask=nav_mask))
    out = assemble(si, items, nav_mask.transpose("y", "x").values)
    assert np.isnan(out[1, 0]).all()
    assert not np.isnan(np.delete(out.reshape(30, 32), 5, axis=0)).any()


def test_blocks_not_flat_keep_shape_and_fill_masked_values(backend):
    da = spectrum_image((4, 3, 8), rank=2).data.transpose("energy", "y", "x")
    da = da.chunk({"y": 2}) if backend == "dask" else da
    nav_mask = np.zeros((4, 3), bool)
    nav_mask[0, 0] = True
    sig_mask = np.zeros(8, bool)
    sig_mask[-1] = True
    items = list(
        da.signal.blocks(navigation_mask=nav_mask, signal_mask=sig_mask, flat=False)
    )
    # "energy" was marked as signal before the transpose, so it stays signal
    assert da.signal.signal_dims == ("energy",)
    first_where, first = items[0]
    assert first.shape[0] == 8  # energy stays the first axis
    assert np.isnan(first[:, 0, 0]).all()
    assert np.isnan(first[-1]).all()
    full = np.concatenate([b for _, b in items], axis=1)
    expected = da.values.copy()
    expected[:, 0, 0] = np.nan
    expected[-1] = np.nan
    np.testing.assert_array_equal(full, expected)


def test_blocks_not_flat_fill_integers_with_zero():
    da = xr.DataArray(np.arange(24).reshape(2, 3, 4) + 1, dims=("y", "x", "e"))
    mask = np.zeros((2, 3), bool)
    mask[1, 2] = True
    ((_, block),) = list(da.signal.blocks(navigation_mask=mask, flat=False))
    assert block.dtype == da.dtype
    assert (block[1, 2] == 0).all() and (block[0] > 0).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"navigation_mask": np.zeros((5, 6), bool)}, ValueError, r"shape \(5, 6\)"),
        ({"navigation_mask": np.zeros((6, 5))}, TypeError, "must be boolean"),
        ({"signal_mask": np.zeros(31, bool)}, ValueError, "signal_mask has shape"),
        (
            {"navigation_mask": xr.DataArray(np.zeros(6, bool), dims="y")},
            ValueError,
            "navigation_mask has dims",
        ),
        (
            {"signal_mask": xr.DataArray(np.zeros(31, bool), dims="energy")},
            ValueError,
            "31 elements along 'energy'",
        ),
    ],
)
def test_blocks_reject_bad_masks(si, kwargs, error, match):
    with pytest.raises(error, match=match):
        next(si.signal.blocks(**kwargs))


def test_blocks_and_compute_on_an_in_process_distributed_client():
    # tests/test_distributed.py runs everything on worker processes; this
    # one checks non-dask objects pass through xsignal.compute on a client
    da = spectrum_image((6, 5, 32), chunks={"y": 2}).data
    with local_client(processes=False, n_workers=1, threads_per_worker=2):
        items = list(da.signal.blocks())
        out = da.signal.compute(progress=True)
        total, same = xsignal.compute(da.sum(), 7, progress=True)
    np.testing.assert_array_equal(assemble(da, items), da.values)
    np.testing.assert_array_equal(out.values, da.values)
    assert float(total) == pytest.approx(float(da.values.sum(dtype="f8")))
    assert same == 7
