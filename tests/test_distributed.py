"""Everything that computes, on a dask.distributed LocalCluster.

One cluster of two worker processes serves the whole module. Each test
computes on the cluster (checking that tasks did run on the workers) and
compares with the threaded scheduler's result on the same opened file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import h5py
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import write_spectrum_image

distributed = pytest.importorskip("distributed")

SHARED_HSPY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hspy"
SHAPE = (24, 20, 64)  # y, x | energy
FILE_CHUNKS = (4, 10, 64)


@pytest.fixture(scope="module")
def client(process_client):
    return process_client


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


def _shifted_peak(signal: np.ndarray, shift: float, offset: float = 0.0) -> float:
    return _peak(signal) + shift + offset


def _smooth(block: np.ndarray) -> np.ndarray:
    return (np.roll(block, 1, axis=0) + block + np.roll(block, -1, axis=0)) / 3


def test_map(client, da):
    shift = xr.DataArray(
        np.arange(SHAPE[0] * SHAPE[1], dtype=float).reshape(SHAPE[:2]),
        dims=("y", "x"),
    )

    def fn():
        return xsignal.compute(
            da.signal.map(_peak),
            da.signal.map(_peaks, vectorized=True),
            da.signal.map(_shifted_peak, shift=shift, offset=0.5),
            da.signal.map_blocks(lambda a: a * 2),
            da.signal.map_overlap(_smooth, {"y": 1}),
        )

    remote, local = both(client, fn)
    for a, b in zip(remote, local):
        assert_equal(a, b)
    xr.testing.assert_allclose(remote[0], remote[1].astype(remote[0].dtype))
    xr.testing.assert_allclose(remote[2], remote[0] + shift + 0.5)


def test_blocks(client, da):
    mask = np.zeros(SHAPE[:2], bool)
    mask[:4] = True  # the first block row is never read
    mask[5, 3] = True
    signal_mask = np.arange(SHAPE[2]) < 8

    def fn():
        flat = list(
            xsignal.blocks(
                da, navigation_mask=mask, signal_mask=signal_mask, prefetch=2
            )
        )
        return flat, list(xsignal.blocks(da, navigation_mask=mask, flat=False))

    (flat_r, full_r), (flat_l, full_l) = both(client, fn)
    assert len(flat_r) == len(flat_l) == 10
    assert len(full_r) == len(full_l) == 12
    for (wr, br), (wl, bl) in zip(flat_r + full_r, flat_l + full_l):
        assert wr == wl
        np.testing.assert_array_equal(br, bl)
    assert flat_r[0][1].shape == (4 * 10 - 1, SHAPE[2] - 8)


def test_blocks_stopped_early(client, da):
    """Leaving the loop early cancels the blocks still being computed."""
    it = xsignal.blocks(da, prefetch=4)
    where, first = on_cluster(client, lambda: next(it))
    it.close()
    np.testing.assert_array_equal(first, da.values[:4, :10].reshape(-1, SHAPE[2]))
    assert where == {"y": slice(0, 4), "x": slice(0, 10)}


@pytest.mark.parametrize(
    ("algorithm", "kwargs"),
    [
        ("SVD", {}),
        ("SVD", {"svd_solver": "randomized"}),
        ("PCA", {}),
        ("ORPCA", {}),
        ("ORNMF", {}),
        ("ORPCA", {"normalize_poissonian_noise": True, "masked": True}),
        ("PCA", {"centre": "navigation", "masked": True}),
    ],
)
def test_decomposition(client, da, algorithm, kwargs):
    kwargs = dict(kwargs)
    if kwargs.pop("masked", False):
        mask = np.zeros(SHAPE[:2], bool)
        mask[3:9, 2:5] = True
        kwargs["navigation_mask"] = mask

    def fn():
        dec = da.signal.decomposition(algorithm, 3, **kwargs)
        return xsignal.compute(dec.factors, dec.loadings)

    (fr, lr), (fl, ll) = both(client, fn)
    # the same blocks in the same order: the same numbers up to the
    # summation order of the reductions
    np.testing.assert_allclose(fr, fl, rtol=1e-4, atol=1e-5 * float(abs(fl).max()))
    np.testing.assert_allclose(lr, ll, rtol=1e-4, atol=1e-5 * float(abs(ll).max()))
    assert np.isnan(lr).any() == ("navigation_mask" in kwargs)


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


@pytest.mark.parametrize("name", ["failed.zarr", "failed.zspy", "failed.nc"])
def test_a_failed_save_on_the_cluster_leaves_nothing(client, da, tmp_path, name):
    """Workers still writing when one block fails must not recreate the
    temporary store after it is removed."""

    def boom(block, block_info=None):
        import time

        if block_info[None]["chunk-location"][0] == 0:
            raise RuntimeError("bad block")
        time.sleep(0.05)  # the others are still writing when it fails
        return block

    lazy = da.signal.rechunk({"y": 2})
    bad = lazy.copy(data=lazy.data.map_blocks(boom, dtype=lazy.dtype))
    for _ in range(3):
        with pytest.raises(RuntimeError, match="bad block"):
            on_cluster(client, lambda: xsignal.save(bad, tmp_path / name))
        time.sleep(0.3)  # time for a straggler to write, were one left
        assert list(tmp_path.iterdir()) == []


def test_save_chunks_as_hdf5_writes_them(client, da, folder):
    """The chunks encoded on the workers are byte for byte those HDF5 writes."""
    lazy = da.signal.rechunk({"y": 10})
    remote, local = folder / "remote.nc", folder / "local.nc"
    on_cluster(client, lambda: xsignal.save(lazy, remote, overwrite=True))
    threaded(lambda: xsignal.save(lazy, local, overwrite=True))
    with h5py.File(remote) as r, h5py.File(local) as h:
        assert r["data"].id.get_num_chunks() == h["data"].id.get_num_chunks() == 6
        for i in range(6):
            offset = h["data"].id.get_chunk_info(i).chunk_offset
            assert r["data"].id.read_direct_chunk(offset) == h[
                "data"
            ].id.read_direct_chunk(offset)


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
    assert "100% Completed" in captured.out
    # the online decompositions count blocks with a local bar
    dec = on_cluster(client, lambda: da.signal.decomposition("ORPCA", 2, progress=True))
    assert dec.factors.shape == (2, SHAPE[2])


def test_hspy(client):
    path = SHARED_HSPY / "spectrum_image.hspy"
    if not path.exists():
        pytest.skip("shared .hspy files not present")
    da = xsignal.open(path)
    remote, local = both(client, lambda: da.signal.sum().compute())
    assert_equal(remote, local)


def test_save_other_dtypes(client, da, folder):
    """Booleans and complex numbers go through xarray's writer, which locks."""
    target = folder / "other.nc"
    flags = (da > 100).rename("flags")
    on_cluster(client, lambda: xsignal.save(flags, target, overwrite=True))
    back = xsignal.open(target)
    np.testing.assert_array_equal(back.values, threaded(lambda: flags.values))
    xsignal.close_file(back)
    waves = (da * (1 + 2j)).rename("waves")
    on_cluster(client, lambda: xsignal.save(waves, target, overwrite=True))
    back = xsignal.open(target)
    np.testing.assert_array_equal(back.values, threaded(lambda: waves.values))
    xsignal.close_file(back)


@pytest.mark.parametrize("compression", ["gzip", None])
def test_save_integers_and_empty(client, folder, compression):
    target = folder / "small.nc"
    ints = xr.DataArray(
        np.arange(2 * 5 * 7, dtype="i2").reshape(2, 5, 7), dims=("y", "x", "e")
    ).chunk({"x": 2})
    on_cluster(
        client,
        lambda: xsignal.save(
            ints, target, chunks={"x": 3}, compression=compression, overwrite=True
        ),
    )
    back = xsignal.open(target, lazy=False)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back.values, ints.values)
    empty = xr.DataArray(np.zeros((0, 3, 4), "f4"), dims=("y", "x", "e")).chunk()
    xsignal.save(empty, target, compression=compression, overwrite=True)
    assert xsignal.open(target, lazy=False).shape == (0, 3, 4)


def test_local_scheduler_chosen_over_the_client(client, da):
    """dask.config.set(scheduler=...) wins over a client, progress bars too."""
    from xsignal.engine import client as distributed_client

    assert distributed_client() is client
    with dask.config.set(scheduler="threads"):
        assert distributed_client() is None
        with distributed.get_task_stream(client) as stream:
            da.signal.sum().compute()
        assert not stream.data


def _above(signal: np.ndarray) -> np.ndarray:
    return np.flatnonzero(signal > 60)


def test_ragged_map_model_and_eager_open(client, da, path):
    dec = da.signal.decomposition("SVD", 3)

    def fn():
        return xsignal.compute(
            da.signal.map(_above, ragged=True),
            dec.model(),
            da.signal.map(_peak, lazy_output=False),
        )

    (ragged_r, model_r, peak_r), (ragged_l, model_l, peak_l) = both(client, fn)
    assert ragged_r.dtype == object and ragged_r.shape == SHAPE[:2]
    for a, b in zip(ragged_r.values.ravel(), ragged_l.values.ravel()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model_r, model_l, rtol=1e-5, atol=1e-3)
    assert_equal(peak_r, peak_l)
    eager = on_cluster(client, lambda: xsignal.open(path, lazy=False))
    assert not xsignal.is_lazy(eager)
    np.testing.assert_array_equal(eager.values, threaded(lambda: da.values))


@pytest.mark.parametrize(
    ("name", "compression"),
    [
        ("big.zarr", "auto"),
        ("big.zspy", "auto"),
        ("big.nc", None),
        ("big.nc", "gzip"),
        ("big.hspy", "gzip"),
        ("big.hspy", "lzf"),
    ],
)
def test_saves_keep_the_data_on_the_workers(client, folder, name, compression):
    """The workers write their own chunks, HDF5 files included (each under
    the file's lock): almost nothing reaches the client, which does receive
    every byte of a compute."""
    from xsignal.testing import count_received_bytes

    source = folder / "big-source.nc"
    if not source.exists():
        write_spectrum_image(
            source, (128, 64, 512), rank=3, seed=5, chunks=(8, 64, 512)
        )
    lazy = xsignal.open(source) * 2
    target = folder / f"{compression}-{name}"
    with count_received_bytes() as saved:
        on_cluster(
            client,
            lambda: xsignal.save(lazy, target, compression=compression, overwrite=True),
        )
    with count_received_bytes() as computed:
        expected = on_cluster(client, lambda: lazy.values)
    assert saved.nbytes < 0.02 * lazy.nbytes
    assert computed.nbytes > 0.9 * lazy.nbytes  # the counter does see data
    back = xsignal.open(target)
    np.testing.assert_array_equal(back.values, expected)
    assert back.chunks == ((8,) * 16, (64,), (512,))


@pytest.mark.parametrize("algorithm", ["SVD", "PCA", "ORPCA", "ORNMF"])
def test_decompositions_keep_the_data_on_the_workers(client, folder, algorithm):
    """Only the model and the loadings reach the client (W9 measures more)."""
    from xsignal.testing import count_received_bytes

    source = folder / "big-source.nc"
    if not source.exists():
        write_spectrum_image(
            source, (128, 64, 512), rank=3, seed=5, chunks=(8, 64, 512)
        )
    lazy = xsignal.open(source)
    with count_received_bytes() as received:
        dec = on_cluster(
            client, lambda: lazy.signal.decomposition(algorithm, 2, progress=False)
        )
        loadings = dec.loadings.compute()
    # a block is 1 MiB (6 % of the data): less than half of one came, so no
    # block did; the 256 MiB benchmark (W9) gives 0.009-0.013 of the data
    block = lazy.nbytes / 16
    assert received.nbytes < 0.5 * block, received.nbytes / lazy.nbytes
    local = threaded(lambda: lazy.signal.decomposition(algorithm, 2, progress=False))
    np.testing.assert_allclose(
        abs(dec.factors.values), abs(local.factors.values), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        abs(loadings.values),
        abs(local.loadings.values),
        rtol=1e-4,
        atol=1e-5 * float(abs(local.loadings).max()),
    )
