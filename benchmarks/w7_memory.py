"""W7 memory: each decomposition of the 4 GiB L file, peak resident memory.

Each algorithm (and the raw Gram+eigh) runs in its own process, one run,
from opening the file to computed loadings; peak RSS from ``getrusage``.
The L file takes minutes per algorithm: it runs only when asked
(``--only W7`` or ``--full``); ``--quick`` runs the same on a small file.
"""

from __future__ import annotations

from benchmarks.common import Context, Row
from benchmarks.decomposition import memory_rows


def run(ctx: Context) -> list[Row]:
    if not (ctx.quick or ctx.full):
        ctx.notes.append("W7 (4 GiB file, minutes) skipped: ask with --only W7")
        return []
    return memory_rows(ctx, "L")
