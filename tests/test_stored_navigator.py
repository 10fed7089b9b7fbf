"""Navigators stored in files (issue 26): written from the save's own pass,
found where HyperSpy and xarray look, served by ``navigator()`` without a
pass over the data while the data is the file's, unmodified."""

from __future__ import annotations

import threading

import dask
import dask.array
import numpy as np
import pytest
import xarray as xr
from clusters import local_client

import xsignal
from xsignal.testing import raise_if_dask_computes

FORMATS = ["a.nc", "a.hspy", "a.zspy", "a.zarr", "a.zarr.zip"]


def frames(seed=0) -> xr.DataArray:
    """6 x 8 frames of 5 x 4 counts, labelled navigation dims."""
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.poisson(7, (6, 8, 5, 4)).astype("uint16"),
        dims=("y", "x", "ky", "kx"),
        coords={"y": np.arange(6) * 0.5, "x": np.arange(8) * 0.25},
        name="scan",
    ).signal.set_signal_dims("ky", "kx")


def counting(da: xr.DataArray, chunks: dict) -> tuple[xr.DataArray, list]:
    """``da`` lazily, each block made by a task that records itself."""
    values = da.values
    made: list = []
    lock = threading.Lock()

    def block(block_info=None):
        loc = block_info[None]["array-location"]
        with lock:
            made.append(tuple(loc))
        return values[tuple(slice(a, b) for a, b in loc)]

    shape = dict(da.sizes)
    blocks = tuple(
        tuple(min(chunks.get(d, n), n - i) for i in range(0, n, chunks.get(d, n)))
        for d, n in shape.items()
    )
    lazy = dask.array.map_blocks(block, chunks=blocks, dtype=values.dtype)
    return da.copy(data=lazy), made


@pytest.fixture
def opened():
    arrays: list = []
    yield arrays
    for da in arrays:
        xsignal.close_file(da)


@pytest.mark.parametrize("name", FORMATS)
def test_the_save_writes_the_navigator_in_its_own_pass(tmp_path, name, opened):
    da = frames()
    lazy, made = counting(da, {"y": 2, "x": 4})
    xsignal.save(lazy, tmp_path / name)
    assert sorted(made) == sorted(
        ((y, y + 2), (x, x + 4), (0, 5), (0, 4))
        for y in range(0, 6, 2)
        for x in range(0, 8, 4)
    )  # each block once: the data and its navigator from one read
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    assert "navigator" not in back.attrs  # the data alone, as saved
    with raise_if_dask_computes():
        nav = back.signal.navigator()
    # the stored navigator's tasks read none of the data's blocks
    assert not set(nav.data.__dask_graph__()) & set(back.data.__dask_graph__())
    want = da.sum(("ky", "kx"))
    assert nav.dims == ("y", "x") and nav.dtype == np.uint64
    np.testing.assert_array_equal(nav.values, want.values)
    np.testing.assert_array_equal(nav.x.values, da.x.values)
    xr.testing.assert_identical(back.compute(), da)


@pytest.mark.parametrize("name", ["a.nc", "a.hspy", "a.zarr"])
def test_cut_along_navigation_dims_the_navigator_is_cut(tmp_path, name, opened):
    da = frames()
    xsignal.save(da.chunk({"y": 3}), tmp_path / name)
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    want = da.sum(("ky", "kx"))
    cuts = {
        "slice": lambda a: a.isel(y=slice(1, 5), x=slice(None, None, 3)),
        "labels": lambda a: a.sel(x=[0.5, 0.0]),
        "scalar": lambda a: a.sel(y=1.0),
        "transposed": lambda a: a.transpose("x", ..., "y", missing_dims="ignore"),
        "rechunked": lambda a: a.chunk({"y": 1}),
    }
    for label, cut in cuts.items():
        with raise_if_dask_computes():
            nav = cut(back).signal.navigator()
        xr.testing.assert_equal(nav.compute(), cut(want).compute(), label)
        assert not set(nav.data.__dask_graph__()) & set(back.data.__dask_graph__()), (
            label
        )


def test_changed_data_gets_a_computed_navigator(tmp_path, opened):
    da = frames()
    xsignal.save(da.chunk({"y": 3}), tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    changed = {
        "arithmetic": (back * 2, da * 2),
        "signal cut": (back.isel(kx=slice(0, 2)), da.isel(kx=slice(0, 2))),
        "map": (
            back.signal.map(lambda f: f[::-1], vectorized=False, progress=False),
            da.copy(data=da.values[..., ::-1]),
        ),
        "astype": (back.astype("f4"), da.astype("f4")),
        "remarked": (
            back.signal.set_signal_dims("kx"),
            da.signal.set_signal_dims("kx"),
        ),
    }
    for label, (got, source) in changed.items():
        nav = got.signal.navigator()
        # its graph reads the data: it is computed, not the stored one
        assert set(nav.data.__dask_graph__()) & set(back.data.__dask_graph__())
        want = xsignal.navigator(source)
        np.testing.assert_allclose(nav.values, want.values, err_msg=label)


def test_a_file_saved_over_never_serves_a_stale_navigator(tmp_path, opened):
    path = tmp_path / "a.nc"
    xsignal.save(frames(0).chunk({"y": 3}), path)
    back = xsignal.open(path)
    opened.append(back)
    nav = back.signal.navigator()
    xsignal.save(frames(1).chunk({"y": 3}), path, overwrite=True)
    with pytest.raises(xsignal.FileChangedError, match="a.nc"):
        nav.compute()
    fresh = xsignal.open(path)
    opened.append(fresh)
    np.testing.assert_array_equal(
        fresh.signal.navigator().values, frames(1).sum(("ky", "kx")).values
    )


@pytest.mark.parametrize("name", ["a.nc", "a.hspy", "a.zarr"])
def test_navigator_false_saves_the_data_alone(tmp_path, name, opened):
    da = frames()
    xsignal.save(da.chunk({"y": 3}), tmp_path / name, navigator=False)
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    nav = back.signal.navigator()
    assert set(nav.data.__dask_graph__()) & set(back.data.__dask_graph__())
    np.testing.assert_array_equal(nav.values, da.sum(("ky", "kx")).values)


def test_in_memory_saves_and_data_without_signal_dims(tmp_path, opened):
    da = frames()
    xsignal.save(da, tmp_path / "a.hspy")  # in memory: written at once
    back = xsignal.open(tmp_path / "a.hspy")
    opened.append(back)
    with raise_if_dask_computes():
        nav = back.signal.navigator()
    np.testing.assert_array_equal(nav.values, da.sum(("ky", "kx")).values)
    image = da.sum(("ky", "kx")).signal.set_signal_dims()  # navigation only
    xsignal.save(image, tmp_path / "image.nc")
    import h5py

    with h5py.File(tmp_path / "image.nc") as f:
        assert "scan_navigator" not in f


def test_hyperspy_readers_find_the_navigator(tmp_path):
    """rosettasciio's own readers (HyperSpy's) find
    ``metadata._HyperSpy.navigator`` as a signal of the navigation shape."""
    from rsciio.hspy import file_reader as read_hspy
    from rsciio.zspy import file_reader as read_zspy

    da = frames()
    want = da.sum(("ky", "kx")).values
    for name, reader in (("a.hspy", read_hspy), ("a.zspy", read_zspy)):
        xsignal.save(da.chunk({"y": 3}), tmp_path / name)
        (signal,) = reader(str(tmp_path / name))
        nav = signal["metadata"]["_HyperSpy"]["_sig_navigator"]
        np.testing.assert_array_equal(np.asarray(nav["data"]), want)
        # an image over the navigation axes (HyperSpy's Signal2D)
        assert [a["navigate"] for a in nav["axes"]] == [False, False]
        assert [a["size"] for a in nav["axes"]] == [6, 8]
        assert "_sig_navigator" not in str(xsignal.open(tmp_path / name).attrs)


def test_convert_stores_the_navigator(tmp_path, opened):
    da = frames()
    xsignal.save(da.chunk({"y": 3}), tmp_path / "a.nc", navigator=False)
    from xsignal.cli import main

    assert main(["convert", str(tmp_path / "a.nc"), str(tmp_path / "b.zspy")]) == 0
    back = xsignal.open(tmp_path / "b.zspy")
    opened.append(back)
    with raise_if_dask_computes():
        nav = back.signal.navigator()
    np.testing.assert_array_equal(nav.values, da.sum(("ky", "kx")).values)


def test_plot_with_a_stored_navigator_reads_one_block(tmp_path, opened):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    da = frames()
    xsignal.save(da.chunk({"y": 2, "x": 4}), tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    data_keys = {
        k for k in back.data.__dask_graph__() if isinstance(k, tuple) and len(k) == 5
    }
    ran: list = []

    class Count(dask.callbacks.Callback):
        def _pretask(self, key, dsk, state):
            if key in data_keys:
                ran.append(key)

    with Count():
        fig = back.signal.plot(pixel={"y": 3, "x": 5}, progress=False)
    assert len(ran) == 1  # the block holding the pixel's frame
    np.testing.assert_array_equal(
        fig.xsignal.navigator.values, da.sum(("ky", "kx")).values
    )


@pytest.mark.parametrize("name", ["a.nc", "a.hspy", "a.zspy"])
def test_blocks_of_parts_of_signals_still_give_the_navigator(tmp_path, name, opened):
    """Stored chunks cutting the signal dims: the navigator is its own sum
    over the blocks, still from one read of each."""
    da = frames()
    lazy, made = counting(da, {"y": 3, "kx": 2})
    xsignal.save(lazy, tmp_path / name, chunks={"y": 3, "kx": 2})
    assert len(made) == len(set(made)) == 2 * 2  # each block once
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    with raise_if_dask_computes():
        nav = back.signal.navigator()
    np.testing.assert_array_equal(nav.values, da.sum(("ky", "kx")).values)
    xr.testing.assert_identical(back.compute(), da)


def test_on_a_cluster_the_workers_write_and_sum(tmp_path):
    da = frames()
    with local_client(processes=True):
        for name in ("a.nc", "a.zspy"):
            xsignal.save(da.chunk({"y": 2}), tmp_path / name)
    for name in ("a.nc", "a.zspy"):
        back = xsignal.open(tmp_path / name)
        try:
            with raise_if_dask_computes():
                nav = back.signal.navigator()
            np.testing.assert_array_equal(nav.values, da.sum(("ky", "kx")).values)
            xr.testing.assert_identical(back.compute(), da)
        finally:
            xsignal.close_file(back)


@pytest.mark.parametrize("name", ["a.hspy", "a.zspy"])
def test_the_stored_navigator_leaves_the_metadata_as_it_was(tmp_path, name, opened):
    """The navigator's group under metadata/_HyperSpy is not metadata: a
    round trip gives the same attrs, with or without it."""
    da = frames().assign_attrs(
        title="scan", metadata='{"General": {"title": "scan"}, "Signal": {}}'
    )
    xsignal.save(da.chunk({"y": 3}), tmp_path / name)
    back = xsignal.open(tmp_path / name)
    opened.append(back)
    xr.testing.assert_identical(back.compute(), da)
    xsignal.save(back, tmp_path / ("again" + name[1:]))
    again = xsignal.open(tmp_path / ("again" + name[1:]))
    opened.append(again)
    xr.testing.assert_identical(again.compute(), da)
