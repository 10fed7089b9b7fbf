"""Reductions against numpy, in memory and lazy, under random chunkings."""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest
import xarray as xr
from chunk_strategies import chunkings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xsignal
from xsignal.testing import raise_if_dask_computes

NAMES = "sum mean max min std var nansum nanmean nanmax nanmin nanstd nanvar".split()
SHAPE = (5, 4, 7)
# dask's nanvar divides 0 by 0 on an all-NaN lane (the result is NaN, as numpy)
pytestmark = pytest.mark.filterwarnings(
    "ignore:invalid value encountered in divide:RuntimeWarning"
)
DIMS = ("y", "x", "energy")
# dims argument -> numpy axes for SHAPE with energy as signal dim
AXES = {
    "navigation": (0, 1),
    "signal": (2,),
    "x": (1,),
    ("y", "energy"): (0, 2),
    None: (0, 1, 2),
}


def make(values: np.ndarray) -> xr.DataArray:
    da = xr.DataArray(
        values,
        dims=DIMS,
        coords={"x": np.arange(4) * 2.0, "energy": 100 + np.arange(7.0)},
        attrs={"units": "counts", "title": "t"},
    )
    return xsignal.set_signal_dims(da, "energy")


def data_with_nan(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=SHAPE)
    values[rng.random(SHAPE) < 0.2] = np.nan
    values[1, 2, :] = np.nan  # an all-NaN signal
    return values


def expected(name: str, values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(np, name)(values, axis=axes)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", list(AXES), ids=str)
def test_matches_numpy(name, dims, backend):
    values = data_with_nan()
    da = make(values)
    if backend == "dask":
        da = da.chunk({"y": 2, "x": 3})
    out = getattr(xsignal, name)(da, dims)
    assert xsignal.is_lazy(out) == (backend == "dask")
    np.testing.assert_allclose(out.values, expected(name, values, AXES[dims]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunkings(SHAPE),
    name=st.sampled_from(NAMES),
    dims=st.sampled_from(list(AXES)),
)
def test_random_chunkings(chunks, name, dims):
    values = data_with_nan(1)
    lazy = make(values).chunk(dict(zip(DIMS, chunks)))
    with raise_if_dask_computes():
        out = getattr(xsignal, name)(lazy, dims)
    kept = [d for d in DIMS if d in out.dims]
    # the chunks of the untouched dims are never changed
    assert out.chunks == tuple(chunks[DIMS.index(d)] for d in kept)
    np.testing.assert_allclose(out.values, expected(name, values, AXES[dims]))


@pytest.mark.parametrize("name", NAMES)
def test_keeps_coords_attrs_and_marking(name, backend):
    da = make(data_with_nan())
    if backend == "dask":
        da = da.chunk({"y": 2})
    out = getattr(da.signal, name)("y")
    assert out.dims == ("x", "energy")
    np.testing.assert_array_equal(out["energy"], da["energy"])
    np.testing.assert_array_equal(out["x"], da["x"])
    assert out.attrs["units"] == "counts" and out.attrs["title"] == "t"
    assert out.signal.signal_dims == ("energy",)
    assert out.signal.navigation_dims == ("x",)
    # reducing the signal dim leaves an array of navigation dims only
    nav = getattr(da.signal, name)("signal")
    assert nav.signal.signal_dims == () and nav.signal.navigation_dims == ("y", "x")
    # the input's attrs are not touched
    assert da.attrs["signal_dims"] == '["energy"]'


@pytest.mark.parametrize(
    "dtype, acc", [("uint8", "uint64"), ("int8", "int64"), ("int32", "int64")]
)
@pytest.mark.parametrize("name", ["sum", "nansum"])
def test_integer_sums_do_not_overflow(dtype, acc, name, backend):
    info = np.iinfo(dtype)
    values = np.full((300, 2, 3), info.max, dtype)
    da = xr.DataArray(values, dims=DIMS)
    if backend == "dask":
        da = da.chunk({"y": 7})
    out = getattr(xsignal, name)(da, "navigation")
    assert out.dtype == np.dtype(acc)
    assert int(out[0]) == 600 * int(info.max)  # exact, no wraparound


def test_float32_keeps_precision_class(backend):
    da = xr.DataArray(np.ones((4, 3), "float32"), dims=("x", "energy"))
    if backend == "dask":
        da = da.chunk(2)
    assert xsignal.sum(da).dtype == np.float32
    assert xsignal.nanmean(da).dtype == np.float32
    assert xsignal.mean(da.astype("int16")).dtype == np.float64


def test_ddof_passed_through(backend):
    values = data_with_nan()
    da = make(values)
    if backend == "dask":
        da = da.chunk({"y": 2})
    out = xsignal.nanstd(da, "signal", ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(out.values, np.nanstd(values, axis=2, ddof=1))


def test_unknown_dim_is_a_clear_error():
    with pytest.raises(ValueError, match="'z' is not a dim"):
        xsignal.nansum(make(data_with_nan()), "z")


def test_navigator(si):
    nav = si.signal.navigator()
    assert nav.dims == ("y", "x")
    assert xsignal.is_lazy(nav) == xsignal.is_lazy(si)
    if xsignal.is_lazy(si):
        assert nav.chunks == si.chunks[:2]
    np.testing.assert_allclose(
        nav.values, si.values.sum(axis=2, dtype="float64"), rtol=1e-6
    )


def test_navigator_ignores_nan_and_is_lazy():
    values = data_with_nan()
    lazy = make(values).chunk({"y": 2})
    with raise_if_dask_computes():
        nav = xsignal.navigator(lazy)
    np.testing.assert_allclose(nav.values, np.nansum(values, axis=2))


# --- index/value of extrema ------------------------------------------------


@pytest.mark.parametrize("which", ["max", "min"])
def test_index_and_value_extrema(which, backend):
    values = data_with_nan()
    da = make(values)
    if backend == "dask":
        da = da.chunk({"y": 2, "energy": 3})
    with raise_if_dask_computes():
        index = getattr(xsignal, "index" + which)(da)
        value = getattr(xsignal, "value" + which)(da)
    allnan = np.isnan(values).all(axis=2)
    filled = np.where(np.isnan(values), -np.inf if which == "max" else np.inf, values)
    want = getattr(np, "arg" + which)(filled, axis=2)
    want[allnan] = -1
    np.testing.assert_array_equal(index.values, want)
    coord = 100 + np.arange(7.0)
    want_value = np.where(allnan, np.nan, coord[np.clip(want, 0, None)])
    np.testing.assert_array_equal(value.values, want_value)
    assert index.dtype == np.int64 and index.dims == ("y", "x")


def test_extrema_along_named_dim_without_coord():
    values = np.array([[3, 1, 2], [0, 5, 5]], "int16")
    da = xr.DataArray(values, dims=("a", "b"))
    np.testing.assert_array_equal(xsignal.indexmax(da, "a").values, [0, 1, 1])
    np.testing.assert_array_equal(da.signal.valuemax("a").values, [0, 1, 1])
    np.testing.assert_array_equal(da.signal.valuemin().values, [1, 0])


def test_value_extrema_units():
    da = xr.DataArray(
        [[1.0, 2.0]],
        dims=("x", "energy"),
        coords={"energy": ("energy", [1.0, 2.0], {"units": "eV"})},
        attrs={"units": "counts"},
    )
    assert xsignal.valuemax(da).attrs["units"] == "eV"
    assert "units" not in xsignal.indexmax(da).attrs


def test_extrema_need_one_dim():
    da = xr.DataArray(np.zeros((2, 3, 4)), dims=("y", "kx", "ky"))
    da = xsignal.set_signal_dims(da, "kx", "ky")
    with pytest.raises(ValueError, match="dim must be given"):
        xsignal.indexmax(da)
    with pytest.raises(ValueError, match="reduce exactly one dim"):
        xsignal.indexmax(da, "signal")
    assert xsignal.indexmax(da, "navigation").dims == ("kx", "ky")
    with pytest.raises(ValueError, match="'q' is not a dim"):
        xsignal.valuemax(da, "q")


def test_extrema_of_one_spectrum(backend):
    da = xr.DataArray(
        [1.0, 7.0, np.nan, 2.0], dims="energy", coords={"energy": [5.0, 6, 7, 8]}
    )
    if backend == "dask":
        da = da.chunk(2)
    assert float(xsignal.valuemax(da)) == 6.0
    assert int(xsignal.indexmin(da)) == 0
    allnan = da * np.nan
    assert np.isnan(float(xsignal.valuemin(allnan)))
    assert int(xsignal.indexmax(allnan)) == -1


def test_star_import_keeps_builtins():
    namespace: dict = {}
    exec("from xsignal import *", namespace)
    assert "sum" not in namespace and "max" not in namespace
    assert "min" not in namespace and "nansum" in namespace


@pytest.mark.parametrize("name", [*NAMES, "indexmax", "valuemin", "navigator"])
def test_accessor_matches_function(name):
    da = make(data_with_nan())
    got = getattr(da.signal, name)()
    want = getattr(xsignal, name)(da)
    xr.testing.assert_identical(got, want)


@pytest.mark.parametrize("dims", ["signal", "navigation", None, "x"])
def test_nanmean_pays_for_nan_only_where_there_is_nan(dims):
    """Blocks without NaN take the one-pass path, blocks with NaN the
    NaN-skipping one; a fully NaN spectrum gives NaN; all equal numpy."""
    rng = np.random.default_rng(2)
    x = rng.random((6, 5, 8)).astype("f4")
    x[1, 2, 3] = np.nan  # one NaN in the first block
    x[4] = np.nan  # a whole row of the last block
    da = xr.DataArray(x, dims=("y", "x", "e"))
    axes = {"signal": (2,), "navigation": (0, 1), None: None, "x": (1,)}[dims]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's all-NaN slices
        want = np.nanmean(x, axis=axes)
    for data in (da, da.chunk({"y": 2})):
        got = data.signal.nanmean(dims)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.values, want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name", ["nanvar", "nanstd", "var", "std"])
@pytest.mark.parametrize("dims", ["signal", "navigation", None, "x"])
def test_variance_in_one_read_per_block_equals_numpy(name, dims):
    """A large offset (1000 +- 50) in float32: the centred sums keep the
    precision; blocks with NaN take the NaN-aware path."""
    import warnings

    rng = np.random.default_rng(4)
    x = (rng.random((6, 5, 8)) * 100 + 950).astype("f4")
    if name.startswith("nan"):
        x[1, 2, 3] = np.nan
        x[4] = np.nan
    da = xr.DataArray(x, dims=("y", "x", "e"))
    axes = {"signal": 2, "navigation": (0, 1), None: None, "x": 1}[dims]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = getattr(np, name)(x.astype("f8"), axis=axes)
    for data in (da, da.chunk({"y": 2})):
        got = getattr(data.signal, name)(dims)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.values, want, rtol=2e-4, equal_nan=True)


# --- xarray habits: dim, dims, keep_attrs, skipna, ddof -----------------------


def lazy_or_not(backend: str) -> xr.DataArray:
    da = make(data_with_nan())
    return da.chunk({"y": 2, "x": 3}) if backend == "dask" else da


@pytest.mark.parametrize("name", NAMES)
def test_dim_is_given_as_with_xarray(name, backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        out = getattr(da.signal, name)(dim="x")
    assert out.dims == ("y", "energy")
    assert xsignal.is_lazy(out) == (backend == "dask")
    np.testing.assert_allclose(out.values, expected(name, da.values, (1,)))


def test_dim_takes_a_list_and_keep_attrs_false_drops_the_attrs(backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        out = da.signal.nanmean(dim=["y", "x"], keep_attrs=False)
    assert out.attrs == {"signal_dims": '["energy"]'}  # the marking stays, right
    assert out.signal.signal_dims == ("energy",)
    np.testing.assert_allclose(out.values, expected("nanmean", da.values, (0, 1)))


def test_keep_attrs_false_writes_the_marking_of_what_remains(backend):
    """Reducing the only (implicit) signal dim of an unmarked array leaves no
    signal dims, rather than promoting the last navigation dim."""
    da = xr.DataArray(np.ones((2, 3, 4)), dims=DIMS, attrs={"units": "counts"})
    if backend == "dask":
        da = da.chunk({"y": 1})
    out = da.signal.sum(dim="signal", keep_attrs=False)
    assert out.attrs == {"signal_dims": "[]"}
    assert out.signal.signal_dims == () and out.signal.navigation_dims == ("y", "x")


@pytest.mark.parametrize("name", NAMES)
def test_keep_attrs_follows_xarray_options(name, backend):
    da = lazy_or_not(backend)
    reduce = getattr(da.signal, name)
    # by default the attrs are kept, as xarray's own reductions keep them
    assert reduce(dim="x").attrs["units"] == "counts"
    with xr.set_options(keep_attrs=False):
        assert "units" not in reduce(dim="x").attrs
        assert reduce(dim="x", keep_attrs=True).attrs["units"] == "counts"
        assert reduce(dim="x").signal.signal_dims == ("energy",)
    with xr.set_options(keep_attrs=True):
        assert reduce(dim="x").attrs["title"] == "t"


@pytest.mark.parametrize("name", NAMES)
def test_dims_is_still_accepted(name, backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        old = getattr(xsignal, name)(da, dims=["y", "energy"])
        new = getattr(xsignal, name)(da, dim=["y", "energy"])
        from_accessor = getattr(da.signal, name)(dims=["y", "energy"])
    xr.testing.assert_identical(old, new)
    xr.testing.assert_identical(from_accessor, new)


@pytest.mark.parametrize("dim", ["x", "navigation", None])
def test_dim_and_dims_together_are_refused(dim):
    da = make(data_with_nan())
    with pytest.raises(TypeError, match=r"both dim=.* and dims="):
        da.signal.sum(dim=dim, dims="signal")
    with pytest.raises(TypeError, match=r"nanmean\(\) got both dim=.* and dims="):
        xsignal.nanmean(da, dim, dims="signal")


def test_the_default_dim_is_navigation(backend):
    da = lazy_or_not(backend)
    xr.testing.assert_identical(da.signal.mean(), da.signal.mean(dim="navigation"))
    xr.testing.assert_identical(da.signal.mean(), da.signal.mean(dims="navigation"))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "std", "var"])
def test_skipna_true_gives_the_nan_version(name, backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        skipped = getattr(da.signal, name)(dim="signal", skipna=True)
    xr.testing.assert_identical(skipped, getattr(da.signal, "nan" + name)("signal"))


@pytest.mark.parametrize("name", ["nansum", "nanmean", "nanstd"])
def test_nan_versions_refuse_skipna(name):
    with pytest.raises(TypeError, match="always skips NaN"):
        getattr(make(data_with_nan()).signal, name)(dim="x", skipna=False)


def test_axis_is_refused_in_favour_of_dim():
    with pytest.raises(TypeError, match="by name, as dim="):
        make(data_with_nan()).signal.sum(axis=0)


def test_min_count_makes_all_nan_lanes_nan(backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        out = da.signal.nansum(dim="signal", min_count=1)
    assert np.isnan(out.values[1, 2])  # the all-NaN spectrum
    assert float(da.signal.nansum(dim="signal")[1, 2]) == 0.0
    np.testing.assert_allclose(out.values[0], np.nansum(da.values[0], axis=-1))


@pytest.mark.parametrize("name", ["std", "var", "nanstd", "nanvar"])
def test_ddof_as_with_numpy(name, backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        out = getattr(da.signal, name)(dim=["y", "x"], ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = getattr(np, name)(da.values, axis=(0, 1), ddof=1)
    np.testing.assert_allclose(out.values, want)


def test_dtype_is_passed_to_xarray(backend):
    da = xr.DataArray(np.full((3, 4), 200, "uint8"), dims=("x", "energy"))
    if backend == "dask":
        da = da.chunk(2)
    assert da.signal.sum(dim="x").dtype == np.uint64  # numpy's accumulator
    assert da.signal.sum(dim="x", dtype="float32").dtype == np.float32


@pytest.mark.parametrize("name", ["indexmax", "indexmin", "valuemax", "valuemin"])
def test_extrema_take_keep_attrs(name, backend):
    da = lazy_or_not(backend)
    with raise_if_dask_computes():
        kept = getattr(da.signal, name)("energy")
        dropped = getattr(da.signal, name)("energy", keep_attrs=False)
    assert kept.attrs["title"] == "t" and "units" not in kept.attrs
    assert dropped.attrs == {"signal_dims": "[]"}


# --- real functions, for IDEs and help() -------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_reduction_is_a_real_def(name):
    fn = getattr(xsignal, name)
    assert fn.__name__ == name and fn.__module__ == "xsignal.reductions"
    assert inspect.getsource(fn).startswith(f"def {name}(")
    params = inspect.signature(fn).parameters
    assert list(params)[:2] == ["da", "dim"]
    assert params["dim"].default == "navigation"
    assert params["dims"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["keep_attrs"].default is None
    assert ("skipna" in params) == (not name.startswith("nan"))
    assert ("ddof" in params) == name.endswith(("std", "var"))


@pytest.mark.parametrize("name", NAMES)
def test_docstring_documents_every_parameter(name):
    fn = getattr(xsignal, name)
    section = fn.__doc__.split("Parameters\n    ----------\n")[1].split("\n\n")[0]
    documented = re.findall(r"^    (\*{0,2}\w+)(?: :|$)", section, re.MULTILINE)
    kinds = {inspect.Parameter.VAR_KEYWORD: "**", inspect.Parameter.VAR_POSITIONAL: "*"}
    wanted = [
        kinds.get(p.kind, "") + p.name
        for p in inspect.signature(fn).parameters.values()
    ]
    assert documented == wanted
