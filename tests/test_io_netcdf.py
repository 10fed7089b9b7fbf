"""save/open round trips of netCDF4 files, chunks, compression, atomic writes."""

from __future__ import annotations

import os

import dask
import dask.array as dsa
import h5py
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.io.h5source import H5Source
from xsignal.sources import file_identity
from xsignal.testing import raise_if_dask_computes, write_spectrum_image


def make(lazy: bool, chunks=None) -> xr.DataArray:
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.random((6, 5, 16)).astype("f4"),
        dims=("y", "x", "energy"),
        coords={
            "y": np.arange(6) * 2.0,
            "energy": ("energy", np.linspace(100, 200, 16), {"units": "eV"}),
            "label": ("x", np.array(list("abcde"))),
        },
        attrs={"title": "si", "count": 3},
        name="counts",
    )
    da = da.signal.set_signal_dims("energy")
    return da.chunk(chunks or {"y": 2}) if lazy else da


@pytest.mark.parametrize("lazy", [False, True])
def test_round_trip_values_coords_attrs_marking(tmp_path, lazy, opened, scheduler):
    da = make(lazy)
    path = tmp_path / "a.nc"
    da.signal.save(path)
    back = xsignal.open(path)
    opened.append(back)
    assert back.signal.is_lazy
    xr.testing.assert_identical(back.compute(), da.compute())
    assert back.signal.signal_dims == ("energy",)
    assert back.coords["energy"].attrs["units"] == "eV"


def test_marking_with_several_signal_dims_round_trips(tmp_path, opened):
    da = make(False).signal.set_signal_dims("x", "energy")
    da.signal.save(tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.signal_dims == ("x", "energy")
    assert back.signal.navigation_dims == ("y",)


def test_unnamed_array_round_trips_without_name(tmp_path, opened):
    da = xr.DataArray(np.arange(12.0).reshape(3, 4), dims=("x", "e"))
    xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.name is None
    xr.testing.assert_identical(back.compute(), da)


def test_open_chunks_are_the_saved_chunks(tmp_path, opened):
    xsignal.save(make(True, {"y": 3, "x": 2}), tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.chunks == ((3, 3), (2, 2, 1), (16,))
    with h5py.File(tmp_path / "a.nc") as f:
        assert f["counts"].chunks == (3, 2, 16)


def test_open_honours_chunks_dict_auto_and_tuple(tmp_path, opened):
    xsignal.save(make(True, {"y": 3}), tmp_path / "a.nc")
    by_dim = xsignal.open(tmp_path / "a.nc", chunks={"y": 2, "energy": 8})
    assert by_dim.chunks == ((2, 2, 2), (5,), (8, 8))
    as_tuple = xsignal.open(tmp_path / "a.nc", chunks=(6, -1, None))
    assert as_tuple.chunks == ((6,), (5,), (16,))
    auto = xsignal.open(tmp_path / "a.nc", chunks="auto")
    opened.extend([by_dim, as_tuple, auto])
    assert auto.chunks == ((6,), (5,), (16,))
    np.testing.assert_array_equal(by_dim.values, as_tuple.values)
    whole = xsignal.open(tmp_path / "a.nc", chunks=-1)
    opened.append(whole)
    assert whole.chunks == ((6,), (5,), (16,))
    with pytest.raises(ValueError, match="'z'"):
        xsignal.open(tmp_path / "a.nc", chunks={"z": 2})


def test_save_chunks_given_dict_tuple_and_default(tmp_path):
    da = make(False)
    xsignal.save(da, tmp_path / "d.nc", chunks={"y": 1})
    xsignal.save(da, tmp_path / "t.nc", chunks=(2, 5, 8))
    xsignal.save(da, tmp_path / "n.nc")
    with (
        h5py.File(tmp_path / "d.nc") as d,
        h5py.File(tmp_path / "t.nc") as t,
        h5py.File(tmp_path / "n.nc") as n,
    ):
        assert d["counts"].chunks == (1, 5, 16)
        assert t["counts"].chunks == (2, 5, 8)
        assert n["counts"].chunks == (6, 5, 16)  # small: whole signals, one chunk
    with pytest.raises(ValueError, match="'z'"):
        xsignal.save(da, tmp_path / "z.nc", chunks={"z": 1})
    with pytest.raises(ValueError, match="3 dims"):
        xsignal.save(da, tmp_path / "z.nc", chunks=(1, 2))


def test_irregular_dask_chunks_warn_and_reload_regular(tmp_path, opened):
    da = make(False).chunk({"y": (2, 3, 1)})
    with pytest.warns(UserWarning, match="irregular.*'y': 3"):
        xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.chunks[0] == (3, 3)
    np.testing.assert_array_equal(back.values, da.values)


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_compression(tmp_path, compression, opened):
    da = make(True)
    xsignal.save(da, tmp_path / "a.nc", compression=compression)
    with h5py.File(tmp_path / "a.nc") as f:
        assert f["counts"].compression == compression
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    np.testing.assert_array_equal(back.values, da.values)


def test_unknown_compression_is_a_clear_error(tmp_path):
    with pytest.raises((ValueError, TypeError), match="compression"):
        xsignal.save(make(False), tmp_path / "a.nc", compression="nope")
    assert not os.listdir(tmp_path)


def test_lazy_save_is_block_by_block_and_reads_each_block_once(tmp_path):
    da = make(True, {"y": 1})
    reads = []

    def spy(block):
        if block.size:  # dask calls it once on an empty array to learn the type
            reads.append(block.shape)
        return block

    traced = da.copy(data=da.data.map_blocks(spy, dtype=da.dtype))
    xsignal.save(traced, tmp_path / "a.nc")
    assert len(reads) == 6 and all(r == (1, 5, 16) for r in reads)


def test_overwrite_false_refuses_existing_file(tmp_path):
    path = tmp_path / "a.nc"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="a.nc"):
        xsignal.save(make(False), path)
    assert path.read_bytes() == b"keep me"
    xsignal.save(make(False), path, overwrite=True)
    assert xsignal.open(path, lazy=False).shape == (6, 5, 16)


def test_failing_task_leaves_no_file_and_the_old_one_intact(tmp_path):
    path = tmp_path / "a.nc"
    path.write_bytes(b"old")

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("task failed")
        return block

    da = make(True, {"y": 1})
    bad = da.copy(data=da.data.map_blocks(boom, dtype=da.dtype))
    with pytest.raises(RuntimeError, match="task failed"):
        xsignal.save(bad, path, overwrite=True)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.nc"]


def test_save_over_the_file_a_lazy_array_reads(tmp_path, opened):
    path = tmp_path / "a.nc"
    xsignal.save(make(False), path)
    lazy = xsignal.open(path)
    opened.append(lazy)
    doubled = lazy * 2
    doubled.attrs = dict(lazy.attrs)
    xsignal.save(doubled, path, overwrite=True)
    # the new file holds the new values; the old array reads from a file
    # that is gone, and says so rather than reading the new one
    new = xsignal.open(path, lazy=False)
    np.testing.assert_array_equal(new.values, make(False).values * 2)
    with pytest.raises(xsignal.FileChangedError, match="open it again"):
        lazy.values  # noqa: B018


def test_file_replaced_under_a_worker_is_a_clear_error(tmp_path, opened):
    path = tmp_path / "a.nc"
    xsignal.save(make(False), path)
    lazy = xsignal.open(path)
    opened.append(lazy)
    # a source with a token this process has not opened: like one that a
    # dask worker process unpickles
    name = lazy.name or "__xarray_dataarray_variable__"
    with h5py.File(path) as f:
        dset = f[name]
        clone = H5Source(path, name, dset.shape, dset.dtype, file_identity(path))
    xsignal.save(make(False) + 1, path, overwrite=True)
    with pytest.raises(ValueError, match="replaced or rewritten"):
        clone[0:1]


def test_open_and_save_read_no_data(tmp_path, opened):
    write_spectrum_image(tmp_path / "a.nc", (8, 6, 32), noise=None)
    with raise_if_dask_computes():
        da = xsignal.open(tmp_path / "a.nc")
        total = da.sum("energy")
    opened.append(da)
    assert total.shape == (8, 6)


def test_open_matches_xarray_h5netcdf(tmp_path, opened):
    write_spectrum_image(tmp_path / "a.nc", (8, 6, 32), chunks=(2, 6, 32))
    ours = xsignal.open(tmp_path / "a.nc")
    opened.append(ours)
    with xr.open_dataarray(tmp_path / "a.nc", engine="h5netcdf") as ref:
        xr.testing.assert_identical(ours.compute(), ref.compute())
    assert ours.chunks == ((2, 2, 2, 2), (6,), (32,))


def test_cf_encoded_variable_is_decoded(tmp_path, opened):
    raw = xr.DataArray(np.array([[1.0, np.nan], [3.0, 4.0]]), dims=("y", "x"))
    raw.to_netcdf(
        tmp_path / "a.nc",
        engine="h5netcdf",
        encoding={
            "__xarray_dataarray_variable__": {
                "dtype": "int16",
                "scale_factor": 0.5,
                "_FillValue": -1,
            }
        },
    )
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    np.testing.assert_array_equal(back.values, raw.values)


def test_lazy_false_reads_into_memory_and_releases_the_file(tmp_path):
    xsignal.save(make(False), tmp_path / "a.nc")
    da = xsignal.open(tmp_path / "a.nc", lazy=False)
    assert not da.signal.is_lazy
    with h5py.File(tmp_path / "a.nc", "a"):
        pass  # writable: nothing holds it open


def test_processes_scheduler_reads_writes_and_sees_replaced_files(tmp_path, opened):
    xsignal.save(make(True, {"y": 3}), tmp_path / "a.nc")
    da = xsignal.open(tmp_path / "a.nc")
    other = xsignal.open(tmp_path / "a.nc")
    opened.extend([da, other])
    with dask.config.set(scheduler="processes", num_workers=2):
        total = float(da.sum())
        xsignal.save(da + 1, tmp_path / "b.nc", compression=None)
        # the workers never opened `other`: after the file is replaced they
        # refuse to read the new file in its place
        xsignal.save(make(False) * 3, tmp_path / "a.nc", overwrite=True)
        with pytest.raises(ValueError, match="replaced or rewritten"):
            other.compute()
    assert total == pytest.approx(float(make(False).sum()), rel=1e-5)
    np.testing.assert_allclose(
        xsignal.open(tmp_path / "b.nc", lazy=False).values, make(False).values + 1
    )


def test_save_bad_input(tmp_path):
    with pytest.raises(TypeError, match="DataArray"):
        xsignal.save(np.zeros(3), tmp_path / "a.nc")
    with pytest.raises(FileNotFoundError, match="no folder"):
        xsignal.save(make(False), tmp_path / "missing" / "a.nc")


def test_dask_array_with_nan_round_trips(tmp_path, opened):
    data = dsa.from_array(np.array([[np.nan, 1.0], [2.0, np.inf]]), chunks=1)
    da = xr.DataArray(data, dims=("y", "e"))
    xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    np.testing.assert_array_equal(back.values, da.values)


@pytest.mark.parametrize("lazy", [False, True])
def test_saved_file_reads_the_same_through_xarray(tmp_path, lazy):
    da = make(lazy)
    xsignal.save(da, tmp_path / "a.nc")
    with xr.open_dataarray(tmp_path / "a.nc", engine="h5netcdf") as ref:
        # the stored navigator is a coordinate of the data for xarray
        name = ref.attrs.pop("navigator")
        np.testing.assert_array_equal(ref[name], xsignal.navigator(da))
        xr.testing.assert_identical(ref.drop_vars(name).compute(), da.compute())


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float64", "complex64", "bool"])
def test_dtypes_round_trip(tmp_path, dtype, opened):
    values = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    da = xr.DataArray(values, dims=("y", "x", "e")).chunk({"y": 1})
    xsignal.save(da, tmp_path / "a.nc", compression="gzip")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.dtype == values.dtype
    np.testing.assert_array_equal(back.values, values)


def test_save_with_chunks_not_matching_the_dask_blocks(tmp_path, opened):
    da = make(True, {"y": 4, "x": 2})
    xsignal.save(da, tmp_path / "a.nc", chunks={"y": 3, "x": 5})
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.chunks[:2] == ((3, 3), (5,))
    np.testing.assert_array_equal(back.values, da.values)


@pytest.mark.parametrize(
    "da",
    [
        xr.DataArray(3.0),
        xr.DataArray(np.ones((0, 4)), dims=("a", "b")),
        xr.DataArray(np.ones((0, 4)), dims=("a", "b")).chunk(),
        xr.DataArray(np.arange(12, dtype=">f4").reshape(3, 4), dims=("a", "b")),
        xr.DataArray(np.arange(12).reshape(3, 4) % 2 == 0, dims=("a", "b")),
    ],
    ids=["scalar", "empty", "empty-lazy", "big-endian", "bool"],
)
def test_edge_cases_round_trip_lazily(tmp_path, da, opened):
    xsignal.save(da.chunk() if da.ndim else da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.is_lazy or back.ndim == 0
    assert back.dtype == da.dtype.newbyteorder("=")
    xr.testing.assert_identical(back.compute(), da.astype(back.dtype))


def test_string_data_reads_like_xarray(tmp_path, opened):
    da = xr.DataArray(np.array([["ab", "c"], ["d", "ef"]]), dims=("a", "b"))
    xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    with xr.open_dataarray(tmp_path / "a.nc", engine="h5netcdf") as ref:
        xr.testing.assert_identical(back.compute(), ref.compute())


@pytest.mark.parametrize("lazy", [False, True])
def test_numeric_coords_file_reads_the_same_through_xarray(tmp_path, lazy):
    da = make(lazy).drop_vars("label")
    da = da.assign_coords(tilt=("y", np.arange(6, dtype="i2")))
    xsignal.save(da, tmp_path / "a.nc")
    with xr.open_dataarray(tmp_path / "a.nc", engine="h5netcdf") as ref:
        # the stored navigator is a coordinate of the data for xarray
        name = ref.attrs.pop("navigator")
        np.testing.assert_array_equal(ref[name], xsignal.navigator(da))
        xr.testing.assert_identical(ref.drop_vars(name).compute(), da.compute())
    back = xsignal.open(tmp_path / "a.nc", lazy=False)
    xr.testing.assert_identical(back, da.compute())


@pytest.mark.parametrize(
    "marking", ["not json [", '["nope"]', "[1, 2]", '{"a": 1}', "7"]
)
def test_an_invalid_marking_in_a_file_warns_and_uses_the_last_dim(
    tmp_path, marking, opened
):
    da = xr.DataArray(np.zeros((2, 3, 4)), dims=("y", "x", "e"))
    da.to_dataset(name="v").to_netcdf(tmp_path / "a.nc", engine="h5netcdf")
    with h5py.File(tmp_path / "a.nc", "a") as f:
        f["v"].attrs["signal_dims"] = marking
    with pytest.warns(UserWarning, match="signal_dims attribute"):
        back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.signal_dims == ("e",)
    assert "signal_dims" not in back.attrs


def test_a_valid_marking_in_a_file_is_kept_silently(tmp_path, opened):
    da = xr.DataArray(np.zeros((2, 3, 4)), dims=("y", "x", "e"))
    da.to_dataset(name="v").to_netcdf(tmp_path / "a.nc", engine="h5netcdf")
    with h5py.File(tmp_path / "a.nc", "a") as f:
        f["v"].attrs["signal_dims"] = '["x", "e"]'
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.signal_dims == ("x", "e")


def test_a_marking_naming_a_dropped_dim_is_saved_as_it_is_now(tmp_path, opened):
    da = make(False).isel(energy=0)  # attrs still name "energy"
    assert da.signal.signal_dims == ()
    xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.signal_dims == ()
