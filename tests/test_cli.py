"""The xsignal command: demo and info, run as a user would (a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xsignal.testing import write_spectrum_image


def run(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "xsignal.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def test_demo_runs_the_pipeline_and_prints_a_summary(tmp_path):
    out = run("demo", "--size", "tiny", "--dir", str(tmp_path), "--no-progress")
    assert "summary" in out.stdout
    assert "navigator image" in out.stdout
    assert (tmp_path / "spectrum_image.nc").exists()


def test_info_describes_a_file(tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (4, 5, 16))
    out = run("info", str(path))
    assert "<Signal1D lazy float32, (y: 4, x: 5 | energy: 16)" in out.stdout
    assert "chunks" in out.stdout


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
        "--dir",
        str(tmp_path),
        "--no-progress",
    )
    assert "local cluster of 2 worker processes" in out.stdout
    assert "navigator image" in out.stdout
