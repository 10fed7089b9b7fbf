"""rebin against numpy's reshape-sum."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from chunk_strategies import chunkings
from hypothesis import given, settings
from hypothesis import strategies as st

import xsignal
from xsignal.testing import raise_if_dask_computes


def make(shape=(6, 8, 12), dtype="float64"):
    values = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    da = xr.DataArray(
        values,
        dims=("y", "x", "energy"),
        coords={
            "y": np.arange(shape[0]) * 2.0,
            "x": np.arange(shape[1]) * 0.5,
            "energy": ("energy", 100 + np.arange(shape[2]) * 0.25, {"units": "eV"}),
        },
        attrs={"units": "counts"},
    )
    return xsignal.set_signal_dims(da, "energy")


def reshape_sum(values, factors):
    """Reference: numpy reshape then sum over the factor axes."""
    shape = []
    for n, f in zip(values.shape, factors):
        shape += [n // f, f]
    return values.reshape(shape).sum(axis=tuple(range(1, 2 * values.ndim, 2)))


def test_matches_reshape_sum(backend):
    da = make()
    if backend == "dask":
        da = da.chunk({"y": 2, "x": 4})
    out = da.signal.rebin({"y": 3, "x": 2, "energy": 4})
    assert xsignal.is_lazy(out) == (backend == "dask")
    np.testing.assert_array_equal(out.values, reshape_sum(make().values, (3, 2, 4)))
    # new coordinates at the bin centres
    np.testing.assert_allclose(out["y"], [2.0, 8.0])
    np.testing.assert_allclose(out["energy"], 100 + np.array([1.5, 5.5, 9.5]) * 0.25)
    assert out.attrs["units"] == "counts"
    assert out.signal.signal_dims == ("energy",)


@settings(max_examples=15, deadline=None)
@given(
    chunks=chunkings((6, 8, 12)),
    factors=st.tuples(
        st.sampled_from([1, 2, 3, 6]),
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from([1, 3, 4, 12]),
    ),
)
def test_random_chunkings(chunks, factors):
    lazy = make().chunk(dict(zip(("y", "x", "energy"), chunks)))
    with raise_if_dask_computes():
        out = xsignal.rebin(lazy, dict(zip(("y", "x", "energy"), factors)))
    np.testing.assert_array_equal(out.values, reshape_sum(make().values, factors))
    # dims with factor 1 keep their chunks
    for axis, f in enumerate(factors):
        if f == 1:
            assert out.chunks[axis] == chunks[axis]


def test_binned_dim_chunks_become_multiples():
    lazy = make().chunk({"x": 3, "y": 5})
    out = xsignal.rebin(lazy, {"x": 2})
    assert out.chunks[1] == (2, 2)  # x: 8 -> rechunked to 4 -> 2 bins per chunk
    assert out.chunks[0] == (5, 1)  # y untouched


def test_integers_do_not_overflow(backend):
    da = xr.DataArray(np.full((4, 256), 255, "uint8"), dims=("x", "energy"))
    if backend == "dask":
        da = da.chunk({"energy": 64})
    out = xsignal.rebin(da, {"energy": 256})
    assert out.dtype == np.uint64
    assert int(out[0, 0]) == 255 * 256


def test_trim_drops_the_end():
    da = make((6, 8, 10))
    with pytest.raises(ValueError, match="does not divide the size 10"):
        xsignal.rebin(da, {"energy": 4})
    out = xsignal.rebin(da, {"energy": 4}, trim=True)
    np.testing.assert_array_equal(
        out.values, reshape_sum(da.values[..., :8], (1, 1, 4))
    )


@pytest.mark.parametrize(
    "factors, error, match",
    [
        ({"q": 2}, ValueError, "'q' is not a dim"),
        ({"x": 0}, ValueError, "between 1 and its size 8"),
        ({"x": 9}, ValueError, "between 1 and its size 8"),
        ({"x": 2.0}, TypeError, "must be an int"),
        ([2, 2], TypeError, "must be a dict"),
    ],
)
def test_bad_factors(factors, error, match):
    with pytest.raises(error, match=match):
        xsignal.rebin(make(), factors)
