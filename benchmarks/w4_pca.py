"""W4 PCA (incremental, streamed) of S: xsignal against raw h5py + Gram + eigh."""

from __future__ import annotations

from benchmarks.common import Context, Row
from benchmarks.decomposition import workload


def run(ctx: Context) -> list[Row]:
    return workload(ctx, "W4", "PCA")
