"""Formats read through rosettasciio (the ``formats`` extra), on files that
rosettasciio's own writers make."""

from __future__ import annotations

import importlib
import time
import warnings

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes

pytest.importorskip("rsciio")


def axis(name, size, navigate, scale=1.0, offset=0.0, units="nm"):
    return {
        "_type": "UniformDataAxis",
        "name": name,
        "size": size,
        "navigate": navigate,
        "scale": scale,
        "offset": offset,
        "units": units,
        "is_binned": False,
    }


def signal(data, axes, title="rosetta test"):
    return {
        "data": data,
        "axes": axes,
        "metadata": {
            "General": {"title": title},
            "Signal": {"signal_type": ""},
        },
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "hyperspy", "version": "2.5.0"},
    }


RNG = np.random.default_rng(0)
SPECTRA = RNG.random((3, 4, 16)).astype("f4")
SPECTRUM_AXES = [
    axis("y", 3, True, 2.0),
    axis("x", 4, True, 2.0),
    axis("E", 16, False, 0.5, 100.0, "eV"),
]
# (writer module, file name, signal, the dims and signal dims xsignal gives,
#  a dim whose scale and units round trip in that format)
CASES = {
    "blo": (
        "blockfile",
        "a.blo",
        signal(
            RNG.integers(0, 255, (3, 4, 8, 8)).astype("u1"),
            [
                axis("y", 3, True, 2.0),
                axis("x", 4, True, 2.0),
                axis("ky", 8, False, 0.1, 0.0, "cm"),
                axis("kx", 8, False, 0.1, 0.0, "cm"),
            ],
        ),
        ("y", "x", "dy", "dx"),
        ("dy", "dx"),
        ("y", 2.0, "nm"),
    ),
    "tvips": (
        "tvips",
        "a.tvips",
        signal(
            RNG.integers(0, 255, (3, 8, 8)).astype("u1"),
            [
                axis("t", 3, True),
                axis("ky", 8, False, 0.1, 0.0, "1/nm"),
                axis("kx", 8, False, 0.1, 0.0, "1/nm"),
            ],
        ),
        ("time", "dy", "dx"),
        ("dy", "dx"),
        None,
    ),
    "emd": (
        "emd",
        "a.emd",
        signal(SPECTRA, SPECTRUM_AXES),
        ("y", "x", "E"),
        None,
        ("E", 0.5, "eV"),
    ),
    "nxs": (
        "nexus",
        "a.nxs",
        signal(SPECTRA, SPECTRUM_AXES),
        ("y", "x", "E"),
        ("E",),
        ("E", 0.5, "eV"),
    ),
    "rpl": (
        "ripple",
        "a.rpl",
        signal(SPECTRA, SPECTRUM_AXES),
        ("y", "x", "E"),
        ("E",),
        ("E", 0.5, "eV"),
    ),
    "tif": (
        "tiff",
        "a.tif",
        signal(
            SPECTRA[:, 0].reshape(3, 4, 4).copy(),
            [axis("t", 3, True), axis("y", 4, False, 0.5), axis("x", 4, False, 0.5)],
        ),
        ("image series", "height", "width"),
        ("height", "width"),
        ("width", 0.5, "nm"),
    ),
    "mrcz": (
        "mrcz",
        "a.mrcz",
        signal(
            SPECTRA[:, 0].reshape(3, 4, 4).copy(),
            [axis("t", 3, True), axis("y", 4, False, 0.5), axis("x", 4, False, 0.5)],
        ),
        ("z", "y", "x"),
        ("y", "x"),
        ("x", 0.5, "nm"),
    ),
    "hspy": (
        "hspy",
        "a.hspy",
        signal(SPECTRA, SPECTRUM_AXES),
        ("y", "x", "E"),
        ("E",),
        ("E", 0.5, "eV"),
    ),
}


def write(tmp_path, key):
    module, name, sig, *_ = CASES[key]
    try:
        writer = importlib.import_module(f"rsciio.{module}").file_writer
    except ImportError as err:  # that writer's own optional dependency
        pytest.skip(f"rosettasciio's {module} writer needs {err.name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer(str(tmp_path / name), sig)
    written = sorted(tmp_path.glob(name.replace(".", "*.")))  # tvips: a_000.tvips
    return written[0], sig


@pytest.mark.parametrize("key", sorted(CASES))
def test_files_written_by_rosettasciio_open_lazily(tmp_path, key):
    path, sig = write(tmp_path, key)
    _, _, _, dims, signal_dims, scaled = CASES[key]
    # NeXus files give their axes as signals too: choose the data by title
    variable = "rosetta test" if key == "nxs" else None
    with raise_if_dask_computes():
        da = xsignal.open(path, variable=variable)
    assert da.signal.is_lazy
    assert da.dims == dims
    if signal_dims is not None:
        assert da.signal.signal_dims == signal_dims
    np.testing.assert_array_equal(da.values, sig["data"])
    if scaled is not None:
        dim, scale, units = scaled
        coord = da.coords[dim]
        assert float(coord[1] - coord[0]) == pytest.approx(scale)
        assert coord.attrs["units"] == units
    assert "format" in da.encoding


def test_blockfile_seed_workflow(tmp_path):
    """The seed's path: a .blo opened lazily, converted lazily, decomposed."""
    path, sig = write(tmp_path, "blo")
    with raise_if_dask_computes():
        da = xsignal.open(path).signal.change_dtype("float32")
    assert da.dtype == np.float32
    assert da.signal.signal_dims == ("dy", "dx")
    dec = da.signal.decomposition("SVD", output_dimension=2)
    assert dec.factors.dims == ("component", "dy", "dx")
    assert dec.loadings.dims == ("component", "y", "x")
    model = dec.model().compute()
    # two components of 12 pixels: the model is the best rank-2 fit
    flat = sig["data"].reshape(12, 64).astype("f8")
    u, s, vt = np.linalg.svd(flat, full_matrices=False)
    best = (u[:, :2] * s[:2]) @ vt[:2]
    np.testing.assert_allclose(model.values.reshape(12, 64), best, rtol=1e-3, atol=0.05)


def test_several_signals_need_variable(tmp_path):
    path, _ = write(tmp_path, "nxs")
    with pytest.raises(ValueError, match="several signals.*'rosetta test'"):
        xsignal.open(path)
    assert xsignal.open(path, variable="0").attrs["title"] == "rosetta test"


def test_metadata_and_title_come_along(tmp_path):
    path, _ = write(tmp_path, "rpl")
    da = xsignal.open(path)
    assert "metadata" in da.attrs
    assert da.encoding["format"] == "Ripple (rosettasciio)"


def test_lazy_false_and_chunks(tmp_path):
    path, sig = write(tmp_path, "blo")
    da = xsignal.open(path, lazy=False)
    assert not da.signal.is_lazy
    np.testing.assert_array_equal(da.values, sig["data"])
    assert xsignal.open(path, chunks={"y": 1}).chunks[0] == (1, 1, 1)


def test_convert_a_detector_file_to_zarr(tmp_path):
    path, sig = write(tmp_path, "blo")
    xsignal.save(xsignal.open(path), tmp_path / "out.zarr")
    back = xsignal.open(tmp_path / "out.zarr")
    np.testing.assert_array_equal(back.values, sig["data"])
    assert back.signal.signal_dims == ("dy", "dx")
    xr.testing.assert_identical(
        back.coords["y"].variable, xsignal.open(path).coords["y"].variable
    )


def test_unknown_extension_is_a_clear_error(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="a.xyz"):
        xsignal.open(tmp_path / "a.xyz")


def test_a_detector_file_rewritten_in_place_raises(tmp_path):
    import shutil

    from xsignal import FileChangedError

    path, sig = write(tmp_path, "rpl")
    da = xsignal.open(path)
    np.testing.assert_array_equal(da.values, sig["data"])
    other = tmp_path / "other"
    other.mkdir()
    new_path, _ = write(other, "rpl")
    time.sleep(0.01)
    for suffix in (".rpl", ".raw"):  # the header and its data file
        shutil.copyfile(new_path.with_suffix(suffix), path.with_suffix(suffix))
    with pytest.raises(FileChangedError, match="rewritten"):
        da.values  # noqa: B018


@pytest.mark.parametrize("key", ["blo", "rpl", "tvips"])
def test_a_truncated_detector_file_names_the_file_and_the_block(tmp_path, key):
    path, _ = write(tmp_path, key)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises((ValueError, OSError)) as info:
        xsignal.open(path).compute()
    message = str(info.value)
    assert str(path) in message
    assert "truncated" in message or "damaged" in message
