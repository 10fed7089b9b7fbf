"""Synthetic signals with known ground truth, and test helpers.

The spectrum image model is EELS-like: ``rank`` Gaussian peaks along the
energy axis (the factors) weighted by smooth, non-negative spatial patterns
(the loadings), plus noise. Noise is drawn row by row (one row = one index
of the first navigation dim) from ``numpy.random.default_rng([seed, row])``,
so :func:`spectrum_image` and :func:`write_spectrum_image` give the same
values for the same arguments, and a file can be written without ever
holding it in memory.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import dask
import numpy as np
import xarray as xr

from .dims import SIGNAL_DIMS_ATTR, encode_signal_dims, set_signal_dims
from .lazy import as_lazy

NOISES = (None, "poisson", "gaussian")


class SyntheticSignal(NamedTuple):
    """A synthetic signal and the truth it was made from.

    ``data`` equals ``(loadings * factors).sum("component")`` plus noise.
    """

    data: xr.DataArray
    factors: xr.DataArray
    loadings: xr.DataArray


class _Model:
    """The noiseless model, evaluated on any range of rows."""

    def __init__(
        self, shape: tuple[int, ...], rank: int, seed: int, scale: float
    ) -> None:
        if len(shape) < 2 or any(int(n) < 1 for n in shape):
            raise ValueError(
                f"shape must have at least 2 positive sizes "
                f"(navigation..., energy), not {shape}"
            )
        if not (isinstance(rank, (int, np.integer)) and rank >= 1):
            raise ValueError(f"rank must be a positive int, not {rank!r}")
        self.shape = tuple(int(n) for n in shape)
        self.rank, self.seed, self.scale = int(rank), int(seed), float(scale)
        n_nav = len(shape) - 1
        names = {1: ("x",), 2: ("y", "x"), 3: ("t", "y", "x")}
        self.nav_dims = names.get(n_nav, tuple(f"nav_{i}" for i in range(n_nav)))
        self.dims = (*self.nav_dims, "energy")
        rng = np.random.default_rng(seed)
        # spatial frequencies and phases of each component's pattern
        self.freqs = rng.uniform(0.5, 2.5, size=(rank, n_nav))
        self.phases = rng.uniform(0, 2 * np.pi, size=rank)
        ne = self.shape[-1]
        centres = (np.arange(rank) + 1) / (rank + 1) * ne
        width = max(ne / (6 * rank + 6), 1.0)
        e = np.arange(ne)
        self.factors = np.exp(-0.5 * ((e - centres[:, None]) / width) ** 2)

    def coords(self) -> dict[Hashable, xr.Variable]:
        coords: dict[Hashable, xr.Variable] = {
            d: xr.Variable(d, np.arange(n) * 2.0, {"units": "nm"})
            for d, n in zip(self.nav_dims, self.shape)
        }
        coords["energy"] = xr.Variable(
            "energy", 280.0 + 0.25 * np.arange(self.shape[-1]), {"units": "eV"}
        )
        return coords

    def loadings(self, rows: slice) -> np.ndarray:
        """Loadings ``(rank, *navigation)`` for ``rows`` of the first nav dim."""
        nav = self.shape[:-1]
        grids = np.meshgrid(
            *(
                np.arange(n)[rows if i == 0 else slice(None)] / n
                for i, n in enumerate(nav)
            ),
            indexing="ij",
        )
        phase = sum(self.freqs[:, i, None] * g.ravel() for i, g in enumerate(grids))
        pattern = 0.5 + 0.5 * np.cos(2 * np.pi * phase + self.phases[:, None])
        shape = (self.rank, *grids[0].shape)
        return (self.scale * pattern).reshape(shape)

    def rows(self, rows: slice, noise: str | None, dtype: np.dtype) -> np.ndarray:
        """Noisy data for ``rows`` of the first navigation dim."""
        load = self.loadings(rows)
        clean = np.tensordot(load, self.factors, axes=(0, 0))
        if noise is None:
            return clean.astype(dtype)
        out = np.empty(clean.shape, dtype)
        for i, row in enumerate(range(*rows.indices(self.shape[0]))):
            rng = np.random.default_rng([self.seed, row])
            if noise == "poisson":
                out[i] = rng.poisson(clean[i])
            else:
                out[i] = clean[i] + rng.normal(size=clean[i].shape) * np.sqrt(clean[i])
        return out


def _check_noise(noise: str | None) -> None:
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, not {noise!r}")


def spectrum_image(
    shape: tuple[int, ...] = (32, 32, 256),
    rank: int = 4,
    seed: int = 0,
    noise: str | None = "poisson",
    chunks: Mapping[Any, Any] | str | Literal[True] | None = None,
    *,
    scale: float = 100.0,
    dtype: Any = "float32",
) -> SyntheticSignal:
    """A synthetic low-rank spectrum image with its true factors and loadings.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx, ne)``; any number of navigation dims works, the last size
        is the energy axis.
    rank : int
        Number of components (Gaussian peaks).
    seed : int
        Seed of the model and of the noise.
    noise : {"poisson", "gaussian", None}
        Poisson counts, Gaussian noise of the same variance, or none.
    chunks : None, "auto" or dict
        ``None`` gives an in-memory array, anything else a dask-backed one
        chunked as :func:`xsignal.as_lazy` would.
    scale : float
        Peak counts of a loading (the noise level follows from it).
    dtype : numpy dtype
        Of the data.

    Returns
    -------
    SyntheticSignal
        ``(data, factors, loadings)``: the data (dims ``y, x, energy``, with
        coords in nm and eV, ``energy`` marked as signal dim), the factors
        ``(component, energy)`` and loadings ``(component, y, x)``.

    Examples
    --------
    >>> from xsignal.testing import spectrum_image
    >>> data, factors, loadings = spectrum_image((4, 5, 16), rank=2, noise=None)
    >>> data.signal
    <Signal1D float32, (y: 4, x: 5 | energy: 16)>
    >>> bool(abs((loadings * factors).sum("component") - data).max() < 1e-3)
    True
    """
    _check_noise(noise)
    model = _Model(shape, rank, seed, scale)
    coords = model.coords()
    values = model.rows(slice(None), noise, np.dtype(dtype))
    data = xr.DataArray(
        values,
        dims=model.dims,
        coords=coords,
        name="data",
        attrs={"title": "synthetic spectrum image", "units": "counts"},
    )
    data = set_signal_dims(data, "energy")
    factors = xr.DataArray(
        model.factors, dims=("component", "energy"), coords={"energy": coords["energy"]}
    )
    loadings = xr.DataArray(
        model.loadings(slice(None)),
        dims=("component", *model.nav_dims),
        coords={d: coords[d] for d in model.nav_dims},
    )
    if chunks is not None:
        data = as_lazy(data, None if chunks is True else chunks)
    return SyntheticSignal(data, factors, loadings)


def default_file_chunks(
    shape: tuple[int, ...], itemsize: int, target: int = 4 * 2**20
) -> tuple[int, ...]:
    """On-disk chunks for a synthetic file: whole signals, whole rows, ~4 MiB."""
    row = math.prod(shape[1:]) * itemsize
    if row <= target:
        return (max(1, min(shape[0], target // row)), *shape[1:])
    per_pixel = shape[-1] * itemsize
    inner = [1] * (len(shape) - 2)
    if len(shape) > 2:
        inner[-1] = max(1, min(shape[-2], target // per_pixel))
    return (1, *inner, shape[-1])


def write_spectrum_image(
    path: str | os.PathLike[str],
    shape: tuple[int, ...] = (32, 32, 256),
    rank: int = 4,
    seed: int = 0,
    noise: str | None = "poisson",
    chunks: tuple[int, ...] | None = None,
    *,
    scale: float = 100.0,
    dtype: Any = "float32",
    compression: str | None = None,
) -> Path:
    """Write :func:`spectrum_image` to a chunked netCDF4/HDF5 file, rows at a time.

    Only one block of rows (one on-disk chunk row) is in memory at a time, so
    files far larger than memory can be written. The file opens with
    ``xsignal.open`` or ``xarray.open_dataarray(path, engine="h5netcdf")``.

    Parameters
    ----------
    path : path-like
        File to write (replaced if it exists).
    shape, rank, seed, noise, scale, dtype
        As in :func:`spectrum_image`; the values written are the same.
    chunks : tuple of int, optional
        On-disk chunks; default whole signals, whole rows and about 4 MiB.
    compression : {None, "gzip", "lzf"}
        HDF5 compression filter.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, os, xarray as xr
    >>> from xsignal.testing import write_spectrum_image
    >>> path = write_spectrum_image(
    ...     os.path.join(tempfile.mkdtemp(), "si.nc"), (4, 5, 16), noise=None
    ... )
    >>> xr.open_dataarray(path, engine="h5netcdf").shape
    (4, 5, 16)
    """
    import h5netcdf

    _check_noise(noise)
    model = _Model(shape, rank, seed, scale)
    dtype = np.dtype(dtype)
    chunks = (
        tuple(chunks)
        if chunks is not None
        else default_file_chunks(model.shape, dtype.itemsize)
    )
    if len(chunks) != len(model.shape):
        raise ValueError(f"chunks {chunks} do not match shape {model.shape}")
    path = Path(path)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(zip(model.dims, model.shape))
        for name, coord in model.coords().items():
            v = f.create_variable(name, (name,), coord.dtype)
            v[:] = coord.values
            v.attrs.update(coord.attrs)
        var = f.create_variable(
            "data", model.dims, dtype, chunks=chunks, compression=compression
        )
        var.attrs.update(
            {
                "title": "synthetic spectrum image",
                "units": "counts",
                SIGNAL_DIMS_ATTR: encode_signal_dims(["energy"]),
            }
        )
        step = chunks[0]
        for start in range(0, model.shape[0], step):
            rows = slice(start, min(start + step, model.shape[0]))
            var[rows] = model.rows(rows, noise, dtype)
    return path


class _CountingScheduler:
    """A dask scheduler that counts computes and raises past a maximum."""

    def __init__(self, max_computes: int) -> None:
        self.max_computes = max_computes
        self.total_computes = 0

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"dask computed {self.total_computes} time(s) where at most "
                f"{self.max_computes} were allowed: a lazy call read data"
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Raise if the block computes dask graphs more than ``max_computes`` times.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xsignal.testing import raise_if_dask_computes
    >>> lazy = xr.DataArray(np.ones(4)).chunk(2)
    >>> with raise_if_dask_computes():
    ...     total = lazy.sum()  # builds a graph only
    >>> with raise_if_dask_computes():
    ...     total.compute()
    Traceback (most recent call last):
    ...
    RuntimeError: dask computed 1 time(s) where at most 0 were allowed: ...
    """
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


class ReceivedBytes:
    """Bytes this process received over dask.distributed's TCP comms."""

    def __init__(self) -> None:
        self.nbytes = 0


@contextlib.contextmanager
def count_received_bytes() -> Iterator[ReceivedBytes]:
    """Count the bytes this process reads from dask.distributed's TCP comms.

    Wraps distributed's own socket read (``read_bytes_rw``, which reads every
    message frame) while the block runs, so a test or benchmark can check
    that a pass over the data kept the data on the workers: the count is
    then a small fraction of the array's size (results, task states,
    heartbeats). Needs ``distributed``.

    Examples
    --------
    >>> from xsignal.testing import count_received_bytes
    >>> with count_received_bytes() as received:
    ...     pass  # run something on a dask.distributed client
    >>> received.nbytes
    0
    """
    from distributed.comm import tcp

    counter = ReceivedBytes()
    original = tcp.read_bytes_rw

    async def counting(stream: Any, n: int) -> Any:
        counter.nbytes += n
        return await original(stream, n)

    tcp.read_bytes_rw = counting
    try:
        yield counter
    finally:
        tcp.read_bytes_rw = original
