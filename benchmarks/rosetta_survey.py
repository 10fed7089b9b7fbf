"""Read every test file of rosettasciio with xsignal and with rosettasciio, and compare.

``python benchmarks/rosetta_survey.py [--files DIR] [--only TEXT]``

The files are rosettasciio's own test data (``rsciio/tests/data``): taken
from a git mirror of rosettasciio (``--mirror``, ``$XSIGNAL_RSCIIO_MIRROR``
or ``/work/.mirror/hyperspy+rosettasciio/repo``) into a temporary folder,
or from ``--files DIR`` (a ``tests/data`` folder, or one to extract into).
Archives are unpacked next to themselves, as rosettasciio's tests do. Each
file of a format folder whose extension that format's plugin reads (plus
the few files rosettasciio's tests read with an explicit reader) is read:

- by rosettasciio, eagerly (``rsciio.<plugin>.file_reader(path)``); when
  that fails here (its ``zspy`` reader needs zarr 2), by the rosettasciio
  of HyperSpy's environment (``$XSIGNAL_HS_PYTHON`` or
  ``/work/hs-venv/bin/python``) if there is one;
- by ``xsignal.open(path, variable=...)`` for each of its signals (with
  ``reader=`` only when xsignal asks for it, naming the plugins).

and compared: values, dtype and shape; the signal dims (the axes whose
``navigate`` flag is False, every axis when the reader gives no flag:
HyperSpy's rule); each axis' name, offset/scale (or values) and units; and
that xsignal's array is lazy. One row per file, then the counts:

- ``read right``: everything matches;
- ``refused``: xsignal raised an error of its own (a ValueError,
  ImportError... raised in xsignal's code);
- ``wrong dims``: the data is right, the dims, signal dims or axes are not;
- ``wrong data``: values, dtype or shape differ (or the array is not lazy);
- ``crash``: any other exception, or one raised inside another library.

Files that rosettasciio itself cannot read (its tests' invalid files) and
files missing from the mirror are listed and not counted.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIRROR = Path(
    os.environ.get("XSIGNAL_RSCIIO_MIRROR", "/work/.mirror/hyperspy+rosettasciio/repo")
)
HS_PYTHON = Path(os.environ.get("XSIGNAL_HS_PYTHON", "/work/hs-venv/bin/python"))
DATA = "rsciio/tests/data"
STATUSES = ("read right", "refused", "wrong dims", "wrong data", "crash")
# files rosettasciio's tests read with an explicit reader, their extension
# being none of that plugin's
EXPLICIT = {"emd/py4DSTEM_size2x3x4x5.h5": "EMD"}
# files read through another one (rosettasciio's tests read that one)
PARTS = {
    "arina/test_00.h5": "arina/test_00_master.h5",
    "arina/test_00_data_000001.h5": "arina/test_00_master.h5",
}


# --- the files ----------------------------------------------------------------


def extract(mirror: Path, dest: Path) -> Path:
    """``rsciio/tests/data`` of the mirror's HEAD into ``dest`` (blobs the
    mirror lacks are left out); returns the data folder."""
    listing = subprocess.run(
        ["git", "-C", str(mirror), "ls-tree", "-r", "-z", "HEAD", DATA],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    entries = []
    for line in filter(None, listing):
        meta, name = line.split(b"\t", 1)
        entries.append((meta.split()[2].decode(), name.decode()))
    batch = subprocess.Popen(
        ["git", "-C", str(mirror), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert batch.stdin is not None and batch.stdout is not None
    missing = []
    for sha, name in entries:
        batch.stdin.write(sha.encode() + b"\n")
        batch.stdin.flush()
        header = batch.stdout.readline().split()
        if header[-1] == b"missing":
            missing.append(name)
            continue
        blob = batch.stdout.read(int(header[2]))
        batch.stdout.read(1)  # the newline after each object
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    batch.stdin.close()
    batch.wait()
    root = dest / DATA
    (root / ".missing.json").write_text(json.dumps(missing))
    return root


def unpack(root: Path) -> None:
    """Unpack each archive into ``<archive>.unpacked`` beside it."""
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        out = path.with_name(path.name + ".unpacked")
        if not path.is_file() or out.exists() or ".zspy" in name:
            continue
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                z.extractall(out)
        elif name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path, "r:gz") as t:
                t.extractall(out, filter="data")
        elif name.endswith(".gz"):
            out.mkdir()
            with gzip.open(path) as f:
                (out / path.name[:-3]).write_bytes(f.read())


@dataclass
class Item:
    path: Path
    plugin: str  # the reader rosettasciio's tests use for it

    @property
    def rel(self) -> str:
        return str(self.path).split(DATA + "/", 1)[-1]


def items(root: Path) -> Iterator[Item]:
    """The files to read: in each format's folder, those of its extensions."""
    from rsciio import IO_PLUGINS

    by_folder = {p["name"].lower(): p for p in IO_PLUGINS}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        plugin = by_folder.get(folder.name)
        if plugin is None:
            continue
        exts = {e.lower() for e in plugin["file_extensions"]}
        for path in sorted(folder.rglob("*")):
            rel = str(path.relative_to(root))
            if rel in EXPLICIT:
                yield Item(path, EXPLICIT[rel])
            elif any(p.endswith(".zspy") for p in Path(rel).parts[:-1]):
                continue  # inside a zspy store
            elif path.suffix.lower().lstrip(".") in exts:
                yield Item(path, plugin["name"])


# --- rosettasciio's reading -------------------------------------------------------


def _plain_axes(signal: dict[str, Any]) -> list[dict[str, Any]]:
    """The axis dicts with plain values (traits' Undefined as None)."""
    out = []
    for axis in signal.get("axes", []) or []:
        plain = {}
        for key in ("name", "units", "navigate", "scale", "offset", "size"):
            value = axis.get(key)
            if isinstance(value, np.generic):
                value = value.item()
            plain[key] = value if isinstance(value, str | bool | int | float) else None
        plain["index_in_array"] = axis.get("index_in_array")
        if axis.get("axis") is not None:
            plain["axis"] = np.asarray(axis["axis"])
        plain["expression"] = "expression" in axis
        out.append(plain)
    return out


def _plain(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in signals:
        data = s["data"]
        if hasattr(data, "compute"):
            data = data.compute()
        title = (s.get("metadata", {}) or {}).get("General", {}).get("title")
        out.append(
            {
                "data": np.asarray(data),
                "axes": _plain_axes(s),
                "title": title if isinstance(title, str) else None,
            }
        )
    return out


HS_READ = """
import importlib, pickle, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[3])
from rosetta_survey import _plain
from rsciio import IO_PLUGINS
api = next(p["api"] for p in IO_PLUGINS if p["name"] == sys.argv[2])
signals = importlib.import_module(api).file_reader(sys.argv[1])
sys.stdout.buffer.write(pickle.dumps(_plain(signals)))
"""


def reference(item: Item) -> tuple[list[dict[str, Any]] | None, str]:
    """rosettasciio's eager reading of ``item`` as plain dicts, and where it
    was read (or None and why not)."""
    import importlib

    from rsciio import IO_PLUGINS

    api = next(p["api"] for p in IO_PLUGINS if p["name"] == item.plugin)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _plain(importlib.import_module(api).file_reader(str(item.path))), ""
    except Exception as err:  # noqa: BLE001  (then try HyperSpy's environment)
        here = f"{type(err).__name__}: {err}"[:120]
    if not HS_PYTHON.exists():
        return None, here
    here_dir = str(Path(__file__).parent)
    done = subprocess.run(
        [str(HS_PYTHON), "-c", HS_READ, str(item.path), item.plugin, here_dir],
        capture_output=True,
        timeout=600,
    )
    if done.returncode:
        return None, here
    return pickle.loads(done.stdout), " (reference: HyperSpy's env)"


# --- xsignal's reading --------------------------------------------------------------


def _own_error(err: BaseException) -> bool:
    """An error xsignal raised on purpose: a ValueError, ImportError...
    whose last frame is in xsignal's code."""
    if not isinstance(err, ValueError | ImportError | NotImplementedError | OSError):
        return False
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}xsignal{os.sep}" in frames[-1].filename


def _open(item: Item, variable: Any) -> tuple[Any, str]:
    """``xsignal.open`` of one signal; with ``reader=`` only when xsignal
    asks for it (several plugins share the extension), and
    ``allow_external=True`` only when it asks for that (an HDF5 master
    file linking to its data files)."""
    import xsignal

    kwargs: dict[str, Any] = {}
    takes_reader = "reader" in inspect.signature(xsignal.open).parameters
    for _ in range(3):
        try:
            return xsignal.open(item.path, variable=variable, **kwargs), " ".join(
                f"{k}={v!r}" for k, v in kwargs.items()
            )
        except ValueError as err:
            text = str(err)
            if takes_reader and "reader=" in text and item.plugin in text:
                kwargs["reader"] = item.plugin
            elif "allow_external" in text and "allow_external" not in kwargs:
                kwargs["allow_external"] = True
            else:
                raise
    raise AssertionError("unreachable")


def _variables(signals: list[dict[str, Any]]) -> list[Any]:
    """The ``variable=`` for each signal: None for one, else its title when
    no other signal has it, else its index."""
    if len(signals) == 1:
        return [None]
    titles = [s["title"] for s in signals]
    return [t if t and titles.count(t) == 1 else i for i, t in enumerate(titles)]


def _native(item: Item, count: int) -> list[Any] | None:
    """For files xsignal reads itself (``.hspy``, ``.zspy``): its own names
    of the signals, in the file's order, when there are several."""
    import xsignal
    from xsignal.io.common import SeveralSignals

    if count == 1:
        return None
    try:
        xsignal.open(item.path)
    except SeveralSignals as several:
        if len(several.names) == count:
            return list(several.names)
    return None


def _units(value: Any) -> str | None:
    if not isinstance(value, str) or value in ("", "<undefined>", "Undefined"):
        return None
    return value


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        return a.shape == b.shape and all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(a.ravel(), b.ravel())
        )
    nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=nan))


def _in_array_order(
    axes: list[dict[str, Any]], shape: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    """The axis dicts in the data's order as HyperSpy takes them: the list's
    (its AxesManager ignores ``index_in_array`` in dicts), or by
    ``index_in_array`` when only that matches the data's shape."""

    def fits(order: list[dict[str, Any] | None]) -> bool:
        return all(
            a is None or a.get("size") is None or a["size"] == n
            for a, n in zip(order, shape)
        )

    listed: list[dict[str, Any] | None] = list(axes[: len(shape)])
    listed += [None] * (len(shape) - len(listed))
    if fits(listed):
        return listed
    by_index: list[dict[str, Any] | None] = [None] * len(shape)
    for i, axis in enumerate(axes):
        where = axis.get("index_in_array")
        where = i if where is None else int(where)
        if where < len(shape):
            by_index[where] = axis
    return by_index if fits(by_index) else listed


def compare(da: Any, ref: dict[str, Any]) -> tuple[str, str]:
    """(status, what differs) of xsignal's ``da`` against rosettasciio's ``ref``."""
    want = ref["data"]
    if not da.signal.is_lazy:
        return "wrong data", "not lazy"
    if tuple(da.shape) != want.shape:
        return "wrong data", f"shape {tuple(da.shape)} != {want.shape}"
    if da.dtype.newbyteorder("=") != want.dtype.newbyteorder("="):
        return "wrong data", f"dtype {da.dtype} != {want.dtype}"
    if not _same_values(np.asarray(da.values), want):
        return "wrong data", "values differ"
    axes = _in_array_order(ref["axes"], want.shape)
    flags = [a.get("navigate") if a else None for a in axes]
    if any(f is not None for f in flags):
        sig = {i for i, f in enumerate(flags) if f is False}
    else:
        sig = set(range(want.ndim))  # HyperSpy: no flags, every axis a signal axis
    got = {da.dims.index(d) for d in da.signal.signal_dims}
    if got != sig:
        names = [str(d) for d in da.dims]
        return "wrong dims", (
            f"signal dims {sorted(names[i] for i in got)} != "
            f"{sorted(names[i] for i in sig)} of {names}"
        )
    names = [a.get("name") if a else None for a in axes]
    for i, axis in enumerate(axes):
        if not axis:
            continue
        dim = da.dims[i]
        name = axis.get("name")
        if isinstance(name, str) and name and names.count(name) == 1 and dim != name:
            return "wrong dims", f"dim {dim!r} != axis name {name!r}"
        if axis.get("expression"):
            continue  # a functional axis: its values are not compared
        if "axis" in axis:
            values = np.asarray(axis["axis"], dtype=float)
        elif axis.get("scale") is not None or axis.get("offset") is not None:
            scale = axis.get("scale") or 1.0
            offset = axis.get("offset") or 0.0
            values = offset + scale * np.arange(want.shape[i])
        else:
            continue
        if dim not in da.coords:
            return "wrong dims", f"no coordinate on {dim!r}"
        coord = da.coords[dim]
        have = np.asarray(coord.values, dtype=float)
        tol = 1e-6 * max(1.0, float(np.nanmax(np.abs(values))) if values.size else 1.0)
        if have.shape != values.shape or not np.allclose(
            have, values, rtol=1e-6, atol=tol, equal_nan=True
        ):
            return "wrong dims", f"coordinate {dim!r} differs"
        if _units(coord.attrs.get("units")) != _units(axis.get("units")):
            have_units = coord.attrs.get("units")
            return "wrong dims", (
                f"units of {dim!r} {have_units!r} != {axis.get('units')!r}"
            )
    return "read right", ""


@dataclass
class Row:
    item: Item
    status: str
    detail: str = ""
    signals: int = 0
    formats: list[str] = field(default_factory=list)


def survey(item: Item) -> Row:
    import xsignal

    if item.rel in PARTS:
        return Row(item, "skipped", f"a part of {PARTS[item.rel]}, read through it")
    refs, where = reference(item)
    if refs is None:
        return Row(item, "skipped", f"rosettasciio cannot read it: {where}")
    if not refs:
        return Row(item, "skipped", "rosettasciio reads no signal")
    row = Row(item, "read right", where.strip(), len(refs))
    variables = _variables(refs)
    if item.plugin in ("HSPY", "ZSPY"):
        try:
            variables = _native(item, len(refs)) or variables
        except Exception:  # noqa: BLE001  (the read below says what)
            pass
    for ref, variable in zip(refs, variables):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                da, how = _open(item, variable)
                status, detail = compare(da, ref)
                row.formats.append(f"{da.encoding.get('format', '')} {how}".strip())
                xsignal.close_file(da)
        except Exception as err:  # noqa: BLE001  (the survey goes on)
            status = "refused" if _own_error(err) else "crash"
            detail = f"{type(err).__name__}: {err}"
        if status != "read right":
            detail = f"signal {variable!r}: {detail}" if len(refs) > 1 else detail
        if row.status == "read right" and status != "read right":
            row.status, row.detail = status, " ".join(detail.split())[:160]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, help="rosettasciio's tests/data folder")
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--only", default="", help="only files whose path has this")
    args = parser.parse_args(argv)
    logging.getLogger("rsciio").setLevel(logging.CRITICAL)
    tmp = None
    if args.files is not None and (args.files / "msa").is_dir():
        root = args.files
    else:
        if args.files is None:
            tmp = tempfile.mkdtemp(prefix="rosetta-survey-")
            dest = Path(tmp)
        else:
            dest = args.files
        print(f"extracting {DATA} from {args.mirror} into {dest}", file=sys.stderr)
        root = extract(args.mirror, dest)
    unpack(root)
    missing_file = root / ".missing.json"
    missing = json.loads(missing_file.read_text()) if missing_file.exists() else []
    counts: Counter[str] = Counter()
    by_format: dict[str, Counter[str]] = {}
    start = time.perf_counter()
    try:
        todo = [i for i in items(root) if args.only in i.rel]
        print("| status | reader | file | signals | xsignal's format | what differs |")
        print("|---|---|---|---|---|---|")
        for item in todo:
            row = survey(item)
            counts[row.status] += 1
            by_format.setdefault(item.plugin, Counter())[row.status] += 1
            formats = "; ".join(sorted(set(row.formats)))
            print(
                f"| {row.status} | {item.plugin} | {item.rel} | {row.signals} "
                f"| {formats} | {row.detail} |",
                flush=True,
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    counted = sum(counts[s] for s in STATUSES)
    print(
        f"\n{counted} files of {len(by_format)} formats read "
        f"({time.perf_counter() - start:.0f} s):"
    )
    for status in STATUSES:
        print(f"  {status:12s} {counts[status]}")
    print(
        f"  not counted: {counts['skipped']} that rosettasciio does not read, "
        f"{len(missing)} missing from the mirror {missing}"
    )
    print("\nby format (right/all):")
    print(
        "  "
        + ", ".join(
            f"{name} {c['read right']}/{sum(c[s] for s in STATUSES)}"
            for name, c in sorted(by_format.items())
            if sum(c[s] for s in STATUSES)
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
