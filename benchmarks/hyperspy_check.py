"""Check that HyperSpy 2.5 loads the ``.hspy`` and ``.zspy`` files xsignal writes.

``python -m benchmarks.hyperspy_check`` saves a set of arrays (dtypes,
uniform and non-uniform axes, several signal dims, lazy and in memory,
zip stores) with :func:`xsignal.save`, loads each with ``hs.load`` in the
HyperSpy virtualenv (``XSIGNAL_HS_PYTHON`` or ``/work/hs-venv``) and
compares values, axes (name, size, scale/offset or values, units,
navigate), title and chunks with what was saved. Prints one line per file
and exits non-zero on any mismatch. Not a test: the suite never needs
HyperSpy.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import xsignal
from benchmarks.common import Context, run_hyperspy
from xsignal.io.hyperspy import hyperspy_axes, hyperspy_order

HS_LOAD = """
import zarr
out = {}
for path in ARGS["paths"]:
    store = zarr.ZipStore(path, mode="r") if path.endswith(".zip") else path
    s = hs.load(store, lazy=True, reader="zspy" if path.endswith(".zip") else None)
    axes = []
    for ax in sorted(s.axes_manager._axes, key=lambda a: a.index_in_array):
        item = {"name": ax.name, "size": ax.size, "units": str(ax.units),
                "navigate": bool(ax.navigate)}
        if ax.is_uniform:
            item.update(scale=float(ax.scale), offset=float(ax.offset))
        else:
            item["axis"] = [float(v) for v in ax.axis]
        axes.append(item)
    data = np.asarray(s.data.compute())
    np.save(path.rstrip("/") + ".npy", data)
    out[path] = {"axes": axes, "title": s.metadata.General.title,
                 "dtype": str(data.dtype), "chunks": [max(c) for c in s.data.chunks],
                 "class": type(s).__name__}
emit(result=out)
"""


def cases() -> dict[str, xr.DataArray]:
    rng = np.random.default_rng(1)
    si = xr.DataArray(
        rng.random((6, 5, 16)).astype("f4"),
        dims=("y", "x", "energy"),
        coords={
            "y": ("y", np.arange(6) * 2.5, {"units": "nm"}),
            "x": ("x", [0.0, 1.0, 3.0, 7.0, 15.0], {"units": "um"}),
            "energy": ("energy", np.linspace(100, 200, 16), {"units": "eV"}),
        },
        attrs={"title": "EELS map", "signal_type": "EELS"},
        name="counts",
    ).signal.set_signal_dims("energy")
    stem = xr.DataArray(
        rng.integers(0, 1000, (3, 4, 8, 8)).astype("uint16"),
        dims=("y", "x", "ky", "kx"),
        coords={"kx": ("kx", np.arange(8) * 0.05, {"units": "1/nm"})},
        attrs={"title": "4D-STEM"},
    ).signal.set_signal_dims("ky", "kx")
    return {
        "float32": si,
        "float32-lazy": si.chunk({"y": 2}),
        "uint16-4d": stem,
        "complex64": (si + 1j * si).astype("complex64"),
        "bool": si > 0.5,
        "signal-first": si.transpose("energy", "y", "x"),
    }


def expected_axes(da: xr.DataArray) -> list[dict]:
    out = []
    for axis in hyperspy_axes(hyperspy_order(da)):
        item = {
            "name": axis["name"],
            "size": axis["size"],
            "units": "<undefined>" if axis["units"] == "_None_" else axis["units"],
            "navigate": axis["navigate"],
        }
        if "axis" in axis:
            item["axis"] = [float(v) for v in axis["axis"]]
        else:
            item.update(scale=axis["scale"], offset=axis["offset"])
        out.append(item)
    return out


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="xsignal-hscheck-"))
    saved: dict[str, xr.DataArray] = {}
    for name, da in cases().items():
        for ext in (".hspy", ".zspy", ".zspy.zip"):
            path = folder / f"{name}{ext}"
            xsignal.save(da, path)
            saved[str(path)] = da
    done = run_hyperspy(Context(), HS_LOAD, paths=list(saved))
    if done is None:
        print("HyperSpy 2.5 is not available (set XSIGNAL_HS_PYTHON)")
        return 2
    failures = 0
    for path, got in done["result"].items():
        da = hyperspy_order(saved[path])
        problems = []
        values = np.load(path.rstrip("/") + ".npy")
        if not np.array_equal(values, da.values):
            problems.append("values differ")
        want = expected_axes(da)
        for w, g in zip(want, got["axes"]):
            for key, value in w.items():
                if key in ("scale", "offset", "axis"):
                    same = g.get(key) is not None and np.allclose(g[key], value)
                else:
                    same = g.get(key) == value
                if not same:
                    problems.append(f"axis {w['name']} {key}: {g.get(key)} != {value}")
        if got["title"] != da.attrs.get("title", ""):
            problems.append(f"title {got['title']!r}")
        if tuple(got["chunks"]) != tuple(
            max(c) for c in (da.chunks or [(n,) for n in da.shape])
        ):
            problems.append(f"chunks {got['chunks']}")
        failures += bool(problems)
        status = "ok" if not problems else "; ".join(problems)
        print(f"{Path(path).name:28s} {got['class']:18s} {status}")
    print(json.dumps({"files": len(saved), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
