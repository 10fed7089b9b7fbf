"""W9 scale-out: bytes that reach the calling process on a LocalCluster.

A ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` on
127.0.0.1; each operation runs on the M file from the client, and the bytes
the client process reads from distributed's TCP comms
(:func:`xsignal.testing.count_received_bytes`) are divided by the array's
size. Work that runs where the data lives stays near 0; a pass that pulls
every block into the caller is 1 or more. The "vs raw" column holds that
fraction, not a time ratio. The client gathers results directly from the
workers: LocalCluster's scheduler runs in this process, and relayed through
it every result would be read twice.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import xsignal
from benchmarks.common import Context, Row, timed
from xsignal.testing import count_received_bytes


def operations(path: Path, out: Path) -> dict:
    def save(name: str, **kw):
        return lambda: xsignal.save(
            xsignal.open(path), out / name, overwrite=True, **kw
        )

    def decompose(algorithm: str):
        def run():
            dec = xsignal.open(path).signal.decomposition(algorithm, 4, progress=False)
            return dec.loadings.compute()

        return run

    def centre_of_mass(block):
        weights = np.arange(block.shape[-1], dtype=block.dtype)
        return (block * weights).sum(-1) / block.sum(-1)

    return {
        "navigator": lambda: xsignal.open(path).signal.navigator().compute(),
        "histogram (fd)": lambda: xsignal.open(path).signal.histogram().compute(),
        "vectorized map": lambda: (
            xsignal.open(path).signal.map(centre_of_mass, vectorized=True).compute()
        ),
        "SVD (+ loadings)": decompose("SVD"),
        "PCA (+ loadings)": decompose("PCA"),
        "ORPCA (+ loadings)": decompose("ORPCA"),
        "ORNMF (+ loadings)": decompose("ORNMF"),
        "save .zarr": save("m.zarr"),
        "save .zspy": save("m.zspy"),
        "save .nc": save("m.nc", compression=None),
        "save .nc gzip": save("m-gzip.nc"),
        "save .hspy": save("m.hspy", compression=None),
    }


def run(ctx: Context) -> list[Row]:
    try:
        import distributed
    except ImportError:
        ctx.notes.append("W9 skipped: distributed is not installed")
        return []
    path = ctx.data_file("M")
    size = xsignal.open(path).nbytes
    out = Path(tempfile.mkdtemp(prefix="xsignal-w9-"))
    rows = []
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",
            ) as cluster,
            # results come straight from the workers (with the default, the
            # scheduler, which LocalCluster runs in this process, relays them
            # and the counter sees every result twice)
            distributed.Client(cluster, direct_to_workers=True),
        ):
            for name, fn in operations(path, out).items():
                with count_received_bytes() as received:
                    seconds, _ = timed(fn)
                fraction = received.nbytes / size
                rows.append(
                    Row(
                        "W9",
                        f"xsignal {name}",
                        seconds,
                        vs_raw=fraction,
                        extra=f"{received.nbytes / 2**20:.1f} MiB into the caller",
                    )
                )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return rows
