"""Blind source separation against known independent sources and mixing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

import xsignal

RNG = np.random.default_rng(11)
ENERGY = np.linspace(0, 10, 300)


def peaks(centres, width=0.15):
    """Sparse, non-Gaussian spectra: a few narrow peaks each."""
    return np.stack(
        [
            sum(np.exp(-(((ENERGY - c) / width) ** 2)) for c in group)
            for group in centres
        ]
    )


SOURCES = peaks([(1.0, 6.5), (3.0, 8.0), (4.5,)])  # (3, energy)


def best_match(found: np.ndarray, truth: np.ndarray) -> float:
    """The smallest |correlation| of the best one-to-one pairing."""
    corr = np.abs(np.corrcoef(found, truth)[: len(found), len(found) :])
    return max(
        min(corr[i, p] for i, p in enumerate(perm))
        for perm in itertools.permutations(range(len(truth)))
    )


def spectrum_image(maps: np.ndarray, spectra: np.ndarray, lazy: bool) -> xr.DataArray:
    data = np.einsum("kyx,ke->yxe", maps, spectra)
    da = xr.DataArray(
        data,
        dims=("y", "x", "energy"),
        coords={"energy": ("energy", ENERGY, {"units": "keV"})},
    )
    return da.chunk({"y": 8}) if lazy else da


@pytest.mark.parametrize("lazy", [False, True])
def test_separates_independent_spectra_on_the_factors(lazy):
    maps = RNG.random((3, 24, 20))
    data = spectrum_image(maps, SOURCES, lazy)
    dec = data.signal.decomposition("SVD", 3)
    assert best_match(dec.factors.values, SOURCES) < 0.95  # SVD mixes them
    bss = dec.blind_source_separation(3)
    assert best_match(bss.factors.values, SOURCES) > 0.995
    assert bss.loadings.chunks is not None if lazy else bss.loadings.chunks is None
    assert bss.factors.max("energy").values == pytest.approx(np.ones(3))  # peaks up
    np.testing.assert_allclose(
        bss.model().values, dec.model().values, atol=1e-9 * float(abs(data).max())
    )
    np.testing.assert_allclose(
        bss.mixing.values @ bss.unmixing.values, np.eye(3), atol=1e-9
    )
    assert bss.on == "factors" and "FastICA" in bss.algorithm
    assert isinstance(bss, xsignal.Separation)


def test_recovers_a_known_mixing_matrix():
    """Factors made by mixing known sources with a known matrix: the mixing
    found is that matrix, up to order and scale."""
    mixing = np.array([[0.8, 0.3, -0.2], [-0.4, 0.9, 0.1], [0.2, -0.3, 0.7]])
    mixed = mixing @ SOURCES  # decomposition component i = sum_j M[i,j] S_j
    factors = xr.DataArray(mixed, dims=("component", "energy"))
    loadings = xr.DataArray(RNG.random((3, 5, 4)), dims=("component", "y", "x"))
    nan = xr.DataArray(np.full(3, np.nan), dims="component")
    dec = xsignal.Decomposition(factors, loadings, nan, nan)
    bss = xsignal.blind_source_separation(dec)
    found = bss.mixing.values  # (decomposition_component, component)
    # each found column is a true column up to scale: cosine similarity 1
    found = found / np.linalg.norm(found, axis=0)
    truth = mixing / np.linalg.norm(mixing, axis=0)
    cosine = np.abs(truth.T @ found)
    best = max(
        min(cosine[i, p] for i, p in enumerate(perm))
        for perm in itertools.permutations(range(3))
    )
    assert best > 0.995, f"mixing {bss.mixing.values} is not {mixing} up to scale"


def test_separates_independent_maps_on_the_loadings():
    # sparse, non-Gaussian maps; smooth overlapping spectra
    maps = (RNG.random((3, 30, 30)) > 0.9) * RNG.random((3, 30, 30))
    spectra = np.stack([np.exp(-(((ENERGY - c) / 3.0) ** 2)) for c in (3, 5, 7)])
    dec = spectrum_image(maps, spectra, lazy=True).signal.decomposition("SVD", 3)
    bss = dec.blind_source_separation(on="loadings")
    found = bss.loadings.values.reshape(3, -1)
    assert best_match(found, maps.reshape(3, -1)) > 0.99
    assert best_match(bss.factors.values, spectra) > 0.99


def test_fewer_components_and_errors():
    maps = RNG.random((3, 10, 10))
    dec = spectrum_image(maps, SOURCES, lazy=False).signal.decomposition("SVD", 5)
    bss = dec.blind_source_separation(3)
    assert bss.n_components == 3 and bss.mixing.shape == (3, 3)
    with pytest.raises(ValueError, match="'factors' or 'loadings'"):
        dec.blind_source_separation(3, on="both")
    with pytest.raises(ValueError, match="unknown algorithm"):
        dec.blind_source_separation(3, algorithm="JADE")
    with pytest.raises(ValueError, match="between 1 and"):
        dec.blind_source_separation(6)
