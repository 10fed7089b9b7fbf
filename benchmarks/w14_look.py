"""W14 look first: the navigator stored by the save's own pass, and the
first picture of a large file.

- save + navigator: the M file (``xsignal.open`` lazily) saved uncompressed
  to netCDF (on ``/dev/shm`` where there is one) with its navigator (the
  default) against the same save with ``navigator=False`` (the baseline),
  in back-to-back pairs. The navigator
  is computed from the blocks being written, so the file is read once.
- first picture: in a fresh process, after the imports, the time from
  the end of ``xsignal.open`` to a drawn ``plot()`` (Agg canvas drawn;
  the open itself is reported beside it) of the L file
  (the qL stand-in with --quick): with the navigator stored in the file
  against today's file without one (a full pass for the navigator), the
  page cache warm for both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import xsignal
from benchmarks.common import DATA_DIR, Context, Row, compare

SAVE_TARGET = 1.05
PICTURE_TARGET = 0.5  # seconds from open to the first picture


def save(src: Path, out: Path, navigator: bool) -> None:
    da = xsignal.open(src)
    try:
        xsignal.save(da, out, compression=None, overwrite=True, navigator=navigator)
    finally:
        xsignal.close_file(da)


FIRST_PICTURE = textwrap.dedent(
    """
    import json, sys, time
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xsignal
    t0 = time.perf_counter()
    da = xsignal.open(sys.argv[1])
    t1 = time.perf_counter()
    fig = da.signal.plot(progress=False)
    fig.canvas.draw()
    seconds = time.perf_counter() - t1
    nav = fig.xsignal.navigator
    print(json.dumps({"seconds": seconds, "open": t1 - t0, "total": float(nav.sum())}))
    """
)


def first_picture(path: Path) -> tuple[float, float]:
    """(seconds from open to a drawn plot, the navigator's total) in a
    fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_PICTURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["seconds"], out["total"]


def with_navigator(ctx: Context, src: Path) -> Path:
    """A copy of ``src`` saved with its navigator (written once, cached)."""
    path = DATA_DIR / (src.stem + "_navigator.nc")
    if not path.exists():
        save(src, path, navigator=True)
    return path


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    src = ctx.data_file("M")
    # in memory (tmpfs) where there is one: the disk's writeback, not the
    # navigator, would set the time otherwise
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else src.parent) as folder:
        alone, both = Path(folder) / "alone.nc", Path(folder) / "both.nc"
        measured = compare(
            {
                "raw": lambda: save(src, alone, navigator=False),
                "save + navigator": lambda: save(src, both, navigator=True),
            },
            ctx.repeats,
        )
        back = xsignal.open(both)
        try:
            stored = back.signal.navigator().values
            np.testing.assert_allclose(
                stored, xsignal.open(src).signal.navigator().values, rtol=1e-5
            )
        finally:
            xsignal.close_file(back)
    ratio = measured["save + navigator"].ratio
    rows.append(
        Row("W14 save", "save alone", measured["raw"].seconds, extra="baseline")
    )
    rows.append(
        Row(
            "W14 save",
            "save + navigator",
            measured["save + navigator"].seconds,
            vs_raw=ratio,
            extra=f"M, uncompressed netCDF; target <= {SAVE_TARGET}x the save alone",
        )
    )
    big = ctx.data_file("L")
    stored_path = with_navigator(ctx, big)
    first_picture(big)  # page cache warm for both files
    first_picture(stored_path)
    plain, quick = [], []
    for _ in range(max(1, ctx.repeats)):
        seconds, total_plain = first_picture(big)
        plain.append(seconds)
        seconds, total_stored = first_picture(stored_path)
        quick.append(seconds)
    np.testing.assert_allclose(total_stored, total_plain, rtol=1e-5)
    name = "x".join(map(str, ctx.size("L")))
    rows.append(
        Row(
            "W14 first picture",
            "plot() computing the navigator",
            float(np.median(plain)),
            extra=f"{name} float32, fresh process, open to drawn figure",
        )
    )
    rows.append(
        Row(
            "W14 first picture",
            "plot() with a stored navigator",
            float(np.median(quick)),
            vs_raw=float(np.median(quick)) / float(np.median(plain)),
            extra=f"target <= {PICTURE_TARGET} s after open; vs raw: over the "
            "full-pass plot()",
        )
    )
    meets = "meets" if ratio is not None and ratio <= SAVE_TARGET else "misses"
    fast = "meets" if float(np.median(quick)) <= PICTURE_TARGET else "misses"
    ctx.notes.append(
        f"W14 save + navigator {ratio:.2f}x the save alone ({meets} <= "
        f"{SAVE_TARGET}x); first picture {np.median(quick):.2f} s after open "
        f"({fast} <= {PICTURE_TARGET} s), against {np.median(plain):.2f} s "
        "computing the navigator"
    )
    return rows
