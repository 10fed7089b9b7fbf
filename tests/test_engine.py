"""Where work runs (xsignal.engine): the scheduler the user chose, no
process behind the user's back, the opt-in process route of map, and a
user function called once per pixel.

In a module of its own: other modules keep a dask.distributed client
alive for their tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal import engine
from xsignal.testing import write_spectrum_image

ROOT = Path(__file__).resolve().parents[1]


def busy_sum(s: np.ndarray, seconds: float = 0.0) -> np.ndarray:
    """The pixel's sum and the process it ran in, after holding the GIL for
    ``seconds`` (a pure-Python busy loop, as slow per-pixel code is)."""
    import os
    import time

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pass
    return np.array([float(s.sum()), os.getpid()])


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "si.nc"
    return write_spectrum_image(path, (12, 10, 32), chunks=(3, 10, 32))


def _pids(out: xr.DataArray) -> set[int]:
    return {int(p) for p in np.unique(out.values[..., 1])}


# --- the one probe ------------------------------------------------------------


def test_where_names_the_scheduler_the_user_chose():
    assert engine.where() == "threads"
    with dask.config.set(scheduler="sync"):
        assert engine.where() == "sync"
    with dask.config.set(scheduler="processes"):
        assert engine.where() == "processes"
        assert engine.pickles_tasks()
    with dask.config.set(scheduler=lambda dsk, keys, **kw: None):
        assert engine.where() == "other"
    assert engine.client() is None


def test_a_local_compute_does_not_import_distributed(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import numpy as np, xarray as xr, xsignal
        da = xr.DataArray(np.ones((8, 8, 16)), dims=("y", "x", "e")).chunk(4)
        total = da.signal.nansum("signal").signal.compute()
        assert float(total.sum()) == 1024.0
        print("distributed" in sys.modules)
        """
    )
    out = _run(script, tmp_path)
    assert out.stdout.strip() == "False", out.stderr


# --- map on the user's scheduler ------------------------------------------------


@pytest.mark.parametrize("lazy", [True, False])
def test_slow_maps_run_here_unless_asked(si_file, lazy):
    """However long a map is, it runs on dask's threads in this process:
    xsignal starts no process of its own."""
    da = xsignal.open(si_file)
    if not lazy:
        da = da.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hint on using every core
        out = xsignal.map(da, busy_sum, seconds=0.01)
    assert _pids(out) == {os.getpid()}
    np.testing.assert_allclose(out.values[..., 0], da.sum("energy"), rtol=1e-6)


@pytest.mark.parametrize("lazy", [True, False])
def test_the_function_is_called_once_per_pixel(si_file, lazy):
    calls = []
    lock = threading.Lock()

    def counted(s):
        with lock:
            calls.append(1)
        return float(s.sum())

    da = xsignal.open(si_file)
    if not lazy:
        da = da.compute()
    out = xsignal.map(da, counted).compute()
    assert len(calls) == 12 * 10
    np.testing.assert_allclose(out, da.sum("energy"), rtol=1e-6)
    calls.clear()
    one = xsignal.map(da.isel(y=3, x=4), counted)
    assert len(calls) == 1
    assert float(one) == pytest.approx(float(da.isel(y=3, x=4).sum()), rel=1e-6)


def test_a_long_per_pixel_map_says_once_how_to_use_every_core(monkeypatch):
    monkeypatch.setattr(engine, "cores", lambda: 4)
    monkeypatch.setattr(xsignal.mapping, "_HINTED", set())
    da = xr.DataArray(np.zeros((100, 100, 4)), dims=("y", "x", "e")).chunk(50)

    def slow(s):
        import time

        time.sleep(0.002)  # 10,000 pixels x 2 ms: 20 s
        return 0.0

    with pytest.warns(UserWarning, match="map_processes=True") as record:
        xsignal.map(da, slow)  # lazy: nothing more is computed
    (hint,) = [w for w in record if "cores" in str(w.message)]
    assert "\n" not in str(hint.message)
    assert hint.filename == __file__  # the user's line, not xsignal's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xsignal.map(da, slow)  # once
        with dask.config.set(scheduler="sync"):
            monkeypatch.setattr(xsignal.mapping, "_HINTED", set())
            xsignal.map(da, slow)  # the user chose where it runs


# --- the opt-in process route ---------------------------------------------------


def test_map_processes_runs_the_pixel_loops_in_worker_processes(si_file):
    da = xsignal.open(si_file)
    threaded = xsignal.map(da, busy_sum).values[..., 0]
    with xsignal.set_options(map_processes=True):
        out = xsignal.map(da, busy_sum).values
    # pixel 0 is the call that inferred the output, here; the rest elsewhere
    pids = out[..., 1].ravel()
    assert pids[0] == os.getpid() and os.getpid() not in set(pids[1:])
    np.testing.assert_array_equal(out[..., 0], threaded)


def test_worker_process_errors_name_the_pixel(si_file):
    def fails_at(s, where):
        if s.sum() == where:
            raise ValueError("bad pixel")
        return 0.0

    da = xsignal.open(si_file)
    where = float(da.isel(y=7, x=4).sum())
    with xsignal.set_options(map_processes=True):
        out = xsignal.map(da, fails_at, where=where)
        with pytest.raises(ValueError, match=r"bad pixel") as info:
            out.compute()
    assert "y=7, x=4" in str(info.value)


def test_unpicklable_functions_fail_clearly_in_processes(si_file):
    lock = threading.Lock()

    def with_lock(s):
        with lock:
            return float(s.sum())

    da = xsignal.open(si_file)
    np.testing.assert_allclose(
        xsignal.map(da, with_lock).values, da.sum("energy").values, rtol=1e-6
    )
    with xsignal.set_options(map_processes=True):
        with pytest.raises(TypeError, match="cannot be pickled"):
            xsignal.map(da, with_lock)


def test_the_option_takes_booleans_only():
    with pytest.raises(ValueError, match="map_processes"):
        xsignal.set_options(map_processes="auto")


# --- scripts as users write them ------------------------------------------------


def _script(options: str = "", guarded: bool = False) -> str:
    body = BODY.replace("OPTIONS", options)
    if not guarded:
        return SCRIPT.replace("BODY", body)
    # everything that does work under the guard: the workers import the
    # script again and must not run it
    head, defs = SCRIPT.split("def slow", 1)
    imports, work = head.split("with open", 1)
    guarded_work = "with open" + work + body
    return (
        imports
        + "def slow"
        + defs.replace("BODY", "")
        + "\nif __name__ == '__main__':\n"
        + textwrap.indent(guarded_work, "    ")
    )


def _run(script: str, folder: Path) -> subprocess.CompletedProcess:
    path = folder / "user_script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1"}
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


SCRIPT = """
import os
import time
import numpy as np
import xsignal
from xsignal.testing import write_spectrum_image

with open("runs.log", "a") as log:  # the top level, once per run
    log.write(str(os.getpid()) + "\\n")
path = write_spectrum_image("si.nc", (48, 48, 256), chunks=(8, 48, 256))

def slow(s):
    start = time.perf_counter()
    while time.perf_counter() - start < 2e-4:
        pass
    return float(s.sum())

BODY
"""

BODY = """
OPTIONS
da = xsignal.open(path)
out = da.signal.map(slow).signal.compute()
print(float(out.sum()), float(da.sum()))
"""


def test_an_unguarded_script_with_a_slow_map_runs_once_and_keeps_its_file(tmp_path):
    done = _run(_script(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "runs.log").read_text().split()) == 1
    total, expected = map(float, done.stdout.split())
    assert total == pytest.approx(expected, rel=1e-5)
    assert (tmp_path / "si.nc").stat().st_size > 48 * 48 * 256 * 4


def test_an_unguarded_script_asking_for_processes_is_refused_before_anything(
    tmp_path,
):
    done = _run(_script("xsignal.set_options(map_processes=True)"), tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError:") and "__main__" in last, done.stderr
    assert str(tmp_path / "user_script.py") in last
    assert len((tmp_path / "runs.log").read_text().split()) == 1
    assert (tmp_path / "si.nc").stat().st_size > 48 * 48 * 256 * 4


def test_a_guarded_script_gets_worker_processes(tmp_path):
    script = _script("xsignal.set_options(map_processes=True)", guarded=True)
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    total, expected = map(float, done.stdout.split())
    assert total == pytest.approx(expected, rel=1e-5)
    assert len((tmp_path / "runs.log").read_text().split()) == 1
