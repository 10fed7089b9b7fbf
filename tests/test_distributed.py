"""Everything that computes, on a dask.distributed LocalCluster.

One cluster of two worker processes serves the whole module. Each test
computes on the cluster (checking that tasks did run on the workers) and
compares with the threaded scheduler's result on the same opened file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import h5py
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import write_spectrum_image

distributed = pytest.importorskip("distributed")

SHAPE = (24, 20, 64)  # y, x | energy
FILE_CHUNKS = (4, 10, 64)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=":0",
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def path(folder):
    return write_spectrum_image(
        folder / "si.nc", SHAPE, rank=3, seed=2, chunks=FILE_CHUNKS
    )


@pytest.fixture
def da(path):
    return xsignal.open(path)


def threaded(fn: Callable[[], Any]) -> Any:
    """``fn()`` under the threaded scheduler (the reference)."""
    with dask.config.set(scheduler="threads"):
        return fn()


def on_cluster(client, fn: Callable[[], Any]) -> Any:
    """``fn()`` with the client, checking that tasks ran on the workers."""
    with distributed.get_task_stream(client) as stream:
        out = fn()
    workers = {t["worker"] for t in stream.data}
    assert workers, "no task ran on the cluster"
    return out


def both(client, fn: Callable[[], Any]) -> tuple[Any, Any]:
    return on_cluster(client, fn), threaded(fn)


def assert_equal(a: xr.DataArray, b: xr.DataArray) -> None:
    assert not xsignal.is_lazy(a) and not xsignal.is_lazy(b)
    xr.testing.assert_identical(a, b)


def test_reductions(client, da):
    def fn():
        return xsignal.compute(
            da.signal.sum(),
            da.signal.nanmean("signal"),
            da.signal.navigator(),
            da.signal.indexmax(),
        )

    remote, local = both(client, fn)
    for a, b in zip(remote, local):
        xr.testing.assert_allclose(a, b, rtol=1e-6)
        assert a.dims == b.dims
    assert float(remote[0].sum()) == pytest.approx(float(da.values.sum()), rel=1e-5)


@pytest.mark.parametrize("bins", [16, "fd"])
def test_histogram(client, da, bins):
    remote, local = both(client, lambda: da.signal.histogram(bins=bins).compute())
    assert_equal(remote, local)
    assert int(remote.sum()) == da.size


def test_roi_rebin(client, da):
    x, y = da.x.values, da.y.values
    roi = xsignal.CircleROI(cx=float(x[10]), cy=float(y[12]), r=float(x[5] - x[0]))

    def fn():
        return xsignal.compute(
            da.signal.roi(roi).signal.nanmean(),
            da.signal.rebin({"y": 2, "x": 4, "energy": 2}),
        )

    (roi_r, rebin_r), (roi_l, rebin_l) = both(client, fn)
    xr.testing.assert_allclose(roi_r, roi_l, rtol=1e-6)
    assert_equal(rebin_r, rebin_l)
    assert rebin_r.shape == (12, 5, 32)


def test_stack(client, da, path, folder):
    other = folder / "si2.nc"
    if not other.exists():
        write_spectrum_image(other, SHAPE, rank=3, seed=3, chunks=FILE_CHUNKS)
    stacked = xsignal.open([path, other], stack=True)
    remote, local = both(client, lambda: stacked.signal.sum("signal").compute())
    assert_equal(remote, local)
    assert remote.dims == ("stack", "y", "x")


def _peak(signal: np.ndarray) -> float:
    return float(np.argmax(signal)) + float(signal.max())


def _peaks(block: np.ndarray) -> np.ndarray:
    return np.argmax(block, axis=-1) + block.max(axis=-1)


def test_map(client, da):
    def fn():
        return xsignal.compute(
            da.signal.map(_peak),
            da.signal.map(_peaks, vectorized=True),
            da.signal.map_blocks(lambda a: a * 2),
        )

    remote, local = both(client, fn)
    for a, b in zip(remote, local):
        assert_equal(a, b)
    xr.testing.assert_allclose(remote[0], remote[1].astype(remote[0].dtype))


def test_blocks(client, da):
    mask = np.zeros(SHAPE[:2], bool)
    mask[:4] = True  # the first block row is never read

    def fn():
        return list(xsignal.blocks(da, navigation_mask=mask, prefetch=2))

    remote, local = both(client, fn)
    assert len(remote) == len(local) == 10
    for (wr, br), (wl, bl) in zip(remote, local):
        assert wr == wl
        np.testing.assert_array_equal(br, bl)


@pytest.mark.parametrize(
    ("algorithm", "kwargs"),
    [
        ("SVD", {}),
        ("SVD", {"svd_solver": "randomized"}),
        ("PCA", {}),
        ("ORPCA", {}),
        ("ORNMF", {}),
    ],
)
def test_decomposition(client, da, algorithm, kwargs):
    def fn():
        dec = da.signal.decomposition(algorithm, 3, **kwargs)
        return xsignal.compute(dec.factors, dec.loadings)

    (fr, lr), (fl, ll) = both(client, fn)
    # the same blocks in the same order: the same numbers up to the
    # summation order of the reductions
    np.testing.assert_allclose(fr, fl, rtol=1e-4, atol=1e-5 * float(abs(fl).max()))
    np.testing.assert_allclose(lr, ll, rtol=1e-4, atol=1e-5 * float(abs(ll).max()))


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_save(client, da, folder, compression):
    """Written by one writer from blocks computed (and encoded) on the workers;
    the last chunk along y is partial."""
    target = folder / "saved.nc"
    lazy = (da * 2).signal.rechunk({"y": 10})
    on_cluster(
        client,
        lambda: xsignal.save(lazy, target, overwrite=True, compression=compression),
    )
    back = xsignal.open(target)
    assert back.chunks == ((10, 10, 4), (10, 10), (64,))
    with h5py.File(target) as f:
        assert f["data"].compression == compression
    expected = threaded(lambda: lazy.compute())
    with dask.config.set(scheduler="threads"):
        xr.testing.assert_identical(back.compute(), expected)
    xsignal.close_file(back)


def test_save_uncompressed_irregular(client, da, folder):
    target = folder / "raw.nc"
    lazy = da.chunk({"y": (5, 7, 12)})
    on_cluster(
        client,
        lambda: xsignal.save(lazy, target, compression=None, chunks={"y": 6}),
    )
    with h5py.File(target) as f:
        assert f["data"].chunks == (6, 20, 64)
        np.testing.assert_array_equal(f["data"][()], threaded(lambda: da.values))


def test_close_file(client, folder):
    target = write_spectrum_image(folder / "closed.nc", (8, 6, 16), chunks=(2, 6, 16))
    first = xsignal.open(target)
    value = on_cluster(client, lambda: first.signal.compute(close_file=True))
    assert value.shape == (8, 6, 16)
    with h5py.File(target, "a") as f:  # not held open by the workers any more
        f["data"][0, 0, 0] = -1
    with pytest.raises(ValueError, match="closed"):
        first.sum().compute()

    second = xsignal.open(target)
    on_cluster(client, lambda: second.sum().compute())
    second.signal.close_file()
    with h5py.File(target, "a") as f:
        f["data"][0, 0, 0] = -2


def test_progress(client, da, capsys):
    with xsignal.set_options(progress=True):
        out = on_cluster(client, lambda: da.signal.sum().signal.compute())
    assert out.shape == (64,)
    # distributed's text bar (not the local tqdm one, which writes to stderr)
    captured = capsys.readouterr()
    print(repr(captured.out), repr(captured.err))
    assert "100% Completed" in captured.out
