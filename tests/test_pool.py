"""map in worker processes: when, with what results, and how to turn it off.

In a module of its own: other modules keep a dask.distributed client
alive for their tests, and a chosen scheduler keeps map in threads."""

from __future__ import annotations

import threading

import dask
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import write_spectrum_image


def busy_sum(s: np.ndarray, seconds: float = 0.0) -> np.ndarray:
    """The pixel's sum and the process it ran in, after holding the GIL for
    ``seconds`` (a pure-Python busy loop, as slow per-pixel code is)."""
    import os
    import time

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pass
    return np.array([float(s.sum()), os.getpid()])


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "si.nc"
    return write_spectrum_image(path, (12, 10, 32), chunks=(3, 10, 32))


def _sums_and_pids(out: xr.DataArray) -> tuple[np.ndarray, set]:
    values = out.values
    return values[..., 0], {int(p) for p in np.unique(values[..., 1])}


@pytest.mark.parametrize("lazy", [True, False])
def test_long_maps_run_in_worker_processes_with_the_same_results(si_file, lazy):
    """A map estimated to take over a second (the first pixel's time times
    the pixels) runs in worker processes; workers read their own blocks of
    a file; the values are those of the threaded run."""
    import os

    da = xsignal.open(si_file)
    if not lazy:
        da = da.compute()
    with xsignal.set_options(map_processes=False):
        threaded, pids = _sums_and_pids(xsignal.map(da, busy_sum))
    assert pids == {os.getpid()}
    # 120 pixels x 10 ms: over a second
    out = xsignal.map(da, busy_sum, seconds=0.01)
    sums, pids = _sums_and_pids(out)
    np.testing.assert_array_equal(sums, threaded)
    np.testing.assert_allclose(sums, da.sum("energy").values, rtol=1e-6)
    assert os.getpid() not in pids and len(pids) >= 1


def test_short_maps_chosen_schedulers_and_the_option_keep_threads(si_file):
    import os

    da = xsignal.open(si_file)
    assert _sums_and_pids(xsignal.map(da, busy_sum))[1] == {os.getpid()}  # short
    with dask.config.set(scheduler="threads"):  # the user chose a scheduler
        out = xsignal.map(da, busy_sum, seconds=0.01)
        assert _sums_and_pids(out)[1] == {os.getpid()}
    with xsignal.set_options(map_processes=False):
        out = xsignal.map(da, busy_sum, seconds=0.01)
        assert _sums_and_pids(out)[1] == {os.getpid()}
    with xsignal.set_options(map_processes=True):  # forced, even when short
        assert os.getpid() not in _sums_and_pids(xsignal.map(da, busy_sum))[1]


def test_worker_process_errors_name_the_pixel(si_file):
    def fails_at(s, where):
        if s.sum() == where:
            raise ValueError("bad pixel")
        return 0.0

    da = xsignal.open(si_file)
    where = float(da.isel(y=7, x=4).sum())
    with xsignal.set_options(map_processes=True):
        out = xsignal.map(da, fails_at, where=where)
        with pytest.raises(ValueError, match=r"bad pixel") as info:
            out.compute()
    assert "y=7, x=4" in str(info.value)


def test_unpicklable_functions_stay_in_threads_or_fail_clearly_when_forced(si_file):
    lock = threading.Lock()

    def with_lock(s):
        with lock:
            return float(s.sum())

    da = xsignal.open(si_file)
    np.testing.assert_allclose(
        xsignal.map(da, with_lock).values, da.sum("energy").values, rtol=1e-6
    )
    with xsignal.set_options(map_processes=True):
        with pytest.raises(TypeError, match="cannot be pickled"):
            xsignal.map(da, with_lock)


def test_blocks_of_readers_that_do_not_pickle_are_sent(si_file):
    """A dask array over an open h5py dataset cannot travel to a worker:
    dask reads its blocks here and the workers get the values."""
    import os

    import h5py

    with h5py.File(si_file, "r") as f:
        dset = f["data"]
        da = xr.DataArray(
            dask.array.from_array(dset, chunks=(3, 10, 32)), dims=("y", "x", "energy")
        )
        with xsignal.set_options(map_processes=True):
            sums, pids = _sums_and_pids(xsignal.map(da, busy_sum))
        np.testing.assert_allclose(sums, dset[()].sum(-1), rtol=1e-6)
    assert os.getpid() not in pids
