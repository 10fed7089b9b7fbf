"""CircleROI and RectangularROI against hand-computed masks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xsignal
from xsignal import CircleROI, RectangularROI
from xsignal.testing import raise_if_dask_computes

DISC = np.array(
    [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ],
    bool,
)
# r_inner=1.2 removes the centre and its 4 neighbours (distance 1), keeps the
# diagonals (distance 1.41) and the 4 pixels at distance 2 (the edge, included)
RING = np.array(
    [
        [0, 0, 1, 0, 0],
        [0, 1, 0, 1, 0],
        [1, 0, 0, 0, 1],
        [0, 1, 0, 1, 0],
        [0, 0, 1, 0, 0],
    ],
    bool,
)


def image(ny=9, nx=10, dtype="float64", x0=0.0, dx=1.0, y0=0.0, dy=1.0):
    """(y, x, energy) data whose coords are ``x0 + dx * i``, ``y0 + dy * j``."""
    values = np.arange(ny * nx * 3).reshape(ny, nx, 3).astype(dtype)
    da = xr.DataArray(
        values,
        dims=("y", "x", "energy"),
        coords={"y": y0 + dy * np.arange(ny), "x": x0 + dx * np.arange(nx)},
        attrs={"units": "counts"},
    )
    return xsignal.set_signal_dims(da, "energy")


def members(out: xr.DataArray) -> np.ndarray:
    return ~np.isnan(out.isel(energy=0).values)


@pytest.mark.parametrize(
    "shape, want", [(CircleROI(4, 3, 2), DISC), (CircleROI(4, 3, 2, r_inner=1.2), RING)]
)
def test_circle_pixel_sets(shape, want, backend):
    da = image()
    if backend == "dask":
        da = da.chunk({"y": 4, "x": 3})
    out = shape(da)
    assert xsignal.is_lazy(out) == (backend == "dask")
    # cropped to the 5 x 5 bounding box centred on (x=4, y=3)
    np.testing.assert_array_equal(out["x"], np.arange(2, 7))
    np.testing.assert_array_equal(out["y"], np.arange(1, 6))
    np.testing.assert_array_equal(members(out), want)
    kept = da.values[1:6, 2:7]
    np.testing.assert_array_equal(out.values[want], kept[want])
    assert out.attrs["units"] == "counts" and out.signal.signal_dims == ("energy",)


def test_circle_in_coordinate_units_with_descending_axis():
    # x = 10, 10.5, ...; y descending 8, 7.5, ...: the same disc in pixel terms
    da = image(x0=10.0, dx=0.5, y0=8.0, dy=-0.5)
    out = da.signal.roi(CircleROI(cx=12.0, cy=6.5, r=1.0))
    np.testing.assert_array_equal(out["x"], 10 + 0.5 * np.arange(2, 7))
    np.testing.assert_array_equal(out["y"], 8 - 0.5 * np.arange(1, 6))
    np.testing.assert_array_equal(members(out), DISC)


def test_rectangle_edges_included(backend):
    da = image(dtype="int16")
    if backend == "dask":
        da = da.chunk({"y": 2})
    out = xsignal.roi(da, RectangularROI(left=2, top=1, right=5, bottom=3))
    assert out.sizes["x"] == 4 and out.sizes["y"] == 3
    assert out.dtype.kind == "f"  # integers become float to hold NaN
    np.testing.assert_array_equal(out.values, da.values[1:4, 2:6])


def test_rectangle_between_pixel_centres():
    da = image()
    out = RectangularROI(left=1.5, top=0.2, right=3.9, bottom=1.0)(da)
    np.testing.assert_array_equal(out["x"], [2, 3])
    np.testing.assert_array_equal(out["y"], [1])


def test_lazy_and_chunks_kept():
    da = image().chunk({"y": 4, "energy": 1})
    with raise_if_dask_computes():
        out = CircleROI(4, 3, 2)(da)
        total = xsignal.nansum(out, "navigation")
    assert out.chunks[2] == (1, 1, 1)  # untouched dim keeps its chunks
    np.testing.assert_allclose(total.values, image().values[1:6, 2:7][DISC].sum(0))


def test_virtual_annular_detector_on_4d():
    rng = np.random.default_rng(0)
    values = rng.random((3, 4, 9, 9))
    da = xr.DataArray(values, dims=("y", "x", "ky", "kx"))
    da = xsignal.set_signal_dims(da, "ky", "kx").chunk({"y": 2})
    ring = CircleROI(cx=4, cy=4, r=2, r_inner=1.2)
    vadf = xsignal.nansum(da.signal.roi(ring, dims=("kx", "ky")), "signal")
    assert vadf.dims == ("y", "x")
    want = values[:, :, 2:7, 2:7][:, :, RING].sum(-1)
    np.testing.assert_allclose(vadf.values, want)


def test_default_dims_of_a_plain_image():
    da = xr.DataArray(np.ones((5, 6)), dims=("row", "col"))
    out = RectangularROI(0, 0, 2, 1)(da)
    assert dict(out.sizes) == {"row": 2, "col": 3}


@settings(max_examples=30, deadline=None)
@given(
    cx=st.floats(-2, 12),
    cy=st.floats(-2, 10),
    r=st.floats(0.3, 6),
    frac=st.floats(0, 0.9),
)
def test_circle_matches_brute_force(cx, cy, r, frac):
    da = image()
    shape = CircleROI(cx, cy, r, r_inner=frac * r)
    xx, yy = np.meshgrid(da["x"].values, da["y"].values)
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    full = (d2 <= r**2) & (d2 >= (frac * r) ** 2)
    if not full.any():
        with pytest.raises(ValueError):
            shape(da)
        return
    out = shape(da)
    # every member pixel is kept, and the crop is the members' bounding box
    rows, cols = np.nonzero(full)
    np.testing.assert_array_equal(out["y"], da["y"][rows.min() : rows.max() + 1])
    np.testing.assert_array_equal(out["x"], da["x"][cols.min() : cols.max() + 1])
    crop = full[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    np.testing.assert_array_equal(members(out), crop)


def test_outside_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match="outside the data.*'x'"):
        CircleROI(50, 3, 2)(image())
    with pytest.raises(ValueError, match="between pixels.*no pixel centre"):
        CircleROI(0.5, 0.5, 0.3)(image())


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: CircleROI(0, 0, -1), ValueError, "r must be positive"),
        (lambda: CircleROI(0, 0, 1, r_inner=1), ValueError, "r_inner"),
        (lambda: CircleROI(0, float("nan"), 1), ValueError, "cy must be finite"),
        (lambda: CircleROI("a", 0, 1), TypeError, "cx must be a number"),
        (lambda: RectangularROI(2, 0, 1, 1), ValueError, "left 2.0 is greater"),
        (lambda: RectangularROI(0, 2, 1, 1), ValueError, "top 2.0 is greater"),
    ],
)
def test_bad_shapes(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_dims_and_roi():
    da = image()
    with pytest.raises(ValueError, match="'q' is not a dim"):
        CircleROI(1, 1, 1)(da, dims=("x", "q"))
    with pytest.raises(ValueError, match=r"\(x_dim, y_dim\)"):
        CircleROI(1, 1, 1)(da, dims="x")
    with pytest.raises(TypeError, match="CircleROI or RectangularROI"):
        xsignal.roi(da, (1, 1, 1))
    spectrum = xr.DataArray(np.ones((4, 3)), dims=("x", "energy"))
    spectrum = xsignal.set_signal_dims(spectrum, "energy")
    with pytest.raises(ValueError, match="pass dims="):
        CircleROI(1, 1, 1)(xsignal.set_signal_dims(image(), "x", "energy"))
    assert CircleROI(1, 1, 1) == CircleROI(1.0, 1.0, 1.0, 0.0)  # frozen values


def test_roi_dims_by_kind_dict_and_tuple():
    da = xr.DataArray(
        np.arange(2 * 3 * 7 * 9, dtype="f8").reshape(2, 3, 7, 9),
        dims=("y", "x", "ky", "kx"),
        coords={
            "kx": ("kx", np.arange(9.0), {"units": "1/nm"}),
            "ky": ("ky", np.arange(7.0), {"units": "1/nm"}),
        },
    ).signal.set_signal_dims("ky", "kx")
    box = xsignal.RectangularROI(left=1, top=2, right=5, bottom=3)  # x 1..5, y 2..3
    by_kind = da.signal.roi(box, dims="signal")
    assert by_kind.sizes["kx"] == 5 and by_kind.sizes["ky"] == 2
    xr.testing.assert_identical(
        by_kind, da.signal.roi(box, dims={"x": "kx", "y": "ky"})
    )
    xr.testing.assert_identical(by_kind, da.signal.roi(box, dims=("kx", "ky")))
    assert by_kind.coords["kx"].attrs["units"] == "1/nm"
    nav = da.signal.roi(xsignal.RectangularROI(0, 0, 1, 0), dims="navigation")
    assert dict(nav.sizes) == {"y": 1, "x": 2, "ky": 7, "kx": 9}
    with pytest.raises(ValueError, match="'x' and 'y'"):
        da.signal.roi(box, dims={"a": "kx", "b": "ky"})
    with pytest.raises(ValueError, match="'navigation', 'signal'"):
        da.signal.roi(box, dims="kx")


def test_units_survive_roi_reductions_and_rebin():
    da = xr.DataArray(
        np.ones((4, 6, 8)),
        dims=("y", "x", "energy"),
        coords={
            "y": ("y", np.arange(4.0), {"units": "nm"}),
            "x": ("x", np.arange(6.0), {"units": "nm"}),
            "energy": ("energy", np.arange(8.0), {"units": "eV"}),
        },
    )
    inside = xsignal.CircleROI(cx=2, cy=2, r=1.5)(da)
    assert inside.coords["x"].attrs["units"] == "nm"
    assert xsignal.nanmean(inside).coords["energy"].attrs["units"] == "eV"
    assert da.signal.sum("signal").coords["y"].attrs["units"] == "nm"
    assert da.signal.rebin({"x": 2}).coords["x"].attrs["units"] == "nm"
