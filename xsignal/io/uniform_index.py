"""A lazily computed coordinate for long, evenly spaced axes.

A HyperSpy file describes a uniform axis by its offset and scale, so a file
of a few KB can declare an axis of 10^12 points, whose coordinate in memory
would take terabytes. :class:`UniformIndex` is xarray's ``RangeIndex``
(values computed when asked for, from ``offset + scale * i``) with the
label selection of an ordinary float coordinate: ``sel`` takes label
slices (both ends included, as pandas does), exact labels, lists of
labels, ``method="nearest"`` and ``tolerance=``; ``isel`` with a slice
keeps the index lazy; ``xr.concat`` of slices works.

Every value, of the axis or of any slice of it, is exactly the value of
the in-memory coordinate ``offset + scale * np.arange(size)`` at the same
place, so selections give the same positions as on that coordinate.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from xarray.core.indexes import Index, PandasIndex
from xarray.core.indexing import (
    CoordinateTransformIndexingAdapter,
    ExplicitIndexer,
    IndexSelResult,
    OuterIndexer,
)
from xarray.indexes import RangeIndex
from xarray.indexes.range_index import RangeCoordinateTransform

# a scalar label within this fraction of a step of an axis value is that
# value: labels computed another way (0.1 * 3 for 0.3) still match, and no
# two values of the axis are nearly that close
EXACT_STEP_FRACTION = 1e-6


class UniformTransform(RangeCoordinateTransform):
    """Positions ``i`` to ``offset + scale * (first + i * stride)``.

    ``first`` and ``stride`` (integers) say where a slice of the axis starts
    and which of its points it keeps, so a slice's values are exactly those
    of the whole axis at the same places (no step recomputed in floats).
    """

    def __init__(
        self,
        offset: float,
        scale: float,
        size: int,
        coord_name: Hashable,
        dim: str,
        *,
        first: int = 0,
        stride: int = 1,
    ) -> None:
        start = offset + scale * first
        step = scale * stride
        super().__init__(start, start + step * size, size, coord_name, dim, step=step)
        self.offset = offset
        self.scale = scale
        self.first = first
        self.stride = stride

    def forward(self, dim_positions: dict[str, Any]) -> dict[Hashable, Any]:
        positions = np.asarray(dim_positions[self.dim])
        where = self.first + positions * self.stride
        return {self.coord_name: self.offset + self.scale * where}

    def reverse(self, coord_labels: dict[Hashable, Any]) -> dict[str, Any]:
        where = (np.asarray(coord_labels[self.coord_name]) - self.offset) / self.scale
        return {self.dim: (where - self.first) / self.stride}

    def slice(self, sl: slice) -> UniformTransform:
        kept = range(self.size)[sl]
        return UniformTransform(
            self.offset,
            self.scale,
            len(kept),
            self.coord_name,
            self.dim,
            first=self.first + kept.start * self.stride,
            stride=self.stride * kept.step,
        )

    def values_at(self, positions: Any) -> np.ndarray:
        """The coordinate's values at ``positions`` (an int array)."""
        out: np.ndarray = self.forward({self.dim: positions})[self.coord_name]
        return out


class UniformValues(CoordinateTransformIndexingAdapter):
    """The lazy array of a :class:`UniformIndex`'s coordinate.

    xarray's own keeps the dim of an integer key in an outer key, as dask
    gives them once it chunks the coordinate (``DataArray.chunk`` does):
    the value at one place came back of shape ``(1,)`` instead of ``()``.
    """

    def _oindex_get(self, indexer: OuterIndexer) -> np.ndarray:
        out: np.ndarray = super()._oindex_get(indexer)
        points = tuple(
            axis
            for axis, key in enumerate(indexer.tuple)
            if isinstance(key, int | np.integer)
        )
        return out.squeeze(points) if points else out

    def __getitem__(self, indexer: ExplicitIndexer) -> np.ndarray:
        self._check_and_raise_if_non_basic_indexer(indexer)
        return self._oindex_get(OuterIndexer(indexer.tuple))


class UniformIndex(RangeIndex):
    """An evenly spaced float coordinate whose values are computed, not stored.

    Make one with :meth:`from_axis`. It selects as a coordinate of the same
    values in memory does (``sel`` by label slices, exact labels, lists,
    ``method="nearest"``, ``tolerance=``), except that a scalar label
    within a millionth of a step of a value is that value.

    Examples
    --------
    >>> import xarray as xr
    >>> from xsignal.io.uniform_index import UniformIndex
    >>> index = UniformIndex.from_axis(280.0, 0.5, 10**12, dim="energy")
    >>> energy = xr.Coordinates.from_xindex(index)["energy"]  # no values in memory
    >>> energy.sizes["energy"]
    1000000000000
    >>> energy.sel(energy=slice(281.0, 282.0)).values
    array([281. , 281.5, 282. ])
    >>> float(energy.sel(energy=300.2, method="nearest"))
    300.0
    """

    transform: UniformTransform

    def __init__(self, transform: UniformTransform) -> None:
        super().__init__(transform)

    @classmethod
    def from_axis(
        cls,
        offset: float,
        scale: float,
        size: int,
        *,
        dim: str,
        coord_name: Hashable | None = None,
    ) -> UniformIndex:
        """The index of the axis ``offset + scale * np.arange(size)`` along ``dim``.

        Raises
        ------
        ValueError
            A scale of 0, or an offset or scale that is not finite (the
            values would not be evenly spaced and sorted).
        """
        if not (np.isfinite(offset) and np.isfinite(scale) and scale != 0):
            raise ValueError(
                f"an evenly spaced axis needs a finite offset and a finite, "
                f"non-zero scale, not offset {offset!r} and scale {scale!r}"
            )
        name = dim if coord_name is None else coord_name
        return cls(UniformTransform(float(offset), float(scale), int(size), name, dim))

    def create_variables(
        self, variables: Mapping[Any, xr.Variable] | None = None
    ) -> dict[Hashable, xr.Variable]:
        made = super().create_variables(variables)
        return {
            name: xr.Variable(
                var.dims,
                UniformValues(self.transform, name, tuple(map(str, var.dims))),
                var.attrs,
            )
            for name, var in made.items()
        }

    # --- positional selection --------------------------------------------------

    def isel(
        self, indexers: Mapping[Any, int | slice | np.ndarray | xr.Variable]
    ) -> Index | None:
        key = indexers[self.dim]
        if isinstance(key, slice):
            return type(self)(self.transform.slice(key))
        positions = np.asarray(getattr(key, "data", key))
        if positions.dtype.kind == "b" and positions.ndim == 1:  # a mask
            found = np.flatnonzero(positions)
            key = (
                xr.Variable(key.dims, found) if isinstance(key, xr.Variable) else found
            )
            indexers = {self.dim: key}
        return super().isel(indexers)  # a point: no index; an array: in memory

    @classmethod
    def concat(  # type: ignore[override]  # other pieces: a PandasIndex
        cls,
        indexes: Sequence[UniformIndex],
        dim: Hashable,
        positions: Iterable[Iterable[int]] | None = None,
    ) -> Index:
        """Consecutive pieces of one axis, in order, give a lazy index again;
        other pieces an in-memory one, as float coordinates would."""
        first = indexes[0].transform
        key = (first.offset, first.scale, first.stride)
        joined = positions is None
        end = first.first + first.size * first.stride
        for index in indexes[1:]:
            t = index.transform
            joined = joined and (t.offset, t.scale, t.stride) == key and t.first == end
            end = t.first + t.size * t.stride
        if joined:
            size = sum(index.size for index in indexes)
            transform = UniformTransform(
                first.offset,
                first.scale,
                size,
                first.coord_name,
                first.dim,
                first=first.first,
                stride=first.stride,
            )
            return cls(transform)
        in_memory = [
            PandasIndex(index.to_pandas_index(), index.dim) for index in indexes
        ]
        return PandasIndex.concat(in_memory, dim, positions)

    # --- label selection ---------------------------------------------------------

    def sel(
        self, labels: dict[Any, Any], method: str | None = None, tolerance: Any = None
    ) -> IndexSelResult:
        if method is not None and method != "nearest":
            raise ValueError(
                f"{self.coord_name!r} is an evenly spaced coordinate computed on "
                f"demand: sel supports method=None or 'nearest', not {method!r}"
            )
        label = labels[self.coord_name]
        if isinstance(label, slice):
            if method is not None or tolerance is not None:
                raise NotImplementedError(
                    "cannot use ``method`` argument if any indexers are slice objects"
                )
            return IndexSelResult({self.dim: self._slice(label)})
        values = np.asarray(getattr(label, "values", label))
        if values.dtype.kind == "b":
            indexer: Any = values
        else:
            numbers = values.astype(float)
            found = self._positions(numbers, method, tolerance)
            if np.any(found < 0):
                missing = [float(v) for v in numbers[found < 0].ravel()[:5]]
                what = repr(missing[0]) if values.ndim == 0 else f"labels {missing}"
                raise KeyError(
                    f"{what} not on the axis {self.coord_name!r} "
                    f"({self._describe()}); pass a slice, method='nearest' "
                    "or a tolerance"
                )
            indexer = int(found) if found.ndim == 0 else found
        if isinstance(label, xr.Variable):
            indexer = xr.Variable(label.dims, indexer)
        elif isinstance(label, xr.DataArray):
            indexer = xr.DataArray(indexer, coords=label.coords, dims=label.dims)
        return IndexSelResult({self.dim: indexer})

    def _describe(self) -> str:
        t = self.transform
        last = t.values_at(np.asarray(t.size - 1)) if t.size else t.start
        return f"from {t.start:g} to {float(last):g} in steps of {t.step:g}"

    @property
    def _increasing(self) -> bool:
        """Whether pandas sees the values as increasing (a single value is)."""
        return self.transform.step > 0 or self.size <= 1

    def _first(self, labels: np.ndarray, *, strict: bool) -> np.ndarray:
        """Per label, the first position whose value is at (``strict``:
        past) the label, going along the axis: pandas' ``searchsorted`` on
        the values in memory (on the reversed values for a decreasing axis),
        by bisection, a few dozen steps for any size."""
        t = self.transform
        low = np.zeros(labels.shape, dtype=np.int64)
        high = np.full(labels.shape, t.size, dtype=np.int64)
        while np.any(low < high):
            mid = (low + high) // 2
            value = t.values_at(np.minimum(mid, max(t.size - 1, 0)))
            if self._increasing:
                ahead = value > labels if strict else value >= labels
            else:
                ahead = value < labels if strict else value <= labels
            ahead |= mid >= high  # (finished entries stay put)
            high = np.where(ahead, mid, high)
            low = np.where(ahead, low, mid + 1)
        return low

    def _slice(self, label: slice) -> slice:
        """Positions of a label slice, as pandas' ``slice_indexer`` gives them
        for a monotonic float index (both ends included)."""
        start, stop = _number(label.start), _number(label.stop)
        step = None if label.step is None else int(label.step)
        forward = step is None or step >= 0
        if not forward:  # pandas' slice_locs, read for a negative step
            start, stop = stop, start
        lo = 0 if start is None else int(self._first(np.asarray(start), strict=False))
        hi = (
            self.size
            if stop is None
            else int(self._first(np.asarray(stop), strict=True))
        )
        if not forward:
            hi, lo = lo - 1, hi - 1
            hi = hi - self.size if hi == -1 else hi
            lo = lo - self.size if lo == -1 else lo
        return slice(lo, hi, step)

    def _positions(
        self, labels: np.ndarray, method: str | None, tolerance: Any
    ) -> np.ndarray:
        """Position of each label, -1 where it has none: the nearest value
        (pandas' choice on ties: the larger value), kept when within the
        ``tolerance`` (nearest) or a millionth of a step (exact)."""
        t = self.transform
        if t.size == 0:
            return np.full(labels.shape, -1, dtype=np.int64)
        after = self._first(labels, strict=False)  # "backfill"
        before = after - 1  # "pad" (an exact match is at ``after``)
        last = t.size - 1
        d_after = np.abs(t.values_at(np.minimum(after, last)) - labels)
        d_before = np.abs(t.values_at(np.maximum(before, 0)) - labels)
        closer = d_before < d_after if self._increasing else d_before <= d_after
        take_before = (after > last) | ((before >= 0) & closer & (d_after != 0))
        found = np.where(take_before, before, after)
        distance = np.where(take_before, d_before, d_after)
        if method is None:
            limit: Any = EXACT_STEP_FRACTION * abs(t.step)
        elif tolerance is None:
            return np.where(np.isnan(labels), -1, found)
        else:
            limit = np.asarray(tolerance, dtype=float)
        return np.where((distance <= limit) & ~np.isnan(labels), found, -1)


def _number(label: Any) -> float | None:
    """A slice end as a float (None stays None)."""
    if label is None:
        return None
    return float(np.asarray(getattr(label, "values", label)))


def lazy_coordinate(
    offset: float, scale: float, size: int, dim: str, attrs: Mapping[str, Any]
) -> xr.Coordinates:
    """The coordinates of one lazily computed evenly spaced axis, ``attrs``
    (units) on its variable.

    Examples
    --------
    >>> from xsignal.io.uniform_index import lazy_coordinate
    >>> coords = lazy_coordinate(0.0, 2.0, 10**9, "y", {"units": "nm"})
    >>> coords["y"].attrs, float(coords["y"][-1])
    ({'units': 'nm'}, 1999999998.0)
    """
    index = UniformIndex.from_axis(offset, scale, size, dim=dim)
    (variable,) = index.create_variables().values()
    variable.attrs.update(attrs)
    return xr.Coordinates({dim: variable}, indexes={dim: index})


def uniform_axis(index: Any) -> tuple[float, float] | None:
    """``(offset, scale)`` of a :class:`UniformIndex`, read without
    computing its values; None for any other index."""
    if isinstance(index, UniformIndex):
        return float(index.start), float(index.step)
    return None
