"""HyperSpy .hspy files: the shared HyperSpy-written files and hand-made ones."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes

# the HyperSpy-written files shared by the project (as in conftest.SHARED_HSPY)
SHARED_HSPY = Path(__file__).resolve().parents[2] / "shared" / "data" / "hspy"

EXPECTED = (
    json.loads((SHARED_HSPY / "expected.json").read_text())
    if (SHARED_HSPY / "expected.json").exists()
    else {}
)
needs_shared = pytest.mark.skipif(not EXPECTED, reason="shared .hspy files missing")


def write_hspy(path, data, axes, *, title="", metadata=None, chunks=None, name=None):
    """A .hspy file in HyperSpy's layout: one dict per axis in array order."""
    data = np.asarray(data)
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "HyperSpy"
        f.attrs["file_format_version"] = "3.3"
        group = f.create_group(f"Experiments/{name or title or '__unnamed__'}")
        group.create_group("attributes").attrs.update({"_lazy": False, "ragged": False})
        group.create_dataset("data", data=data, chunks=chunks or data.shape)
        for i, axis in enumerate(axes):
            sub = group.create_group(f"axis-{i}")
            for key, value in axis.items():
                if key == "axis":
                    sub.create_dataset("axis", data=np.asarray(value))
                else:
                    sub.attrs[key] = value
        meta = group.create_group("metadata")
        meta.create_group("General").attrs["title"] = title
        meta.create_group("Signal").attrs["signal_type"] = ""
        for key, value in (metadata or {}).items():
            sub = meta.require_group(key)
            for k, v in value.items():
                if isinstance(v, list):
                    sub.create_dataset(f"_list_{k}", data=np.asarray(v))
                else:
                    sub.attrs[k] = v
        group.create_group("original_metadata")
    return path


def uniform(name, size, navigate, scale=1.0, offset=0.0, units="_None_"):
    return {
        "_type": "UniformDataAxis",
        "name": name,
        "size": size,
        "navigate": navigate,
        "scale": scale,
        "offset": offset,
        "units": units,
    }


@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_hyperspy_files_match_expected(name, opened):
    expected = EXPECTED[name]
    da = xsignal.open(SHARED_HSPY / name)
    opened.append(da)
    assert da.signal.is_lazy
    assert da.shape == tuple(expected["shape"])
    assert da.dtype == np.dtype(expected["dtype"])
    assert da.attrs["title"] == expected["title"]
    values = da.values
    assert values.sum() == pytest.approx(expected["sum"], rel=1e-9)
    assert values.ravel()[0] == pytest.approx(expected["first"])
    assert values.ravel()[-1] == pytest.approx(expected["last"])
    axes = expected["axes_array_order"]
    sig = tuple(da.dims[i] for i, a in enumerate(axes) if not a["navigate"])
    assert da.signal.signal_dims == sig
    for dim, axis in zip(da.dims, axes):
        if axis["name"] not in ("<undefined>", None):
            assert dim == axis["name"]
        coord = da.coords[dim]
        want = axis["offset"] + axis["scale"] * np.arange(axis["size"])
        np.testing.assert_allclose(coord.values, want)
        if axis["units"] not in ("<undefined>", None):
            assert coord.attrs["units"] == axis["units"]
    if expected.get("saved_with"):  # the file's chunks are the dask chunks
        assert tuple(max(c) for c in da.chunks) == tuple(expected["saved_with"])
    metadata = json.loads(da.attrs["metadata"])
    assert metadata["General"]["title"] == expected["title"]


@needs_shared
def test_shared_file_through_the_xarray_backend():
    path = SHARED_HSPY / "diffraction_4d.hspy"
    with xr.open_dataarray(path, engine="hspy", chunks={}) as da:
        assert da.chunks == ((2, 2, 1), (4,), (16,), (16,))
        assert da.signal.signal_dims == ("ky", "kx")
        assert float(da.sum()) == EXPECTED["diffraction_4d.hspy"]["sum"]
    with xr.open_dataarray(path, engine="hspy") as eager:
        sub = eager.isel(y=[0, 3], kx=slice(None, None, 2)).values
        with h5py.File(path) as f:
            raw = f["Experiments/4D-STEM/data"][()]
        np.testing.assert_array_equal(sub, raw[[0, 3]][..., ::2])


@needs_shared
def test_opening_a_hyperspy_file_reads_no_data(opened):
    with raise_if_dask_computes():
        da = xsignal.open(SHARED_HSPY / "spectrum_image.hspy")
        da.sum("Energy loss")
    opened.append(da)


@pytest.mark.parametrize(
    "dtype", ["int8", "uint16", "int32", "int64", "float32", "float64", "complex64"]
)
def test_dtypes(tmp_path, dtype, opened):
    rng = np.random.default_rng(1)
    data = (rng.random((3, 4, 5)) * 100).astype(dtype)
    if np.dtype(dtype).kind == "c":
        data = data + 1j * data[::-1]
    axes = [uniform("y", 3, True), uniform("x", 4, True), uniform("E", 5, False)]
    path = write_hspy(tmp_path / "a.hspy", data, axes, chunks=(1, 4, 5))
    da = xsignal.open(path)
    opened.append(da)
    assert da.dtype == data.dtype
    assert da.chunks == ((1, 1, 1), (4,), (5,))
    np.testing.assert_array_equal(da.values, data)


def test_four_navigation_dims_and_reversed_axes_manager_order(tmp_path, opened):
    data = np.arange(2 * 3 * 4 * 5 * 6 * 7, dtype="int16").reshape(2, 3, 4, 5, 6, 7)
    names = ["t", "z", "y", "x", "ky", "kx"]
    axes = [
        uniform(n, s, i < 4, scale=0.5 * (i + 1), offset=i, units="nm")
        for i, (n, s) in enumerate(zip(names, data.shape))
    ]
    da = xsignal.open(write_hspy(tmp_path / "a.hspy", data, axes))
    opened.append(da)
    assert da.dims == tuple(names)  # array order, whatever HyperSpy's display order
    assert da.signal.navigation_dims == ("t", "z", "y", "x")
    assert da.signal.signal_dims == ("ky", "kx")
    np.testing.assert_allclose(da["x"].values, 3 + 2.0 * np.arange(5))
    np.testing.assert_array_equal(da.values, data)


def test_base_signal_without_signal_axes(tmp_path, opened):
    data = np.arange(12.0).reshape(3, 4)
    axes = [uniform("_None_", 3, True), uniform("_None_", 4, True)]
    da = xsignal.open(write_hspy(tmp_path / "a.hspy", data, axes, title="nav only"))
    opened.append(da)
    assert da.dims == ("dim_0", "dim_1")
    assert da.signal.signal_dims == ()
    assert da.signal.navigation_dims == ("dim_0", "dim_1")
    assert da.attrs["title"] == "nav only"
    assert da.name == "nav only"


def test_non_uniform_and_functional_axes(tmp_path, opened):
    data = np.arange(8.0).reshape(2, 4)
    axes = [
        uniform("t", 2, True, units="s"),
        {
            "_type": "DataAxis",
            "name": "E",
            "navigate": False,
            "units": "eV",
            "axis": [1.0, 2.0, 4.0, 8.0],
        },
    ]
    da = xsignal.open(write_hspy(tmp_path / "a.hspy", data, axes))
    opened.append(da)
    np.testing.assert_array_equal(da["E"].values, [1.0, 2.0, 4.0, 8.0])
    assert da["E"].attrs["units"] == "eV"

    axes = [
        {
            "_type": "FunctionalDataAxis",
            "name": "q",
            "navigate": False,
            "size": 4,
            "expression": "a*x**2 + sqrt(x)",
            "a": 2.0,
            "units": "_None_",
        }
    ]
    da = xsignal.open(write_hspy(tmp_path / "f.hspy", np.zeros(4), axes))
    opened.append(da)
    x = np.arange(4.0)
    np.testing.assert_allclose(da["q"].values, 2 * x**2 + np.sqrt(x))
    assert "units" not in da["q"].attrs


def test_metadata_lists_and_nested_groups_become_json(tmp_path, opened):
    meta = {"Acquisition": {"beam_energy": 200.0, "detectors": [1, 2, 3]}}
    path = write_hspy(
        tmp_path / "a.hspy",
        np.zeros((2, 3)),
        [uniform("x", 2, True), uniform("e", 3, False)],
        title="m",
        metadata=meta,
    )
    da = xsignal.open(path)
    opened.append(da)
    metadata = json.loads(da.attrs["metadata"])
    assert metadata["Acquisition"] == {"beam_energy": 200.0, "detectors": [1, 2, 3]}


def two_signals(path: Path) -> Path:
    """A .hspy file of two experiments, "first" (zeros) and "second" (ones)."""
    write_hspy(
        path,
        np.zeros((2, 3)),
        [uniform("x", 2, True), uniform("e", 3, False)],
        title="first",
    )
    with h5py.File(path, "a") as f:
        f.copy("Experiments/first", "Experiments/second")
        f["Experiments/second/data"][...] = 1
    return path


def test_several_signals_need_variable(tmp_path, opened):
    path = two_signals(tmp_path / "a.hspy")
    with pytest.raises(ValueError, match=r"several signals \['first', 'second'\]"):
        xsignal.open(path)
    second = xsignal.open(path, variable="second")
    opened.append(second)
    assert float(second.sum()) == 6.0
    with pytest.raises(ValueError, match="no signal 'third'"):
        xsignal.open(path, variable="third")


def test_hyperspy_file_saves_and_reopens_with_marking(tmp_path, opened):
    data = np.arange(24.0).reshape(2, 3, 4)
    axes = [uniform("y", 2, True), uniform("kx", 3, False), uniform("ky", 4, False)]
    da = xsignal.open(write_hspy(tmp_path / "a.hspy", data, axes, title="t"))
    opened.append(da)
    xsignal.save(da, tmp_path / "a.nc")
    back = xsignal.open(tmp_path / "a.nc")
    opened.append(back)
    assert back.signal.signal_dims == ("kx", "ky")
    xr.testing.assert_identical(back.compute(), da.compute())


def test_ragged_signals_are_refused(tmp_path):
    path = write_hspy(tmp_path / "a.hspy", np.zeros(3), [uniform("x", 3, True)])
    with h5py.File(path, "a") as f:
        f["Experiments/__unnamed__/attributes"].attrs["ragged"] = True
    with pytest.raises(NotImplementedError, match="ragged"):
        xsignal.open(path)


def test_backend_close_and_errors(tmp_path):
    data = np.arange(6.0).reshape(2, 3)
    path = write_hspy(
        tmp_path / "a.hspy", data, [uniform("x", 2, True), uniform("e", 3, False)]
    )
    da = xr.open_dataarray(path, engine="hspy", chunks={})
    np.testing.assert_array_equal(da.values, data)
    xsignal.close_file(da)
    with h5py.File(path, "a"):  # released
        pass
    xsignal.save(xr.DataArray(data), tmp_path / "b.nc")
    with pytest.raises(ValueError, match="not a HyperSpy file"):
        xr.open_dataarray(tmp_path / "b.nc", engine="hspy")
    assert xr.backends.list_engines()["hspy"].guess_can_open(path)


def test_a_functional_axis_that_explodes_is_refused_quickly(tmp_path, opened):
    """A crafted expression neither hangs (pytest-timeout would stop it) nor
    raises: a warning, no coordinate."""
    axis = {"_type": "FunctionalDataAxis", "name": "e", "size": 3, "navigate": False}
    axis["expression"] = "9**9**9"
    path = write_hspy(tmp_path / "a.hspy", np.zeros(3), [axis])
    with pytest.warns(UserWarning, match="cannot evaluate"):
        da = xsignal.open(path)
    opened.append(da)
    assert "e" not in da.coords


@pytest.mark.parametrize("name", ["nav.hspy", "nav.zspy"])
@pytest.mark.parametrize("dims", [("y", "x"), ("x",), ("t", "y", "x")])
def test_results_without_signal_dims_are_images_for_hyperspy(tmp_path, name, dims):
    """A navigator, a virtual image or a map of scalars: HyperSpy (here
    rosettasciio's own reader) gets the image of its last two dims (a
    spectrum for one), xsignal reads back the array with no signal dims."""
    from rsciio.hspy import file_reader as read_hspy
    from rsciio.zspy import file_reader as read_zspy

    rng = np.random.default_rng(0)
    shape = {"t": 2, "y": 4, "x": 3}
    si = xr.DataArray(
        rng.random((*(shape[d] for d in dims), 8)).astype("f4"),
        dims=(*dims, "energy"),
        coords={d: np.arange(shape[d]) * 0.5 for d in dims},
        attrs={"title": "scan"},
    )
    image = si.signal.navigator()
    assert image.signal.signal_dims == ()
    xsignal.save(image, tmp_path / name)
    back = xsignal.open(tmp_path / name, lazy=False)
    xr.testing.assert_identical(back, image)
    read = read_hspy if name.endswith(".hspy") else read_zspy
    (signal,) = read(str(tmp_path / name))
    flags = [axis["navigate"] for axis in signal["axes"]]
    n_signal = min(2, len(dims))
    assert flags == [True] * (len(dims) - n_signal) + [False] * n_signal
    np.testing.assert_allclose(signal["data"], image.values)


def test_a_file_of_several_signals_opens_as_a_tree(tmp_path):
    """xr.open_datatree(engine="xsignal"): one node per signal, each as
    xsignal.open(variable=...) gives it; a file of one signal is the root."""
    path = two_signals(tmp_path / "a.hspy")
    tree = xr.open_datatree(path, engine="xsignal", chunks={})
    assert set(tree.children) == {"first", "second"}
    for name in ("first", "second"):
        node = tree[name].to_dataset()
        (var,) = node.data_vars.values()
        alone = xsignal.open(path, variable=name)
        assert var.chunks == alone.chunks
        xr.testing.assert_identical(var.compute(), alone.compute())
        xsignal.close_file(alone)
    assert float(tree["second"].to_dataset().to_dataarray().sum()) == 6.0
    tree.close()
    xsignal.save(xsignal.open(path, variable="first", lazy=False), tmp_path / "b.hspy")
    single = xr.open_datatree(tmp_path / "b.hspy", engine="xsignal")
    assert not single.children and len(single.data_vars) == 1
    single.close()


def test_a_zspy_with_markers_opens(opened):
    """HyperSpy's markers are object arrays that zarr 3 cannot open; they
    stopped the whole metadata walk (and the open). The data and the rest
    of the metadata are read, the markers' arrays noted."""
    from pathlib import Path

    path = (
        Path(__file__).parent
        / "data"
        / "rosetta"
        / "signal2d_20x10x10-ragged_markers.zspy"
    )
    da = xsignal.open(path)
    opened.append(da)
    assert da.shape == (20, 10, 10) and da.signal.signal_dims == (
        da.dims[1],
        da.dims[2],
    )
    markers = json.loads(da.attrs["metadata"])["Markers"]["Points"]
    assert markers["kwargs"]["offsets"] == "<an array zarr cannot read (object dtype)>"
    assert int(da.sum()) == 1999000
