"""W8 save: write the M file lazily to a chunked file, vs a raw h5py chunk loop.

Both read the M file chunk by chunk and write an uncompressed file with the
same chunks; xsignal goes through ``xsignal.open`` + ``xsignal.save``
(netCDF4 via xarray's h5netcdf engine, temp file + rename). HyperSpy: lazy
load of the ``.hspy`` copy, ``save`` uncompressed. Peak memory is the
resident-set growth during one more run, sampled every few milliseconds.
"""

from __future__ import annotations

import tempfile
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
    peak_growth_mib,
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
            row.peak_mib = peak_growth_mib(tools[row.tool])
            row.extra = "uncompressed, same chunks; peak = RSS growth"
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
