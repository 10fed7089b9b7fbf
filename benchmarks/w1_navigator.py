"""W1 navigator: open the M file, sum over the signal dim, compute.

Also the same through zarr v3 copies of the file (uncompressed and zstd),
against the same raw h5py pass."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import h5py
import numpy as np
import xarray as xr

import xsignal
from benchmarks.common import (
    HYPERSPY,
    Context,
    Row,
    compare,
    hspy_file,
    rows_from,
    run_hyperspy,
)


def raw(path) -> np.ndarray:
    """The machine's limit: an h5py loop over the on-disk chunks."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        out = np.empty(dset.shape[:-1], dtype="f8")
        for sl in dset.iter_chunks():
            nav = sl[:-1]
            out[nav] = dset[sl].sum(axis=-1, dtype="f8")
        return out


def by_hand(path) -> np.ndarray:
    da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    return da.sum("energy").values


def with_xsignal(path) -> np.ndarray:
    da = xsignal.open(path)
    return da.signal.navigator().signal.compute(progress=False).values


HS_NAVIGATOR = """
def work():
    s = hs.load(ARGS["hspy"], lazy=True)
    nav = s.sum(s.axes_manager.signal_axes)
    nav.compute(show_progressbar=False)
    return np.asarray(nav.data)

seconds, result = timed(work, ARGS["repeats"])
np.save(ARGS["out"], result)
emit(seconds=seconds)
"""


FRESH = """
import json, sys, time
import numpy as np
import h5py
from xarray.namedarray.pycompat import array_type
{imports}
array_type("pint")  # xarray's import of pint (if installed) at its first index
path = sys.argv[1]
start = time.perf_counter()
{work}
print(json.dumps(time.perf_counter() - start))
"""

FRESH_RAW = FRESH.format(
    imports="from benchmarks.w1_navigator import raw",
    work="raw(path)",
)
FRESH_XSIGNAL = FRESH.format(
    imports="import xsignal",
    work=("xsignal.open(path).signal.nansum('signal').signal.compute(progress=False)"),
)


def fresh(script: str, path) -> float:
    """Seconds of the work in a new process, after its imports: what a
    script meets the first time (no warm caches of its own)."""
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def fresh_rows(path, repeats: int) -> list[Row]:
    """W1 as written (open + nansum over the signal), each run in a fresh
    process, paired with the raw loop in a fresh process."""
    pairs = [
        (fresh(FRESH_RAW, path), fresh(FRESH_XSIGNAL, path))
        for _ in range(max(3, repeats))
    ]
    raw_s = statistics.median(r for r, _ in pairs)
    ours = statistics.median(x for _, x in pairs)
    ratio = statistics.median(x / r for r, x in pairs)
    return [
        Row("W1", "raw (fresh process)", raw_s),
        Row(
            "W1",
            "xsignal open + nansum (fresh process)",
            ours,
            vs_raw=ratio,
            extra=(
                "each run in a new process, after its imports (xarray's "
                "import of pint at its first index counted as an import)"
            ),
        ),
    ]


def zarr_copy(path, compression) -> str:
    """The M file saved as a zarr v3 store (cached beside it)."""
    store = path.with_name(f"{path.stem}_{compression or 'none'}.zarr")
    if not store.exists():
        xsignal.save(xsignal.open(path), store, compression=compression)
    return store


def run(ctx: Context) -> list[Row]:
    path = ctx.data_file("M")
    plain, zstd = zarr_copy(path, None), zarr_copy(path, "zstd")
    tools = {
        "raw": lambda: raw(path),
        "xarray+dask": lambda: by_hand(path),
        "xsignal": lambda: with_xsignal(path),
        "xsignal .zarr": lambda: with_xsignal(plain),
        "xsignal .zarr zstd": lambda: with_xsignal(zstd),
    }
    measured = compare(tools, ctx.repeats)
    for tool in ("xarray+dask", "xsignal", "xsignal .zarr", "xsignal .zarr zstd"):
        np.testing.assert_allclose(
            measured[tool].result, measured["raw"].result, rtol=1e-5
        )
    rows = rows_from("W1", measured) + fresh_rows(path, ctx.repeats)
    hspy = hspy_file(ctx, path)
    out = path.with_name("w1_hyperspy.npy")
    hs = hspy and run_hyperspy(
        ctx, HS_NAVIGATOR, hspy=hspy, repeats=ctx.repeats, out=out
    )
    if hs:
        np.testing.assert_allclose(np.load(out), measured["raw"].result, rtol=1e-4)
        rows.append(Row("W1", HYPERSPY, hs["seconds"]))
    return rows
