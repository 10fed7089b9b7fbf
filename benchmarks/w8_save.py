"""W8 save: write the M file lazily to a chunked file, vs a raw h5py chunk loop.

Both read the M file chunk by chunk and write an uncompressed file with the
same chunks; xsignal goes through ``xsignal.open`` + ``xsignal.save``
(netCDF4 via xarray's h5netcdf engine, temp file + rename). Peak memory is
the resident-set growth during one run, sampled every few milliseconds.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

import xsignal
from benchmarks.common import Context, Row, median_time, rss_mib


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


def peak_growth_mib(fn) -> float:
    """Largest resident-set growth (MiB) while ``fn`` runs."""
    base = rss_mib()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return peak[0] - base


def run(ctx: Context) -> list[Row]:
    src = ctx.data_file("M")
    rows = []
    with tempfile.TemporaryDirectory(dir=src.parent) as folder:
        outs = {
            "raw": Path(folder) / "raw.h5",
            "xsignal": Path(folder) / "xsignal.nc",
        }
        for tool, fn in (("raw", raw), ("xsignal", with_xsignal)):
            seconds, _ = median_time(
                lambda fn=fn, t=tool: fn(src, outs[t]), ctx.repeats
            )
            peak = peak_growth_mib(lambda fn=fn, t=tool: fn(src, outs[t]))
            rows.append(
                Row(
                    "W8",
                    tool,
                    seconds,
                    baseline=None if tool == "raw" else "raw",
                    peak_mib=peak,
                    extra="uncompressed, same chunks",
                )
            )
        with h5py.File(outs["raw"]) as a, h5py.File(outs["xsignal"]) as b:
            np.testing.assert_array_equal(a["data"][::16], b["data"][::16])
            assert a["data"].chunks == b["data"].chunks
    return rows
