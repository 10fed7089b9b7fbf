"""Decomposition: each algorithm against ground truth, masks, scaling, result."""

from __future__ import annotations

import math
import os

import dask
import numpy as np
import pytest
import xarray as xr
from scipy.linalg import subspace_angles

import xsignal
from xsignal.testing import raise_if_dask_computes, spectrum_image, write_spectrum_image

SHAPE = (24, 24, 96)
RANK = 3


def degrees(found: xr.DataArray, truth: xr.DataArray) -> float:
    """Largest principal angle between two factor spans, in degrees."""
    a = found.transpose("component", ...).values.reshape(found.sizes["component"], -1)
    b = truth.transpose("component", ...).values.reshape(truth.sizes["component"], -1)
    return float(np.degrees(subspace_angles(a.T, b.T).max()))


@pytest.fixture(scope="module")
def truth():
    return spectrum_image(SHAPE, rank=RANK, seed=3)


@pytest.fixture
def data(truth, backend):
    return truth.data.chunk({"y": 5}) if backend == "dask" else truth.data


def matrix(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, float).reshape(-1, da.shape[-1])


def numpy_svd_degrees(truth, centred: bool = False) -> float:
    x = matrix(truth.data)
    _, _, vt = np.linalg.svd(x - x.mean(0) if centred else x, full_matrices=False)
    found = xr.DataArray(vt[:RANK], dims=("component", "energy"))
    return degrees(found, truth.factors)


@pytest.mark.parametrize("algorithm", ["SVD", "PCA", "ORPCA", "ORNMF"])
def test_recovers_true_factors(truth, data, algorithm):
    result = xsignal.decomposition(data, algorithm, RANK)
    # the noise limits any method: compare with a dense numpy SVD
    reference = numpy_svd_degrees(truth, centred=algorithm == "PCA")
    tolerance = {"SVD": 0.05, "PCA": 0.05, "ORPCA": 1.0, "ORNMF": 1.5}[algorithm]
    assert degrees(result.factors, truth.factors) < reference + tolerance
    assert result.factors.dims == ("component", "energy")
    assert result.loadings.dims == ("component", "y", "x")
    np.testing.assert_array_equal(result.factors.energy, data.energy)
    np.testing.assert_array_equal(result.loadings.y, data.y)
    ratio = result.explained_variance_ratio.values
    assert (np.diff(ratio) <= 1e-12).all() and 0.5 < ratio.sum() <= 1 + 1e-9
    model = result.model().compute()
    # rank-3 model: error about the Poisson noise (sqrt(counts) <= 10)
    assert float(abs(model - truth.data).mean()) < 6


def test_svd_matches_dense_numpy(data):
    result = xsignal.decomposition(data, "SVD", 5)
    x = matrix(data)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(
        result.explained_variance, s[:5] ** 2 / (len(x) - 1), rtol=1e-4
    )
    np.testing.assert_allclose(
        result.explained_variance_ratio, s[:5] ** 2 / (s**2).sum(), rtol=1e-4
    )
    factors = result.factors.values
    np.testing.assert_allclose(abs(factors), abs(vt[:5]), atol=2e-3)
    loadings = result.loadings.values.reshape(5, -1)
    np.testing.assert_allclose(loadings, factors @ x.T, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"normalize_poissonian_noise": True},
        {"centre": "signal"},
        {"centre": "navigation"},
        {"centre": "signal", "normalize_poissonian_noise": True},
        {"centre": "navigation", "normalize_poissonian_noise": True},
    ],
)
def test_svd_randomized_matches_gram(truth, options):
    """Subspace iteration gives the exact solver's factors and variances
    for every scaling and centring."""
    data = truth.data.chunk({"y": 6})
    exact = xsignal.decomposition(data, "SVD", RANK, svd_solver="gram", **options)
    fast = xsignal.decomposition(
        data, "SVD", RANK, svd_solver="randomized", seed=1, **options
    )
    assert fast.parameters["svd_solver"] == "randomized"
    assert degrees(fast.factors, exact.factors) < 1e-3
    np.testing.assert_allclose(
        fast.explained_variance, exact.explained_variance, rtol=1e-5
    )
    np.testing.assert_allclose(
        fast.explained_variance_ratio, exact.explained_variance_ratio, rtol=1e-5
    )
    np.testing.assert_allclose(
        fast.loadings.values, exact.loadings.values, rtol=1e-3, atol=1e-3
    )


def test_svd_randomized_with_masks(truth):
    mask = np.zeros(SHAPE[:2], bool)
    mask[2:9, 3:7] = True
    signal_mask = np.zeros(SHAPE[2], bool)
    signal_mask[:10] = True
    data = truth.data.chunk({"y": 6})
    results = [
        xsignal.decomposition(
            data,
            "SVD",
            RANK,
            svd_solver=solver,
            navigation_mask=mask,
            signal_mask=signal_mask,
            normalize_poissonian_noise=True,
        )
        for solver in ("gram", "randomized")
    ]
    exact, fast = results
    assert degrees(fast.factors.fillna(0), exact.factors.fillna(0)) < 1e-3
    assert np.isnan(fast.loadings.values[:, mask]).all()
    assert np.isnan(fast.factors.values[:, signal_mask]).all()


def test_pca_randomized_matches_covariance(truth):
    data = truth.data.chunk({"y": 5})
    exact = xsignal.decomposition(data, "PCA", RANK, solver="covariance")
    fast = xsignal.decomposition(data, "PCA", RANK, solver="randomized")
    assert fast.parameters["solver"] == "randomized"
    assert degrees(fast.factors, exact.factors) < 1e-3
    np.testing.assert_allclose(fast.mean, exact.mean, rtol=1e-6)
    np.testing.assert_allclose(
        fast.explained_variance_ratio, exact.explained_variance_ratio, rtol=1e-5
    )


def test_auto_solver_takes_randomized_for_few_components_of_big_data():
    """The choice follows the cost: few components of big, wide data."""
    from xsignal.decomposition.streaming import Problem
    from xsignal.decomposition.svd import choose_solver

    def problem(shape):
        da = xr.DataArray(
            dask.array.zeros(shape, chunks=(8, shape[1], shape[2]), dtype="f4"),
            dims=("y", "x", "energy"),
        )
        return Problem(da, ("y", "x"), ("energy",), None, None)

    big = problem((128, 128, 1024))
    assert choose_solver(big, 4) == "randomized"
    assert choose_solver(big, 200) == "gram"  # many components
    assert choose_solver(problem((32, 32, 1024)), 4) == "gram"  # small
    assert choose_solver(problem((512, 512, 128)), 4) == "gram"  # narrow
    assert choose_solver(problem((4, 4, 5000)), 4) == "randomized"  # wide


def test_pca_is_centred_svd(data):
    result = xsignal.decomposition(data, "PCA", 4)
    x = matrix(data)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    np.testing.assert_allclose(result.mean.values, mean, rtol=1e-4)
    # IncrementalPCA is exact for the signal components, not the noise ones
    np.testing.assert_allclose(
        result.explained_variance_ratio[:3], s[:3] ** 2 / (s**2).sum(), rtol=1e-3
    )
    assert degrees(result.factors, xr.DataArray(vt[:3], dims=("component", "e"))) < 2


def test_pca_works_with_one_pixel_chunks(truth):
    data = truth.data.isel(y=slice(0, 6)).chunk({"y": 1, "x": 1})
    result = xsignal.decomposition(data, "PCA", 3, batch_size=3)
    reference = xsignal.decomposition(data.compute(), "SVD", 3, centre="navigation")
    assert degrees(result.factors, reference.factors) < 1


@pytest.mark.parametrize("algorithm", ["SVD", "ORPCA"])
def test_centre_navigation_reconstructs_exactly(truth, algorithm):
    data = truth.data.isel(y=slice(0, 4), x=slice(0, 4), energy=slice(0, 40))
    k = 15 if algorithm == "SVD" else 8
    result = xsignal.decomposition(data, algorithm, k, centre="navigation")
    np.testing.assert_allclose(result.mean, data.mean(("y", "x")), rtol=1e-5)
    if algorithm == "SVD":  # 16 pixels, centred: rank 15 is everything
        np.testing.assert_allclose(result.model(), data, atol=1e-2)
    else:
        assert float(abs(result.model() - data).mean()) < 8


def test_centre_signal(truth, backend):
    data = truth.data.isel(y=slice(0, 4), x=slice(0, 5), energy=slice(0, 30))
    data = data.chunk({"y": 2}) if backend == "dask" else data
    result = xsignal.decomposition(data, "SVD", 19, centre="signal")
    assert result.mean.dims == ("y", "x")
    np.testing.assert_allclose(result.mean, data.mean("energy"), rtol=1e-5)
    x = matrix(data)
    s = np.linalg.svd(x - x.mean(axis=1, keepdims=True), compute_uv=False)
    np.testing.assert_allclose(result.explained_variance_ratio.sum(), 1, rtol=1e-6)
    np.testing.assert_allclose(
        result.explained_variance, s[:19] ** 2 / (len(x) - 1), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(result.model(), data, atol=1e-2)


def test_poisson_scaling_matches_numpy(data):
    result = xsignal.decomposition(data, "SVD", RANK, normalize_poissonian_noise=True)
    x = matrix(data)
    root_a = np.sqrt(x.mean(axis=1))
    root_b = np.sqrt(x.mean(axis=0))
    # all-zero channels (far from every peak) get weight 0, not 1/0
    scaled = (
        x / root_a[:, None] * np.where(root_b > 0, 1 / np.maximum(root_b, 1e-300), 0)
    )
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    expected = vt[:RANK] * root_b  # scaling undone on the factors
    found = result.factors.values
    cos = abs((found * expected).sum(1)) / np.linalg.norm(found, axis=1)
    np.testing.assert_allclose(cos, np.linalg.norm(expected, axis=1), rtol=1e-3)
    np.testing.assert_allclose(
        result.explained_variance_ratio, s[:RANK] ** 2 / (s**2).sum(), rtol=1e-4
    )
    # undone on loadings: the model is in data units
    low_rank = scaled @ vt[:RANK].T @ vt[:RANK]
    low_rank = low_rank * root_a[:, None] * root_b
    np.testing.assert_allclose(matrix(result.model()), low_rank, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("algorithm", ["ORPCA", "ORNMF"])
def test_poisson_scaling_online_algorithms(truth, algorithm):
    result = xsignal.decomposition(
        truth.data, algorithm, RANK, normalize_poissonian_noise=True
    )
    assert degrees(result.factors, truth.factors) < numpy_svd_degrees(truth) + 1.5
    assert float(abs(result.model() - truth.data).mean()) < 6


def test_poisson_scaling_pca_is_centred_scaled_svd(truth):
    pca = xsignal.decomposition(truth.data, "PCA", 4, normalize_poissonian_noise=True)
    svd = xsignal.decomposition(
        truth.data, "SVD", 4, normalize_poissonian_noise=True, centre="navigation"
    )
    assert degrees(pca.factors[:3], svd.factors[:3]) < 0.5  # incremental
    np.testing.assert_allclose(pca.mean, svd.mean, rtol=1e-4, atol=1e-6)
    assert float(abs(pca.model(3) - svd.model(3)).max()) < 0.5  # counts up to 100


def test_poisson_scaling_with_centring_model(truth):
    data = truth.data.isel(y=slice(0, 4), x=slice(0, 4), energy=slice(0, 30))
    result = xsignal.decomposition(
        data, "SVD", 15, normalize_poissonian_noise=True, centre="navigation"
    )
    assert result.mean_weights is not None
    np.testing.assert_allclose(result.model(), data, atol=1e-2)


def test_ornmf_is_nonnegative(data):
    for method in ("PGD", "RobustPGD", "MomentumSGD"):
        result = xsignal.decomposition(data, "ORNMF", RANK, method=method)
        assert float(result.factors.min()) >= 0
        assert float(result.loadings.min()) >= 0
        assert result.parameters["method"] == method


@pytest.mark.parametrize("method", ["CF", "BCD", "SGD", "MomentumSGD"])
def test_orpca_methods(truth, method):
    result = xsignal.decomposition(truth.data, "ORPCA", RANK, method=method)
    assert degrees(result.factors, truth.factors) < numpy_svd_degrees(truth) + 2


def test_orpca_init_options(truth):
    rand = xsignal.decomposition(truth.data, "ORPCA", RANK, init="rand")
    given = xsignal.decomposition(
        truth.data, "ORPCA", RANK, init=truth.factors.values, training_samples=50
    )
    for result in (rand, given):
        assert degrees(result.factors, truth.factors) < numpy_svd_degrees(truth) + 3
    with pytest.raises(ValueError, match="init array has shape"):
        xsignal.decomposition(truth.data, "ORPCA", RANK, init=np.ones((5, 5)))


def test_orpca_recovers_low_rank_part_despite_outliers():
    data, factors, loadings = spectrum_image((24, 24, 96), 3, seed=5, noise="gaussian")
    clean = (loadings * factors).sum("component").transpose(*data.dims)
    rng = np.random.default_rng(0)
    hit = rng.random(data.shape) < 0.05
    corrupted = data + xr.where(hit, rng.uniform(1000, 2000, data.shape), 0)
    svd = xsignal.decomposition(corrupted, "SVD", 3)
    robust = xsignal.decomposition(corrupted, "ORPCA", 3)
    assert degrees(svd.factors, factors) > 20
    assert degrees(robust.factors, factors) < 2
    error = float(abs(robust.model() - clean).mean())
    assert error < 5 < float(abs(svd.model() - clean).mean())


def test_navigation_mask(truth, backend):
    data = truth.data.isel(y=slice(0, 8))
    data = data.chunk({"y": 3}) if backend == "dask" else data
    mask = np.zeros((8, 24), bool)
    mask[2:5, 3:20] = True
    mask_da = xr.DataArray(mask.T, dims=("x", "y"))  # aligned by name
    for nav_mask in (mask, mask_da):
        result = xsignal.decomposition(data, "SVD", 3, navigation_mask=nav_mask)
        loadings = result.loadings.values
        assert np.isnan(loadings[:, mask]).all()
        assert np.isfinite(loadings[:, ~mask]).all()
        x = matrix(data)[~mask.ravel()]
        s = np.linalg.svd(x, compute_uv=False)
        np.testing.assert_allclose(
            result.explained_variance, s[:3] ** 2 / (len(x) - 1), rtol=1e-4
        )


def test_signal_mask(data):
    mask = np.zeros(96, bool)
    mask[:10] = True
    for algorithm in ("SVD", "PCA", "ORPCA", "ORNMF"):
        result = xsignal.decomposition(data, algorithm, 3, signal_mask=mask)
        assert np.isnan(result.factors.values[:, :10]).all()
        assert np.isfinite(result.factors.values[:, 10:]).all()
        assert np.isfinite(result.loadings.values).all()
    x = matrix(data)[:, ~mask]
    s = np.linalg.svd(x, compute_uv=False)
    svd = xsignal.decomposition(data, "SVD", 3, signal_mask=mask)
    np.testing.assert_allclose(svd.explained_variance_ratio, s[:3] ** 2 / (s**2).sum())


def test_two_signal_dims():
    data = spectrum_image((6, 5, 64), rank=2, seed=2).data
    image = data.coarsen(energy=8).construct(energy=("ky", "kx"))
    image = xsignal.set_signal_dims(image.drop_vars("energy"), "ky", "kx")
    result = xsignal.decomposition(image, "SVD", 2)
    assert result.factors.dims == ("component", "ky", "kx")
    assert result.loadings.dims == ("component", "y", "x")
    np.testing.assert_allclose(result.model(), image, atol=30)


def n_reads(data: xr.DataArray) -> int:
    """dask computes of one streaming pass (blocks() reads a few blocks each)."""
    blocks = math.prod(len(c) for c in data.chunks[:-1])
    return math.ceil(blocks / max(2, os.cpu_count() or 1))


@pytest.mark.parametrize(
    ("algorithm", "passes"), [("SVD", 1), ("PCA", 1), ("ORPCA", 2), ("ORNMF", 2)]
)
def test_lazy_promise(truth, algorithm, passes):
    data = truth.data.chunk({"y": 4})
    with raise_if_dask_computes(max_computes=passes * n_reads(data)):
        result = xsignal.decomposition(data, algorithm, RANK)
    with raise_if_dask_computes():
        model = result.model(2)
    assert model.chunks is not None
    if algorithm in ("SVD", "PCA"):  # linear projections stay lazy
        assert result.loadings.chunks is not None
    computed = model.compute()
    assert computed.dims == ("y", "x", "energy")


def test_threads_scheduler(truth, scheduler):
    data = truth.data.chunk({"y": 4})
    result = xsignal.decomposition(data, "SVD", RANK)
    in_memory = xsignal.decomposition(truth.data, "SVD", RANK)
    np.testing.assert_allclose(result.loadings, in_memory.loadings, rtol=1e-4)


def test_model_components(truth):
    result = xsignal.decomposition(truth.data, "SVD", 4)
    first = result.model(1)
    expected = result.loadings[0] * result.factors[0]
    np.testing.assert_allclose(first, expected.transpose(*first.dims), rtol=1e-6)
    np.testing.assert_allclose(result.model([0]), first)
    np.testing.assert_allclose(
        result.model([0, 2]) - first, result.model([2]), rtol=1e-4, atol=1e-3
    )
    assert xsignal.signal_dims(first) == ("energy",)
    with pytest.raises(ValueError, match="between 1 and"):
        result.model(5)
    with pytest.raises(ValueError, match="out of range"):
        result.model([7])


def test_to_dataset_round_trip(truth, tmp_path):
    data = truth.data.chunk({"y": 8})
    result = xsignal.decomposition(
        data, "PCA", RANK, navigation_mask=np.eye(24, dtype=bool)
    )
    path = tmp_path / "decomposition.nc"
    result.to_dataset().to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        back = xsignal.Decomposition.from_dataset(ds.load())
    assert back.algorithm == "PCA"
    assert back.parameters["output_dimension"] == RANK
    xr.testing.assert_allclose(back.factors, result.factors)
    xr.testing.assert_allclose(back.loadings, result.loadings.compute())
    xr.testing.assert_allclose(back.model(), result.model().compute())
    assert xsignal.signal_dims(back.factors) == ("energy",)


def test_accessor_and_plot(truth):
    import matplotlib

    matplotlib.use("Agg")
    result = truth.data.signal.decomposition("SVD", 6, centre="navigation")
    assert isinstance(result, xsignal.Decomposition)
    assert "SVD" in repr(result)
    ax = result.plot_explained_variance_ratio()
    assert len(ax.lines[0].get_xdata()) == 6


def test_all_components_by_default():
    data = spectrum_image((4, 3, 8), rank=2).data
    assert xsignal.decomposition(data).n_components == 8
    with pytest.raises(ValueError, match="needs output_dimension"):
        xsignal.decomposition(data, "ORPCA")


# --- bad input ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"algorithm": "ICA"}, ValueError, "unknown algorithm 'ICA'"),
        ({"output_dimension": 0}, ValueError, "positive int"),
        ({"output_dimension": 2.5}, ValueError, "positive int"),
        ({"output_dimension": 97}, ValueError, "larger than possible"),
        ({"centre": "middle"}, ValueError, "centre must be one of"),
        ({"navigation_mask": np.zeros((3, 3), bool)}, ValueError, "shape"),
        (
            {"navigation_mask": xr.DataArray(np.zeros(24, bool), dims="x")},
            ValueError,
            "navigation_mask has dims",
        ),
        ({"navigation_mask": np.ones((24, 24), bool)}, ValueError, "every pixel"),
        ({"signal_mask": np.ones(96, bool)}, ValueError, "every signal element"),
        ({"signal_mask": np.zeros(96, int)}, TypeError, "boolean"),
        ({"svd_solver": "lapack"}, ValueError, "svd_solver"),
        ({"lambda1": 1.0}, TypeError, "SVD has no option 'lambda1'"),
        (
            {"algorithm": "ORNMF", "output_dimension": 2, "centre": "navigation"},
            ValueError,
            "centre must be None",
        ),
        (
            {"algorithm": "ORPCA", "output_dimension": 2, "method": "Adam"},
            ValueError,
            "method must be one of",
        ),
    ],
)
def test_bad_arguments(truth, kwargs, error, match):
    with raise_if_dask_computes(), pytest.raises(error, match=match):
        xsignal.decomposition(truth.data.chunk({"y": 8}), **kwargs)


def test_bad_data():
    data = spectrum_image((4, 4, 16), rank=2).data
    with pytest.raises(TypeError, match="change_dtype"):
        xsignal.decomposition(data.astype(int))
    with pytest.raises(ValueError, match="at least 2 navigation pixels"):
        xsignal.decomposition(data.isel(y=[0], x=[0]))
    with pytest.raises(TypeError, match="DataArray"):
        xsignal.decomposition(data.values)
    negative = data - 50
    for lazy in (False, True):
        x = negative.chunk({"y": 2}) if lazy else negative
        with pytest.raises(ValueError, match="non-negative"):
            xsignal.decomposition(x, "SVD", 2, normalize_poissonian_noise=True)
        with pytest.raises(ValueError, match="ORNMF needs non-negative"):
            xsignal.decomposition(x, "ORNMF", 2)
    holed = data.copy()
    holed[1, 2, 3] = np.nan
    for algorithm in ("SVD", "PCA", "ORPCA", "ORNMF"):
        with pytest.raises(ValueError, match="NaN"):
            xsignal.decomposition(holed.chunk({"y": 2}), algorithm, 2)
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True  # masking the NaN pixel is the documented way out
    result = xsignal.decomposition(holed, "SVD", 2, navigation_mask=mask)
    assert np.isnan(result.loadings.values[:, 1, 2]).all()


def test_processes_scheduler_and_progress(truth):
    import dask

    data = truth.data.chunk({"y": 12})
    with dask.config.set(scheduler="processes", num_workers=2):
        result = xsignal.decomposition(data, "SVD", RANK, progress=True)
        loadings = result.loadings.compute()
    in_memory = xsignal.decomposition(truth.data, "SVD", RANK)
    np.testing.assert_allclose(loadings, in_memory.loadings, rtol=1e-4, atol=1e-6)


def test_a_decomposition_of_several_passes_shows_one_bar(capsys):
    """A randomized SVD computes a pass per power iteration: one bar, titled
    by the algorithm, the pass in its postfix (it was a bar per pass)."""
    pytest.importorskip("tqdm")
    data = spectrum_image((16, 16, 1024), 3, seed=2).data.chunk({"y": 4})
    result = xsignal.decomposition(
        data, "SVD", 3, progress=True, svd_solver="randomized"
    )
    assert result.parameters["passes"] > 1
    shown = capsys.readouterr().err.replace("\r", "\n").splitlines()
    titles = {line.split(":")[0].strip() for line in shown if line.strip()}
    assert titles == {"SVD"}
    last = f"pass {result.parameters['passes']}"
    assert any(last in line for line in shown)


def test_robust_ornmf_resists_outliers():
    data, factors, _ = spectrum_image((24, 24, 96), 3, seed=5)
    rng = np.random.default_rng(0)
    hit = rng.random(data.shape) < 0.05
    corrupted = data + xr.where(hit, rng.uniform(1000, 2000, data.shape), 0)
    plain = xsignal.decomposition(corrupted, "ORNMF", 3, method="PGD")
    robust = xsignal.decomposition(corrupted, "ORNMF", 3, method="RobustPGD")
    assert degrees(plain.factors, factors) > 20
    assert degrees(robust.factors, factors) < 4
    assert float(robust.factors.min()) >= 0 and float(robust.loadings.min()) >= 0


def test_cli_decompose(tmp_path, capsys):
    from xsignal.cli import main
    from xsignal.testing import write_spectrum_image

    path = write_spectrum_image(tmp_path / "si.nc", (12, 10, 64), rank=2)
    out = tmp_path / "result.nc"
    argv = ["decompose", str(path), "-a", "PCA", "-k", "3", "-o", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert "PCA: 3 components" in capsys.readouterr().out
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        result = xsignal.Decomposition.from_dataset(ds.load())
    assert result.factors.sizes == {"component": 3, "energy": 64}
    assert main([*argv, "--no-progress"]) == 2  # exists, no --overwrite
    assert main(["decompose", str(path), "-a", "NMF", "--no-progress"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err


@pytest.mark.parametrize(
    "chunks",
    [{"y": 1}, {"y": 5, "x": 7}, {"x": 1, "energy": 32}, {"y": 24, "energy": 10}],
)
@pytest.mark.parametrize("algorithm", ["SVD", "ORNMF"])
def test_any_chunking_gives_the_in_memory_result(truth, chunks, algorithm):
    data = truth.data.isel(y=slice(0, 10))
    expected = xsignal.decomposition(data, algorithm, RANK)
    result = xsignal.decomposition(data.chunk(chunks), algorithm, RANK)
    if algorithm == "SVD":  # exact: the same numbers whatever the blocks
        np.testing.assert_allclose(result.factors, expected.factors, atol=1e-6)
        np.testing.assert_allclose(result.loadings, expected.loadings, rtol=1e-4)
    else:  # online: mini-batches follow the blocks, the span does not move
        assert degrees(result.factors, expected.factors) < 1
        np.testing.assert_allclose(result.model(), expected.model(), atol=3)


@pytest.mark.parametrize("algorithm", ["SVD", "PCA", "ORPCA", "ORNMF"])
def test_process_pool_gives_the_threaded_result(tmp_path, algorithm):
    path = write_spectrum_image(tmp_path / "si.nc", (16, 12, 48), rank=3, seed=3)
    da = xsignal.open(path)
    with dask.config.set(scheduler="threads"):
        local = da.signal.decomposition(algorithm, 3, progress=False)
        local_loadings = local.loadings.values
    with dask.config.set(scheduler="processes", num_workers=2):
        pooled = da.signal.decomposition(algorithm, 3, progress=False)
        pooled_loadings = pooled.loadings.values
    np.testing.assert_allclose(pooled.factors.values, local.factors.values, 1e-6, 1e-9)
    np.testing.assert_allclose(pooled_loadings, local_loadings, 1e-6, 1e-6)
