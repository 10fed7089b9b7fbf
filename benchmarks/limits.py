"""The machine's limits, measured on the benchmark file itself.

- :func:`raw_pass`: one thread reads every stored chunk with
  ``read_direct_chunk`` (no filters, no selection machinery) and sums it
  with numpy. No single-pass tool can beat it by much: it is the read rate.
- :func:`exact_svd_limit`: the raw pass feeding ``X.T @ X`` in float32 BLAS
  (all the cores BLAS wants) on batches of about 64 MiB of rows, summed in
  float64, then the top ``k`` eigenpairs with ``eigsh``: the exact
  decomposition at the machine's BLAS rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse.linalg

BATCH_BYTES = 64 * 2**20


def _chunks(path: Path) -> Iterator[np.ndarray]:
    """Every stored chunk of the file's ``data`` as ``(rows, signal)``."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        if dset.compression is not None:
            raise ValueError(f"{path}: the raw pass needs uncompressed chunks")
        shape, dtype, n_sig = dset.chunks, dset.dtype, dset.shape[-1]
        for sel in dset.iter_chunks():
            offset = tuple(sl.start for sl in sel)
            _, raw = dset.id.read_direct_chunk(offset)
            tile = np.frombuffer(raw, dtype).reshape(shape)
            # edge chunks are stored whole: keep the part inside the dataset
            inside = tuple(slice(0, sl.stop - sl.start) for sl in sel)
            yield tile[inside].reshape(-1, n_sig)


def raw_pass(path: Path) -> float:
    """Read every chunk and sum it: the single-pass limit (one thread)."""
    total = 0.0
    for x in _chunks(path):
        total += float(x.sum(dtype="f8"))
    return total


def exact_svd_limit(path: Path, k: int) -> np.ndarray:
    """``(features, k)`` top right singular vectors from the Gram matrix,
    built at the machine's BLAS rate."""
    gram = None
    batch: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal gram, batch, size
        x = np.concatenate(batch) if len(batch) > 1 else batch[0]
        part = x.T @ x  # float32 products, all BLAS threads
        gram = part.astype("f8") if gram is None else gram + part
        batch, size = [], 0

    for x in _chunks(path):
        batch.append(x)
        size += x.nbytes
        if size >= BATCH_BYTES:
            flush()
    if batch:
        flush()
    start = np.random.default_rng(0).standard_normal(len(gram))
    _, vecs = scipy.sparse.linalg.eigsh(gram, k=k, which="LA", v0=start)
    return vecs[:, ::-1]
