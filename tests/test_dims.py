"""Navigation/signal marking: read, write, survive operations, repr."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsignal


def make(dims=("y", "x", "energy"), shape=(2, 3, 4), dtype="f4"):
    return xr.DataArray(np.ones(shape, dtype), dims=dims)


def test_unmarked_array_has_last_dim_as_signal():
    da = make()
    assert da.signal.signal_dims == ("energy",)
    assert da.signal.navigation_dims == ("y", "x")
    assert da.signal.signal_shape == (4,)
    assert da.signal.navigation_shape == (2, 3)
    assert da.signal.signal_size == 4
    assert da.signal.navigation_size == 6


def test_zero_d_array_has_no_dims_of_either_kind():
    da = xr.DataArray(3.0)
    assert da.signal.signal_dims == () and da.signal.navigation_dims == ()
    assert da.signal.signal_size == 1 and da.signal.navigation_size == 1


def test_set_signal_dims_moves_them_last_in_given_order():
    da = make(("y", "ky", "x", "kx"), (2, 5, 3, 4))
    s = da.signal.set_signal_dims("kx", "ky")
    assert s.dims == ("y", "x", "kx", "ky")
    assert s.signal.signal_dims == ("kx", "ky")
    assert s.signal.navigation_dims == ("y", "x")
    assert s.signal.signal_shape == (4, 5)
    np.testing.assert_array_equal(s.transpose(*da.dims).values, da.values)
    assert "signal_dims" not in da.attrs  # the input is untouched


def test_set_signal_dims_accepts_a_list_and_none():
    da = make()
    assert da.signal.set_signal_dims(["x", "energy"]).signal.signal_dims == (
        "x",
        "energy",
    )
    nav_only = da.signal.set_signal_dims()
    assert nav_only.signal.signal_dims == ()
    assert nav_only.signal.navigation_dims == ("y", "x", "energy")


@pytest.mark.parametrize("bad", [("nope",), ("x", "x")])
def test_set_signal_dims_rejects_unknown_or_repeated(bad):
    with pytest.raises(ValueError, match="signal dim"):
        make().signal.set_signal_dims(*bad)


def test_unknown_dim_error_names_it():
    with pytest.raises(ValueError, match="'nope'"):
        make().signal.set_signal_dims("nope")


def test_non_dataarray_input_is_a_type_error():
    with pytest.raises(TypeError, match="DataArray"):
        xsignal.signal_dims(np.zeros(3))


@pytest.mark.parametrize(
    "operation",
    [
        lambda d: d + 1,
        lambda d: 2 * d - d,
        lambda d: np.sqrt(d),
        lambda d: d.isel(y=0),
        lambda d: d[:, 1:],
        lambda d: d.astype("f8"),
        lambda d: d.transpose("energy", "x", "y"),
        lambda d: d.where(d > 0),
        lambda d: abs(d),
    ],
)
def test_marking_survives_operations(operation, backend):
    da = make(("y", "x", "energy")).signal.set_signal_dims("x", "energy")
    if backend == "dask":
        da = da.chunk()
    out = operation(da)
    assert set(out.signal.signal_dims) == {"x", "energy"}


def test_marked_dim_that_disappears_is_dropped():
    da = make().signal.set_signal_dims("x", "energy")
    assert da.sum("energy").signal.signal_dims == ("x",)
    assert da.isel(x=0).signal.signal_dims == ("energy",)
    reduced = da.sum(["x", "energy"])
    assert reduced.signal.signal_dims == ()
    assert reduced.signal.navigation_dims == ("y",)


def test_marking_survives_netcdf_round_trip(tmp_path):
    da = make(("y", "ky", "kx"), (2, 3, 4)).signal.set_signal_dims("ky", "kx")
    da.name = "data"
    path = tmp_path / "marked.nc"
    da.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataarray(path, engine="h5netcdf") as back:
        assert back.signal.signal_dims == ("ky", "kx")
        assert isinstance(back.attrs["signal_dims"], str)


def test_names_with_spaces_are_marked():
    da = xr.DataArray(np.zeros((2, 3)), dims=("y", "Energy loss"))
    s = xsignal.set_signal_dims(da, "Energy loss")
    assert s.signal.signal_dims == ("Energy loss",)


def test_repr_in_memory_and_lazy():
    da = make(shape=(256, 256, 1024))
    assert repr(da.signal) == "<Signal1D float32, (y: 256, x: 256 | energy: 1024)>"
    lazy = da.chunk({"y": 64})
    assert repr(lazy.signal) == (
        "<Signal1D lazy float32, (y: 256, x: 256 | energy: 1024), "
        "chunks (64, 256 | 1024)>"
    )


@pytest.mark.parametrize(
    "signal, name",
    [
        ((), "BaseSignal"),
        (("x",), "Signal1D"),
        (("y", "x"), "Signal2D"),
        (("t", "y", "x"), "BaseSignal"),
    ],
)
def test_repr_class_follows_number_of_signal_dims(signal, name):
    da = make(("t", "y", "x"), (1, 2, 3)).signal.set_signal_dims(*signal)
    assert repr(da.signal).startswith(f"<{name} ")


@pytest.mark.parametrize(
    "dims, expected",
    [
        ("navigation", ("y", "x")),
        ("signal", ("energy",)),
        (None, ("y", "x", "energy")),
        ("x", ("x",)),
        (["energy", "y"], ("energy", "y")),
    ],
)
def test_resolve_dims(dims, expected):
    assert xsignal.dims.resolve_dims(make(), dims) == expected


def test_resolve_dims_rejects_unknown():
    with pytest.raises(ValueError, match="'z'"):
        xsignal.dims.resolve_dims(make(), ["x", "z"])


def test_accessor_keeps_no_state():
    da = make()
    first = da.signal
    da.attrs["signal_dims"] = '["x", "energy"]'
    assert first.signal_dims == ("x", "energy")


def test_html_repr_shows_the_split_sizes_chunks_and_units():
    da = xr.DataArray(
        np.zeros((4, 5, 8), "f4"),
        dims=("y", "x", "energy"),
        coords={"energy": ("energy", np.arange(8.0), {"units": "eV"})},
    ).chunk({"y": 2})
    html = da.signal._repr_html_()
    assert html.index(">navigation</th>") < html.index(">signal</th>")
    assert "<td>y</td><td>4</td><td>2</td>" in html
    assert "<td>energy</td><td>8</td><td>8</td><td>eV</td>" in html
    assert "&lt;Signal1D lazy float32" in html
