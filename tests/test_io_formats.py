"""save/open round trips for every writable format, the format from the
extension, atomic stores, and HyperSpy-written .zspy stores."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import zipfile
from pathlib import Path

import dask
import dask.array as dsa
import h5py
import numpy as np
import pytest
import xarray as xr
import zarr

import xsignal
from xsignal.testing import raise_if_dask_computes

DATA = Path(__file__).parent / "data" / "hyperspy"
EXPECTED = json.loads((DATA / "expected.json").read_text())
NAMES = ["a.nc", "a.hspy", "a.zspy", "a.zarr", "a.zarr.zip", "a.zspy.zip"]
DTYPES = ["float32", "uint16", "complex64", "bool"]


def make(dtype: str, lazy: bool) -> xr.DataArray:
    rng = np.random.default_rng(3)
    values = rng.random((6, 5, 16)) * 100
    if dtype == "complex64":
        values = values + 1j * values[::-1]
    data = values > 50 if dtype == "bool" else values.astype(dtype)
    da = xr.DataArray(
        data,
        dims=("y", "x", "energy"),
        coords={
            "y": ("y", np.arange(6) * 2.5, {"units": "nm"}),
            "energy": ("energy", np.linspace(100, 200, 16), {"units": "eV"}),
        },
        attrs={"title": "EELS map", "count": 3, "operator": "ana"},
        name="counts",
    ).signal.set_signal_dims("energy")
    return da.chunk({"y": 2}) if lazy else da


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
@pytest.mark.parametrize("name", NAMES)
def test_round_trip(tmp_path, name, lazy, dtype, opened):
    da = make(dtype, lazy)
    xsignal.save(da, tmp_path / name)
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    assert back.signal.is_lazy
    xr.testing.assert_identical(back.compute(), da.compute())
    assert back.signal.signal_dims == ("energy",)
    assert back.coords["energy"].attrs["units"] == "eV"
    assert back.chunks == (((2, 2, 2) if lazy else (6,)), (5,), (16,))


@pytest.mark.parametrize("name", NAMES)
def test_several_signal_dims_and_given_chunks(tmp_path, name, opened):
    da = make("float32", True).signal.set_signal_dims("x", "energy")
    xsignal.save(da, tmp_path / name, chunks={"y": 3, "energy": 8})
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    assert back.signal.signal_dims == ("x", "energy")
    assert back.chunks == ((3, 3), (5,), (8, 8))
    np.testing.assert_array_equal(back.values, da.values)


@pytest.mark.parametrize("name", ["a.tif", "a.txt", "a", "a.nc.zip", "a.hspy.zip"])
def test_unknown_extension_raises_before_writing(tmp_path, name):
    lazy = make("float32", True)
    with (
        raise_if_dask_computes(),
        pytest.raises(ValueError, match=r"\.hspy, \.zspy, \.zarr|zip"),
    ):
        xsignal.save(lazy, tmp_path / name)
    assert not os.listdir(tmp_path)


def test_format_argument_overrides_the_extension(tmp_path, opened):
    da = make("float32", False)
    xsignal.save(da, tmp_path / "store.data", format="zarr")
    assert (tmp_path / "store.data" / "zarr.json").exists()
    back = xsignal.open(tmp_path / "store.data")
    opened.append(back)
    xr.testing.assert_identical(back.compute(), da)
    with pytest.raises(ValueError, match="unknown format 'tiff'"):
        xsignal.save(da, tmp_path / "x.nc", format="tiff")


def test_saved_hspy_has_hyperspy_layout(tmp_path):
    da = make("float32", False)
    da = da.assign_coords(x=("x", [0.0, 1.0, 3.0, 7.0, 15.0], {"units": "um"}))
    xsignal.save(da, tmp_path / "a.hspy")
    with h5py.File(tmp_path / "a.hspy") as f:
        assert f.attrs["file_format"] == "HyperSpy"
        group = f["Experiments/counts"]
        assert group["data"].compression == "gzip"
        assert group["metadata/General"].attrs["title"] == "EELS map"
        y, x, e = (group[f"axis-{i}"].attrs for i in range(3))
        assert (y["name"], y["units"], y["scale"], bool(y["navigate"])) == (
            "y",
            "nm",
            2.5,
            True,
        )
        assert e["offset"] == 100.0
        assert e["scale"] == pytest.approx(100 / 15)
        assert not e["navigate"]
        assert x["_type"] == "DataAxis"  # not evenly spaced
        np.testing.assert_array_equal(group["axis-1/axis"][()], [0, 1, 3, 7, 15])


def test_signal_dims_go_last_for_hyperspy(tmp_path, opened):
    da = make("float32", False).transpose("energy", "y", "x")
    assert da.signal.signal_dims == ("energy",)
    xsignal.save(da, tmp_path / "a.hspy")
    back = xsignal.open(tmp_path / "a.hspy")
    opened.append(back)
    assert back.dims == ("y", "x", "energy")
    xr.testing.assert_identical(back.compute(), da.transpose("y", "x", "energy"))


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy", "a.zarr.zip", "a.hspy"])
def test_existing_targets_are_refused_or_replaced_whole(tmp_path, name, opened):
    first, second = make("float32", False), make("float32", False) * 2
    xsignal.save(first, tmp_path / name)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        xsignal.save(second, tmp_path / name)
    xsignal.save(second, tmp_path / name, overwrite=True)
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    np.testing.assert_array_equal(back.values, second.values)
    assert sorted(os.listdir(tmp_path)) == [name]


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy", "a.zarr.zip", "a.hspy"])
def test_failed_save_leaves_the_old_store_intact_and_no_temporary(tmp_path, name):
    good = make("float32", False)
    xsignal.save(good, tmp_path / name)

    def boom(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 2:  # the last block
            raise RuntimeError("disk on fire")
        return block

    lazy = good.chunk({"y": 2})
    bad = lazy.copy(data=dsa.map_blocks(boom, lazy.data, dtype=lazy.dtype))
    with pytest.raises(RuntimeError, match="disk on fire"):
        xsignal.save(bad, tmp_path / name, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [name]
    back = xsignal.open(tmp_path / name, lazy=False)
    np.testing.assert_array_equal(back.values, good.values)


def test_zarr_store_is_format_3_zstd_and_read_by_xarray(tmp_path):
    da = make("float32", True)
    xsignal.save(da, tmp_path / "a.zarr")
    array = zarr.open_group(tmp_path / "a.zarr", mode="r")["counts"]
    assert array.metadata.zarr_format == 3
    assert "zstd" in repr(array.compressors).lower()
    ds = xr.open_zarr(tmp_path / "a.zarr")
    np.testing.assert_array_equal(ds["counts"].values, da.values)
    assert json.loads(ds["counts"].attrs["signal_dims"]) == ["energy"]


def test_zspy_store_is_format_2_zstd(tmp_path):
    xsignal.save(make("uint16", False), tmp_path / "a.zspy")
    root = zarr.open_group(tmp_path / "a.zspy", mode="r")
    assert root.metadata.zarr_format == 2
    assert root.attrs["file_format"] == "ZSpy"
    assert "zstd" in repr(root["Experiments/counts/data"].compressors).lower()


def test_zarr_shards(tmp_path, opened):
    da = make("float32", True)
    xsignal.save(da, tmp_path / "a.zarr", chunks={"y": 1}, shards={"y": 3})
    array = zarr.open_group(tmp_path / "a.zarr", mode="r")["counts"]
    assert array.shards == (3, 5, 16)
    assert array.chunks == (1, 5, 16)
    back = xsignal.open(tmp_path / "a.zarr")
    opened.append(back)
    np.testing.assert_array_equal(back.values, da.values)
    with pytest.raises(ValueError, match="zarr format 3"):
        xsignal.save(da, tmp_path / "b.zspy", shards={"y": 3})


@pytest.mark.parametrize(
    ("name", "compression", "expected"),
    [("a.hspy", "auto", "gzip"), ("a.hspy", None, None), ("a.hspy", "lzf", "lzf")],
)
def test_hdf5_compression(tmp_path, name, compression, expected):
    xsignal.save(make("float32", False), tmp_path / name, compression=compression)
    with h5py.File(tmp_path / name) as f:
        assert f["Experiments/counts/data"].compression == expected


def test_bad_zarr_compression_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="compression 'lzf' for zarr"):
        xsignal.save(make("float32", True), tmp_path / "a.zarr", compression="lzf")
    assert not os.listdir(tmp_path)


def test_xarray_written_zarr_v2_store_opens(tmp_path, opened):
    da = make("float32", False)
    da.to_dataset().to_zarr(tmp_path / "v2.zarr", zarr_format=2, consolidated=True)
    back = xsignal.open(tmp_path / "v2.zarr")
    opened.append(back)
    np.testing.assert_array_equal(back.values, da.values)
    assert back.signal.signal_dims == ("energy",)
    assert back.encoding["format"] == "zarr format 2"


def test_zarr_with_several_variables_needs_variable(tmp_path):
    ds = xr.Dataset({"a": ("x", np.arange(3.0)), "b": ("x", np.ones(3))})
    ds.to_zarr(tmp_path / "two.zarr", consolidated=False)
    with pytest.raises(ValueError, match="several data variables"):
        xsignal.open(tmp_path / "two.zarr")
    np.testing.assert_array_equal(
        xsignal.open(tmp_path / "two.zarr", variable="b").values, np.ones(3)
    )


def test_opening_stores_reads_no_data(tmp_path):
    for name in ["a.zarr", "a.zspy", "a.zarr.zip"]:
        xsignal.save(make("float32", True), tmp_path / name)
        with raise_if_dask_computes():
            da = xsignal.open(tmp_path / name)
            (da.signal.navigator() * 2).signal.nansum()


def test_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a file or a zarr store"):
        xsignal.open(tmp_path / "plain")


# --- HyperSpy-written files (made with HyperSpy 2.5) ---------------------------


@pytest.mark.parametrize(
    "name", ["eels.zspy", "eels.zspy.zip", "eels.hspy", "diffraction.zspy"]
)
def test_hyperspy_written_files(name, opened):
    """Written by HyperSpy 2.5 (the same signal as .hspy, .zspy and zipped)."""
    expected = EXPECTED["eels.zspy" if name.startswith("eels") else name]
    with raise_if_dask_computes():
        da = xsignal.open(DATA / name)
    opened.append(da)
    assert da.shape == tuple(expected["shape"])
    assert da.dtype == np.dtype(expected["dtype"])
    assert list(da.dims) == expected["dims"]
    assert list(da.signal.signal_dims) == expected["signal_dims"]
    assert da.attrs["title"] == expected["title"]
    assert float(da.values.astype("f8").sum()) == pytest.approx(expected["sum"])
    if name.startswith("eels"):
        energy = da.coords["Energy loss"]
        assert energy.attrs["units"] == "eV"
        assert float(energy[0]) == expected["energy_first"]
        assert float(energy[1] - energy[0]) == expected["energy_step"]
        assert float(da.coords["x"][0]) == expected["x_first"]
        assert da.coords["x"].attrs["units"] == "nm"
        assert max(da.chunks[0]) == expected["chunks"][0]
        meta = json.loads(da.attrs["metadata"])
        assert meta["Acquisition_instrument"]["TEM"]["beam_energy"] == 200.0
        assert json.loads(da.attrs["original_metadata"]) == {
            "Detector": {"gain": [1, 2, 3]}
        }


# --- URLs -----------------------------------------------------------------------


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``; yields (folder, url)."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy"])
def test_open_a_store_over_http(http_folder, name):
    pytest.importorskip("aiohttp")
    folder, url = http_folder
    da = make("float32", True)
    xsignal.save(da, folder / name)
    with raise_if_dask_computes():
        back = xsignal.open(f"{url}/{name}")
    assert back.chunks == ((2, 2, 2), (5,), (16,))
    with dask.config.set(scheduler="threads"):
        xr.testing.assert_identical(back.compute(), da.compute())


def test_save_and_open_in_fsspec_memory():
    da = make("uint16", True)
    url = "memory://xsignal-test/a.zarr"
    xsignal.save(da, url, overwrite=True)
    back = xsignal.open(url)
    xr.testing.assert_identical(back.compute(), da.compute())
    with pytest.raises(FileExistsError, match=f"{url} exists; pass overwrite=True"):
        xsignal.save(da, url)
    with pytest.raises(ValueError, match="URL"):
        xsignal.save(da, "memory://xsignal-test/a.hspy")


# --- zip stores, xarray backend, old HyperSpy files ----------------------------


def test_zip_store_holds_the_store_at_its_root(tmp_path):
    xsignal.save(make("float32", False), tmp_path / "a.zarr.zip")
    with zipfile.ZipFile(tmp_path / "a.zarr.zip") as zf:
        assert "zarr.json" in zf.namelist()
        assert "counts/zarr.json" in zf.namelist()


@pytest.mark.parametrize("name", NAMES)
def test_xsignal_engine_reads_every_format(tmp_path, name):
    da = make("float32", False)
    xsignal.save(da, tmp_path / name)
    back = xr.open_dataarray(tmp_path / name, engine="xsignal", chunks={})
    assert back.chunks == ((6,), (5,), (16,))
    xr.testing.assert_identical(back.compute(), da)
    back.close()


@pytest.mark.parametrize("name", NAMES)
def test_xarray_open_gives_the_chunks_of_xsignal_open(tmp_path, name):
    """As xarray: chunks={} gives the stored chunks (what xsignal.open
    gives), chunks=None numpy."""
    xsignal.save(make("float32", False), tmp_path / name, chunks={"y": 4, "x": 2})
    ours = xsignal.open(tmp_path / name)
    theirs = xr.open_dataarray(tmp_path / name, engine="xsignal", chunks={})
    assert theirs.chunks == ours.chunks == ((4, 2), (2, 2, 1), (16,))
    ds = xr.open_dataset(tmp_path / name, engine="xsignal", chunks={})
    assert ds[ours.name].chunks == ours.chunks
    plain = xr.open_dataarray(tmp_path / name, engine="xsignal")
    assert plain.chunks is None and isinstance(plain.data, np.ndarray)
    xr.testing.assert_identical(plain, ours.compute())
    for opened in (theirs, ds, plain):
        opened.close()
    xsignal.close_file(ours)


def test_hyperspy_format_1_file(tmp_path, opened):
    """HyperSpy < 1.0: no file_format, title in mapped_parameters, no navigate
    flags, record_by says the signal is an image."""
    data = np.arange(2 * 3 * 4, dtype="f4").reshape(2, 3, 4)
    with h5py.File(tmp_path / "old.hdf5", "w") as f:
        group = f.create_group("Experiments/old")
        group.create_dataset("data", data=data)
        for i, (name, scale) in enumerate([("t", 1.0), ("y", 0.5), ("x", 0.5)]):
            sub = group.create_group(f"axis-{i}")
            sub.attrs.update({"name": name, "scale": scale, "offset": 0.0, "size": 3})
            sub.attrs["units"] = "nm"
        group.create_group("mapped_parameters").attrs.update(
            {"title": "old image stack", "record_by": "image"}
        )
    da = xsignal.open(tmp_path / "old.hdf5")
    opened.append(da)
    assert da.attrs["title"] == "old image stack"
    assert da.signal.signal_dims == ("y", "x")
    assert float(da.coords["x"][1]) == 0.5
    np.testing.assert_array_equal(da.values, data)


def test_record_by_spectrum_without_navigate_flags(tmp_path, opened):
    with h5py.File(tmp_path / "s.hspy", "w") as f:
        f.attrs["file_format"] = "HyperSpy"
        f.attrs["file_format_version"] = "1.3"
        group = f.create_group("Experiments/s")
        group.create_dataset("data", data=np.zeros((2, 3, 4)))
        group.create_group("metadata/Signal").attrs["record_by"] = "spectrum"
        group.create_group("metadata/General").attrs["title"] = "s"
    da = xsignal.open(tmp_path / "s.hspy")
    opened.append(da)
    assert da.signal.signal_dims == ("dim_2",)


def test_detector_formats_without_rosettasciio_name_the_extra(tmp_path):
    """In a process where rosettasciio cannot be imported."""
    import subprocess
    import sys

    (tmp_path / "scan.blo").write_bytes(b"IMGBLO" + bytes(100))
    code = (
        "import sys; sys.modules['rsciio'] = None\n"
        "import xsignal\n"
        "try:\n"
        f"    xsignal.open({str(tmp_path / 'scan.blo')!r})\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert 'pip install "xsignal[formats]"' in out.stdout
    assert "scan.blo" in out.stdout


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy", "a.zarr.zip", "a.hspy"])
def test_process_pool_reads_and_writes(tmp_path, name):
    da = make("float32", True)
    with dask.config.set(scheduler="processes", num_workers=2):
        xsignal.save(da, tmp_path / name)
        back = xsignal.open(tmp_path / name)
        np.testing.assert_array_equal(back.values, da.values)
        assert float(back.signal.navigator().sum()) == pytest.approx(float(da.sum()))


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy", "a.zarr.zip"])
def test_close_file_on_a_store_makes_later_use_raise(tmp_path, name):
    xsignal.save(make("float32", True), tmp_path / name)
    da = xsignal.open(tmp_path / name)
    derived = da.signal.navigator() * 2
    assert da.signal.compute(close_file=True).shape == (6, 5, 16)
    with pytest.raises(ValueError, match="closed with close_file"):
        derived.compute()
    # the store can be replaced, and opened again
    xsignal.save(make("float32", False) * 3, tmp_path / name, overwrite=True)
    again = xsignal.open(tmp_path / name)
    np.testing.assert_allclose(again.values, make("float32", False).values * 3)


def test_info_describes_stores_and_urls(tmp_path, http_folder, capsys):
    from xsignal.cli import main

    folder, url = http_folder
    xsignal.save(make("float32", True), folder / "a.zspy")
    assert main(["info", str(folder / "a.zspy")]) == 0
    text = capsys.readouterr().out
    assert (
        "HyperSpy .zspy (zarr format 2)" in text and "title:           EELS map" in text
    )
    pytest.importorskip("aiohttp")
    assert main(["info", f"{url}/a.zspy"]) == 0
    assert "zarr format 2" in capsys.readouterr().out


def test_metadata_as_a_dict():
    da = xsignal.open(DATA / "eels.hspy")
    meta = xsignal.metadata(da)
    assert meta["Acquisition_instrument"]["TEM"]["beam_energy"] == 200.0
    assert meta["General"]["title"] == "EELS spectrum image"
    assert xsignal.metadata(da, original=True) == {"Detector": {"gain": [1, 2, 3]}}
    assert xsignal.metadata(make("float32", False)) == {}


@pytest.mark.parametrize("name", ["a.nc", "a.hspy", "a.zarr.zip"])
def test_overwriting_keeps_the_files_permissions(tmp_path, name):
    xsignal.save(make("float32", False), tmp_path / name)
    os.chmod(tmp_path / name, 0o640)
    xsignal.save(make("float32", False) * 2, tmp_path / name, overwrite=True)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_netcdf_and_zarr_of_several_variables_open_as_trees(tmp_path):
    a = xr.DataArray(np.arange(24.0).reshape(2, 3, 4), dims=("y", "x", "e"))
    b = xr.DataArray(np.ones((2, 5), "f4"), dims=("y", "k"))
    ds = xr.Dataset({"a": a, "b": b})
    ds.to_netcdf(tmp_path / "two.nc", engine="h5netcdf")
    ds.to_zarr(tmp_path / "two.zarr", zarr_format=3, consolidated=False)
    for name in ("two.nc", "two.zarr"):
        tree = xr.open_datatree(tmp_path / name, engine="xsignal", chunks={})
        assert set(tree.children) == {"a", "b"}
        xr.testing.assert_identical(tree["a"]["a"].compute(), a.rename("a"))
        xr.testing.assert_identical(tree["b"]["b"].compute(), b.rename("b"))
        assert tree["b"]["b"].chunks == ((2,), (5,))
        tree.close()


@pytest.mark.parametrize("compression", ["zstd", None])
def test_a_damaged_zarr_chunk_names_the_store_and_the_block(tmp_path, compression):
    path = tmp_path / "s.zarr"
    xsignal.save(make("float32", False), path, chunks={"y": 2}, compression=compression)
    (path / "counts" / "c" / "1" / "0" / "0").write_bytes(b"garbage!" * 5)
    with pytest.raises(ValueError, match=r"cannot read .*s\.zarr at \[2:4, .*damaged"):
        xsignal.open(path).compute()
