"""HyperSpy files whose metadata is hostile: a few KB declaring an axis of
10^8..10^12 points, metadata nested thousands of groups deep. Opening
costs what the metadata costs, bounded, and never a bare MemoryError or a
RecursionError reported as damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr

import xsignal
from xsignal.io import hyperspy
from xsignal.io.uniform_index import UniformIndex
from xsignal.testing import raise_if_dask_computes

SIGNAL = "Experiments/__unnamed__"


def small(offset=-2.5, scale=0.25, rows=2):
    """A (y, x | e) float32 array whose y axis is ``offset + scale * i``."""
    y = offset + scale * np.arange(rows, dtype=float)
    data = np.arange(rows * 8 * 64, dtype="f4").reshape(rows, 8, 64)
    return xr.DataArray(
        data,
        dims=("y", "x", "e"),
        coords={"y": ("y", y, {"units": "nm"})},
        attrs={"signal_dims": '["e"]'},
    )


def declaring(path, rows, chunk_rows):
    """A HyperSpy file (.hspy or .zspy) written by xsignal whose data is
    then replaced by an unwritten array of ``rows`` rows."""
    xsignal.save(small(), path)
    if str(path).endswith(".hspy"):
        with h5py.File(path, "r+") as f:
            group = f[SIGNAL]
            del group["data"]
            group.create_dataset(
                "data", shape=(rows, 8, 64), chunks=(chunk_rows, 8, 64), dtype="f4"
            )
            group["axis-0"].attrs["size"] = rows
    else:
        root = zarr.open_group(path, mode="a", zarr_format=2)
        group = root[SIGNAL]
        del group["data"]
        group.create_array(
            "data", shape=(rows, 8, 64), chunks=(chunk_rows, 8, 64), dtype="f4"
        )
        group["axis-0"].attrs["size"] = rows
        zarr.consolidate_metadata(root.store)
    return path


# --- huge declared axes ----------------------------------------------------------


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_a_huge_declared_axis_gets_a_computed_coordinate(tmp_path, ext, opened):
    path = declaring(tmp_path / f"huge.{ext}", 300_000_000, 100_000)
    start = time.perf_counter()
    da = xsignal.open(path)
    opened.append(da)
    assert time.perf_counter() - start < 3
    assert isinstance(da.xindexes["y"], UniformIndex)
    assert da.sizes["y"] == 300_000_000
    assert float(da.y[0]) == -2.5
    assert float(da.y[1]) == -2.25
    assert float(da.y[-1]) == -2.5 + 0.25 * (300_000_000 - 1)
    assert da.xindexes["y"].step == 0.25
    assert da.y.attrs["units"] == "nm"
    assert da.signal.signal_dims == ("e",)
    np.testing.assert_array_equal(da[-1, 0, :3].values, 0)  # never written


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads VmHWM (Linux)"
)
def test_opening_a_huge_declared_axis_is_bounded_in_memory(tmp_path):
    path = declaring(tmp_path / "huge.hspy", 300_000_000, 100_000)
    xsignal.save(small(), tmp_path / "small.hspy")
    # the peak of the child's own memory (VmHWM) after opening a small file
    # (the imports: about 250 MB), then after the huge one; its ru_maxrss
    # would count the parent's too (Linux keeps it across subprocess' exec)
    script = (
        "import sys, xsignal\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(status.split('VmHWM:')[1].split()[0]) // 1024\n"
        "xsignal.open(sys.argv[2])\n"
        "before = peak()\n"
        "da = xsignal.open(sys.argv[1])\n"
        "print(float(da.y[-1]), da.sizes['y'])\n"
        "print(before, peak())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "small.hspy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    last, megabytes = done.stdout.split("\n")[:2]
    assert last == f"{-2.5 + 0.25 * (300_000_000 - 1)} 300000000"
    before, after = map(int, megabytes.split())
    assert after - before < 50  # the coordinate alone was 2.4 GB
    assert after < 400


def test_a_trillion_rows_are_refused_by_the_task_count_naming_the_file(tmp_path):
    path = declaring(tmp_path / "trillion.hspy", 10**12, 10_000)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"trillion\.hspy.* 1e\+08 chunks"):
            xsignal.open(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_a_trillion_rows_in_large_chunks_open_lazily(tmp_path, opened):
    path = declaring(tmp_path / "trillion.zspy", 10**12, 10**8)
    tracemalloc.start()
    try:
        da = xsignal.open(path)
        opened.append(da)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert da.sizes["y"] == 10**12
    assert float(da.y[-1]) == -2.5 + 0.25 * (10**12 - 1)
    assert da.chunks is not None and len(da.chunks[0]) == 10**4


# --- the computed coordinate behaves as a float coordinate --------------------------


def lazily_opened(tmp_path, monkeypatch, offset, scale, rows=40, ext="hspy"):
    """(``da`` opened with a computed y coordinate, the same array in memory
    with its float coordinate)."""
    src = small(offset, scale, rows)
    path = tmp_path / f"small.{ext}"
    xsignal.save(src, path)
    monkeypatch.setattr(hyperspy, "LAZY_AXIS_SIZE", 10)
    da = xsignal.open(path)
    assert isinstance(da.xindexes["y"], UniformIndex)
    return da, src


def same(a, b):
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.y.values, b.y.values)
    assert a.dims == b.dims


SELECTIONS = [
    {"y": slice(-1.5, 0.25)},  # both ends on the axis: both kept
    {"y": slice(-1.4, 0.3)},  # ends between values
    {"y": slice(None, -1.0)},
    {"y": slice(0.0, None)},
    {"y": slice(0.25, -1.5)},  # the wrong way round for an increasing axis
    {"y": slice(-1.5, 0.25, 2)},
    {"y": slice(0.25, -1.5, -1)},
    {"y": slice(-100.0, 100.0)},
    {"y": -1.0},
    {"y": [-2.5, 0.0, 2.25]},
    {"y": -1.1, "method": "nearest"},
    {"y": -1.125, "method": "nearest"},  # halfway: pandas takes the larger
    {"y": [-9.0, -1.1, 0.13, 99.0], "method": "nearest"},
    {"y": -1.1, "method": "nearest", "tolerance": 0.15},
    {"y": -1.1, "method": "nearest", "tolerance": 0.05},  # a KeyError
    {"y": slice(100.0, -100.0)},  # all of a decreasing axis
    {"y": slice(0.3, -1.4, 3)},
]


@pytest.mark.parametrize("offset, scale", [(-2.5, 0.25), (3.0, -0.25)])
@pytest.mark.parametrize("selection", SELECTIONS, ids=str)
def test_label_selection_is_that_of_a_float_coordinate(
    tmp_path, monkeypatch, opened, offset, scale, selection
):
    da, src = lazily_opened(tmp_path, monkeypatch, offset, scale)
    opened.append(da)
    selection = dict(selection)
    options = {k: selection.pop(k) for k in ("method", "tolerance") if k in selection}
    try:
        expected = src.sel(selection, **options)
    except KeyError:
        with pytest.raises(KeyError):
            da.sel(selection, **options)
        return
    same(da.sel(selection, **options), expected)


def test_a_label_not_on_the_axis_is_a_key_error_naming_it(
    tmp_path, monkeypatch, opened
):
    da, src = lazily_opened(tmp_path, monkeypatch, 0.0, 0.1)
    opened.append(da)
    with pytest.raises(KeyError, match=r"0\.123 not on the axis 'y'"):
        da.sel(y=0.123)
    with pytest.raises(KeyError):
        da.sel(y=0.12, method="nearest", tolerance=0.01)
    same(da.sel(y=0.1 * 3), src.isel(y=3))  # 0.30000000000000004 is 0.3
    same(da.sel(y=0.3), src.isel(y=3))


def test_a_computed_coordinate_is_not_made_a_dask_array(tmp_path, monkeypatch, opened):
    """xarray's chunk() would make the computed coordinate a dask array,
    computed at every look at its values: xsignal.open chunks the data only."""
    da, _ = lazily_opened(tmp_path, monkeypatch, -2.5, 0.25)
    opened.append(da)
    assert da.chunks is not None and da.coords["y"].chunks is None
    with raise_if_dask_computes():
        assert float(da.y[3]) == -2.5 + 0.25 * 3


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_positions_keep_the_coordinate_computed(tmp_path, monkeypatch, opened, ext):
    da, src = lazily_opened(tmp_path, monkeypatch, -2.5, 0.25, ext=ext)
    opened.append(da)
    for key in (slice(5, 30), slice(3, None, 4), slice(None, None, -3)):
        part = da.isel(y=key)
        assert isinstance(part.xindexes["y"], UniformIndex)
        same(part, src.isel(y=key))
        same(part.sel(y=slice(-1.0, 1.0)), src.isel(y=key).sel(y=slice(-1.0, 1.0)))
    point = da.isel(y=7)
    assert point.y.shape == () and float(point.y) == -2.5 + 0.25 * 7
    same(da.isel(y=[1, 5, 2]), src.isel(y=[1, 5, 2]))
    mask = np.arange(40) % 3 == 0
    same(da.isel(y=mask), src.isel(y=mask))
    same(da.sel(y=da.y > 1.0), src.sel(y=src.y > 1.0))


def test_reductions_marking_and_concat_keep_working(tmp_path, monkeypatch, opened):
    da, src = lazily_opened(tmp_path, monkeypatch, -2.5, 0.25)
    opened.append(da)
    assert da.signal.navigation_dims == ("y", "x")
    assert da.signal.signal_dims == ("e",)
    spectra = da.sum("e")
    assert isinstance(spectra.xindexes["y"], UniformIndex)
    same(spectra, src.sum("e"))
    np.testing.assert_allclose(da.signal.nansum().values, src.sum(("y", "x")).values)
    joined = xr.concat([da.isel(y=slice(0, 10)), da.isel(y=slice(10, 25))], "y")
    assert isinstance(joined.xindexes["y"], UniformIndex)
    same(joined, src.isel(y=slice(0, 25)))
    apart = xr.concat([da.isel(y=slice(0, 3)), da.isel(y=slice(20, 23))], "y")
    same(apart, xr.concat([src.isel(y=slice(0, 3)), src.isel(y=slice(20, 23))], "y"))
    assert apart.sel(y=2.5).shape == (8, 64)


@pytest.mark.parametrize("ext", ["hspy", "zspy", "nc"])
def test_saving_a_computed_axis_writes_its_offset_and_scale(
    tmp_path, monkeypatch, opened, ext
):
    da, src = lazily_opened(tmp_path, monkeypatch, -2.5, 0.25)
    opened.append(da)
    out = tmp_path / f"out.{ext}"
    xsignal.save(da.isel(y=slice(3, 33)), out)
    if ext == "hspy":
        with h5py.File(out) as f:
            axis = dict(f[f"{SIGNAL}/axis-0"].attrs)
            hints = f[f"{SIGNAL}/metadata/_xsignal"].attrs
            assert not any("coords" in k and "no_coords" not in k for k in hints)
    elif ext == "zspy":
        axis = dict(zarr.open_group(out, mode="r")[f"{SIGNAL}/axis-0"].attrs)
    if ext != "nc":
        assert (axis["offset"], axis["scale"], axis["size"]) == (-1.75, 0.25, 30)
        assert axis["units"] == "nm"
    monkeypatch.setattr(hyperspy, "LAZY_AXIS_SIZE", 10**7)
    back = xsignal.open(out)
    opened.append(back)
    same(back, src.isel(y=slice(3, 33)))
    assert back.y.attrs["units"] == "nm"


def test_a_huge_functional_axis_is_not_evaluated(tmp_path, monkeypatch, opened):
    path = tmp_path / "functional.hspy"
    xsignal.save(small(rows=40), path)
    with h5py.File(path, "r+") as f:
        axis = f[f"{SIGNAL}/axis-0"].attrs
        axis["_type"] = "FunctionalDataAxis"
        axis["expression"] = "x ** 2"
    monkeypatch.setattr(hyperspy, "LAZY_AXIS_SIZE", 10)
    with pytest.warns(UserWarning, match=r"functional\.hspy y: a functional axis"):
        da = xsignal.open(path)
    opened.append(da)
    assert "y" not in da.coords
    np.testing.assert_array_equal(da.values, small(rows=40).values)


# --- deep metadata -------------------------------------------------------------------


def nested(path, depth, branches=("level",)):
    """``original_metadata`` nested ``depth`` groups deep (one chain per
    branch name), each group with a ``depth`` attribute."""
    xsignal.save(xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("x", "e")), path)
    with h5py.File(path, "r+") as f:
        for branch in branches:
            group = f[f"{SIGNAL}/original_metadata"]
            for i in range(depth):
                group = group.create_group(f"{branch}{i}")
                group.attrs["depth"] = i
    return path


def cut_warnings(record):
    return [str(w.message) for w in record if "groups deep" in str(w.message)]


def test_deep_original_metadata_is_cut_with_one_warning(tmp_path, opened):
    path = nested(tmp_path / "deep.hspy", 2000)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        da = xsignal.open(path)
    opened.append(da)
    assert time.perf_counter() - start < 5  # was 105 s, then "corrupted metadata"
    (message,) = cut_warnings(record)
    chain = "/".join(f"level{i}" for i in range(65))
    assert message.startswith(f"{path}: its metadata is nested more than 64 groups")
    assert f"under /{SIGNAL}/original_metadata/{chain} is left out" in message
    tree = json.loads(da.attrs["original_metadata"])
    for i in range(64):
        tree = tree[f"level{i}"]
        assert tree["depth"] == i
    assert tree == {"depth": 63}
    np.testing.assert_array_equal(da.values, np.arange(6.0).reshape(2, 3))


def test_several_cut_branches_give_one_warning(tmp_path, opened):
    path = nested(tmp_path / "two.hspy", 70, branches=("a", "b"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        opened.append(xsignal.open(path))
    (message,) = cut_warnings(record)
    assert "(and 1 other groups) is left out" in message


def test_deep_metadata_of_a_zspy_store_is_cut_too(tmp_path, opened):
    path = tmp_path / "deep.zspy"
    xsignal.save(xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("x", "e")), path)
    # deeper than a folder path can go: only in the consolidated metadata
    consolidated = json.loads((path / ".zmetadata").read_text())
    key = f"{SIGNAL}/original_metadata"
    for i in range(1100):
        key += f"/level{i}"
        consolidated["metadata"][f"{key}/.zgroup"] = {"zarr_format": 2}
        consolidated["metadata"][f"{key}/.zattrs"] = {"depth": i}
    (path / ".zmetadata").write_text(json.dumps(consolidated))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        da = xsignal.open(path)
    opened.append(da)
    (message,) = cut_warnings(record)
    assert message.startswith(f"{path}: its metadata is nested more than 64 groups")
    assert message.endswith("/level63/level64 is left out")
    np.testing.assert_array_equal(da.values, np.arange(6.0).reshape(2, 3))


@pytest.mark.timeout(30)
def test_an_external_link_deep_in_a_file_is_found_quickly(tmp_path):
    path = nested(tmp_path / "linked.hspy", 2000)
    inner = "/".join(f"level{i}" for i in range(2000))
    with h5py.File(path, "r+") as f:
        f[f"{SIGNAL}/original_metadata/{inner}"]["away"] = h5py.ExternalLink(
            "/etc/passwd", "/x"
        )
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"level1999/away is an external link to"):
        xsignal.open(path)
    assert time.perf_counter() - start < 5
