"""xsignal.compute(*arrays, progress=callback): partial results as blocks
complete, in the caller's thread, on dask's local schedulers and on a
dask.distributed cluster.

Files are written to disk and opened with xsignal.open; reads are counted
at xsignal's HDF5 reader (H5Source._get), so each block read once is
checked, not assumed.
"""

from __future__ import annotations

import collections
import threading

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from clusters import local_client

import xsignal
from xsignal.io import h5source
from xsignal.testing import write_spectrum_image

SHAPE = (16, 12, 64)  # y, x | energy
FILE_CHUNKS = (4, 6, 64)  # 4 x 2 = 8 blocks


@pytest.fixture
def path(tmp_path):
    return write_spectrum_image(
        tmp_path / "si.nc", SHAPE, rank=3, seed=5, chunks=FILE_CHUNKS
    )


@pytest.fixture
def da(path, opened):
    out = xsignal.open(path)
    opened.append(out)
    return out


@pytest.fixture
def reads(monkeypatch):
    """The regions read from HDF5 files in this process, counted."""
    counted: collections.Counter = collections.Counter()
    lock = threading.Lock()
    real = h5source.H5Source._get

    def counting(self, key):
        with lock:
            counted[str(key)] += 1
        return real(self, key)

    monkeypatch.setattr(h5source.H5Source, "_get", counting)
    return counted


class Recorder:
    """A callback keeping a copy of every partial, its fraction and thread."""

    def __init__(self) -> None:
        self.partials: list = []
        self.fractions: list[float] = []
        self.threads: set[int] = set()

    def __call__(self, partial, fraction) -> None:
        self.threads.add(threading.get_ident())
        copy = (
            tuple(p.copy() for p in partial)
            if isinstance(partial, tuple)
            else (partial.copy())
        )
        self.partials.append(copy)
        self.fractions.append(fraction)


def check_fills_in(seen: Recorder, result, nav_blocks: int) -> None:
    """Fractions increase to 1; each partial has the result's dims, coords
    and name, holds the result's values where it is not NaN, and has
    fewer NaN than the one before; the last is the result itself."""
    assert seen.threads == {threading.get_ident()}
    assert seen.fractions == sorted(seen.fractions)
    assert len(set(seen.fractions)) == len(seen.fractions)
    assert seen.fractions[-1] == 1.0
    assert all(0 < f <= 1 for f in seen.fractions)
    assert len(seen.partials) <= nav_blocks
    xr.testing.assert_identical(seen.partials[-1], result)
    missing = [int(np.isnan(p.values).sum()) for p in seen.partials]
    assert missing == sorted(missing, reverse=True)
    assert missing[-1] == 0
    for partial, fraction in zip(seen.partials[:-1], seen.fractions[:-1]):
        assert partial.dims == result.dims and partial.name == result.name
        xr.testing.assert_identical(
            partial.coords.to_dataset(), result.coords.to_dataset()
        )
        done = ~np.isnan(partial.values)
        np.testing.assert_array_equal(partial.values[done], result.values[done])
        assert 0 < np.isnan(partial.values).mean() < 1
        # NaN blocks are whole blocks of the result: per block, all or none
        blocks = np.isnan(partial.values).reshape(4, 4, 2, 6).transpose(0, 2, 1, 3)
        per_block = blocks.reshape(4, 2, -1)
        assert ((per_block.all(-1)) | (~per_block.any(-1))).all()
        assert fraction == pytest.approx(1 - per_block.all(-1).mean())


class Gate:
    """Holds back each output block, in whatever order dask runs them,
    until the callback has seen the blocks let through before it: the
    caller sees the result fill in; a gate never waits longer than 30 s
    (then the test still checks the values)."""

    def __init__(self, blocks: int = 8) -> None:
        self.blocks = blocks
        self.seen = self.passed = 0
        self.timed_out = False
        self.cond = threading.Condition()

    def hold(self, block: np.ndarray) -> np.ndarray:
        if not block.size:  # dask's call on an empty block, to infer the type
            return block
        with self.cond:
            before = self.passed
            if not self.cond.wait_for(lambda: self.seen >= before, timeout=30):
                self.timed_out = True
            self.passed += 1
        return block

    def gated(self, nav: xr.DataArray) -> xr.DataArray:
        return nav.copy(data=nav.data.map_blocks(self.hold, dtype=nav.dtype))

    def saw(self, fraction: float) -> None:
        with self.cond:
            self.seen = round(fraction * self.blocks)
            self.cond.notify_all()


@pytest.mark.parametrize("kind", ["sync", "threads"])
def test_a_navigator_fills_in_as_blocks_complete(da, reads, kind):
    nav = xsignal.navigator(da)
    expected = xsignal.compute(nav, progress=False)[0]
    reads.clear()
    gate, seen = Gate(), Recorder()

    def callback(partial, fraction):
        seen(partial, fraction)
        gate.saw(fraction)

    with dask.config.set(scheduler=kind):
        (out,) = xsignal.compute(gate.gated(nav), progress=callback)
    xr.testing.assert_identical(out, expected)
    assert out.dims == ("y", "x")
    assert not gate.timed_out
    check_fills_in(seen, out, nav_blocks=8)
    assert len(reads) == 8 and set(reads.values()) == {1}  # each block once
    # the caller saw the navigator fill in: NaN blocks before the last call
    assert len(seen.partials) >= 2
    assert np.isnan(seen.partials[0].values).any()


def test_several_arrays_share_their_reads_and_partials(da, reads):
    nav, spectrum = da.sum("energy"), da.mean(("y", "x"))
    seen = Recorder()
    with dask.config.set(scheduler="sync"):
        got_nav, got_spectrum = xsignal.compute(nav, spectrum, progress=seen)
    assert len(reads) == 8 and set(reads.values()) == {1}
    assert all(isinstance(p, tuple) and len(p) == 2 for p in seen.partials)
    # the mean over the navigation is one block: all NaN until it is done
    for _, partial_spectrum in seen.partials:
        missing = np.isnan(partial_spectrum.values)
        assert missing.all() or not missing.any()
    last_nav, last_spectrum = seen.partials[-1]
    xr.testing.assert_identical(last_nav, got_nav)
    xr.testing.assert_identical(last_spectrum, got_spectrum)
    np.testing.assert_allclose(got_nav, da.sum("energy").values, rtol=1e-6)


def test_integer_results_keep_their_dtype(da):
    counts = (da * 10).astype("int64").sum("energy")
    gate, seen = Gate(), Recorder()

    def callback(partial, fraction):
        seen(partial, fraction)
        gate.saw(fraction)

    with dask.config.set(scheduler="sync"):  # blocks held until seen: partials
        (out,) = xsignal.compute(gate.gated(counts), progress=callback)
    assert out.dtype == np.int64
    assert seen.partials[0].dtype == np.float64  # NaN where not yet done
    assert np.isnan(seen.partials[0].values).any()
    xr.testing.assert_identical(seen.partials[-1], out)


def test_a_dask_array_gets_numpy_partials():
    gate, seen = Gate(blocks=4), []

    def callback(partial, fraction):
        seen.append((partial, fraction))
        gate.saw(fraction)

    x = (dsa.arange(12.0, chunks=3) * 2).map_blocks(gate.hold, dtype=float)
    with dask.config.set(scheduler="sync"):
        out, five = xsignal.compute(x, 5, progress=callback)
    np.testing.assert_array_equal(out, np.arange(12.0) * 2)
    assert five == 5
    first, fraction = seen[0]
    assert isinstance(first[0], np.ndarray) and first[1] == 5
    assert fraction == 0.25 and np.isnan(first[0]).sum() == 9
    assert [f for _, f in seen] == [0.25, 0.5, 0.75, 1.0]
    assert not gate.timed_out


def test_the_processes_scheduler(da):
    nav = da.sum("energy")
    seen = Recorder()
    with dask.config.set(scheduler="processes", num_workers=2):
        (out,) = xsignal.compute(nav, progress=seen)
    np.testing.assert_allclose(out, da.sum("energy").values, rtol=1e-6)
    assert seen.fractions[-1] == 1.0
    xr.testing.assert_identical(seen.partials[-1], out)


def test_an_error_in_the_callback_stops_the_compute(da):
    calls = []

    def fails(partial, fraction):
        calls.append(fraction)
        raise KeyError("stop")

    with dask.config.set(scheduler="sync"), pytest.raises(KeyError, match="stop"):
        xsignal.compute(da.sum("energy"), progress=fails)
    assert len(calls) == 1
    # the computation ended before the error came back: nothing runs on
    assert not [t for t in threading.enumerate() if t.name == "xsignal-compute"]


def test_an_error_in_a_task_reaches_the_caller(da):
    def boom(block):
        raise ZeroDivisionError("in a task")

    bad = da.copy(data=da.data.map_blocks(boom, dtype=da.dtype)).sum("energy")
    with pytest.raises(ZeroDivisionError, match="in a task"):
        xsignal.compute(bad, progress=lambda p, f: None)


@pytest.mark.parametrize("progress", [True, False, None])
def test_plain_progress_is_unchanged(da, progress):
    nav = da.sum("energy")
    (out,) = xsignal.compute(nav, progress=progress)
    np.testing.assert_allclose(out, da.sum("energy").values, rtol=1e-6)


def test_objects_without_blocks_are_refused(da):
    with pytest.raises(TypeError, match="DataArrays and dask arrays, not Dataset"):
        xsignal.compute(da.to_dataset(), progress=lambda p, f: None)


def test_nothing_lazy_calls_back_once():
    seen = []
    out = xsignal.compute(3, np.ones(2), progress=lambda p, f: seen.append(f))
    assert out[0] == 3 and seen == [1.0]


# --- on a dask.distributed cluster ------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with local_client(processes=False) as client:
        yield client


def test_on_a_cluster_blocks_come_as_they_complete(da, reads, client):
    nav = xsignal.navigator(da)
    with dask.config.set(scheduler="sync"):
        expected = xsignal.compute(nav, progress=False)[0]
    reads.clear()
    seen = Recorder()
    (out,) = xsignal.compute(nav, progress=seen)  # the client's workers
    xr.testing.assert_identical(out, expected)
    check_fills_in(seen, out, nav_blocks=8)
    assert len(reads) == 8 and set(reads.values()) == {1}  # each block once


def test_on_a_cluster_several_arrays_read_once(da, reads, client):
    seen = Recorder()
    nav, spectrum = xsignal.compute(da.sum("energy"), da.max(("y", "x")), progress=seen)
    assert len(reads) == 8 and set(reads.values()) == {1}
    xr.testing.assert_identical(seen.partials[-1][0], nav)
    xr.testing.assert_identical(seen.partials[-1][1], spectrum)
    np.testing.assert_allclose(spectrum, da.max(("y", "x")).values)


def test_worker_processes(path, process_client):
    """A cluster of worker processes (each opens the file itself)."""
    da = xsignal.open(path)
    try:
        seen = Recorder()
        (out,) = xsignal.compute(xsignal.navigator(da), progress=seen)
        with dask.config.set(scheduler="sync"):
            expected = xsignal.compute(xsignal.navigator(da), progress=False)[0]
        xr.testing.assert_identical(out, expected)
        check_fills_in(seen, out, nav_blocks=8)
    finally:
        xsignal.close_file(da)
