"""histogram against np.histogram on the non-NaN values, for every bins form."""

from __future__ import annotations

import itertools
import math

import dask
import dask.array
import numpy as np
import pytest
import xarray as xr
from chunk_strategies import chunkings
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

import xsignal
import xsignal.histograms as xh
from xsignal.testing import raise_if_dask_computes

EXACT_RULES = ["scott", "sturges", "rice", "sqrt", "doane"]
QUANTILE_RULES = ["fd", "auto"]
SHAPE = (12, 10, 25)


def sample(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 3.0, size=SHAPE)
    if dtype != "float64":
        return values.astype(dtype)
    values[rng.random(SHAPE) < 0.15] = np.nan
    return values


def make(values, lazy=False, chunks=None):
    da = xr.DataArray(
        values, dims=("y", "x", "energy"), attrs={"units": "eV", "title": "t"}
    )
    da = xsignal.set_signal_dims(da, "energy")
    if lazy:
        da = da.chunk(chunks or {"y": 5, "x": 4, "energy": 10})
    return da


def finite(values):
    return values[~np.isnan(values)] if values.dtype.kind == "f" else values.ravel()


def check_counts(h, values, range=None):
    """Counts equal np.histogram's on the non-NaN values with our edges."""
    edges = h.attrs["bin_edges"]
    want, _ = np.histogram(finite(values), bins=edges, range=range)
    np.testing.assert_array_equal(h.values, want)
    np.testing.assert_allclose(h["bin"], 0.5 * (edges[1:] + edges[:-1]))
    np.testing.assert_array_equal(h["bin_left"], edges[:-1])
    np.testing.assert_array_equal(h["bin_right"], edges[1:])
    return edges


@pytest.mark.parametrize("rule", EXACT_RULES + QUANTILE_RULES)
@pytest.mark.parametrize("range", [None, (2.0, 15.0)])
def test_rules_match_numpy(rule, range, backend):
    values = sample()
    da = make(values, lazy=backend == "dask")
    h = xsignal.histogram(da, bins=rule, range=range)
    edges = check_counts(h, values, range)
    want = np.histogram_bin_edges(finite(values), bins=rule, range=range)
    if backend == "numpy" or rule in EXACT_RULES:
        assert edges.size == want.size
        np.testing.assert_allclose(edges, want)
    else:  # approximate quartiles: close to numpy's bin count
        assert abs(edges.size - want.size) <= max(2, 0.02 * want.size)
    assert h.dims == ("bin",) and h.signal.signal_dims == ("bin",)
    assert xsignal.is_lazy(h) == (backend == "dask")


def check_integer_edges(edges, values, rule):
    """Half-integer edges from min - 0.5 past max + 0.5, a whole width:
    numpy's width rounded (at least 1)."""
    v = finite(values)
    width = np.diff(edges)
    np.testing.assert_allclose(width, width[0])
    assert width[0] == max(1, round(np.diff(np.histogram_bin_edges(v, rule))[0]))
    assert edges[0] == v.min() - 0.5 and edges[-1] >= v.max() + 0.5
    assert edges[-2] < v.max() + 0.5
    np.testing.assert_array_equal(edges % 1, 0.5)


@pytest.mark.parametrize("rule", EXACT_RULES + QUANTILE_RULES)
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_integer_valued_data_get_integer_aligned_bins(rule, dtype, backend):
    """Integer dtypes, and floats whose values are all whole (counts stored
    as float32): no comb of bins holding one or two integers each."""
    values = np.rint(sample(dtype="float32")).astype(dtype)
    h = xsignal.histogram(make(values, lazy=backend == "dask"), bins=rule)
    edges = check_counts(h, values)
    if backend == "numpy" or rule in EXACT_RULES:
        check_integer_edges(edges, values, rule)
    else:  # approximate quartiles: a width within one of numpy's, rounded
        want = max(1, round(np.diff(np.histogram_bin_edges(values, rule))[0]))
        assert abs(np.diff(edges)[0] - want) <= 1
        np.testing.assert_array_equal(edges % 1, 0.5)


def test_a_range_on_integer_data_gives_numpy_bins(backend):
    """The range chosen is kept: numpy's bins over it, not aligned ones."""
    values = np.rint(sample(dtype="float32")) + 0.0
    h = xsignal.histogram(
        make(values, lazy=backend == "dask"), bins="sqrt", range=(0.5, 20.5)
    )
    edges = check_counts(h, values, (0.5, 20.5))
    want = np.histogram_bin_edges(finite(values), "sqrt", range=(0.5, 20.5))
    np.testing.assert_allclose(edges, want)


def test_one_fraction_makes_the_data_not_integer_valued(backend):
    values = np.rint(sample(dtype="float32"))
    values[3, 2, 1] = 2.5
    h = xsignal.histogram(make(values, lazy=backend == "dask"), bins="sturges")
    edges = check_counts(h, values)
    np.testing.assert_allclose(edges, np.histogram_bin_edges(values, "sturges"))


@settings(max_examples=10, deadline=None)
@given(chunks=chunkings(SHAPE), rule=st.sampled_from(EXACT_RULES + QUANTILE_RULES))
def test_rules_under_random_chunkings(chunks, rule):
    values = sample(1)
    da = make(values, lazy=True, chunks=dict(zip(("y", "x", "energy"), chunks)))
    with raise_if_dask_computes(1) as counter:
        h = xsignal.histogram(da, bins=rule)
    assert counter.total_computes == 1  # the statistics pass, once
    edges = check_counts(h, values)
    if rule in EXACT_RULES:
        want = np.histogram_bin_edges(finite(values), bins=rule)
        np.testing.assert_allclose(edges, want)


@settings(max_examples=10, deadline=None)
@given(chunks=chunkings((60, 80)), seed=st.integers(0, 100))
def test_streaming_quartiles_within_the_documented_bound(chunks, seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(size=(60, 80))
    lazy = dask.array.from_array(values, chunks=chunks)
    s = xh.statistics(lazy)
    low, high = np.percentile(values, [24.8, 25.2])
    assert low <= s.q25 <= high
    low, high = np.percentile(values, [74.8, 75.2])
    assert low <= s.q75 <= high
    assert s.n == values.size
    assert math.isclose(s.m2 / s.n, values.var(), rel_tol=1e-9)
    centred = values - values.mean()
    assert math.isclose(s.m3, (centred**3).sum(), rel_tol=1e-6, abs_tol=1e-6)


@pytest.mark.parametrize("chunks", [(3, 500), (20, 1000), (200, 1000)])
def test_streaming_quartiles_with_ties(chunks):
    # integer-valued data: the exact quartiles sit inside long runs of ties
    rng = np.random.default_rng(5)
    values = rng.poisson(3.0, size=(200, 1000)).astype("float32")
    s = xh.statistics(dask.array.from_array(values, chunks=chunks))
    assert (s.q25, s.q75) == tuple(np.percentile(values, [25, 75]))
    h = xsignal.histogram(
        xr.DataArray(values).chunk(dict(zip(("dim_0", "dim_1"), chunks))), bins="fd"
    )
    check_integer_edges(h.attrs["bin_edges"], values, "fd")


def test_quartiles_from_many_large_blocks():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(50, 4000))  # blocks larger than the summary
    s = xh.statistics(dask.array.from_array(values, chunks=(7, 4000)))
    low, high = np.percentile(values, [74.8, 75.2])
    assert low <= s.q75 <= high


@pytest.mark.parametrize("range", [None, (3.0, 9.0)])
def test_int_bins_and_edges(range, backend):
    values = sample()
    da = make(values, lazy=backend == "dask")
    h = xsignal.histogram(da, bins=7, range=range)
    want, want_edges = np.histogram(finite(values), bins=7, range=range)
    np.testing.assert_array_equal(h.values, want)
    np.testing.assert_allclose(h.attrs["bin_edges"], want_edges)
    edges = [0.0, 1.0, 2.5, 4.0, 20.0]
    h = xsignal.histogram(da, bins=edges, range=range)
    v = finite(values)
    if range is not None:  # range is honoured for explicit edges too
        v = v[(v >= range[0]) & (v <= range[1])]
    np.testing.assert_array_equal(h.values, np.histogram(v, bins=edges)[0])


def test_known_bins_read_no_data():
    da = make(sample(), lazy=True)
    with raise_if_dask_computes():
        h1 = xsignal.histogram(da, bins=[0, 1, 2, 10])
        h2 = xsignal.histogram(da, bins=5, range=(0, 10), density=True)
        h3 = da.signal.histogram(bins=[0, 5, 50], dims="signal")
    assert all(xsignal.is_lazy(h) for h in (h1, h2, h3))
    # an int without range needs min and max: one statistics pass, no more
    with raise_if_dask_computes(1) as counter:
        h4 = xsignal.histogram(da, bins=5)
    assert counter.total_computes == 1 and xsignal.is_lazy(h4)


@pytest.mark.parametrize("bins", [6, "scott", [0.0, 2.0, 3.0, 8.0, 40.0]])
def test_density_like_numpy(bins, backend):
    values = sample()
    h = xsignal.histogram(make(values, lazy=backend == "dask"), bins=bins, density=True)
    edges = h.attrs["bin_edges"]
    want, _ = np.histogram(finite(values), bins=edges, density=True)
    np.testing.assert_allclose(h.values, want)
    assert h.name == "density"


def test_per_pixel_histograms(backend):
    values = sample()
    da = make(values, lazy=backend == "dask")
    h = da.signal.histogram(bins=8, range=(0, 20), dims="signal").compute()
    assert h.dims == ("y", "x", "bin")
    assert h.signal.navigation_dims == ("y", "x")
    for j, i in itertools.product(range(SHAPE[0]), range(SHAPE[1])):
        want, _ = np.histogram(finite(values[j, i]), bins=8, range=(0, 20))
        np.testing.assert_array_equal(h.values[j, i], want)
    # explicit edges with a narrower range, per pixel (the vectorised path)
    edges = [0.0, 5.0, 10.0, 50.0]
    h = xsignal.histogram(da, bins=edges, range=(2, 30), dims="signal").compute()
    for j, i in [(0, 0), (5, 3), (11, 9)]:
        v = finite(values[j, i])
        want, _ = np.histogram(v[(v >= 2) & (v <= 30)], bins=edges)
        np.testing.assert_array_equal(h.values[j, i], want)
    # histograms over y only: one per (x, energy), dims in the array's order
    h = xsignal.histogram(da, bins=[0, 5, 50], dims="y", density=True).compute()
    assert h.dims == ("x", "energy", "bin")
    want, _ = np.histogram(finite(values[:, 3, 7]), bins=[0, 5, 50], density=True)
    np.testing.assert_allclose(h.values[3, 7], want)


def test_every_value_nan_or_out_of_range():
    da = make(np.full(SHAPE, np.nan), lazy=True)
    h = xsignal.histogram(da, bins="fd")
    np.testing.assert_array_equal(h.attrs["bin_edges"], [0.0, 1.0])
    assert int(h.sum()) == 0
    h = xsignal.histogram(make(sample()), bins="sturges", range=(100.0, 200.0))
    assert h.sizes["bin"] == 1 and int(h.sum()) == 0


def test_max_bins_caps_rules_with_a_warning():
    da = make(sample())
    with pytest.warns(UserWarning, match="using max_bins=10"):
        h = xsignal.histogram(da, bins="sqrt", max_bins=10)
    assert h.sizes["bin"] == 10
    check_counts(h, sample())
    with pytest.raises(ValueError, match="over max_bins=10"):
        xsignal.histogram(da, bins=50, max_bins=10)  # explicit: refused, not capped


# --- knuth and Bayesian blocks -----------------------------------------------


def knuth_log_posterior(values, m):
    counts, _ = np.histogram(values, bins=m, range=(values.min(), values.max()))
    n = values.size
    return (
        n * math.log(m)
        + gammaln(m / 2)
        - m * gammaln(0.5)
        - gammaln(n + m / 2)
        + gammaln(counts + 0.5).sum()
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_knuth_maximises_the_posterior(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(size=400), rng.normal(4, 0.5, size=200)])
    h = xsignal.histogram(xr.DataArray(values), bins="knuth")
    m = h.sizes["bin"]
    scores = [knuth_log_posterior(values, k) for k in range(1, 301)]
    assert scores[m - 1] == pytest.approx(max(scores))
    check_counts(h, values)


def partition_score(values, cut_points):
    """Scargle's total event-data fitness of the blocks cut at ``cut_points``."""
    x, counts = np.unique(values, return_counts=True)
    cells = np.concatenate([[x[0]], 0.5 * (x[1:] + x[:-1]), [x[-1]]])
    ncp = 4 - math.log(73.53 * 0.05 * values.size**-0.478)
    bounds = [0, *cut_points, x.size]
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        n_k = counts[a:b].sum()
        total += n_k * (math.log(n_k) - math.log(cells[b] - cells[a])) - ncp
    return total, cells[bounds]


@pytest.mark.parametrize("seed", range(4))
def test_bayesian_blocks_optimal_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    # 10 distinct values (2^9 partitions), dense on the left, sparse on the right
    grid = np.sort(rng.random(10) * 10)
    values = np.concatenate(
        [grid[:6][rng.integers(0, 6, 60)], grid[6:][rng.integers(0, 4, 8)]]
    )
    m = np.unique(values).size
    best_score, best_edges = -np.inf, None
    for k in range(m):
        for cuts in itertools.combinations(range(1, m), k):
            score, edges = partition_score(values, cuts)
            if score > best_score:
                best_score, best_edges = score, edges
    edges = xh.bayesian_blocks_edges(values)
    np.testing.assert_allclose(edges, best_edges)


def test_bayesian_blocks_find_a_density_step(backend):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(3000), 1 + rng.random(300)])
    da = xr.DataArray(values.reshape(33, 100), dims=("x", "e"))
    if backend == "dask":
        da = da.chunk({"x": 10})
    with raise_if_dask_computes(1):
        h = xsignal.histogram(da, bins="blocks")
    edges = check_counts(h, values)
    # one change point, at the step
    assert edges.size == 3
    assert abs(edges[1] - 1.0) < 0.01


def test_whole_sample_rules_refuse_large_lazy_data(monkeypatch):
    monkeypatch.setattr(xh, "WHOLE_SAMPLE_BYTES", 1000)
    da = make(sample(), lazy=True)
    for rule in ("knuth", "blocks"):
        with pytest.raises(NotImplementedError, match="whole sorted sample"):
            xsignal.histogram(da, bins=rule)
    h = xsignal.histogram(da.compute(), bins="knuth", range=(1, 10))
    check_counts(h, sample(), (1, 10))
    monkeypatch.setattr(xh, "BLOCKS_MAX_VALUES", 100)
    with pytest.raises(ValueError, match="O\\(m\\^2\\)"):
        xsignal.histogram(da.compute(), bins="blocks")


# --- errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"bins": "nope"}, ValueError, "unknown bins rule 'nope'"),
        ({"bins": 0}, ValueError, "at least 1"),
        ({"bins": 2.5}, TypeError, "bins must be an int"),
        ({"bins": [1.0]}, ValueError, "at least 2 values"),
        ({"bins": [1.0, 0.0]}, ValueError, "strictly increasing"),
        ({"range": (2, 1)}, ValueError, "greater than its max"),
        ({"range": (0, np.inf)}, ValueError, "range must be finite"),
        ({"range": 3}, ValueError, "range must be"),
        ({"dims": "q"}, ValueError, "'q' is not a dim"),
        ({"max_bins": 0}, ValueError, "max_bins"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        xsignal.histogram(make(sample()), **kwargs)


def test_infinite_data_need_a_range(backend):
    values = sample()
    values[0, 0, 0] = np.inf
    da = make(values, lazy=backend == "dask")
    with pytest.raises(ValueError, match="not finite; pass a finite range"):
        xsignal.histogram(da, bins="scott")
    h = xsignal.histogram(da, bins="scott", range=(0, 30))
    check_counts(h, values, (0, 30))


def test_bad_dtype_and_bin_dim():
    with pytest.raises(TypeError, match="real numbers"):
        xsignal.histogram(xr.DataArray(np.ones(3, complex)))
    da = xr.DataArray(np.ones((2, 3)), dims=("bin", "e"))
    with pytest.raises(ValueError, match="'bin' is taken"):
        xsignal.histogram(da, dims="e")


def test_bool_data_and_attrs():
    da = xr.DataArray(np.array([True, False, True]), dims="e", attrs={"title": "b"})
    h = xsignal.histogram(da, bins=2)
    np.testing.assert_array_equal(h.values, [1, 2])
    assert h.attrs["title"] == "b"
    h = xsignal.histogram(make(sample()), bins=3)
    assert h["bin"].attrs["units"] == "eV"


def test_processes_scheduler():
    # the statistics pass and the counts pickle to worker processes
    values = sample()
    da = make(values, lazy=True)
    with dask.config.set(scheduler="processes", num_workers=2):
        h = xsignal.histogram(da, bins="fd").compute()
    check_counts(h, values)


def test_explicit_bins_over_max_bins_are_refused_before_any_work():
    from xsignal.testing import raise_if_dask_computes

    lazy = xr.DataArray(np.arange(100.0)).chunk(10)
    with (
        raise_if_dask_computes(),
        pytest.raises(ValueError, match="max_bins=200000000"),
    ):
        xsignal.histogram(lazy, bins=200_000_000)
    with raise_if_dask_computes(), pytest.raises(ValueError, match="over max_bins=10"):
        xsignal.histogram(lazy, bins=np.arange(20.0), max_bins=10)
    counts = xsignal.histogram(lazy, bins=20_000, range=(0, 100), max_bins=20_000)
    assert int(counts.sum()) == 100


def test_even_bins_by_arithmetic_match_numpy_at_the_edges():
    """Values exactly on edges, NaN and out-of-range values, per pixel (many
    lanes) and over everything (one lane), against np.histogram."""
    rng = np.random.default_rng(9)
    edges = np.linspace(-1.0, 2.0, 31)
    values = rng.choice(np.concatenate([edges, rng.uniform(-2, 3, 200)]), (40, 50))
    values[3, :7] = np.nan
    da = xr.DataArray(values, dims=("y", "e"))
    per_pixel = xsignal.histogram(da, bins=30, range=(-1.0, 2.0), dims="e")
    for y in range(40):
        lane = values[y][~np.isnan(values[y])]
        np.testing.assert_array_equal(per_pixel.values[y], np.histogram(lane, edges)[0])
    whole = xsignal.histogram(da.chunk({"y": 7}), bins=30, range=(-1.0, 2.0), dims=None)
    flat = values[~np.isnan(values)]
    np.testing.assert_array_equal(whole.values, np.histogram(flat, edges)[0])


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("uniform", [True, False])
def test_counts_match_numpy_one_ulp_around_every_edge(dtype, uniform):
    """Values on every edge and one unit in the last place either side, in
    the data's own precision, NaN and infinities; lanes longer than one
    counting step (split) and many short ones (grouped)."""
    if uniform:
        edges = np.linspace(0.3, 0.9, 7)  # edges no float type holds exactly
    else:
        edges = np.array([-1.0, 0.1, 0.2, 0.7, 1.0 / 3.0 + 1, 5.0])
    near = edges.astype(dtype)
    up = np.nextafter(near, np.array(np.inf, dtype))
    down = np.nextafter(near, np.array(-np.inf, dtype))
    special = np.array([np.nan, np.inf, -np.inf], dtype)
    pool = np.concatenate([near, up, down, special]).astype(dtype)
    rng = np.random.default_rng(3)
    for shape, dims in [((3, 70_000), "e"), ((700, 30), "e"), ((3, 70_000), None)]:
        values = rng.choice(pool, shape)
        da = xr.DataArray(values, dims=("y", "e")).chunk({"y": 2})
        bins = len(edges) - 1 if uniform else edges
        lo, hi = edges[0], edges[-1]
        out = xsignal.histogram(da, bins=bins, range=(lo, hi), dims=dims).values
        if dims is None:
            want = np.histogram(values[np.isfinite(values)], edges)[0]
            np.testing.assert_array_equal(out, want)
            continue
        for y in range(shape[0]):
            lane = values[y][np.isfinite(values[y])]
            np.testing.assert_array_equal(out[y], np.histogram(lane, edges)[0])
