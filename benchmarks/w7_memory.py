"""W7 memory: each decomposition of the 4 GiB L file, peak resident memory.

Each algorithm runs in its own process (peak RSS from ``getrusage``), from
opening the file to computed loadings. Only without ``--quick``.
"""

from __future__ import annotations

from benchmarks.common import Context, Row
from benchmarks.decomposition import memory_rows


def run(ctx: Context) -> list[Row]:
    if ctx.quick:
        return []
    return memory_rows(ctx, "L")
