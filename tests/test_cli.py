"""The xsignal command: demo and info, run as a user would (a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from xsignal.testing import write_spectrum_image


def run(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "xsignal.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


FIGURES = [
    "quick_look.png",
    "roi_spectrum.png",
    "histogram.png",
    "scree.png",
    "factors_loadings.png",
    "model_vs_data.png",
]


def test_demo_draws_its_figures_and_removes_its_data(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "xsignal.cli",
            "demo",
            "--size",
            "tiny",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
        timeout=300,
    )
    assert "summary" in out.stdout and "navigator image" in out.stdout
    folder = tmp_path / "xsignal-demo"
    assert str(folder) in out.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(FIGURES)
    for name in FIGURES:
        assert (folder / name).stat().st_size > 10_000, name
        assert name in out.stdout
    assert "data kept" not in out.stdout  # the data file is gone


def test_demo_keeps_its_data_when_asked(tmp_path):
    out = run(
        "demo",
        "--size",
        "tiny",
        "--out",
        str(tmp_path / "d"),
        "--keep-data",
        "--no-progress",
    )
    assert (tmp_path / "d" / "spectrum_image.nc").exists()
    assert "data kept" in out.stdout


def test_info_describes_a_file(tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (4, 5, 16))
    out = run("info", str(path))
    assert "<Signal1D lazy float32, (y: 4, x: 5 | energy: 16)" in out.stdout
    assert "chunks" in out.stdout
    assert "format:          netCDF4 (HDF5)" in out.stdout
    assert "title:           synthetic spectrum image" in out.stdout
    assert "signal dims:     energy: 16 (eV) (marked)" in out.stdout
    assert "in memory:       1.25 KiB" in out.stdout  # 4*5*16*4 bytes
    assert "0.0 MiB" not in out.stdout


def uint16_counts(tmp_path):
    """A raw-counts detector file: uint16, as written by an acquisition."""
    import xsignal

    data = np.random.default_rng(0).poisson(20, (12, 10, 64)).astype("uint16")
    da = xr.DataArray(data, dims=("y", "x", "energy"), attrs={"title": "counts"})
    path = tmp_path / "counts.hspy"
    xsignal.save(da, path)
    return path


def test_decompose_raw_counts_with_defaults(tmp_path):
    import xsignal

    path = uint16_counts(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "xsignal.cli", "decompose", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
        timeout=300,
    )
    assert "uint16 data decomposed as float32" in out.stdout
    assert "10 components (the default)" in out.stdout
    result = xsignal.Decomposition.from_dataset(
        xr.open_dataset(tmp_path / "counts_decomposition.nc", engine="h5netcdf")
    )
    assert result.n_components == 10
    assert result.factors.dtype == np.float64


def test_decompose_checks_the_output_before_any_work(tmp_path):
    path = uint16_counts(tmp_path)
    missing = run(
        "decompose", str(path), "-o", str(tmp_path / "no" / "r.nc"), check=False
    )
    assert missing.returncode == 2 and "no folder" in missing.stderr
    (tmp_path / "r.nc").write_text("keep me")
    exists = run("decompose", str(path), "-o", str(tmp_path / "r.nc"), check=False)
    assert exists.returncode == 2 and "--overwrite" in exists.stderr
    assert (tmp_path / "r.nc").read_text() == "keep me"
    chosen = run(
        "decompose",
        str(path),
        "-k",
        "3",
        "--dtype",
        "float64",
        "-o",
        str(tmp_path / "r.nc"),
        "--overwrite",
        "--no-progress",
    )
    assert "note" not in chosen.stdout and "3 components" in chosen.stdout


def test_convert_with_dtype(tmp_path):
    import xsignal

    path = uint16_counts(tmp_path)
    run("convert", str(path), str(tmp_path / "f.zarr"), "--dtype", "float32")
    back = xsignal.open(tmp_path / "f.zarr")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.values, xsignal.open(path).values)


def test_info_missing_file_is_a_clear_error(tmp_path):
    out = run("info", str(tmp_path / "nope.nc"), check=False)
    assert out.returncode == 2
    assert "no such file" in out.stderr


@pytest.mark.parametrize("args", [[], ["demo", "--size", "XXL"]])
def test_bad_command_lines_exit_non_zero(args):
    out = run(*args, check=False)
    assert out.returncode != 0 and "usage" in out.stderr


def test_demo_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    out = run(
        "--workers",
        "2",
        "demo",
        "--size",
        "tiny",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert "local cluster of 2 worker processes" in out.stdout
    assert "navigator image" in out.stdout


def test_convert_hspy_to_netcdf_with_chunks(tmp_path):
    import xsignal

    source = tmp_path / "d4.hspy"
    stem = xr.DataArray(
        np.random.default_rng(0).random((5, 4, 16, 16)).astype("f4"),
        dims=("y", "x", "ky", "kx"),
        attrs={"title": "4D-STEM"},
    ).signal.set_signal_dims("ky", "kx")
    xsignal.save(stem, source, chunks={"y": 2})
    target = tmp_path / "d4.nc"
    out = run(
        "convert",
        str(source),
        str(target),
        "--chunks",
        "y=1",
        "--compression",
        "lzf",
        "--no-progress",
    )
    assert "wrote" in out.stdout
    back, original = xsignal.open(target), xsignal.open(source)
    assert back.chunks == ((1,) * 5, (4,), (16,), (16,))
    assert back.signal.signal_dims == ("ky", "kx")
    assert back.encoding["compression"] == "lzf"
    assert (back.values == original.values).all()
    again = run("convert", str(source), str(target), check=False)
    assert again.returncode == 2 and "exists" in again.stderr


def test_convert_netcdf_to_hspy_gives_hyperspy_layout(tmp_path):
    import h5py

    import xsignal

    source = write_spectrum_image(tmp_path / "in.nc", (4, 5, 16))
    out = run("convert", str(source), str(tmp_path / "out.hspy"), "--no-progress")
    assert "wrote" in out.stdout
    with h5py.File(tmp_path / "out.hspy") as f:
        assert f.attrs["file_format"] == "HyperSpy"
    back = xsignal.open(tmp_path / "out.hspy")
    assert back.encoding["format"] == "HyperSpy .hspy (HDF5)"
    assert back.signal.signal_dims == ("energy",)
    assert back.coords["energy"].attrs["units"] == "eV"
    np.testing.assert_array_equal(back.values, xsignal.open(source).values)


def test_convert_refuses_an_unknown_extension_before_reading(tmp_path):
    source = write_spectrum_image(tmp_path / "in.nc", (4, 5, 16))
    out = run("convert", str(source), str(tmp_path / "out.tif"), check=False)
    assert out.returncode == 2 and ".hspy" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nc"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "missing.hspy", "out.nc"], "no such file"),
        (["convert", "IN", "out.nc", "--chunks", "y4"], "dim=size"),
    ],
)
def test_convert_bad_input_is_one_line(tmp_path, args, message):
    source = write_spectrum_image(tmp_path / "in.nc", (4, 5, 16))
    args = [str(source) if a == "IN" else a for a in args]
    out = run(*args, check=False)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["convert", "IN", "IN/inside.nc"],
        ["convert", "IN", "IN/c/inside.zarr", "--overwrite"],
        ["decompose", "IN", "-o", "IN/dec.nc"],
    ],
)
def test_an_output_inside_the_input_store_is_refused_before_any_work(tmp_path, args):
    import xsignal

    source = write_spectrum_image(tmp_path / "in.nc", (4, 5, 16))
    store = tmp_path / "in.zarr"
    xsignal.save(xsignal.open(source), store)
    before = sorted(p.name for p in store.rglob("*"))
    out = run(*[a.replace("IN", str(store)) for a in args], check=False)
    assert out.returncode == 2, out.stderr
    assert f"inside the input {store}" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in store.rglob("*")) == before


def test_info_on_a_file_it_does_not_read_names_what_it_reads(tmp_path):
    notes = tmp_path / "notes.py"
    notes.write_text("print(1)\n")
    out = run("info", str(notes), check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    for named in ("zarr", ".zspy", ".hspy", "netCDF4", "xsignal[formats]"):
        assert named in out.stderr


def test_a_detector_file_without_the_formats_extra_is_one_line(tmp_path):
    """rosettasciio made unimportable in the child, as if not installed."""
    (tmp_path / "stem.blo").write_bytes(b"\0" * 64)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['rsciio'] = None; from xsignal.cli import "
            "main; sys.exit(main(sys.argv[1:]))",
            "info",
            str(tmp_path / "stem.blo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert 'pip install "xsignal[formats]"' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_decompose_with_a_mask_file_and_a_scree_plot(tmp_path):
    import numpy as np
    import xarray as xr

    import xsignal

    data = write_spectrum_image(tmp_path / "si.nc", (8, 6, 32), rank=2)
    mask = xr.DataArray(np.zeros((8, 6), bool), dims=("y", "x"), name="mask")
    mask[0, :3] = True
    xsignal.save(mask, tmp_path / "mask.nc")
    out = tmp_path / "svd.nc"
    run(
        "decompose",
        str(data),
        "-k",
        "2",
        "-o",
        str(out),
        "--mask",
        str(tmp_path / "mask.nc"),
        "--plot",
        str(tmp_path / "scree.png"),
        "--no-progress",
    )
    assert (tmp_path / "scree.png").stat().st_size > 1000
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        loadings = ds["loadings"].load()
    assert loadings.isel(y=0, x=slice(0, 3)).isnull().all()
    assert loadings.isel(y=slice(1, None)).notnull().all()


def test_decompose_to_hspy_gives_hyperspy_its_factors_and_loadings(tmp_path):
    """``-o out.hspy`` writes HyperSpy's layout (it wrote netCDF under that
    name): rosettasciio's own reader gives two signals, the factors a
    spectrum per component, the loadings an image per component."""
    pytest.importorskip("rsciio")
    from rsciio.hspy import file_reader

    import xsignal

    data = write_spectrum_image(tmp_path / "si.nc", (8, 6, 32), rank=2)
    out = tmp_path / "dec.hspy"
    done = run("decompose", str(data), "-k", "3", "-o", str(out), "--no-progress")
    assert "wrote" in done.stdout
    factors, loadings = file_reader(str(out))
    assert factors["data"].shape == (3, 32) and loadings["data"].shape == (3, 8, 6)
    assert [a["navigate"] for a in factors["axes"]] == [True, False]
    assert [a["navigate"] for a in loadings["axes"]] == [True, False, False]
    assert factors["metadata"]["General"]["title"] == "factors"
    back = xsignal.open(out, variable="loadings")
    assert back.signal.signal_dims == ("y", "x") and back.sizes["component"] == 3
    refused = run("decompose", str(data), "-o", str(tmp_path / "d.zarr"), check=False)
    assert refused.returncode == 2 and ".nc or .hspy" in refused.stderr
    assert not (tmp_path / "d.zarr").exists()
