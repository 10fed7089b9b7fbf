"""The incremental PCA update in xsignal/decomposition/pca.py, against
scikit-learn's IncrementalPCA and an exact SVD."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.decomposition import IncrementalPCA as SklearnIPCA

from xsignal.decomposition.pca import IncrementalPCA


@pytest.mark.parametrize("batch", [3, 17, 64])
def test_matches_sklearn_and_exact_svd(batch):
    rng = np.random.default_rng(1)
    # rank-3 signal with distinct strengths, plus noise and an offset
    x = rng.normal(size=(200, 3)) * [30, 10, 3] @ rng.normal(size=(3, 40))
    x += rng.normal(size=x.shape) + 5
    ours, theirs = IncrementalPCA(3), SklearnIPCA(n_components=3)
    for start in range(0, len(x), batch):
        ours.partial_fit(x[start : start + batch])
        theirs.partial_fit(x[start : start + batch])
    np.testing.assert_allclose(ours.mean_, x.mean(axis=0), rtol=1e-12)
    for name in ("explained_variance_", "explained_variance_ratio_"):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(theirs, name), rtol=1e-8
        )
    angles = subspace_angles(ours.components_.T, theirs.components_.T)
    assert np.degrees(angles.max()) < 1e-6
    _, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    total = (s**2).sum()
    # truncating to k each step loses a little of the weakest component
    np.testing.assert_allclose(
        ours.explained_variance_ratio_, s[:3] ** 2 / total, rtol=1e-3
    )


def test_first_batch_needs_k_rows():
    with pytest.raises(ValueError, match="output_dimension=3"):
        IncrementalPCA(3).partial_fit(np.ones((2, 5)))


def test_constant_data_explains_nothing():
    ipca = IncrementalPCA(2)
    ipca.partial_fit(np.ones((4, 5)))
    ipca.partial_fit(np.ones((4, 5)))
    np.testing.assert_array_equal(ipca.explained_variance_ratio_, 0)
    np.testing.assert_array_equal(ipca.mean_, 1)


def test_both_solvers_give_the_same_decomposition():
    import xsignal
    from xsignal.testing import spectrum_image

    data = spectrum_image((12, 10, 48), rank=3, seed=2, chunks={"y": 3}).data
    fast = xsignal.decomposition(data, "PCA", 3)
    reference = xsignal.decomposition(data, "PCA", 3, solver="sklearn")
    assert reference.parameters["solver"] == "sklearn"
    np.testing.assert_allclose(
        fast.explained_variance.values, reference.explained_variance.values, 1e-6
    )
    np.testing.assert_allclose(
        abs(fast.factors.values), abs(reference.factors.values), atol=1e-6
    )
    with pytest.raises(ValueError, match="solver must be one of"):
        xsignal.decomposition(data, "PCA", 3, solver="lapack")


@pytest.mark.parametrize("chunks", [{"y": 1}, {"y": 5, "x": 3}, None])
def test_covariance_solver_is_an_exact_pca(chunks):
    """Merged per-block scatters give scikit-learn's dense PCA of the same
    matrix, on any chunking, with a navigation mask."""
    import xarray as xr
    from sklearn.decomposition import PCA

    import xsignal
    from xsignal.testing import spectrum_image

    data = spectrum_image((12, 10, 48), rank=3, seed=5).data
    data = data.chunk(chunks) if chunks else data
    mask = np.zeros((12, 10), bool)
    mask[2:4, 1:7] = True
    dec = xsignal.decomposition(
        data, "PCA", 4, navigation_mask=xr.DataArray(mask, dims=("y", "x"))
    )
    assert dec.parameters["solver"] == "covariance"
    x = data.values.reshape(120, 48)[~mask.ravel()].astype("f8")
    ref = PCA(n_components=4, svd_solver="full").fit(x)
    np.testing.assert_allclose(dec.explained_variance, ref.explained_variance_, 1e-6)
    np.testing.assert_allclose(
        dec.explained_variance_ratio, ref.explained_variance_ratio_, 1e-6
    )
    np.testing.assert_allclose(dec.mean.values, ref.mean_, rtol=1e-6)
    # the three signal components exactly; the fourth (noise, a small
    # eigengap) to float32 precision
    signal = subspace_angles(dec.factors.values[:3].T, ref.components_[:3].T)
    assert np.degrees(signal.max()) < 1e-4
    every = subspace_angles(dec.factors.values.T, ref.components_.T)
    assert np.degrees(every.max()) < 1e-2
    loadings = dec.loadings.values.reshape(4, 120)[:, ~mask.ravel()].T
    np.testing.assert_allclose(
        np.abs(loadings[:, :3]),
        np.abs(ref.transform(x)[:, :3]),
        rtol=1e-5,
        atol=1e-6 * abs(x).max(),
    )
    assert np.isnan(dec.loadings.values.reshape(4, 120)[:, mask.ravel()]).all()


def test_merged_scatter_equals_the_direct_one():
    from xsignal.decomposition.pca import Scatter, merge_scatter

    rng = np.random.default_rng(3)
    parts = [rng.normal(loc=100, size=(n, 6)) for n in (1, 7, 30)]

    def scatter(x):
        c = x - x.mean(axis=0)
        return Scatter(len(x), x.mean(axis=0), c.T @ c)

    merged = merge_scatter(*(scatter(p) for p in parts))
    direct = scatter(np.vstack(parts))
    assert merged.n == direct.n
    np.testing.assert_allclose(merged.mean, direct.mean, rtol=1e-14)
    np.testing.assert_allclose(merged.scatter, direct.scatter, rtol=1e-10)
