"""Shared fixtures: the same data in memory and lazy, and the shared HyperSpy files."""

from __future__ import annotations

from pathlib import Path

import dask
import pytest
from clusters import local_client

import xsignal
from xsignal.testing import spectrum_image

SHARED_HSPY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hspy"


@pytest.fixture(autouse=True)
def _no_progress_bars():
    with xsignal.set_options(progress=False):
        yield


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    """'numpy' or 'dask': parametrizes a test over in-memory and lazy input."""
    return request.param


@pytest.fixture
def si(backend):
    """A small spectrum image (y: 6, x: 5 | energy: 32), in memory or lazy."""
    data = spectrum_image((6, 5, 32), rank=3, seed=1).data
    return data.chunk({"y": 2, "x": 3}) if backend == "dask" else data


@pytest.fixture(params=["sync", "threads"])
def scheduler(request):
    """Runs the test under dask's synchronous and threaded schedulers."""
    with dask.config.set(scheduler=request.param):
        yield request.param


@pytest.fixture
def opened():
    """Arrays opened in a test; their files are closed at the end."""
    arrays = []
    yield arrays
    for da in arrays:
        xsignal.close_file(da)


@pytest.fixture(scope="module")
def process_client():
    """A dask.distributed Client of two worker processes on loopback, one
    for the test module (each worker opens the files itself)."""
    with local_client(
        processes=True, dashboard_address=":0", host="127.0.0.1", direct_to_workers=True
    ) as client:
        yield client
