"""Automatic chunking and rechunking by navigation/signal kind."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.chunks import navigation_chunks


def make(shape=(64, 32, 128), dims=("y", "x", "energy"), dtype="f4"):
    return xr.DataArray(np.zeros(shape, dtype), dims=dims)


def test_as_lazy_keeps_signal_whole_and_reaches_chunk_size():
    da = make((64, 32, 1024))  # 4 KiB per spectrum
    with dask.config.set({"array.chunk-size": "1MiB"}):
        lazy = da.signal.as_lazy()
    assert lazy.signal.is_lazy
    chunks = dict(zip(lazy.dims, lazy.chunks))
    assert chunks["energy"] == (1024,)
    assert chunks["x"] == (32,)  # trailing navigation dim kept whole
    assert chunks["y"] == (8,) * 8  # 8 rows x 32 x 4 KiB = 1 MiB
    assert max(chunks["y"]) * 32 * 1024 * 4 <= 2**20


def test_as_lazy_balances_uneven_splits():
    assert navigation_chunks({"y": 10}, 1, target=4) == {"y": 4}
    # 100 rows with room for 30: four chunks of 25, not 30+30+30+10
    assert navigation_chunks({"y": 100}, 1, target=30) == {"y": 25}


def test_as_lazy_never_makes_chunks_smaller_than_a_pixel():
    chunks = navigation_chunks({"y": 3, "x": 4}, 10**9, target=10)
    assert chunks == {"y": 1, "x": 1}


def test_as_lazy_keeps_existing_chunks():
    lazy = make().chunk({"y": 7})
    assert lazy.signal.as_lazy().chunks == lazy.chunks


def test_as_lazy_honours_dict_and_auto():
    da = make()
    assert da.signal.as_lazy({"y": 16}).chunks[0] == (16,) * 4
    assert da.signal.as_lazy("auto").signal.is_lazy


def test_as_lazy_rejects_unknown_dims_and_bad_specs():
    with pytest.raises(ValueError, match="'z'"):
        make().signal.as_lazy({"z": 2})
    with pytest.raises(ValueError, match="chunks must be"):
        make().signal.as_lazy(12)


def test_as_lazy_warns_about_too_many_tasks():
    da = make((200, 100, 1024))
    with dask.config.set({"array.chunk-size": "4KiB"}):
        with pytest.warns(UserWarning, match="20000 chunks"):
            da.signal.as_lazy()
    with xsignal.set_options(max_tasks=100_000), warnings.catch_warnings():
        warnings.simplefilter("error")
        with dask.config.set({"array.chunk-size": "4KiB"}):
            da.signal.as_lazy()


def test_as_lazy_signal_marked_in_the_middle():
    da = make((8, 16, 4), ("y", "energy", "x"))
    da.attrs["signal_dims"] = '["energy"]'
    lazy = da.signal.as_lazy()
    assert dict(zip(lazy.dims, lazy.chunks))["energy"] == (16,)


@pytest.mark.parametrize(
    "navigation, signal, expected",
    [
        ({"y": 16}, -1, ((16,) * 4, (32,), (128,))),
        (8, -1, ((8,) * 8, (8,) * 4, (128,))),
        (-1, 64, ((64,), (32,), (64, 64))),
        (-1, {"energy": 32}, ((64,), (32,), (32,) * 4)),
    ],
)
def test_rechunk_by_kind(navigation, signal, expected, backend):
    da = make()
    if backend == "dask":
        da = da.chunk({"y": 5, "energy": 7})
    assert da.signal.rechunk(navigation, signal).chunks == expected


def test_rechunk_auto_navigation_uses_the_automatic_rule():
    da = make((64, 32, 1024)).chunk({"y": 1, "energy": 100})
    with dask.config.set({"array.chunk-size": "1MiB"}):
        out = da.signal.rechunk()
    assert out.chunks == ((8,) * 8, (32,), (1024,))


def test_rechunk_dict_leaves_other_dims_alone():
    da = make().chunk({"y": 4, "x": 8})
    out = da.signal.rechunk(navigation={"y": 16})
    assert out.chunks == ((16,) * 4, (8,) * 4, (128,))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"navigation": {"z": 2}}, "'z'"),
        ({"navigation": {"energy": 2}}, "not a navigation dim"),
        ({"signal": {"y": 2}}, "not a signal dim"),
        ({"navigation": "big"}, "navigation chunks must be"),
        ({"signal": 0}, "signal chunks must be"),
    ],
)
def test_rechunk_rejects_bad_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make().signal.rechunk(**kwargs)


def test_rechunk_values_unchanged():
    da = xr.DataArray(np.random.default_rng(0).random((6, 5, 7)), dims=("y", "x", "e"))
    out = da.signal.rechunk(navigation=4, signal=3)
    np.testing.assert_array_equal(out.values, da.values)


def test_empty_navigation_dims_are_chunked_without_error():
    da = make((0, 3, 16))
    assert da.signal.as_lazy().chunks == ((0,), (3,), (16,))
    assert list(da.signal.blocks()) == []


@pytest.mark.parametrize(
    ("chunks", "match"),
    [
        ({"z": 2}, "chunks names 'z', which is not a dim"),
        ((2, 2), "has 2 entries but the array has 3 dims"),
        ({"y": 0}, "chunks for 'y' must be a positive int, -1, None"),
        ({"y": True}, "chunks for 'y' must be"),
        (1.5, "chunks must be None"),
    ],
)
def test_open_and_save_read_chunks_the_same_way(tmp_path, chunks, match):
    """One parser: the same spec means the same, and fails the same, in
    xsignal.open and xsignal.save."""
    da = make()
    xsignal.save(da, tmp_path / "a.nc")
    with pytest.raises(ValueError, match=match):
        xsignal.open(tmp_path / "a.nc", chunks=chunks)
    with pytest.raises(ValueError, match=match):
        xsignal.save(da, tmp_path / "b.nc", chunks=chunks)
    assert not (tmp_path / "b.nc").exists()


def test_open_and_save_take_whole_dims_and_names_alike(tmp_path):
    da = make()
    xsignal.save(da, tmp_path / "a.nc", chunks={"y": 4, "x": None})
    opened = xsignal.open(tmp_path / "a.nc")
    assert opened.chunks == xsignal.open(tmp_path / "a.nc", chunks=(4, -1, -1)).chunks
    assert opened.chunks[1] == (da.sizes["x"],)
