"""Shared pieces of the decomposition workloads W3-W7.

raw: the machine's limit, an h5py loop over the on-disk chunks accumulating
``X^T X`` (float32 products, float64 sums) and ``eigh`` of it. xsignal: the
file opened lazily, then ``xsignal.decomposition``. Accuracy: the largest
principal angle between the recovered and the true factor spans.
HyperSpy (optional): the same data saved as ``.hspy``, loaded lazily, in a
subprocess of HyperSpy's python (skipped when missing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.linalg
from scipy.linalg import subspace_angles
from threadpoolctl import threadpool_limits

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
from xsignal.testing import spectrum_image

K = 4
ALGORITHMS = ("SVD", "PCA", "ORPCA", "ORNMF")
FAST = ("SVD", "PCA")  # HyperSpy runs these in seconds, ORPCA/ORNMF in many minutes


def true_factors(shape: tuple[int, ...]) -> np.ndarray:
    """``(features, k)`` true factors of the benchmark files (model, no noise)."""
    _, factors, _ = spectrum_image((2, 2, shape[-1]), rank=K, seed=0, noise=None)
    return factors.values.T


def degrees(found: np.ndarray, truth: np.ndarray) -> float:
    """Largest principal angle between two spans (columns), in degrees."""
    return float(np.degrees(subspace_angles(found, truth).max()))


def raw_svd(path: Path, k: int = K) -> np.ndarray:
    """h5py read + Gram + eigh: the top-k right singular vectors."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        m = dset.shape[-1]
        gram = np.zeros((m, m))
        for sl in dset.iter_chunks():
            x = dset[sl].reshape(-1, m)
            gram += x.T @ x
    # one BLAS thread for eigh, as xsignal does: on a shared 2-core machine
    # threaded LAPACK is up to 30x slower, which would flatter the ratios
    with threadpool_limits(1, user_api="blas"):
        _, vecs = scipy.linalg.eigh(gram, subset_by_index=[m - k, m - 1])
    return vecs


def _shape(path: Path) -> tuple[int, ...]:
    with h5py.File(path, "r") as f:
        return f["data"].shape


def xsignal_run(path: Path, algorithm: str, **kwargs) -> xsignal.Decomposition:
    return xsignal.decomposition(
        xsignal.open(path), algorithm, K, progress=False, **kwargs
    )


def with_loadings(path: Path, algorithm: str) -> xsignal.Decomposition:
    """The decomposition with its (lazy for SVD, PCA) loadings computed."""
    result = xsignal_run(path, algorithm)
    xsignal.compute(result.loadings, progress=False)
    return result


def workload(ctx: Context, name: str, algorithm: str, size: str = "S") -> list[Row]:
    """Rows for one algorithm on one file: raw SVD, xsignal, HyperSpy."""
    path = ctx.data_file(size)
    truth = true_factors(_shape(path))
    tools = {
        "raw": lambda: raw_svd(path),
        "xsignal": lambda: xsignal_run(path, algorithm),
    }
    if algorithm in FAST:  # loadings are lazy: add their compute
        tools["xsignal+loadings"] = lambda: with_loadings(path, algorithm)
    slow = algorithm not in FAST
    repeats = max(1, ctx.repeats // 2) if slow else ctx.repeats
    measured = compare(tools, repeats, warmup=not slow)
    rows = rows_from(name, measured, raw="Gram+eigh", **{"xsignal+loadings": ""})
    for row in rows:
        result = measured[row.tool].result
        found = result if row.tool == "raw" else result.factors.values.T
        row.degrees = degrees(found, truth)
        if row.tool == "xsignal+loadings":
            row.extra = "loadings computed"
        if algorithm == "ORNMF" and row.tool == "xsignal":
            nonneg = min(float(result.factors.min()), float(result.loadings.min()))
            row.extra = "non-negative" if nonneg >= 0 else "NEGATIVE values"
    rows.extend(hyperspy_rows(ctx, name, path, algorithm, truth))
    return rows


HS_DECOMPOSITION = """
def work():
    s = hs.load(ARGS["hspy"], lazy=True)
    s.decomposition(
        algorithm=ARGS["algorithm"], output_dimension=ARGS["k"], print_info=False
    )
    return np.asarray(s.learning_results.factors)[:, : ARGS["k"]]

seconds, factors = timed(work, ARGS["repeats"])
emit(seconds=seconds, factors=factors.tolist())
"""


def hyperspy_rows(
    ctx: Context, name: str, path: Path, algorithm: str, truth: np.ndarray
) -> list[Row]:
    """HyperSpy's time and accuracy, when it is installed and fast enough."""
    if algorithm not in FAST:
        ctx.notes.append(
            f"{name}: HyperSpy {algorithm} not re-run (BENCHMARKS.md: ORPCA 328 s "
            "and 41 degrees, ORNMF not finished in 900 s, on S)"
        )
        return []
    hspy = hspy_file(ctx, path)
    if hspy is None:
        return []
    out = run_hyperspy(
        ctx,
        HS_DECOMPOSITION,
        hspy=hspy,
        algorithm=algorithm,
        k=K,
        repeats=max(1, ctx.repeats // 2),
    )
    if out is None:
        return []
    found = np.asarray(out["factors"])
    return [Row(name, HYPERSPY, out["seconds"], degrees=degrees(found, truth))]


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[3])
    from pathlib import Path
    from benchmarks.common import peak_rss_mib
    from benchmarks.decomposition import (
        _shape, degrees, raw_svd, true_factors, with_loadings
    )
    path, algorithm = Path(sys.argv[1]), sys.argv[2]
    start = time.perf_counter()
    if algorithm == "raw":
        factors = raw_svd(path)
    else:
        factors = with_loadings(path, algorithm).factors.values.T
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    angle = degrees(factors, true_factors(_shape(path)))
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "degrees": angle}))
    """
)


def memory_row(ctx: Context, path: Path, algorithm: str) -> Row:
    """One algorithm ("raw" for Gram+eigh) in its own process: time, peak RSS."""
    root = str(Path(__file__).resolve().parents[1])
    tool = "raw" if algorithm == "raw" else f"xsignal {algorithm}"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path), algorithm, root],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        ctx.notes.append(f"W7 {algorithm} failed: {out.stderr.strip()[-300:]}")
        return Row("W7", tool, time.perf_counter() - start, extra="FAILED")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    gib = path.stat().st_size / 2**30
    ok = "yes" if result["peak_mib"] <= 1024 else "NO"
    return Row(
        "W7",
        tool,
        result["seconds"],
        degrees=result["degrees"],
        peak_mib=result["peak_mib"],
        extra=f"{gib:.2f} GiB file, 1 run; peak <= 1 GiB: {ok}",
    )


def memory_rows(
    ctx: Context, size: str = "L", algorithms: tuple[str, ...] = ALGORITHMS
) -> list[Row]:
    """raw and each algorithm on the file in its own process (one run each)."""
    path = ctx.data_file(size)
    rows = [memory_row(ctx, path, a) for a in ("raw", *algorithms)]
    raw = rows[0]
    for row in rows[1:]:
        if row.extra != "FAILED":
            row.vs_raw = row.seconds / raw.seconds
    return rows
