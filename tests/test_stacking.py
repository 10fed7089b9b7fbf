"""xsignal.stack: in memory and lazy, checks naming the first offender."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes


def images(n=3, backend="numpy"):
    out = []
    for i in range(n):
        da = xr.DataArray(
            np.arange(24.0).reshape(2, 3, 4) + 100 * i,
            dims=("x", "ky", "kx"),
            coords={"kx": np.arange(4) * 0.5},
            attrs={"title": f"frame {i}"},
        ).signal.set_signal_dims("ky", "kx")
        out.append(da.chunk({"x": 1}) if backend == "dask" else da)
    return out


def test_stack_values_dims_and_marking(backend):
    objs = images(backend=backend)
    with raise_if_dask_computes():
        st = xsignal.stack(objs, dim="time")
    assert st.dims == ("time", "x", "ky", "kx")
    assert st.signal.signal_dims == ("ky", "kx")
    assert st.signal.navigation_dims == ("time", "x")
    assert st.signal.is_lazy == (backend == "dask")
    np.testing.assert_array_equal(st.values, np.stack([o.values for o in objs]))
    np.testing.assert_array_equal(st["kx"].values, objs[0]["kx"].values)
    assert st.attrs["title"] == "frame 0"


def test_lazy_flag():
    objs = images()
    assert xsignal.stack(objs, lazy=True).signal.is_lazy
    mixed = [objs[0], objs[1].chunk()]
    assert xsignal.stack(mixed).signal.is_lazy
    assert not xsignal.stack(mixed, lazy=False).signal.is_lazy


def test_lazy_stack_keeps_the_blocks():
    st = xsignal.stack(images(backend="dask"))
    assert st.chunks == ((1, 1, 1), (1, 1), (3,), (4,))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.isel(x=[0]), r"objs\[2\] has shape \(1, 3, 4\)"),
        (lambda d: d.rename(x="y"), r"objs\[2\] has dims"),
        (lambda d: d.astype("f4"), r"objs\[2\] has dtype float32"),
        (lambda d: d.signal.set_signal_dims("kx"), r"objs\[2\] has signal dims"),
    ],
)
def test_mismatch_names_the_first_offender(change, message):
    objs = images(4)
    objs[2] = change(objs[2])
    objs[3] = change(objs[3])
    with pytest.raises(ValueError, match=message):
        xsignal.stack(objs)


def test_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        xsignal.stack([])
    with pytest.raises(ValueError, match="'x' is already a dim"):
        xsignal.stack(images(), dim="x")
    with pytest.raises(TypeError, match=r"objs\[1\] is a ndarray"):
        xsignal.stack([images()[0], np.zeros(3)])
