"""The dask.distributed clusters of the tests: one way to start them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def local_client(
    *,
    processes: bool,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    direct_to_workers: bool | None = None,
    **cluster: Any,
) -> Iterator[Any]:
    """A Client of a LocalCluster, closed after the block: worker processes
    or threads of this process, no dashboard unless ``dashboard_address``
    is given; the test is skipped without distributed."""
    distributed = pytest.importorskip("distributed")
    cluster.setdefault("dashboard_address", None)
    with (
        distributed.LocalCluster(
            processes=processes,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            **cluster,
        ) as local,
        distributed.Client(local, direct_to_workers=direct_to_workers) as client,
    ):
        yield client
