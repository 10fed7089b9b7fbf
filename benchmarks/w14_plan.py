"""W14 plan: ``xsignal.plan``'s peak-memory estimate against the measured peak.

Three workloads on a spectrum-image file (M with ``--quick``, the 4 GiB L
otherwise), opened in blocks of about 32 MiB (rows of the navigation):

- ``navigator``: the sum over the signal of every pixel;
- ``map``: ``da.signal.map(f, vectorized=True)`` with ``f`` keeping every
  fourth channel, doubled (a result a quarter of the data, assembled here);
- ``svd``: ``da.signal.decomposition("SVD", output_dimension=4)`` and its
  loadings (eager passes: the estimate is the largest that
  ``xsignal.engine.footprint`` made for them, as the memory check before
  each pass makes it).

Each runs in a fresh process: the estimate first (``plan(...)``, nothing
read), then the resident memory after imports and open as the baseline,
the kernel's peak (``VmHWM``) reset, the work, and the peak read again.
The measured peak is the peak minus the baseline: what the work added.
W14 wants the estimate within 2x of it.

``python -m benchmarks.w14_plan [--quick]`` prints the table; ``run(ctx)``
gives the rows to ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from benchmarks.common import Context, Row

WORKLOADS = ("navigator", "map", "svd")
BLOCK_BYTES = 32 * 2**20

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, time
    sys.path.insert(0, sys.argv[4])
    import numpy as np
    import xsignal
    from xsignal import engine
    from xsignal.plan import plan

    path, workload, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(field)

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size
            return True
        except OSError:
            return False

    def quarter(block):
        return block[..., ::4] * 2

    da = xsignal.open(path)
    da = xsignal.open(path, chunks={da.dims[0]: rows})
    n_sig = da.sizes[da.dims[-1]]
    estimates = []
    if workload == "navigator":
        lazy = da.signal.navigator()
        estimates.append(plan(lazy).peak_memory)
        work = lambda: xsignal.compute(lazy, progress=False)
    elif workload == "map":
        lazy = da.signal.map(
            quarter,
            vectorized=True,
            output_dtype=da.dtype,
            output_signal_sizes={"quarter": n_sig // 4},
        )
        estimates.append(plan(lazy).peak_memory)
        work = lambda: xsignal.compute(lazy, progress=False)
    else:
        footprint = engine.footprint

        def recorded(*args, **kwargs):
            fp = footprint(*args, **kwargs)
            estimates.append(fp.peak)
            return fp

        engine.footprint = recorded

        def work():
            dec = da.signal.decomposition(
                "SVD", output_dimension=4, progress=False
            )
            return xsignal.compute(dec.loadings, progress=False)

    gc.collect()
    base = status("VmRSS")
    was_reset = reset_peak()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    peak = status("VmHWM")
    print(json.dumps({
        "estimate": max(estimates), "measured": peak - base,
        "seconds": seconds, "reset": was_reset, "blocks": str(da.data.chunksize),
    }))
    """
)


def block_rows(path: Path, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows of the navigation per block of about ``block_bytes``."""
    import xsignal

    da = xsignal.open(path)
    try:
        row = da.dtype.itemsize * math.prod(da.shape[1:])
    finally:
        xsignal.close_file(da)
    return max(1, block_bytes // row)


def measure(path: Path, workload: str, rows: int) -> dict[str, float]:
    """One workload in a fresh process: its estimate and measured peak."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), workload, str(rows), root],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"W14 {workload} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(ctx: Context, block_bytes: int = BLOCK_BYTES) -> list[Row]:
    # M (256 MiB) for --quick, the 4 GiB L otherwise: full-size files both
    path = Context().data_file("M" if ctx.quick else "L")
    rows = block_rows(path, block_bytes)
    found: list[Row] = []
    for workload in WORKLOADS:
        m = measure(path, workload, rows)
        ratio = m["estimate"] / m["measured"] if m["measured"] > 0 else float("inf")
        ok = "yes" if 0.5 <= ratio <= 2 else "NO"
        found.append(
            Row(
                "W14",
                f"xsignal plan: {workload}",
                m["seconds"],
                peak_mib=m["measured"] / 2**20,
                extra=(
                    f"estimate {m['estimate'] / 2**20:.0f} MiB = {ratio:.2f}x the "
                    f"measured peak (within 2x: {ok}); blocks {m['blocks']}"
                    + ("" if m["reset"] else "; peak not reset (clear_refs)")
                ),
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.w14_plan")
    parser.add_argument("--quick", action="store_true", help="the M file (256 MiB)")
    parser.add_argument(
        "--block-mib", type=float, default=BLOCK_BYTES / 2**20, help="block size"
    )
    args = parser.parse_args(argv)
    ctx = Context(quick=args.quick)
    start = time.perf_counter()
    rows = run(ctx, int(args.block_mib * 2**20))
    print("| workload | measured peak MiB | seconds | notes |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r.tool} | {r.peak_mib:.0f} | {r.seconds:.2f} | {r.extra} |")
    print(f"({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
