"""Shared pieces of the decomposition workloads W3-W7.

raw: the machine's limit, an h5py loop over the on-disk chunks accumulating
``X^T X`` (float32 products, float64 sums) and ``eigh`` of it. xsignal: the
file opened lazily, then ``xsignal.decomposition``. Accuracy: the largest
principal angle between the recovered and the true factor spans.
HyperSpy (optional): the same data saved as ``.hspy``, loaded lazily, in a
subprocess of ``/work/hs-venv/bin/python`` (skipped when missing).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.linalg
import xarray as xr
from scipy.linalg import subspace_angles
from threadpoolctl import threadpool_limits

import xsignal
from benchmarks.common import Context, Row, median_time
from xsignal.testing import spectrum_image

K = 4
HYPERSPY_PYTHON = Path(os.environ.get("XSIGNAL_HS_PYTHON", "/work/hs-venv/bin/python"))


def open_lazy(path: Path) -> xr.DataArray:
    opener = getattr(xsignal, "open", None)
    if opener is not None:
        return opener(path)
    return xr.open_dataarray(path, engine="h5netcdf", chunks={})


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


@functools.lru_cache(maxsize=4)
def raw_row(path: Path, workload: str, repeats: int) -> tuple[float, float]:
    seconds, vecs = median_time(lambda: raw_svd(path), repeats)
    return seconds, degrees(vecs, true_factors(_shape(path)))


def _shape(path: Path) -> tuple[int, ...]:
    with h5py.File(path, "r") as f:
        return f["data"].shape


def xsignal_run(path: Path, algorithm: str, **kwargs) -> xsignal.Decomposition:
    return xsignal.decomposition(
        open_lazy(path), algorithm, K, progress=False, **kwargs
    )


def workload(ctx: Context, name: str, algorithm: str, size: str = "S") -> list[Row]:
    """Rows for one algorithm on one file: raw SVD, xsignal, HyperSpy."""
    path = ctx.data_file(size)
    raw_seconds, raw_degrees = raw_row(path, name, ctx.repeats)
    rows = [Row(name, "raw", raw_seconds, extra=f"{raw_degrees:.2f} deg (Gram+eigh)")]
    truth = true_factors(_shape(path))
    repeats = ctx.repeats if algorithm in ("SVD", "PCA") else max(1, ctx.repeats // 2)
    seconds, result = median_time(lambda: xsignal_run(path, algorithm), repeats)
    extra = f"{degrees(result.factors.values.T, truth):.2f} deg"
    if algorithm == "ORNMF":
        nonneg = float(result.factors.min()) >= 0 and float(result.loadings.min()) >= 0
        extra += ", non-negative" if nonneg else ", NEGATIVE values"
    rows.append(Row(name, "xsignal", seconds, baseline="raw", extra=extra))
    if algorithm in ("SVD", "PCA"):  # loadings are lazy: add their compute
        seconds, _ = median_time(
            lambda: xsignal.compute(
                xsignal_run(path, algorithm).loadings, progress=False
            ),
            repeats,
        )
        rows.append(
            Row(name, "xsignal+loadings", seconds, baseline="raw", extra="computed")
        )
    hs = hyperspy_row(ctx, name, path, algorithm, truth)
    if hs is not None:
        rows.append(hs)
    return rows


HS_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import h5py, numpy as np
    import hyperspy.api as hs
    src, dst, algorithm, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import os
    if not os.path.exists(dst):
        with h5py.File(src) as f:
            data = f["data"][...]
        s = hs.signals.Signal1D(data)
        s.save(dst, overwrite=True, chunks=(4,) + data.shape[1:])
        del data, s
    start = time.perf_counter()
    s = hs.load(dst, lazy=True)
    s.decomposition(algorithm=algorithm, output_dimension=k, print_info=False)
    seconds = time.perf_counter() - start
    factors = np.asarray(s.learning_results.factors)[:, :k]
    print(json.dumps({"seconds": seconds, "factors": factors.tolist()}))
    """
)


def hyperspy_row(
    ctx: Context, name: str, path: Path, algorithm: str, truth: np.ndarray
) -> Row | None:
    """HyperSpy's time and accuracy, or None when unavailable or too slow."""
    if ctx.quick or not HYPERSPY_PYTHON.exists() or algorithm not in ("SVD", "PCA"):
        return None  # ORPCA 328 s and ORNMF > 900 s on S: not re-measured here
    dst = path.with_suffix(".hspy")
    try:
        out = subprocess.run(
            [str(HYPERSPY_PYTHON), "-c", HS_SCRIPT]
            + [str(path), str(dst), algorithm, str(K)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    if out.returncode != 0:
        ctx.notes.append(f"{name} HyperSpy failed: {out.stderr.strip()[-200:]}")
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    found = np.asarray(result["factors"])
    return Row(
        name,
        "HyperSpy 2.5 (1 run)",
        result["seconds"],
        baseline="raw",
        extra=f"{degrees(found, truth):.2f} deg",
    )


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import xsignal
    sys.path.insert(0, sys.argv[3])
    from benchmarks.decomposition import xsignal_run, true_factors, degrees, _shape
    from pathlib import Path
    path, algorithm = Path(sys.argv[1]), sys.argv[2]
    start = time.perf_counter()
    result = xsignal_run(path, algorithm)
    loadings = xsignal.compute(result.loadings, progress=False)[0]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    angle = degrees(result.factors.values.T, true_factors(_shape(path)))
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "degrees": angle}))
    """
)


def memory_rows(ctx: Context, size: str = "L") -> list[Row]:
    """Each algorithm on the big file in its own process: time, peak RSS."""
    path = ctx.data_file(size)
    gib = path.stat().st_size / 2**30
    rows = []
    root = str(Path(__file__).resolve().parents[1])
    for algorithm in ("SVD", "PCA", "ORPCA", "ORNMF"):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(path), algorithm, root],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            ctx.notes.append(f"W7 {algorithm} failed: {out.stderr.strip()[-300:]}")
            rows.append(
                Row(
                    "W7",
                    f"xsignal {algorithm}",
                    time.perf_counter() - start,
                    extra="FAILED",
                )
            )
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            Row(
                "W7",
                f"xsignal {algorithm}",
                result["seconds"],
                peak_mib=result["peak_mib"],
                extra=f"{gib:.1f} GiB file, {result['degrees']:.2f} deg, "
                f"peak <= 1024 MiB: {result['peak_mib'] <= 1024}",
            )
        )
    return rows
