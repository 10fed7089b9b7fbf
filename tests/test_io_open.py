"""xsignal.open: dispatch by content, plain HDF5, several files, bad input,
close_file."""

from __future__ import annotations

import os

import dask
import h5py
import numpy as np
import pytest
import xarray as xr
from clusters import local_client

import xsignal
from xsignal.testing import raise_if_dask_computes, write_spectrum_image


def plain_file(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, (data, chunks) in datasets.items():
            dset = f.create_dataset(name, data=data, chunks=chunks)
            dset.attrs["note"] = f"dataset {name}"
    return path


def series(tmp_path, n=3, shape=(4, 3, 16)):
    paths = []
    for i in range(n):
        paths.append(
            write_spectrum_image(tmp_path / f"s{i}.nc", shape, seed=i, noise=None)
        )
    return paths


# --- plain HDF5 --------------------------------------------------------------


def test_plain_hdf5_dataset_by_variable(tmp_path, opened):
    data = np.arange(6 * 4 * 10, dtype="f4").reshape(6, 4, 10)
    path = plain_file(
        tmp_path / "raw.h5",
        **{"group/data": (data, (2, 4, 10)), "other": (np.zeros(3), None)},
    )
    da = xsignal.open(path, variable="/group/data")
    opened.append(da)
    assert da.dims == ("dim_0", "dim_1", "dim_2")
    assert da.chunks == ((2, 2, 2), (4,), (10,))
    assert da.attrs["note"] == "dataset group/data"
    assert da.signal.signal_dims == ("dim_2",)
    np.testing.assert_array_equal(da.values, data)
    with pytest.raises(
        ValueError, match=r"several datasets \['/group/data', '/other'\]"
    ):
        xsignal.open(path)
    with pytest.raises(ValueError, match="'/nope' is not in the file"):
        xsignal.open(path, variable="/nope")
    with pytest.raises(ValueError, match="'/group' is a group"):
        xsignal.open(path, variable="/group")


def test_plain_hdf5_single_dataset_and_contiguous_layout(tmp_path, opened):
    data = np.arange(40.0).reshape(8, 5)
    path = plain_file(tmp_path / "raw.h5", data=(data, None))
    da = xsignal.open(path)
    opened.append(da)
    assert da.chunks == ((8,), (5,))  # contiguous: whole signals, small blocks
    np.testing.assert_array_equal(da.values, data)


def test_plain_hdf5_dimension_scales_become_coords(tmp_path, opened):
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        dset = f.create_dataset("data", data=np.ones((3, 4)))
        f["energy"] = np.linspace(0, 3, 4)
        f["energy"].make_scale("energy")
        dset.dims[1].attach_scale(f["energy"])
    da = xsignal.open(tmp_path / "raw.h5", variable="data")
    opened.append(da)
    assert da.dims == ("dim_0", "energy")
    np.testing.assert_array_equal(da["energy"].values, np.linspace(0, 3, 4))


def test_kind_is_recognised_by_content_not_extension(tmp_path, opened):
    write_spectrum_image(tmp_path / "netcdf.h5", (4, 3, 8))
    plain_file(tmp_path / "plain.nc", data=(np.ones((2, 3)), None))
    nc = xsignal.open(tmp_path / "netcdf.h5")
    plain = xsignal.open(tmp_path / "plain.nc")
    opened.extend([nc, plain])
    assert nc.dims == ("y", "x", "energy") and nc.attrs["units"] == "counts"
    assert plain.dims == ("dim_0", "dim_1")


def test_netcdf_with_several_variables_needs_variable(tmp_path, opened):
    ds = xr.Dataset(
        {"a": (("x", "e"), np.ones((2, 3))), "b": (("x", "e"), np.zeros((2, 3)))}
    )
    ds.to_netcdf(tmp_path / "ds.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"several data variables \['a', 'b'\]"):
        xsignal.open(tmp_path / "ds.nc")
    b = xsignal.open(tmp_path / "ds.nc", variable="b")
    opened.append(b)
    assert b.name == "b" and float(b.sum()) == 0.0
    with pytest.raises(ValueError, match="no variable 'c'"):
        xsignal.open(tmp_path / "ds.nc", variable="c")


# --- bad input ---------------------------------------------------------------


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        xsignal.open(tmp_path / "nope.nc")
    with pytest.raises(FileNotFoundError, match=r"\*.hspy"):
        xsignal.open(str(tmp_path / "*.hspy"))


def test_not_hdf5_and_truncated_files(tmp_path):
    (tmp_path / "text.nc").write_text("hello, not a netCDF file\n" * 10)
    with pytest.raises(ValueError, match="text.nc is not an HDF5"):
        xsignal.open(tmp_path / "text.nc")
    path = write_spectrum_image(tmp_path / "full.nc", (16, 8, 64), chunks=(2, 8, 64))
    data = path.read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.nc"):
        da = xsignal.open(tmp_path / "cut.nc")
        _ = da.values  # the header may survive; then reading must fail clearly
    (tmp_path / "tiny.nc").write_bytes(data[:100])
    with pytest.raises(ValueError, match="tiny.nc.*damaged or truncated"):
        xsignal.open(tmp_path / "tiny.nc")


def test_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        xsignal.open(tmp_path)


# --- several files -------------------------------------------------------------


def test_glob_and_list_give_lists(tmp_path, opened):
    paths = series(tmp_path)
    from_glob = xsignal.open(str(tmp_path / "s*.nc"))
    from_list = xsignal.open(paths)
    opened.extend(from_glob + from_list)
    assert len(from_glob) == len(from_list) == 3
    for a, b in zip(from_glob, from_list):
        xr.testing.assert_identical(a.compute(), b.compute())


def test_stack_true_reads_nothing_and_stacks_along_a_leading_dim(tmp_path, opened):
    paths = series(tmp_path)
    with raise_if_dask_computes():
        st = xsignal.open(paths, stack=True, dim="scan")
    opened.append(st)
    assert st.dims == ("scan", "y", "x", "energy")
    assert st.signal.navigation_dims == ("scan", "y", "x")
    assert st.chunks[0] == (1, 1, 1)
    for i, p in enumerate(paths):
        one = xsignal.open(p, lazy=False)
        np.testing.assert_array_equal(st[i].values, one.values)
    # which file is which: the stack dim's coordinate, and the titles
    assert list(st["scan"].values) == [str(p) for p in paths]
    np.testing.assert_array_equal(
        st.sel(scan=str(paths[1])).values, xsignal.open(paths[1], lazy=False).values
    )
    assert st["title"].dims == ("scan",)


def test_stack_mismatch_names_the_first_offending_file(tmp_path):
    paths = series(tmp_path, 2)
    write_spectrum_image(tmp_path / "odd.nc", (4, 3, 8))
    with pytest.raises(ValueError, match=r"odd.nc has shape \(4, 3, 8\)"):
        xsignal.open([*paths, tmp_path / "odd.nc"], stack=True)


# --- close_file ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["accessor", "compute"])
def test_close_file_releases_the_file_and_later_use_raises(tmp_path, how):
    path = write_spectrum_image(tmp_path / "a.nc", (4, 3, 16))
    da = xsignal.open(path)
    derived = da.sum("energy")
    if how == "accessor":
        da.signal.close_file()
    else:
        values = da.signal.compute(close_file=True)
        assert values.shape == (4, 3, 16)
    with h5py.File(path, "a") as f:  # writable: no handle left
        f["data"][0, 0, 0] = -1
    os.remove(path)
    write_spectrum_image(path, (4, 3, 16), seed=5)
    for arr in (da, derived):
        with pytest.raises(ValueError, match="closed with close_file"):
            arr.compute()


def test_close_file_leaves_other_opened_arrays_alone(tmp_path, opened):
    path = write_spectrum_image(tmp_path / "a.nc", (4, 3, 16))
    first, second = xsignal.open(path), xsignal.open(path)
    opened.append(second)
    xsignal.close_file(first)
    assert second.sum().compute() > 0


def test_close_file_on_a_stack_closes_every_file(tmp_path):
    paths = series(tmp_path, 2)
    st = xsignal.open(paths, stack=True)
    xsignal.close_file(st)
    for p in paths:
        with h5py.File(p, "a"):
            pass


@pytest.mark.parametrize("scheduler_name", ["threads", "sync"])
def test_threaded_reads_are_correct(tmp_path, scheduler_name, opened):
    path = write_spectrum_image(tmp_path / "a.nc", (16, 8, 64), chunks=(1, 8, 64))
    da = xsignal.open(path)
    opened.append(da)
    with h5py.File(path) as f:
        ref = f["data"][()]
    out = da.sum("energy").compute(scheduler=scheduler_name)
    np.testing.assert_allclose(out.values, ref.sum(-1), rtol=1e-6)


def test_partial_edge_chunks_and_fancy_selection(tmp_path, opened):
    path = write_spectrum_image(tmp_path / "a.nc", (7, 5, 24), chunks=(3, 2, 24))
    da = xsignal.open(path, chunks={"y": 2, "x": 3, "energy": 10})
    opened.append(da)
    with h5py.File(path) as f:
        ref = f["data"][()]
    np.testing.assert_array_equal(da.values, ref)
    np.testing.assert_array_equal(
        da.isel(y=[6, 0], x=slice(1, 4)).values, ref[[6, 0]][:, 1:4]
    )


@pytest.mark.parametrize(
    "chunks",
    [
        {"y": 6},  # whole chunks, contiguous: read into place
        {"y": 9, "x": 4},  # split in a trailing dim and at the edges: buffered
        {"y": -1, "x": -1},  # everything, edge chunks stored whole
        {"y": 4},  # not on the chunk grid: the covering chunks, then cut
        {"energy": 10},  # parts of each chunk's signal: likewise
        {"y": 1, "x": 1, "energy": 3},  # small parts: HDF5's own selection
    ],
)
def test_blocks_of_several_raw_chunks(tmp_path, opened, chunks):
    """Dask blocks spanning several on-disk chunks read them chunk by chunk
    (edge chunks partly outside the dataset included) with the same values."""
    path = write_spectrum_image(tmp_path / "a.nc", (11, 7, 24), chunks=(3, 2, 24))
    da = xsignal.open(path, chunks=chunks)
    opened.append(da)
    with h5py.File(path) as f:
        ref = f["data"][()]
    for scheduler in ("threads", "sync"):
        np.testing.assert_array_equal(da.compute(scheduler=scheduler).values, ref)
    np.testing.assert_allclose(
        da.sum("energy").values, ref.sum(-1, dtype="f8"), rtol=1e-5
    )
    window = da.isel(energy=slice(5, 17), y=slice(1, 10))
    np.testing.assert_array_equal(window.values, ref[1:10, :, 5:17])


def test_unwritten_chunks_read_as_the_fill_value(tmp_path, opened):
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "data", shape=(6, 4, 8), chunks=(2, 4, 8), dtype="f4", fillvalue=-3
        )
        dset[2:4] = 1.5  # one chunk written, the others never
    da = xsignal.open(path, chunks={"dim_0": 6})
    opened.append(da)
    expected = np.full((6, 4, 8), -3, "f4")
    expected[2:4] = 1.5
    np.testing.assert_array_equal(da.values, expected)


def test_cli_info_describes_hdf5_files(tmp_path, capsys):
    from xsignal.cli import main

    data = np.ones((4, 5, 6), "f4")
    path = plain_file(
        tmp_path / "raw.h5", **{"g/data": (data, (1, 5, 6)), "o": (data, None)}
    )
    assert main(["info", str(path)]) == 2
    assert "several datasets" in capsys.readouterr().err
    assert main(["info", str(path), "--variable", "/g/data"]) == 0
    out = capsys.readouterr().out
    assert "on-disk chunks:  (1, 5, 6)" in out
    assert "compression:     None" in out


def test_distributed_workers_read_write_and_close(tmp_path):
    path = write_spectrum_image(tmp_path / "a.nc", (8, 6, 32), chunks=(2, 6, 32))
    expected = float(xsignal.open(path, lazy=False).sum())
    with local_client(processes=True, dashboard_address=":0"):
        da = xsignal.open(path)
        assert float(da.sum()) == pytest.approx(expected)
        xsignal.save(da * 2, tmp_path / "b.nc")
        xsignal.close_file(da)
        with h5py.File(path, "a"):  # no worker holds the file any more
            pass
        with pytest.raises(ValueError, match="closed with close_file"):
            da.sum().compute()
    back = xsignal.open(tmp_path / "b.nc", lazy=False)
    assert float(back.sum()) == pytest.approx(2 * expected)


def test_recycled_block_memory_is_never_shared_with_live_views(tmp_path, opened):
    path = write_spectrum_image(tmp_path / "a.nc", (64, 32, 128), chunks=(16, 32, 128))
    da = xsignal.open(path)
    opened.append(da)
    with h5py.File(path) as f:
        ref = f["data"][()]
    first = da.data.blocks[0].compute()
    kept = first[3]  # a view that outlives its block
    del first
    blocks = [da.data.blocks[i].compute() for i in range(1, 4)]
    np.testing.assert_array_equal(kept, ref[3])
    for i, block in enumerate(blocks, start=1):
        np.testing.assert_array_equal(block, ref[16 * i : 16 * (i + 1)])
        block[...] = -1  # blocks are writable and private
    np.testing.assert_array_equal(da.data.blocks[1].compute(), ref[16:32])


def test_pooled_buffer_outlives_every_view():
    from xsignal.io.h5source import _BufferPool

    pool = _BufferPool()
    block = pool.empty((64, 1024), np.dtype("f4"))  # 256 KiB: pooled
    block[...] = 7
    row = block[3]  # a view: its base is not `block` itself
    del block
    import gc

    gc.collect()
    other = pool.empty((64, 1024), np.dtype("f4"))
    other[...] = -1
    np.testing.assert_array_equal(row, 7)


def test_forked_process_pool_reopens_the_file(tmp_path, opened):
    import dask

    path = write_spectrum_image(tmp_path / "a.nc", (8, 6, 32), chunks=(2, 6, 32))
    da = xsignal.open(path)
    opened.append(da)
    expected = float(da.sum())  # this process has the file open before forking
    config = {"scheduler": "processes", "multiprocessing.context": "fork"}
    with dask.config.set(config):
        assert float(da.sum()) == pytest.approx(expected)


def test_dropping_every_reference_releases_the_file(tmp_path):
    import gc

    path = write_spectrum_image(tmp_path / "a.nc", (4, 3, 16))
    da = xsignal.open(path)
    total = da.sum("energy")
    total.compute()
    del da, total
    gc.collect()
    with h5py.File(path, "a"):  # nothing holds it open any more
        pass


def test_many_files_keep_few_handles_open(tmp_path, monkeypatch, opened):
    from xsignal.io import h5source as handles

    monkeypatch.setattr(handles, "MAX_OPEN_FILES", 3)
    paths = series(tmp_path, 8, shape=(4, 3, 8))
    st = xsignal.open(paths, stack=True)
    opened.append(st)
    expected = [float(xsignal.open(p, lazy=False).sum()) for p in paths]
    assert len(handles._HANDLES) <= 3
    with dask.config.set(scheduler="threads"):
        sums = st.sum(("y", "x", "energy")).values
    np.testing.assert_allclose(sums, expected, rtol=1e-6)
    assert len(handles._HANDLES) <= 3


@pytest.mark.parametrize("rows", [4 * 10**8, 10**12])
def test_a_tiny_store_declaring_a_huge_array_is_refused_before_building_chunks(
    tmp_path, rows
):
    """The task count comes from the chunk lengths, before any chunk tuple
    exists: a zarr store of a few KB declaring 10**12 rows is refused at
    once, naming the store, in little memory (was a MemoryError without a
    message, or 890 MB for 4 * 10**8 rows)."""
    import tracemalloc

    import zarr

    path = tmp_path / "huge.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array(
        "data",
        shape=(rows, 8, 64),
        chunks=(4, 8, 64),
        dtype="f4",
        dimension_names=("y", "x", "e"),
    )
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"huge\.zarr: its array of shape"):
            xsignal.open(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_a_tiny_file_declaring_a_huge_array_is_refused(tmp_path):
    """A few KB can declare 10**15 values: opening refuses the absurd task
    count instead of hanging on the first compute."""
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "data", shape=(10**6, 10**6, 1000), dtype="f4", chunks=(1, 100, 1000)
        )
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"huge\.h5.*chunks"):
        xsignal.open(path)


# --- files whose reads reach other files --------------------------------------


def _secret(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(64)) * 4)
    return secret


def external_storage_file(tmp_path):
    secret = _secret(tmp_path)
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "data", shape=(16, 16), dtype="u1", external=[(secret, 0, 256)]
        )
    return path, secret


def external_link_file(tmp_path):
    other = plain_file(
        tmp_path / "other.h5", data=(np.arange(12.0).reshape(3, 4), None)
    )
    path = tmp_path / "link.h5"
    with h5py.File(path, "w") as f:
        f["data"] = h5py.ExternalLink(str(other), "/data")
    return path, other


def virtual_file(tmp_path):
    other = plain_file(
        tmp_path / "source.h5", data=(np.arange(12.0).reshape(3, 4), None)
    )
    path = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(3, 4), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(3, 4))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("data", layout)
    return path, other


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (external_storage_file, r"stores its data in other files .*secret\.bin"),
        (external_link_file, r"/data is an external link to .*other\.h5:/data"),
        (virtual_file, r"virtual dataset reading other files .*source\.h5"),
    ],
)
def test_files_reaching_other_files_are_refused_unless_allowed(
    tmp_path, opened, make, match
):
    path, other = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        xsignal.open(path)
    assert str(path) in str(info.value) and "allow_external=True" in str(info.value)
    with pytest.raises(ValueError, match=match):
        xr.open_dataarray(path, engine="xsignal")
    da = xsignal.open(path, allow_external=True, variable="/data")
    opened.append(da)
    if make is external_storage_file:
        np.testing.assert_array_equal(
            da.values.ravel(), np.frombuffer(other.read_bytes(), "u1")
        )
    else:
        np.testing.assert_array_equal(da.values, np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_external_links_allowed_are_read_and_found(
    tmp_path, opened, monkeypatch, relative, scheduler
):
    """The dataset's path in the other file differs from the link's path
    in this one (it was looked up in the wrong file); links to datasets
    and to groups are found without ``variable=``; a relative file name is
    found beside the linking file, whatever the working directory."""
    values = np.arange(24.0).reshape(2, 3, 4)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("deep/inside/cube", data=values, chunks=(1, 3, 4))
    name = "data.h5" if relative else str(tmp_path / "data.h5")
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f["to_cube"] = h5py.ExternalLink(name, "/deep/inside/cube")
    grouped = tmp_path / "group_link.h5"
    with h5py.File(grouped, "w") as f:
        f["to_group"] = h5py.ExternalLink(name, "/deep")
    monkeypatch.chdir("/")
    for file, variable in [(path, None), (path, "to_cube"), (grouped, None)]:
        da = xsignal.open(file, allow_external=True, variable=variable)
        opened.append(da)
        assert da.shape == (2, 3, 4)
        np.testing.assert_array_equal(da.compute(scheduler=scheduler).values, values)
    found = xsignal.open(grouped, allow_external=True)
    opened.append(found)
    assert found.name == "cube"


def test_cli_refuses_external_data_and_takes_the_flag(tmp_path, capsys):
    from xsignal.cli import main

    path, _ = external_storage_file(tmp_path)
    out = tmp_path / "copy.nc"
    assert main(["convert", str(path), str(out)]) == 2
    assert "allow-external" in capsys.readouterr().err
    assert not out.exists()
    assert main(["info", str(path)]) == 2
    assert main(["convert", "--allow-external", str(path), str(out)]) == 0
    assert main(["info", "--allow-external", str(path)]) == 0


def test_a_virtual_dataset_within_its_own_file_is_read(tmp_path, opened):
    path = tmp_path / "self.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = np.arange(8.0).reshape(2, 4)
        layout = h5py.VirtualLayout(shape=(4, 2), dtype="f8")
        layout[:2] = h5py.VirtualSource(".", "raw", shape=(2, 4))[:, :2]
        layout[2:] = h5py.VirtualSource(".", "raw", shape=(2, 4))[:, 2:]
        f.create_virtual_dataset("view", layout)
    da = xsignal.open(path, variable="/view")
    opened.append(da)
    np.testing.assert_array_equal(da.values, [[0, 1], [4, 5], [2, 3], [6, 7]])


@pytest.mark.parametrize("ext", ["nc", "zarr", "h5"])
def test_variable_may_be_an_index(tmp_path, ext, opened):
    """``variable=1`` picks the second signal in the file's order, for every
    format (it raised AttributeError: 'int' object has no attribute 'strip')."""
    path = tmp_path / f"two.{ext}"
    ds = xr.Dataset(
        {"a": (("y", "e"), np.ones((2, 3))), "b": (("t", "e"), np.zeros((4, 3)))}
    )
    if ext == "nc":
        ds.to_netcdf(path, engine="h5netcdf")
    elif ext == "zarr":
        ds.to_zarr(path, zarr_format=3)
    else:
        with h5py.File(path, "w") as f:
            f["a"], f["b"] = ds["a"].values, ds["b"].values
    second = xsignal.open(path, variable=1)
    opened.append(second)
    assert second.shape == (4, 3)
    with pytest.raises(ValueError, match="variable=7 is not an index"):
        xsignal.open(path, variable=7)
