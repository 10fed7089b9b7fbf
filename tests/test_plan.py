"""xsignal.plan: what a compute will read, hold and return, known before it
runs; the memory check before computes and saves (MemoryWarning).

Files are written to disk and opened with xsignal.open; the plans are
checked against the files (stored sizes from h5py and zarr), against the
tasks dask really runs, and the memory check against the scheduler's
memory, lowered through xsignal's own probe (engine.available_memory) or
a cluster's memory_limit.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import warnings

import dask
import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from clusters import local_client
from dask.callbacks import Callback

import xsignal
from xsignal import engine
from xsignal.plan import MemoryWarning, Plan, check_memory, plan
from xsignal.testing import raise_if_dask_computes, spectrum_image

SHAPE = (16, 12, 64)  # y, x | energy
CHUNKS = {"y": 4, "x": 6}  # 8 blocks of 4 x 6 x 64 float32 (6 KiB)
N_BLOCKS = 8


def _data() -> xr.DataArray:
    data = spectrum_image(SHAPE, rank=3, seed=3).data.astype("float32")
    return data.rename("frames").chunk(CHUNKS)


@pytest.fixture
def written(tmp_path, opened):
    """A function: the data saved as ``name`` (with ``compression``), opened."""

    def write(name: str = "si.nc", compression=None) -> xr.DataArray:
        path = tmp_path / name
        xsignal.save(_data(), path, compression=compression)
        da = xsignal.open(path)
        opened.append(da)
        return da

    return write


def stored_size(path) -> int:
    """The bytes the data takes in its file, as the file tells."""
    path = str(path)
    if path.endswith(".zarr"):
        return int(zarr.open_array(path, path="frames", mode="r").nbytes_stored())
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                found.append(obj.id.get_storage_size())
                if isinstance(obj, h5py.Dataset) and obj.shape == SHAPE
                else None
            )
        )
    (size,) = found
    return int(size)


def executed_tasks(*objs) -> int:
    """The tasks dask runs for ``xsignal.compute(*objs)``."""
    seen = []
    with Callback(pretask=lambda key, dsk, state: seen.append(key)):
        xsignal.compute(*objs, progress=False)
    return len(seen)


def test_a_plan_reads_nothing(written):
    da = written()
    with raise_if_dask_computes():
        p = plan(da.sum("energy"), da.mean(("y", "x")))
    assert isinstance(p, Plan)
    assert p.blocks_read == N_BLOCKS


@pytest.mark.parametrize(
    ("name", "compression"),
    [("si.nc", None), ("si.nc", "gzip"), ("si.hspy", None), ("si.zarr", "zstd")],
)
def test_a_full_pass_reads_the_stored_bytes(written, name, compression):
    da = written(name, compression)
    p = plan(da.sum("energy"))
    assert p.blocks_read == N_BLOCKS
    assert p.bytes_read == stored_size(_path(da))
    if compression is None:
        assert p.bytes_read == da.nbytes  # uncompressed: the data itself
    else:
        assert p.bytes_read < da.nbytes


def _path(da: xr.DataArray) -> str:
    (layer,) = [n for n in da.data.dask.layers if n.startswith("original-")]
    src = next(iter(da.data.dask.layers[layer].values()))
    while not hasattr(src, "path"):
        src = getattr(src, "src", None) or src.array
    return src.path


def test_a_slice_reads_only_its_blocks(written):
    da = written()
    p = plan(da.isel(y=slice(0, 4)).sum("energy"))  # one row of blocks
    assert p.blocks_read == 2
    assert p.bytes_read == da.nbytes // 4


def test_an_input_shared_by_two_arrays_counts_once(written, tmp_path):
    da = written()
    one = plan(da.sum("energy"))
    both = plan(da.sum("energy"), da.max(("y", "x")))
    assert both.blocks_read == one.blocks_read == N_BLOCKS
    assert both.bytes_read == one.bytes_read
    # the same file opened twice is two inputs: read twice
    again = xsignal.open(_path(da))
    try:
        twice = plan(da.sum("energy"), again.max(("y", "x")))
    finally:
        xsignal.close_file(again)
    assert twice.blocks_read == 2 * N_BLOCKS
    assert twice.bytes_read == 2 * one.bytes_read


@pytest.mark.parametrize("kind", ["sync", "threads"])
def test_tasks_are_the_tasks_dask_runs(written, kind):
    da = written()
    objs = (da.sum("energy"), da.max(("y", "x")), da.isel(x=0).mean("energy"))
    with dask.config.set(scheduler=kind):
        assert plan(*objs).tasks == executed_tasks(*objs)


def test_bytes_to_caller_are_the_results(written):
    da = written()
    objs = (da.sum("energy"), da.max(("y", "x")))
    p = plan(*objs)
    results = xsignal.compute(*objs, progress=False)
    assert p.bytes_to_caller == sum(r.nbytes for r in results)
    assert p.bytes_to_caller == (16 * 12 + 64) * 4


def test_arrays_in_memory_plan_nothing():
    p = plan(xr.DataArray(np.zeros((4, 3))), 7)
    assert (p.tasks, p.blocks_read, p.bytes_read, p.peak_memory) == (0, 0, 0, 0)
    assert p.bytes_to_caller == 0


def test_peak_memory_follows_the_model(written):
    """threads x (a block in + a block out) + the results, or twice the
    results and the read buffers at the end."""
    da = written()
    block = 4 * 6 * 64 * 4
    doubled = da * 2
    with dask.config.set(scheduler="sync"):
        sync = plan(doubled)
    with dask.config.set(scheduler="threads", num_workers=3):
        threads = plan(doubled)
    assert (sync.threads, threads.threads) == (1, 3)
    results = da.nbytes
    assert sync.peak_memory == max(2 * block + results, 2 * results + block)
    assert threads.peak_memory == max(6 * block + results, 2 * results + 3 * block)


def test_the_repr_is_in_human_units(written):
    p = plan(written().sum("energy"))
    text = repr(p)
    assert text.startswith("Plan(tasks=")
    assert f"blocks_read={N_BLOCKS}" in text
    assert "bytes_read=48.0 KiB" in text  # 8 x 6 KiB
    assert "bytes_to_caller=768 B" in text
    assert "per worker" in text and "GiB" in text


def test_a_plan_is_frozen(written):
    p = plan(written().sum("energy"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.tasks = 3  # type: ignore[misc]


def test_resources_of_local_schedulers(monkeypatch):
    monkeypatch.setattr(engine, "available_memory", lambda: 8 * 2**30)
    with dask.config.set(scheduler="sync"):
        assert engine.resources() == engine.Resources("sync", 1, 1, 8 * 2**30)
    with dask.config.set(scheduler="threads", num_workers=3):
        assert engine.resources() == engine.Resources("threads", 1, 3, 8 * 2**30)
    with dask.config.set(scheduler="processes", num_workers=4):
        assert engine.resources() == engine.Resources("processes", 4, 1, 2 * 2**30)


def test_available_memory_is_the_machines():
    found = engine.available_memory()
    assert found is not None and 0 < found


# --- the check before a compute or a save -----------------------------------------


def small_memory(monkeypatch, nbytes: int) -> None:
    """The machine seen through xsignal's probe has ``nbytes`` available."""
    monkeypatch.setattr(engine, "available_memory", lambda: nbytes)


def test_a_compute_that_fits_does_not_warn(written):
    da = written()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryWarning)
        xsignal.compute(da.sum("energy"), progress=False)


@pytest.mark.parametrize("kind", ["sync", "threads"])
def test_a_compute_that_does_not_fit_warns_first(written, monkeypatch, kind):
    da = written()
    nav = da.sum("energy").rename("navigator")
    with dask.config.set(scheduler=kind):
        need = plan(nav).peak_memory
        small_memory(monkeypatch, need * 2 // 3)
        assert not plan(nav).fits
        with pytest.warns(MemoryWarning) as caught:
            (out,) = xsignal.compute(nav, progress=False)
    np.testing.assert_allclose(out, _data().sum("energy"), rtol=1e-6)
    (warning,) = caught
    message = str(warning.message)
    assert warning.filename == __file__  # points at the user's line
    assert message.startswith("computing 'navigator' needs about ")
    # the navigation dims to cut, named; the others keep their chunks
    suggested = re.search(r"chunks=(\{'y': \d\}) \(now \{'y': 4\}\)", message)
    assert suggested, message
    chunks = ast.literal_eval(suggested.group(1))
    assert chunks["y"] < 4
    # the chunking it names fits
    smaller = xsignal.open(_path(da), chunks=chunks)
    try:
        with dask.config.set(scheduler=kind):
            assert plan(smaller.sum("energy")).fits
            with warnings.catch_warnings():
                warnings.simplefilter("error", MemoryWarning)
                xsignal.compute(smaller.sum("energy"), progress=False)
    finally:
        xsignal.close_file(smaller)


def test_results_that_do_not_fit_say_so(written, monkeypatch):
    da = written()
    small_memory(monkeypatch, da.nbytes)
    with pytest.warns(MemoryWarning, match="the results alone are 48.0 KiB"):
        xsignal.compute(da * 2, progress=False)


def test_a_save_counts_no_results(written, monkeypatch, tmp_path):
    """A save writes its blocks one by one: only the blocks in flight count."""
    da = written()
    small_memory(monkeypatch, da.nbytes)  # the whole would not come back
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryWarning)
        check_memory(da * 2, to_caller=False)
    with pytest.warns(MemoryWarning, match="writing 'frames'"):
        small_memory(monkeypatch, 1024)
        check_memory(da * 2, to_caller=False)


def test_a_save_that_fits_does_not_warn(written, monkeypatch, tmp_path):
    """The writes of a save return nothing: a file larger than the memory
    is saved without a warning when its blocks fit."""
    da = written()
    small_memory(monkeypatch, da.nbytes - 1)  # the whole would not fit
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryWarning)
        xsignal.save(da * 2, tmp_path / "out.nc")
    again = xsignal.open(tmp_path / "out.nc")
    try:
        np.testing.assert_allclose(again.values, da.values * 2)
    finally:
        xsignal.close_file(again)


def test_a_save_whose_blocks_do_not_fit_warns(written, monkeypatch, tmp_path):
    da = written()
    # two threads, each holding a block read and a block computed (24 KiB)
    small_memory(monkeypatch, da.nbytes // 4)
    with pytest.warns(MemoryWarning, match="use smaller blocks"):
        xsignal.save(da * 2, tmp_path / "out.nc")


def test_a_checked_whole_warns_once_naming_the_array(written, monkeypatch, tmp_path):
    da = written()
    small_memory(monkeypatch, 1024)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with engine.memory_checked(da * 2, to_caller=False):
            xsignal.save(da * 2, tmp_path / "out.nc")
    found = [w for w in caught if issubclass(w.category, MemoryWarning)]
    assert len(found) == 1
    assert str(found[0].message).startswith("writing 'frames' needs about")
    assert found[0].filename == __file__


def test_the_warning_is_a_user_warning_python_shows():
    assert issubclass(MemoryWarning, UserWarning)
    assert not issubclass(MemoryWarning, ResourceWarning)  # hidden by default
    assert xsignal.plan is not None


# --- on a dask.distributed cluster ------------------------------------------------

NO_MEMORY_MANAGEMENT = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": False,
}


@pytest.fixture(scope="module")
def small_cluster():
    """Two workers of one thread with 64 KiB each (a number only: memory
    management is off, nothing spills or pauses)."""
    with (
        dask.config.set(NO_MEMORY_MANAGEMENT),
        local_client(processes=False, memory_limit=64 * 2**10) as client,
    ):
        yield client


def test_a_plan_on_a_cluster_is_per_worker(written, small_cluster):
    da = written()
    res = engine.resources()
    assert res == engine.Resources("distributed", 2, 1, 64 * 2**10)
    p = plan(da * 2)
    assert (p.workers, p.threads, p.memory_limit, p.scheduler) == (
        2,
        1,
        64 * 2**10,
        "distributed",
    )
    block = 4 * 6 * 64 * 4
    assert p.peak_memory == max(2 * block + da.nbytes, 2 * da.nbytes + block)
    assert p.blocks_read == N_BLOCKS


def test_a_cluster_whose_workers_are_too_small_warns(written, small_cluster):
    da = written()
    frames = xsignal.set_signal_dims(da, "energy")
    with pytest.warns(MemoryWarning, match="64.0 KiB memory_limit of each worker"):
        (out,) = xsignal.compute(frames * 2, progress=False)
    np.testing.assert_allclose(out, _data() * 2)
    assert math.isclose(float(out.sum()), float((_data() * 2).sum()), rel_tol=1e-5)
