"""Formats read through rosettasciio (the ``formats`` extra), on files that
rosettasciio's own writers make."""

from __future__ import annotations

import importlib
import time
import warnings
from pathlib import Path

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


# --- rosettasciio's own test files (tests/data/rosetta, see its README) ---------

ROSETTA_DATA = Path(__file__).parent / "data" / "rosetta"


def rosetta_eager(module, name):
    """rosettasciio's own eager reading of a file of tests/data/rosetta."""
    reader = importlib.import_module(f"rsciio.{module}").file_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reader(str(ROSETTA_DATA / name))


def assert_reads_like(da, signal):
    """xsignal's ``da`` holds rosettasciio's eager ``signal``: lazily, the
    same values, dims, signal dims (every axis when no axis has a navigate
    flag, HyperSpy's rule) and coordinates with their units."""
    want = np.asarray(signal["data"])
    assert da.signal.is_lazy
    assert da.shape == want.shape
    assert da.dtype == want.dtype
    np.testing.assert_array_equal(da.values, want)
    # in the data's order, as HyperSpy takes them; a reader may give none
    axes = list(signal["axes"]) + [{}] * (want.ndim - len(signal["axes"]))
    assert [a.get("size", n) for a, n in zip(axes, want.shape)] == list(want.shape)
    names = [a.get("name") or f"dim_{i}" for i, a in enumerate(axes)]
    assert da.dims == tuple(names)
    flags = [a.get("navigate") for a in axes]
    if any(f is not None for f in flags):
        sig = {n for n, f in zip(names, flags) if f is False}
    else:
        sig = set(names)
    assert set(da.signal.signal_dims) == sig
    for name, axis in zip(names, axes):
        if not axis:
            continue
        coord = da.coords[name]
        if axis.get("axis") is not None:
            values = np.asarray(axis["axis"])
        else:
            offset, scale = axis.get("offset", 0.0), axis.get("scale", 1.0)
            values = offset + scale * np.arange(axis["size"])
        np.testing.assert_allclose(coord.values, values, rtol=1e-6)
        units = axis.get("units")
        if isinstance(units, str) and units and units != "<undefined>":
            assert coord.attrs["units"] == units


def open_rosetta(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xsignal.open(ROSETTA_DATA / name, **kwargs)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("msa", "example1.msa"),  # no lazy mode
        ("image", "jpg_no_exif_tags.jpg"),  # a lazy read of unknown shape
        ("digitalmicrograph", "test-23.dm3"),  # a lazy read that raises (RGBA)
        ("pantarhei", "panta_rhei_sample_legacy.prz"),  # a lazy read that is wrong
    ],
)
def test_files_without_a_working_lazy_mode_are_read_into_memory(module, name):
    (signal,) = rosetta_eager(module, name)
    da = open_rosetta(name)
    assert_reads_like(da, signal)
    assert "read into memory" in da.encoding["format"]


def test_the_mode_chosen_at_open_is_the_one_worker_processes_use():
    """MSA has no lazy mode: a process reading a block reads the file the
    way opening did, not with ``lazy=True`` (which raises)."""
    import dask

    (signal,) = rosetta_eager("msa", "example1.msa")
    da = open_rosetta("example1.msa", chunks={"Energy": 7})
    with dask.config.set(scheduler="processes", num_workers=2):
        values = da.values
    np.testing.assert_array_equal(values, signal["data"])


def test_a_reader_with_a_lazy_mode_stays_lazy():
    (signal,) = rosetta_eager("emd", "py4DSTEM_size2x3x4x5.h5")
    da = open_rosetta("py4DSTEM_size2x3x4x5.h5")
    assert da.encoding["format"] == "EMD (rosettasciio)"
    assert_reads_like(da, signal)


def test_without_navigate_flags_every_axis_is_a_signal_axis():
    signals = rosetta_eager("nexus", "nexus_test_datakey.nxs")
    assert not signals[0]["axes"]  # no axis, so no navigate flag
    for index, signal in enumerate(signals):
        assert_reads_like(
            open_rosetta("nexus_test_datakey.nxs", variable=index), signal
        )


def test_an_extension_two_readers_share_needs_reader():
    with pytest.raises(ValueError, match=r"\.mrc.*MRCZ.*MRC.*reader="):
        open_rosetta("20241021_00405_final.mrc")
    (signal,) = rosetta_eager("mrc", "20241021_00405_final.mrc")
    assert_reads_like(open_rosetta("20241021_00405_final.mrc", reader="MRC"), signal)
    with pytest.raises(ValueError, match="no reader 'MRX'.*'MRCZ', 'MRC'"):
        open_rosetta("20241021_00405_final.mrc", reader="MRX")


def test_reader_is_an_xarray_backend_keyword_too():
    (signal,) = rosetta_eager("mrc", "20241021_00405_final.mrc")
    path = ROSETTA_DATA / "20241021_00405_final.mrc"
    da = xr.open_dataarray(path, engine="xsignal", reader="mrc")
    np.testing.assert_array_equal(da.values, signal["data"])
    assert da.dims == ("y", "x")


@pytest.mark.parametrize(
    ("module", "name"),
    [("emd", "py4DSTEM_size2x3x4x5.h5"), ("delmic", "sparc-hyperspectral.h5")],
)
def test_h5_files_of_a_rosettasciio_reader_go_to_it(module, name):
    (signal,) = rosetta_eager(module, name)
    assert_reads_like(open_rosetta(name), signal)


def test_an_hdf5_dataset_path_still_reads_the_plain_dataset():
    da = open_rosetta(
        "py4DSTEM_size2x3x4x5.h5", variable="/datacube_root/datacube/data"
    )
    assert da.encoding["format"] == "HDF5"
    (signal,) = rosetta_eager("emd", "py4DSTEM_size2x3x4x5.h5")
    assert da.shape == np.asarray(signal["data"]).shape


def test_variable_an_index_and_an_ambiguous_title():
    signals = rosetta_eager("topspin", "topspin_test_A.app5")
    title = signals[0]["metadata"]["General"]["title"]
    assert [s["metadata"]["General"]["title"] for s in signals] == [title, title]
    with pytest.raises(ValueError, match=r"2 signals have the title .*\[0, 1\]"):
        open_rosetta("topspin_test_A.app5", variable=title)
    for index, signal in enumerate(signals):
        assert_reads_like(open_rosetta("topspin_test_A.app5", variable=index), signal)
