"""W8 save: write the M file lazily to a chunked file, vs a raw h5py chunk loop.

Both read the M file chunk by chunk and write an uncompressed file with the
same chunks; xsignal goes through ``xsignal.open`` + ``xsignal.save``
(netCDF4 via xarray's h5netcdf engine, temp file + rename). HyperSpy: lazy
load of the ``.hspy`` copy, ``save`` uncompressed. Peak memory is the
peak resident memory of one more run in a fresh process, above its
resident memory after the imports (``VmHWM``; HyperSpy's row: the process's
whole peak).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import h5py
import numpy as np

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


def raw(src: Path, out: Path) -> None:
    """The machine's limit: copy chunk by chunk with h5py."""
    with h5py.File(src, "r") as f, h5py.File(out, "w") as g:
        dset = f["data"]
        target = g.create_dataset("data", dset.shape, dset.dtype, chunks=dset.chunks)
        for sl in dset.iter_chunks():
            target[sl] = dset[sl]


def with_xsignal(src: Path, out: Path) -> None:
    da = xsignal.open(src)
    try:
        xsignal.save(da, out, compression=None, overwrite=True)
    finally:
        xsignal.close_file(da)


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from benchmarks import w8_save
    from benchmarks.common import peak_rss_mib, rss_mib
    base = rss_mib()
    getattr(w8_save, sys.argv[2])(Path(sys.argv[3]), Path(sys.argv[4]))
    print(json.dumps({"peak": peak_rss_mib() - base}))
    """
)


def peak_above_imports_mib(tool: str, src: Path, out: Path) -> float:
    """Peak resident memory of ``tool`` in a fresh process, above its imports."""
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, root, tool, str(src), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["peak"]


HS_SAVE = """
def work():
    s = hs.load(ARGS["hspy"], lazy=True)
    s.save(ARGS["out"], compression=None, overwrite=True, show_progressbar=False)

seconds, _ = timed(work, ARGS["repeats"])
emit(seconds=seconds, peak=peak_rss_mib())
"""


def run(ctx: Context) -> list[Row]:
    src = ctx.data_file("M")
    with tempfile.TemporaryDirectory(dir=src.parent) as folder:
        outs = {
            "raw": Path(folder) / "raw.h5",
            "xsignal": Path(folder) / "xsignal.nc",
        }
        fns = {"raw": raw, "xsignal": with_xsignal}
        tools = {t: (lambda t=t: fns[t](src, outs[t])) for t in fns}
        measured = compare(tools, ctx.repeats)
        rows = rows_from("W8", measured)
        for row in rows:
            row.peak_mib = peak_above_imports_mib(
                "with_xsignal" if row.tool == "xsignal" else row.tool,
                src,
                outs[row.tool],
            )
            row.extra = "uncompressed, same chunks; peak above imports"
        with h5py.File(outs["raw"]) as a, h5py.File(outs["xsignal"]) as b:
            np.testing.assert_array_equal(a["data"][::16], b["data"][::16])
            assert a["data"].chunks == b["data"].chunks
        hspy = hspy_file(ctx, src)
        hs = hspy and run_hyperspy(
            ctx,
            HS_SAVE,
            hspy=hspy,
            out=Path(folder) / "hyperspy.hspy",
            repeats=ctx.repeats,
        )
        if hs:
            note = "lazy load + save, uncompressed; peak = process max RSS"
            rows.append(
                Row("W8", HYPERSPY, hs["seconds"], peak_mib=hs["peak"], extra=note)
            )
    return rows
