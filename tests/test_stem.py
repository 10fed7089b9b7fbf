"""4D-STEM tools (xsignal.stem): against their definitions on every frame,
in memory and lazily at two chunkings, several detectors in one pass."""

from __future__ import annotations

import threading

import dask.array
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes

K = (np.arange(32) - 15.5) * 0.1  # pixel centres, 1/nm, centre between pixels


def stem(dtype="float32", seed=0) -> xr.DataArray:
    """4 x 5 frames of 32 x 32: a disc of radius 0.5 at a shifted centre."""
    rng = np.random.default_rng(seed)
    ky, kx = np.meshgrid(K, K, indexing="ij")
    centres = rng.uniform(-0.3, 0.3, (4, 5, 2))
    disc = (
        np.hypot(kx - centres[..., :1, None], ky - centres[..., 1:, None]) <= 0.5
    ) * 200.0
    frames = rng.poisson(disc + 2.0).astype(dtype)
    return xr.DataArray(
        frames,
        dims=("y", "x", "ky", "kx"),
        coords={
            "ky": ("ky", K, {"units": "1/nm"}),
            "kx": ("kx", K, {"units": "1/nm"}),
        },
    ).signal.set_signal_dims("ky", "kx")


KINDS = ["memory", "lazy-rows", "lazy-split-frames"]


def as_kind(da, kind):
    if kind == "lazy-rows":
        return da.chunk({"y": 1})
    if kind == "lazy-split-frames":  # frames cut in blocks: made whole
        return da.chunk({"y": 2, "x": 3, "ky": 16})
    return da


def run(tool, da, kind, *args, **kwargs):
    data = as_kind(da, kind)
    if kind == "memory":
        return tool(data, *args, **kwargs)
    with raise_if_dask_computes():
        out = tool(data, *args, **kwargs)
    assert xsignal.is_lazy(out)
    return out.compute()


DETECTORS = [
    xsignal.CircleROI(0.0, 0.0, 0.6),
    xsignal.CircleROI(0.0, 0.0, 1.5, r_inner=0.8),
    xsignal.RectangularROI(-1.0, -0.5, 0.2, 0.7),
]


def member_mask(roi) -> np.ndarray:
    ky, kx = np.meshgrid(K, K, indexing="ij")
    return roi.contains(kx, ky)


@pytest.mark.parametrize("kind", KINDS)
def test_virtual_images_are_sums_inside_each_detector(kind):
    da = stem()
    out = run(xsignal.virtual_images, da, kind, DETECTORS)
    assert out.dims == ("y", "x", "roi") and out.sizes["roi"] == 3
    assert out.dtype == np.float32  # float32 frames stay float32
    for i, roi in enumerate(DETECTORS):
        want = (da.values * member_mask(roi)).sum((-2, -1))
        np.testing.assert_allclose(out.isel(roi=i).values, want, rtol=1e-5)
        # the same pixels as xsignal.roi's membership rule
        via_roi = xsignal.nansum(da.signal.roi(roi, dims="signal"), "signal")
        np.testing.assert_allclose(out.isel(roi=i).values, via_roi.values, rtol=1e-5)
    assert out.signal.signal_dims == ("y", "x")  # images, as pyxem gives
    assert list(out.roi.values)[0] == "disc(0, 0, 0.6)"


def test_one_virtual_image_and_the_accessor():
    da = stem()
    image = da.signal.virtual_image(DETECTORS[1])
    assert image.dims == ("y", "x") and "roi" not in image.coords
    want = (da.values * member_mask(DETECTORS[1])).sum((-2, -1))
    np.testing.assert_allclose(image.values, want, rtol=1e-5)


def test_masks_as_arrays_and_weights():
    da = stem()
    weights = np.random.default_rng(1).random((32, 32))
    out = xsignal.virtual_images(da, [weights, weights > 0.5])
    np.testing.assert_allclose(
        out.isel(roi=0).values, (da.values * weights).sum((-2, -1)), rtol=1e-5
    )
    np.testing.assert_allclose(
        out.isel(roi=1).values, (da.values * (weights > 0.5)).sum((-2, -1)), rtol=1e-5
    )
    with pytest.raises(ValueError, match="frame's shape"):
        xsignal.virtual_images(da, [np.ones((3, 3))])
    with pytest.raises(ValueError, match="contain no pixel centre"):
        xsignal.virtual_images(da, [xsignal.CircleROI(50.0, 50.0, 1.0)])


def test_several_detectors_read_each_block_once():
    """Three detectors and the centre of mass, computed together: each block
    of frames is produced once (one pass over the data)."""
    frames = stem().values
    made = []
    lock = threading.Lock()

    def block(block_info=None):
        (ys, _), (xs, _) = block_info[None]["array-location"][:2]
        with lock:
            made.append((ys, xs))
        loc = block_info[None]["array-location"]
        return frames[tuple(slice(a, b) for a, b in loc)]

    lazy = dask.array.map_blocks(
        block, chunks=((2, 2), (5,), (32,), (32,)), dtype=frames.dtype
    )
    da = xr.DataArray(lazy, dims=("y", "x", "ky", "kx"), coords=stem().coords)
    da = da.signal.set_signal_dims("ky", "kx")
    images = xsignal.virtual_images(da, DETECTORS)
    com = xsignal.center_of_mass(da)
    xsignal.compute(images, com, progress=False)
    assert sorted(made) == [(0, 0), (2, 0)]


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int32"])
def test_integer_frames(dtype):
    da = stem(dtype)
    out = xsignal.virtual_images(da.chunk({"y": 2}), DETECTORS[:1]).compute()
    assert out.dtype == (np.float64 if dtype == "int32" else np.float32)
    want = (da.values.astype("f8") * member_mask(DETECTORS[0])).sum((-2, -1))
    np.testing.assert_allclose(out.isel(roi=0).values, want, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_center_of_mass_in_coordinate_units(kind):
    da = stem()
    out = run(xsignal.center_of_mass, da, kind)
    assert out.dims == ("y", "x", "vector")
    assert list(out.vector.values) == ["x", "y"]
    assert out.attrs["units"] == "1/nm"
    f = da.values.astype("f8")
    total = f.sum((-2, -1))
    np.testing.assert_allclose(
        out.sel(vector="x").values, (f * K[None, :]).sum((-2, -1)) / total, atol=1e-6
    )
    np.testing.assert_allclose(
        out.sel(vector="y").values, (f * K[:, None]).sum((-2, -1)) / total, atol=1e-6
    )


def test_center_of_mass_with_a_mask_and_a_threshold():
    da = stem()
    f = da.values.astype("f8")
    disc = member_mask(xsignal.CircleROI(0.0, 0.0, 1.0))
    masked = xsignal.center_of_mass(da.chunk({"y": 2}), mask=disc).compute()
    want_x = (f * disc * K[None, :]).sum((-2, -1)) / (f * disc).sum((-2, -1))
    np.testing.assert_allclose(masked.sel(vector="x").values, want_x, atol=1e-6)
    kept = np.where(f >= 2.0 * f.mean((-2, -1), keepdims=True), f, 0.0)
    thresholded = xsignal.center_of_mass(da.chunk({"y": 2}), threshold=2.0).compute()
    want_y = (kept * K[:, None]).sum((-2, -1)) / kept.sum((-2, -1))
    np.testing.assert_allclose(thresholded.sel(vector="y").values, want_y, atol=1e-6)
    empty = xsignal.center_of_mass(da * 0)
    assert np.isnan(empty.values).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weights", ["dense", "sparse"])
def test_azimuthal_integral_is_the_mean_in_each_annulus(kind, weights, monkeypatch):
    if weights == "sparse":  # the product for frames too large for dense weights
        monkeypatch.setattr(xsignal.stem, "DENSE_WEIGHTS", 0)
    da = stem("float64")
    out = run(
        xsignal.azimuthal_integral1d,
        da,
        kind,
        8,
        center=(0.1, -0.1),
        radial_range=(0, 1.6),
    )
    assert out.dims == ("y", "x", "radius")
    np.testing.assert_allclose(out.radius.values, 0.1 + 0.2 * np.arange(8))
    assert out.radius.attrs["units"] == "1/nm"
    ky, kx = np.meshgrid(K, K, indexing="ij")
    r = np.hypot(kx - 0.1, ky + 0.1)
    for i in range(8):
        inside = (r >= 0.2 * i) & (r < 0.2 * (i + 1))
        want = da.values[..., inside].mean(-1)
        np.testing.assert_allclose(out.isel(radius=i).values, want, rtol=1e-10)


def test_azimuthal_integral_mask_and_empty_annuli():
    da = stem("float64")
    stop = xsignal.CircleROI(0.0, 0.0, 0.3)
    out = xsignal.azimuthal_integral1d(
        da, 4, center=(0, 0), radial_range=(0, 0.8), mask=stop
    )
    assert np.isnan(out.isel(radius=0).values).all()  # all behind the stop
    with pytest.raises(ValueError, match="npt"):
        xsignal.azimuthal_integral1d(da, 0)
    with pytest.raises(ValueError, match="radial_range"):
        xsignal.azimuthal_integral1d(da, 4, radial_range=(1.0, 0.5))


def test_frames_need_two_signal_dims():
    spectra = xr.DataArray(np.ones((3, 8)), dims=("x", "e"))
    with pytest.raises(ValueError, match="two signal dims"):
        xsignal.center_of_mass(spectra)


@pytest.mark.parametrize("n_out", [1, 3, 12])
@pytest.mark.parametrize("layout", ["window", "full", "sparse"])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_frame_product_equals_the_plain_product(n_out, layout, dtype, monkeypatch):
    """Every path of the per-block product (conversion in small buffers
    with a short last one, the used-pixel window, per-output products,
    bands of rows, sparse weights, frames used in place) gives frames @ w."""
    from scipy import sparse

    from xsignal.stem import _FrameProduct

    monkeypatch.setattr(_FrameProduct, "BUFFER", 3 * 40 * 24)  # 3 frames a step
    monkeypatch.setattr(_FrameProduct, "BAND", 4)
    rng = np.random.default_rng(n_out)
    frames = rng.poisson(50, (2, 5, 40, 24)).astype(dtype)
    weights = rng.uniform(-1, 1, (40, 24, n_out))
    if layout != "full":  # a window of the frame, each output its own rows
        weights[:6] = weights[35:] = weights[:, :3] = 0
        for j in range(n_out):
            weights[np.arange(40) // 3 % n_out != j, :, j] = 0
    w = weights.reshape(-1, n_out)
    work = np.dtype("float64" if dtype == "float64" else "float32")
    product = _FrameProduct(
        sparse.csr_matrix(w) if layout == "sparse" else w, (40, 24), work
    )
    if layout == "window":
        assert product.window == (slice(6, 35), slice(3, 24))
        if n_out > _FrameProduct.FEW:
            assert len(product.bands) > 1
    out = product(frames[:, :, ::1])
    assert out.shape == (10, n_out) and out.dtype == work
    flat = frames.reshape(10, -1).astype("f8")
    scale = flat @ abs(w)  # rounding bound: the sum of the terms' sizes
    err = abs(out - flat @ w) / scale.clip(1e-300)
    assert err.max() < (1e-6 if work == np.float32 else 1e-14)


@pytest.mark.parametrize("mirror", ["rows", "columns", "both"])
@pytest.mark.parametrize("shape", [(40, 24), (41, 23)])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64"])
def test_mirrored_weights_fold_to_the_same_product(mirror, shape, dtype, monkeypatch):
    """Weights equal on both sides of the window's middle (odd and even
    sizes, one axis or both) are folded: the product over the folded
    pixels equals the plain one."""
    from xsignal.stem import _FrameProduct

    monkeypatch.setattr(_FrameProduct, "BUFFER", 3 * 40 * 24)  # 3 frames a step
    rng = np.random.default_rng(len(mirror))
    frames = rng.poisson(50, (2, 5, *shape)).astype(dtype)
    weights = rng.uniform(-1, 1, (*shape, 9))
    if mirror in ("rows", "both"):
        weights = weights + weights[::-1]
    if mirror in ("columns", "both"):
        weights = weights + weights[:, ::-1]
    w = weights.reshape(-1, 9)
    work = np.dtype("float64" if dtype == "float64" else "float32")
    product = _FrameProduct(w, shape, work)
    folds = {"rows": (1, 0), "columns": (0, 1), "both": (1, 1)}[mirror]
    assert product.fold == (folds[0] * (shape[0] // 2), folds[1] * (shape[1] // 2))
    out = product(frames)
    flat = frames.reshape(10, -1).astype("f8")
    err = abs(out - flat @ w) / (flat @ abs(w))
    assert err.max() < (1e-6 if work == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_separable_product_equals_the_plain_product(dtype, monkeypatch):
    """Outer-product weights (the centre of mass without a mask) as row
    sums: the same as the dense weights they stand for."""
    from xsignal.stem import _FrameProduct, _SeparableProduct

    monkeypatch.setattr(_FrameProduct, "BUFFER", 3 * 40 * 24)  # 3 frames a step
    rng = np.random.default_rng(1)
    frames = rng.poisson(50, (2, 5, 40, 24)).astype(dtype)
    rows = rng.uniform(-1, 1, (3, 40))
    columns = np.stack([np.ones(24), rng.uniform(-1, 1, 24), np.ones(24)])
    work = np.dtype("float64" if dtype == "float64" else "float32")
    out = _SeparableProduct(rows, columns, (40, 24), work)(frames)
    assert out.shape == (10, 3) and out.dtype == work
    dense = np.einsum("jy,jx->yxj", rows, columns).reshape(-1, 3)
    flat = frames.reshape(10, -1).astype("f8")
    err = abs(out - flat @ dense) / (flat @ abs(dense))
    assert err.max() < (1e-6 if work == np.float32 else 1e-14)
