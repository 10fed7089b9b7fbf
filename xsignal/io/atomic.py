"""Putting a finished file or store in place, and finding what killed saves left.

A local save writes to a hidden sibling of the target named
``.<target name>.<pid>-<random>.xsignal-tmp`` and only then moves it into
place:

- :func:`place_new` (``overwrite=False``) never replaces anything, even
  when another process creates the target meanwhile: a file is hard-linked
  to its name (which fails if the name exists) and a folder renamed onto an
  empty folder created exclusively for it;
- :func:`replace` (``overwrite=True``) renames over the target; a folder
  (a zarr store) and its replacement swap places in one atomic exchange
  where the system has one (Linux), else the old folder is set aside
  first and removed once the new one is in place; a replaced file's
  permissions (and owner, where allowed) are kept.

A save killed before it ends leaves its temporary behind: :func:`leftovers`
finds those whose process is gone, :func:`clean` removes them (``xsignal
clean DIR`` on the command line), except an old folder set aside whose
target is missing (the save was killed between its two renames): that is
the only copy, and it is put back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".xsignal-tmp"
# .<name>.<pid>-<8 hex>[.store|.old].xsignal-tmp; before pids were in the
# name: .<name>.<8 hex>[.old].xsignal-tmp
_TMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{8}(?P<kind>\.store|\.old)?"
    + re.escape(TMP_SUFFIX)
    + "$"
)
STALE_SECONDS = 3600  # temporaries without a pid count as left after this


def temporary(target: Path, kind: str = "") -> Path:
    """A new temporary sibling of ``target`` (``kind``: "", "store", "old")."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}" + (f".{kind}" if kind else "")
    return target.with_name(f".{target.name}.{tag}{TMP_SUFFIX}")


def check_target(
    path: str | os.PathLike[str], overwrite: bool, *, folder: bool
) -> Path:
    """The target of a local save, refused early when it cannot be written:
    an existing path (also a dangling symbolic link) without ``overwrite``,
    a missing parent folder, a file name ending in a path separator."""
    text = os.fspath(path)
    if not folder and text.endswith(("/", os.sep)):
        raise ValueError(
            f"{text} ends with a path separator, which names a folder; this "
            "format is one file: name it, e.g. "
            f"{os.path.join(text.rstrip('/' + os.sep), 'data')}{Path(text).suffix}"
        )
    target = Path(text)
    if (target.exists() or target.is_symlink()) and not overwrite:
        what = "is a dangling symbolic link" if not target.exists() else "exists"
        raise FileExistsError(f"{target} {what}; pass overwrite=True to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"no folder {target.parent} to save {target.name} in")
    return target


def place_new(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, which must not exist, atomically: if
    another process creates ``target`` first, raise ``FileExistsError`` and
    leave both alone (``tmp`` is for the caller to remove)."""
    taken = FileExistsError(
        f"{target} was created by another process while this save ran; "
        "nothing was replaced"
    )
    if tmp.is_dir():
        try:
            os.mkdir(target)  # exclusive: the claim
        except FileExistsError:
            raise taken from None
        try:
            os.rename(tmp, target)  # onto the empty folder just made
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(target)
            raise
        return
    try:
        os.link(tmp, target)  # fails when the name exists, unlike rename
    except FileExistsError:
        raise taken from None
    except OSError as err:  # no hard links here (some network or FAT disks)
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if target.exists() or target.is_symlink():
            raise taken from None
        os.rename(tmp, target)
        return
    tmp.unlink()


def replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` (a file or folder) to ``target``, replacing it.

    A file over a file is one atomic rename, keeping the old file's mode
    (and owner where allowed). Where a folder is involved (zarr stores),
    the old target is first renamed aside and deleted only after the new
    one is in place; if that fails it is put back.
    """
    keep_mode(target, tmp)
    if not (tmp.is_dir() or target.is_dir()) or not target.exists():
        os.replace(tmp, target)
        return
    if exchange(tmp, target):  # no moment without a target
        remove(tmp)  # the old one now
        return
    aside = temporary(target, "old")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    remove(aside)


_RENAME_EXCHANGE = 2  # renameat2's flag (Linux 3.15+, glibc 2.28+)
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (both existing) in one atomic step;
    False where the system or the file system cannot (then nothing moved)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


@functools.cache
def _renameat2() -> Any:
    """The C library's ``renameat2``, looked up once, or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process's own symbols
    except OSError:
        return None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
    return renameat2


def keep_mode(target: Path, tmp: Path) -> None:
    """Give the new file the permissions, and owner where allowed, of the
    one it replaces."""
    with contextlib.suppress(OSError):
        if target.is_file() and tmp.is_file():
            st = target.stat()
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if hasattr(os, "chown") and (st.st_uid, st.st_gid) != _owner(tmp):
                with contextlib.suppress(OSError):
                    os.chown(tmp, st.st_uid, st.st_gid)


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def remove(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):  # (unlink says EROFS, not ENOENT, on a
        path.unlink(missing_ok=True)  # read-only file system)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:  # no such check on this platform: assume it runs
        return True
    return True


def leftovers(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Temporaries of saves that will not finish: in ``folder`` (and its
    subfolders with ``recursive``), those of processes no longer running on
    this machine, and those without a process id older than an hour.

    Examples
    --------
    >>> import tempfile
    >>> from xsignal.io.atomic import leftovers
    >>> leftovers(tempfile.mkdtemp())
    []
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    found = []
    entries = root.rglob(f"*{TMP_SUFFIX}") if recursive else root.glob(f"*{TMP_SUFFIX}")
    for entry in sorted(entries):
        match = _TMP_NAME.match(entry.name)
        if match is None or any(
            TMP_SUFFIX in p for p in entry.relative_to(root).parts[:-1]
        ):
            continue  # not ours, or inside a temporary store
        pid = match.group("pid")
        if pid is not None:
            if not _running(int(pid)):
                found.append(entry)
        elif time.time() - entry.lstat().st_mtime > STALE_SECONDS:
            found.append(entry)
    return found


def clean(
    folder: str | os.PathLike[str], *, dry_run: bool = False, recursive: bool = False
) -> list[Path]:
    """Remove (``dry_run``: only list) what killed saves left in ``folder``
    (see :func:`leftovers`); put back, instead, an old folder set aside by
    an overwrite killed before the new one took its place (see
    :func:`restores`). Returns the paths.

    Examples
    --------
    >>> import tempfile
    >>> from xsignal.io.atomic import clean
    >>> clean(tempfile.mkdtemp())
    []
    """
    found = leftovers(folder, recursive=recursive)
    if not dry_run:
        for path in found:
            settle(path)
    return found


def restores(path: Path) -> Path | None:
    """The target a leftover is to be put back as, or None (removed).

    An overwrite of a folder that cannot swap it atomically renames the old
    folder aside (``….old.xsignal-tmp``) before it renames the new one in:
    killed in between, there is no target and the old folder is the only
    copy of the data as it was before the save.
    """
    match = _TMP_NAME.match(path.name)
    if match is None or match.group("kind") != ".old":
        return None
    target = path.with_name(match.group("target"))
    return None if target.exists() or target.is_symlink() else target


def settle(path: Path) -> str:
    """Put back or remove one leftover; says which ("restored to …" or
    "removed")."""
    target = restores(path)
    if target is not None:
        os.rename(path, target)
        return f"restored to {target}"
    remove(path)
    return "removed"
