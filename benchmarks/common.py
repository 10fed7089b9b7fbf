"""Shared pieces of the benchmark workloads: data files, timing, memory."""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from xsignal.testing import write_spectrum_image

DATA_DIR = Path(os.environ.get("XSIGNAL_BENCH_DATA", Path(__file__).parent / ".data"))

SIZES = {
    "S": (128, 128, 1024),
    "M": (256, 256, 1024),
    "L": (1024, 1024, 1024),
    # --quick stand-ins
    "qS": (32, 32, 512),
    "qM": (64, 64, 512),
    "qL": (128, 128, 512),
}


@dataclass
class Context:
    """What every workload gets: sizes to use and how many repeats."""

    quick: bool = False
    repeats: int = 5
    hyperspy: Any = None  # path of a python with hyperspy, or None
    notes: list[str] = field(default_factory=list)

    def size(self, name: str) -> tuple[int, ...]:
        return SIZES[("q" + name) if self.quick else name]

    def data_file(self, name: str) -> Path:
        """The synthetic benchmark file of size ``name`` (written once, cached)."""
        shape = self.size(name)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = DATA_DIR / ("si_" + "x".join(map(str, shape)) + ".nc")
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            write_spectrum_image(tmp, shape, rank=4, seed=0)
            tmp.rename(path)
        return path


@dataclass
class Row:
    """One measured line of the report."""

    workload: str
    tool: str
    seconds: float
    baseline: str | None = None
    peak_mib: float | None = None
    extra: str = ""


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``repeats`` runs (after one warm-up)."""
    result = fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20
