"""Image-stack tools (xsignal.images): lazily at two chunkings, against
known shifts and peaks (HyperSpy and pyxem references are in
test_signal_tools_reference)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.testing import raise_if_dask_computes

YY, XX = np.mgrid[:40, :48]


def blobs(positions) -> xr.DataArray:
    frames = [
        sum(
            np.exp(-((YY - y) ** 2 + (XX - x) ** 2) / 6.0) / (1 + i)
            for i, (y, x) in enumerate(frame)
        )
        for frame in positions
    ]
    return xr.DataArray(
        np.asarray(frames),
        dims=("t", "y", "x"),
        coords={"y": np.arange(40) * 0.5, "x": np.arange(48) * 0.5},
    ).signal.set_signal_dims("y", "x")


DRIFT = np.array([[0.0, 0.0], [1.5, -2.0], [3.25, -3.5], [4.0, -6.75]])


@pytest.mark.parametrize("chunks", [None, {"t": 1}, {"t": 3, "x": 16}])
def test_estimate_shift2D_and_align2D(chunks):
    stack = blobs([[(18 + dy, 22 + dx), (10 + dy, 30 + dx)] for dy, dx in DRIFT])
    data = stack.chunk(chunks) if chunks else stack
    with raise_if_dask_computes():
        shifts = data.signal.estimate_shift2D(sub_pixel_factor=4)
        aligned = data.signal.align2D(shifts)
    np.testing.assert_allclose(shifts.values, DRIFT, atol=0.25)
    assert shifts.attrs["units"] == "px"
    cascade = data.signal.estimate_shift2D(reference="cascade", sub_pixel_factor=4)
    np.testing.assert_allclose(cascade.values, DRIFT, atol=0.25)
    peaks = [np.unravel_index(np.nanargmax(f), f.shape) for f in aligned.values]
    assert all(p == (18, 22) for p in peaks)
    # moved back up 4 and right 6.75 px: no data for the bottom rows and the
    # left columns
    assert np.isnan(aligned.values[3, -4:]).all()
    assert np.isnan(aligned.values[3, :, :6]).all()
    assert not np.isnan(aligned.values[3, :-4, 7:]).any()


@pytest.mark.parametrize("chunks", [None, {"t": 1}, {"t": 2, "y": 20}])
def test_find_peaks2D_local_max_in_coordinate_units(chunks):
    stack = blobs([[(10, 12), (25, 30)], [(20, 20)]])
    data = stack.chunk(chunks) if chunks else stack
    with raise_if_dask_computes():
        found = data.signal.find_peaks2D(min_distance=2, threshold_rel=0.4)
    values = found.values
    assert values[0].tolist() == [[5.0, 6.0], [12.5, 15.0]]
    assert values[1].tolist() == [[10.0, 10.0]]


def test_find_peaks2D_plateaus_and_borders_follow_skimage():
    frame = np.zeros((1, 12, 12))
    frame[0, 5, 5:7] = 3.0  # a plateau of two pixels: one peak
    frame[0, 0, 8] = 5.0  # on the border: excluded
    da = xr.DataArray(frame, dims=("t", "y", "x")).signal.set_signal_dims("y", "x")
    (peaks,) = da.signal.find_peaks2D(min_distance=2).values
    assert peaks.tolist() == [[5.0, 5.0]]


def test_image_tool_arguments():
    stack = blobs([[(10, 12)]])
    with pytest.raises(ValueError, match="method must be one of"):
        stack.signal.find_peaks2D(method="magic")
    with pytest.raises(ValueError, match="reference must be"):
        stack.signal.estimate_shift2D(reference="stat")
    with pytest.raises(ValueError, match="two signal dims"):
        xsignal.estimate_shift2D(stack.signal.set_signal_dims("x"))
