"""zarr stores changed under a lazy array, and stores linking out of themselves.

A lazy array of a local folder store checks, before each read, that the
folder is the one opened and that no chunk it reads was written since; a
store behind a URL checks its root metadata object. Chunk files and
folders whose resolved path leaves the store are refused unless
``allow_external=True``.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import xsignal
from xsignal import ExternalReadError, FileChangedError
from xsignal.testing import raise_if_dask_computes


def small(seed: int = 0) -> xr.DataArray:
    values = np.random.default_rng(seed).random((6, 5, 16), dtype="f4")
    return xr.DataArray(values, dims=("y", "x", "energy")).chunk({"y": 2})


def data_array(path) -> zarr.Array:
    """The data array of a store xsignal wrote (xarray's or HyperSpy's layout)."""
    root = zarr.open_group(path, mode="r+")
    if "Experiments" in root:
        (group,) = root["Experiments"].group_values()
        return group["data"]
    return root["__xarray_dataarray_variable__"]


# --- chunks rewritten in place -------------------------------------------------------


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy"])
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_a_chunk_rewritten_in_place_raises_naming_the_store(tmp_path, name, scheduler):
    path = tmp_path / name
    xsignal.save(small(1), path)
    da = xsignal.open(path)
    first = da.sum("energy").compute(scheduler=scheduler)
    np.testing.assert_allclose(first, small(1).sum("energy"), rtol=1e-5)
    time.sleep(0.01)
    data_array(path)[0:2] = 7.0  # one chunk, same folder, same metadata
    with pytest.raises(FileChangedError, match=f"the store {path} was changed") as err:
        da.sum("energy").compute(scheduler=scheduler)
    assert "chunk" in str(err.value)
    # chunks the change did not reach still read as they were
    np.testing.assert_allclose(
        da.isel(y=slice(2, None)).values, small(1).values[2:], rtol=0
    )
    np.testing.assert_allclose(xsignal.open(path).values[:2], 7.0)


def test_a_chunk_written_where_there_was_none_is_a_change(tmp_path):
    path = tmp_path / "a.zarr"
    xsignal.save(small(1) * 0, path)  # zeros: zarr writes no chunk of them
    da = xsignal.open(path)
    assert float(da.sum()) == 0.0
    time.sleep(0.01)
    data_array(path)[4:6] = 1.0
    with pytest.raises(FileChangedError, match="was written since"):
        da.values  # noqa: B018


def test_reads_of_an_unchanged_store_pass_every_check(tmp_path):
    """Saving elsewhere after open, and reading again, changes nothing."""
    path = tmp_path / "a.zarr"
    xsignal.save(small(1), path)
    da = xsignal.open(path)
    xsignal.save(small(2), tmp_path / "b.zarr")
    with dask.config.set(scheduler="threads"):
        for _ in range(2):
            np.testing.assert_array_equal(da.values, small(1).values)


# --- links out of the store ---------------------------------------------------------


def _chunk_file(path) -> str:
    array = data_array(path)
    folder = os.path.join(path, array.path)
    return os.path.join(folder, array.metadata.encode_chunk_key((1, 0, 0)))


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy"])
def test_a_chunk_linking_out_of_the_store_is_refused(tmp_path, name):
    path, other = tmp_path / name, tmp_path / f"other-{name}"
    xsignal.save(small(1), path)
    xsignal.save(small(2), other)
    chunk = _chunk_file(path)
    os.remove(chunk)
    os.symlink(_chunk_file(other), chunk)  # made before open: no "change"
    da = xsignal.open(path)
    with pytest.raises(ValueError, match="outside the store") as err:
        da.values  # noqa: B018
    assert chunk in str(err.value) and "allow_external=True" in str(err.value)
    allowed = xsignal.open(path, allow_external=True).values
    np.testing.assert_array_equal(allowed[2:4], small(2).values[2:4])
    np.testing.assert_array_equal(allowed[:2], small(1).values[:2])


def test_an_array_folder_linking_out_is_refused(tmp_path):
    path, other = tmp_path / "a.zarr", tmp_path / "other.zarr"
    xsignal.save(small(1), path)
    xsignal.save(small(2), other)
    array = path / "__xarray_dataarray_variable__"
    os.rename(array, tmp_path / "moved")
    os.symlink(other / "__xarray_dataarray_variable__", array)
    da = xsignal.open(path)  # consolidated metadata: the folder is not read yet
    with pytest.raises(ExternalReadError, match="outside the store"):
        da.values  # noqa: B018
    np.testing.assert_array_equal(
        xsignal.open(path, allow_external=True).values, small(2).values
    )


def test_a_coordinate_linking_out_is_refused_at_open(tmp_path):
    """Coordinates are read at open: their links are checked then."""
    da = small(1).assign_coords(energy=np.linspace(0.1, 1.6, 16))
    path = tmp_path / "a.zarr"
    xsignal.save(da, path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"\0" * 64)
    (chunk,) = [
        p for p in (path / "energy").rglob("*") if p.is_file() and "c" in p.parts
    ]
    chunk.unlink()
    chunk.symlink_to(secret)
    with pytest.raises(ValueError, match=f"{chunk} in the store .* outside"):
        xsignal.open(path)


def test_links_inside_the_store_are_fine(tmp_path):
    path = tmp_path / "a.zarr"
    xsignal.save(small(1), path)
    os.symlink(path / "zarr.json", path / "copy-of-metadata.json")
    np.testing.assert_array_equal(xsignal.open(path).values, small(1).values)


# --- stores behind URLs ---------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``; yields (folder, url)."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy"])
def test_a_store_saved_over_behind_a_url_raises(http_folder, name):
    pytest.importorskip("aiohttp")
    folder, url = http_folder
    xsignal.save(small(1), folder / name)
    old = xsignal.open(f"{url}/{name}")
    np.testing.assert_array_equal(old.values, small(1).values)
    time.sleep(1.1)  # Last-Modified counts seconds
    xsignal.save(small(2), folder / name, overwrite=True)
    with pytest.raises(FileChangedError, match=f"the store {url}/{name} was changed"):
        old.values  # noqa: B018
    np.testing.assert_array_equal(xsignal.open(f"{url}/{name}").values, small(2).values)


@pytest.fixture
def s3_bucket(monkeypatch):
    """A bucket on a local moto S3 server (skipped where moto or s3fs are
    not installed); yields its s3:// URL."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bucket")
    try:
        yield "s3://bucket"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_s3_store_saved_over_raises_and_overwrite_false_names_the_url(s3_bucket):
    url = f"{s3_bucket}/a.zarr"
    xsignal.save(small(1), url)
    with pytest.raises(FileExistsError, match=f"{url} exists; pass overwrite=True"):
        xsignal.save(small(2), url)
    old = xsignal.open(url)
    np.testing.assert_array_equal(old.values, small(1).values)
    time.sleep(1.1)  # LastModified counts seconds
    xsignal.save(small(2), url, overwrite=True)
    with pytest.raises(FileChangedError, match=f"the store {url} was changed"):
        old.values  # noqa: B018
    np.testing.assert_array_equal(xsignal.open(url).values, small(2).values)


# --- HDF5 files behind URLs --------------------------------------------------------


@pytest.mark.parametrize("name", ["eels.hspy", "eels.nc"])
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_hdf5_files_open_lazily_over_http(http_folder, name, scheduler):
    """.hspy and .nc over HTTP (they were taken for zarr stores): lazily, by
    ranges of the file, in any process; a file saved over raises."""
    pytest.importorskip("aiohttp")
    folder, url = http_folder
    xsignal.save(small(1), folder / name)
    with raise_if_dask_computes():
        da = xsignal.open(f"{url}/{name}")
    assert da.chunks == ((2, 2, 2), (5,), (16,))
    assert da.encoding["source"] == f"{url}/{name}"
    np.testing.assert_array_equal(
        da.compute(scheduler=scheduler).values, small(1).values
    )
    time.sleep(1.1)  # Last-Modified counts seconds
    xsignal.save(small(2), folder / name, overwrite=True)
    with pytest.raises(FileChangedError, match=f"{url}/{name} was replaced"):
        da.values  # noqa: B018
    xsignal.close_file(da)
