"""Hypothesis strategies shared by the reduction, histogram and rebin tests."""

from __future__ import annotations

import hypothesis.strategies as st


@st.composite
def chunks_for(draw, size: int) -> tuple[int, ...]:
    """Random dask chunks (a tuple of positive ints summing to ``size``)."""
    if size == 0:
        return (0,)
    cuts = draw(
        st.lists(st.integers(1, size - 1), max_size=min(size - 1, 4), unique=True)
        if size > 1
        else st.just([])
    )
    edges = [0, *sorted(cuts), size]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


@st.composite
def chunkings(draw, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Random chunks for every axis of ``shape``."""
    return tuple(draw(chunks_for(n)) for n in shape)
