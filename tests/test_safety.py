"""What xsignal guarantees when files change, saves race or die, and paths
lie: each case as a user (or another process) would meet it."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal import FileChangedError
from xsignal.io import atomic
from xsignal.testing import write_spectrum_image


def small(seed: int = 0) -> xr.DataArray:
    values = np.random.default_rng(seed).random((6, 5, 16), dtype="f4")
    return xr.DataArray(values, dims=("y", "x", "energy"))


# --- files that change under a lazy array ------------------------------------


@pytest.mark.parametrize("scheduler", ["threads", "processes", "sync"])
def test_a_file_rewritten_in_place_raises_instead_of_mixing_values(tmp_path, scheduler):
    """Same path, same inode (``shutil.copyfile`` writes into the old file):
    the lazy array raises a clear error naming the file."""
    path = write_spectrum_image(
        tmp_path / "a.nc", (8, 6, 32), chunks=(2, 6, 32), seed=1
    )
    other = write_spectrum_image(
        tmp_path / "b.nc", (8, 6, 32), chunks=(2, 6, 32), seed=2
    )
    da = xsignal.open(path)
    first = da.sum("energy").compute(scheduler=scheduler)  # handles are open now
    inode = os.stat(path).st_ino
    time.sleep(0.01)
    shutil.copyfile(other, path)
    assert os.stat(path).st_ino == inode  # rewritten in place
    with pytest.raises(FileChangedError, match=r"a\.nc was replaced or rewritten"):
        da.sum("energy").compute(scheduler=scheduler)
    again = xsignal.open(path)  # opened anew: the new values
    assert not np.allclose(again.sum("energy").values, first.values)
    xsignal.close_file(da)
    xsignal.close_file(again)


def test_a_removed_file_says_so(tmp_path):
    path = write_spectrum_image(tmp_path / "a.nc", (4, 3, 8), chunks=(2, 3, 8))
    da = xsignal.open(path)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match=r"a\.nc no longer exists"):
        da.values  # noqa: B018


# --- saves that race ----------------------------------------------------------

RACER = """
import sys, time, numpy as np, xarray as xr, xsignal
target, go, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
da = xr.DataArray(np.full((64, 32, 256), seed, "f4"), dims=("y", "x", "e"))
while not __import__("os").path.exists(go):
    time.sleep(0.001)
try:
    xsignal.save(da, target, compression=None)
except FileExistsError:
    print("exists")
else:
    print("saved")
"""


@pytest.mark.parametrize("name", ["race.nc", "race.zarr"])
def test_two_processes_saving_to_one_new_path_exactly_one_wins(tmp_path, name):
    target, go = tmp_path / name, tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(target), str(go), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    time.sleep(1.0)  # both started and waiting
    go.touch()
    outcomes = sorted(r.communicate(timeout=60)[0].strip() for r in racers)
    assert outcomes == ["exists", "saved"]
    value = float(xsignal.open(target, lazy=False).mean())
    assert value in (1.0, 2.0)  # one whole result, not a mix
    assert atomic.leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "go"])


@pytest.mark.parametrize("folder", [False, True])
def test_a_path_created_during_the_save_is_never_replaced(tmp_path, folder):
    """The exclusive placement itself: another process made the name
    between the early check and the end of the write."""
    target = tmp_path / ("t.zarr" if folder else "t.nc")
    tmp = atomic.temporary(target)
    if folder:
        tmp.mkdir()
        (tmp / "zarr.json").write_text("{}")
        target.mkdir()
        (target / "theirs").write_text("theirs")
    else:
        tmp.write_text("ours")
        target.write_text("theirs")
    with pytest.raises(FileExistsError, match="created by another process"):
        atomic.place_new(tmp, target)
    mine = target / "theirs" if folder else target
    assert mine.read_text() == "theirs"


def test_paths_that_name_a_folder_or_a_dangling_link(tmp_path):
    da = small()
    with pytest.raises(ValueError, match="ends with a path separator"):
        xsignal.save(da, str(tmp_path / "new.nc") + "/")
    with pytest.raises(ValueError, match="ends with a path separator"):
        xsignal.save(da, str(tmp_path / "new") + "/", format="netcdf")
    assert list(tmp_path.iterdir()) == []
    xsignal.save(da, str(tmp_path / "store.zarr") + "/")  # a store is a folder
    assert (tmp_path / "store.zarr" / "zarr.json").exists()
    link = tmp_path / "link.nc"
    link.symlink_to(tmp_path / "missing.nc")
    with pytest.raises(FileExistsError, match="dangling symbolic link"):
        xsignal.save(da, link)
    assert link.is_symlink() and not (tmp_path / "missing.nc").exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root"
)
def test_overwriting_keeps_mode_and_owner(tmp_path):
    path = tmp_path / "owned.nc"
    xsignal.save(small(1), path)
    os.chmod(path, 0o640)
    os.chown(path, 12345, 54321)
    xsignal.save(small(2), path, overwrite=True)
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 12345, 54321)


# --- saves that die -------------------------------------------------------------

SLOW_SAVE = """
import sys, time, dask.array as dsa, numpy as np, xarray as xr, xsignal

def slow(block):
    time.sleep(0.2)
    return block

data = dsa.ones((40, 8, 64), chunks=(1, 8, 64), dtype="f4").map_blocks(slow)
xsignal.save(xr.DataArray(data, dims=("y", "x", "e")), sys.argv[1])
"""


@pytest.mark.parametrize("name", ["killed.nc", "killed.zarr", "killed.zarr.zip"])
def test_clean_removes_what_a_killed_save_left(tmp_path, name, capsys):
    from xsignal.cli import main

    saver = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(tmp_path / name)])
    deadline = time.time() + 60
    while not list(tmp_path.glob("*.xsignal-tmp")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    left = list(tmp_path.glob(f".{name}.*.xsignal-tmp"))
    assert left and not (tmp_path / name).exists()
    keep = tmp_path / "notes.txt"
    keep.write_text("not a temporary")
    assert main(["clean", "--dry-run", str(tmp_path)]) == 0
    assert "would remove" in capsys.readouterr().out
    assert all(p.exists() for p in left)
    assert main(["clean", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"removed {len(left)} temporary" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_clean_keeps_the_temporaries_of_running_saves(tmp_path):
    running = atomic.temporary(tmp_path / "now.nc")  # this process: running
    running.write_bytes(b"in progress")
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f".old.nc.{int(done.stdout)}-0123abcd.xsignal-tmp"
    dead.write_bytes(b"left")
    legacy_old = tmp_path / ".legacy.nc.89abcdef.xsignal-tmp"  # no pid
    legacy_old.write_bytes(b"left")
    os.utime(legacy_old, (time.time() - 2 * 3600,) * 2)
    legacy_new = tmp_path / ".recent.nc.89abcdef.xsignal-tmp"
    legacy_new.write_bytes(b"maybe running")
    sub = tmp_path / "sub"
    sub.mkdir()
    nested = sub / dead.name
    nested.write_bytes(b"left")
    assert sorted(atomic.clean(tmp_path)) == sorted([dead, legacy_old])
    assert running.exists() and legacy_new.exists() and nested.exists()
    assert atomic.clean(tmp_path, recursive=True) == [nested]


def test_a_failing_lazy_bool_save_leaves_nothing(tmp_path):
    def boom(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 3:
            raise RuntimeError("bad block")
        return block

    base = dask.array.zeros((8, 4, 16), chunks=(1, 4, 16), dtype=bool)
    da = xr.DataArray(base.map_blocks(boom, dtype=bool), dims=("y", "x", "e"))
    for _ in range(5):  # running tasks must not recreate the temporary
        with pytest.raises(RuntimeError, match="bad block"):
            xsignal.save(da, tmp_path / "flags.nc")
        assert list(tmp_path.iterdir()) == []


# --- a full disk ------------------------------------------------------------------

FILL_DISK = """
import sys, numpy as np, xarray as xr, xsignal
target, kind, compression, dtype = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rng = np.random.default_rng(0)
if dtype == "bool":  # 16 MiB of random bits: more than 1 MiB even compressed
    values = rng.random((128, 128, 1024)) > 0.5
else:  # 2 or 4 MiB
    values = (rng.random((64, 64, 128)) * (1j if dtype[0] == "c" else 1)).astype(dtype)
da = xr.DataArray(values, dims=("y", "x", "e"))
if kind == "lazy":
    da = da.chunk({"y": 8})
try:
    xsignal.save(da, target, compression=None if compression == "none" else compression)
except OSError as err:
    print("OSError", err.errno, str(err).splitlines()[0])
else:
    print("saved")
"""


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only): writes of 2 MiB fill it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(where)]
    )
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("kind", ["memory", "lazy"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("full.nc", "f4"),
        ("full.hspy", "f4"),
        ("full.zarr", "f4"),
        # complex and boolean netCDF saves went through xarray's writer,
        # which crashed the interpreter (exit 139) on a full disk
        ("full.nc", "c8"),
        ("full.nc", "bool"),
        ("full.hspy", "bool"),
    ],
)
def test_a_full_disk_gives_a_clear_error_and_no_crash(
    tiny_disk, kind, compression, name, dtype
):
    """Uncompressed saves that cannot fit are refused before they start;
    compressed ones fail as the disk fills: an OSError naming the target,
    no file left, and the process exits normally (HDF5 left in a bad state
    used to crash it at exit)."""
    target = tiny_disk / name
    done = subprocess.run(
        [sys.executable, "-c", FILL_DISK, str(target), kind, compression, dtype],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.strip()
    assert out.startswith("OSError 28"), out + done.stderr[-2000:]
    assert str(target) in out
    if compression == "none":
        assert "not enough space" in out and "MiB free" in out
    else:
        assert "disk filled up" in out
    assert list(tiny_disk.iterdir()) == []


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only tmpfs (root only: root may write any folder it owns)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "ro"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", where])
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name", ["a.nc", "a.hspy", "a.zarr", "a.zspy", "a.zarr.zip"])
def test_a_read_only_folder_names_the_target_not_the_temporary(
    read_only_folder, name, lazy
):
    target = read_only_folder / name
    da = small().chunk({"y": 2}) if lazy else small()
    with pytest.raises(OSError, match="Read-only file system") as err:
        xsignal.save(da, target)
    assert err.value.errno == errno.EROFS
    assert f"cannot save {target}" in str(err.value)
    assert "xsignal-tmp" not in str(err.value)


# --- damaged files ------------------------------------------------------------------


def _saved(tmp_path, ext: str):
    da = small().assign_coords(energy=np.linspace(1, 2, 16))
    path = tmp_path / f"good.{ext}"
    xsignal.save(da, path, compression="gzip")
    return path


def _hspy_data_path(path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        (title,) = f["Experiments"]
        return f"/Experiments/{title}"


def _relink(path, make_link) -> None:
    import h5py

    group = _hspy_data_path(path)
    with h5py.File(path, "a") as f:
        del f[f"{group}/data"]
        f[f"{group}/data"] = make_link(group)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (
            lambda p: _relink(p, lambda g: __import__("h5py").SoftLink(f"{g}/data")),
            "link loop",
        ),
        (
            lambda p: _relink(p, lambda g: __import__("h5py").SoftLink("/nowhere")),
            "dangling link",
        ),
    ],
)
def test_damaged_links_name_the_file_and_the_problem(tmp_path, damage, says):
    path = _saved(tmp_path, "hspy")
    damage(path)
    with pytest.raises(ValueError, match=says) as info:
        xsignal.open(path)
    assert str(path) in str(info.value)


def test_a_dangling_external_link_allowed_is_still_a_clear_error(tmp_path):
    import h5py

    path = _saved(tmp_path, "hspy")
    _relink(path, lambda g: h5py.ExternalLink(str(tmp_path / "gone.h5"), "/data"))
    with pytest.raises(ValueError, match="external link to .*gone.h5"):
        xsignal.open(path)
    with pytest.raises(ValueError, match=r"good\.hspy.*damaged") as info:
        xsignal.open(path, allow_external=True)
    assert "NoneType" not in str(info.value).split("[")[0]


def test_a_scale_that_is_not_a_number_names_the_axis(tmp_path):
    import h5py

    path = _saved(tmp_path, "hspy")
    group = _hspy_data_path(path)
    with h5py.File(path, "a") as f:
        f[f"{group}/axis-2"].attrs["scale"] = "wide"
    with pytest.warns(UserWarning, match=r"good\.hspy energy: its scale 'wide'"):
        da = xsignal.open(path)
    assert "energy" not in da.coords  # the data are fine; the axis is not
    np.testing.assert_allclose(da.values, small().values)
    xsignal.close_file(da)


@pytest.mark.parametrize("ext", ["nc", "hspy"])
def test_randomly_damaged_files_fail_with_errors_naming_them(tmp_path, ext):
    """Bytes overwritten at random places: opening and reading either work
    or raise a ValueError that names the file, never a raw h5py error."""
    path = _saved(tmp_path, ext)
    data = path.read_bytes()
    outcomes = {"ok": 0, "error": 0}
    for seed in range(60):
        rng = np.random.default_rng(seed)
        damaged = bytearray(data)
        start = int(rng.integers(0, len(data) - 16))
        damaged[start : start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        bad = tmp_path / f"bad{seed}.{ext}"
        bad.write_bytes(bytes(damaged))
        try:
            opened = xsignal.open(bad)
            opened.values  # noqa: B018
        except ValueError as err:
            assert str(bad) in str(err), err
            outcomes["error"] += 1
        else:
            xsignal.close_file(opened)
            outcomes["ok"] += 1
        bad.unlink()
    assert outcomes["error"] > 5  # the damage was seen


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy", "a.zarr.zip"])
def test_a_store_saved_over_raises_for_its_old_arrays(tmp_path, name):
    path = tmp_path / name
    xsignal.save(small(1), path)
    old = xsignal.open(path)
    np.testing.assert_allclose(old.values, small(1).values)
    time.sleep(0.01)
    xsignal.save(small(2), path, overwrite=True)
    with pytest.raises(FileChangedError, match="replaced or rewritten"):
        old.values  # noqa: B018
    np.testing.assert_allclose(xsignal.open(path).values, small(2).values)


@pytest.mark.parametrize("name", ["a.zarr", "a.zspy"])
def test_a_zero_chunk_length_is_refused_at_open(tmp_path, name):
    """zarr reads a chunk length of 0 in the metadata and fails with a
    ZeroDivisionError at the first read; xsignal refuses it at open."""
    path = tmp_path / name
    xsignal.save(small(), path, chunks={"y": 2})
    edited = 0
    for meta in path.rglob("*"):
        if meta.name in ("zarr.json", ".zarray", ".zmetadata"):
            text = meta.read_text()
            new = re.sub(r'("(?:chunk_shape|chunks)": \[\s*)2,', r"\g<1>0,", text)
            edited += new != text
            meta.write_text(new)
    assert edited
    with pytest.raises(ValueError, match=f"cannot read {path}: its chunk shape"):
        xsignal.open(path)


KILLED_OVERWRITE = """
import os, sys, numpy as np, xarray as xr, xsignal
from xsignal.io import atomic

atomic.exchange = lambda a, b: False  # a system without an atomic swap
rename = os.rename


def killed_between(a, b):
    rename(a, b)
    if str(b).endswith(".old.xsignal-tmp"):
        os._exit(9)  # killed once the old store is aside, before the new one is in


os.rename = killed_between
new = xr.DataArray(np.ones((4, 8)), dims=("x", "e"))
xsignal.save(new, sys.argv[1], overwrite=True)
"""


@pytest.mark.parametrize("name", ["s.zarr", "s.zspy"])
def test_clean_puts_back_the_only_copy_an_overwrite_killed_midway_left(
    tmp_path, name, capsys
):
    """An overwrite killed between setting the old store aside and moving
    the new one in leaves no target: clean restores the old store (the
    data as before the save) and removes the new one's temporary."""
    from xsignal.cli import main

    old = xr.DataArray(np.zeros((4, 8)), dims=("x", "e"))
    xsignal.save(old, tmp_path / name)
    done = subprocess.run(
        [sys.executable, "-c", KILLED_OVERWRITE, str(tmp_path / name)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0, done.stderr
    assert not (tmp_path / name).exists()
    aside = list(tmp_path.glob(f".{name}.*.old.xsignal-tmp"))
    assert len(aside) == 1 and atomic.restores(aside[0]) == tmp_path / name
    assert main(["clean", "--dry-run", str(tmp_path)]) == 0
    assert f"would restore to {tmp_path / name}" in capsys.readouterr().out
    assert main(["clean", str(tmp_path)]) == 0
    assert f"restored to {tmp_path / name}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    back = xsignal.open(tmp_path / name, lazy=False)
    np.testing.assert_array_equal(back.values, old.values)


def test_overwriting_a_store_swaps_it_in_one_step(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a").write_text("1")
    (second / "b").write_text("2")
    if not atomic.exchange(first, second):
        pytest.skip("no atomic exchange on this file system")
    assert (first / "b").exists() and (second / "a").exists()
    target = tmp_path / "s.zarr"
    xsignal.save(xr.DataArray(np.zeros((4, 8)), dims=("x", "e")), target)
    xsignal.save(xr.DataArray(np.ones((4, 8)), dims=("x", "e")), target, overwrite=True)
    assert float(xsignal.open(target, lazy=False).sum()) == 32.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "s.zarr", "second"]
