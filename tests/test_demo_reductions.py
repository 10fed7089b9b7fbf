"""The demo's ROI and histogram steps on a small file, checked against numpy."""

from __future__ import annotations

import numpy as np
import xarray as xr

import xsignal
from xsignal.demo import (
    DEMO_STEPS,
    DemoState,
    step_histogram,
    step_roi_virtual_detector,
)
from xsignal.testing import write_spectrum_image


def test_roi_and_histogram_steps(tmp_path, scheduler):
    path = write_spectrum_image(tmp_path / "si.nc", (12, 16, 64), rank=2)
    state = DemoState(folder=tmp_path, shape=(12, 16, 64), progress=False)
    state.data = xsignal.open(path)
    assert "window image" in step_roi_virtual_detector(state)
    assert "bins" in step_histogram(state)
    state.data.close()
    values = xr.open_dataarray(path, engine="h5netcdf").load()
    # the region's mean spectrum: pixels whose centre is inside the circle
    x, y = values["x"].values, values["y"].values
    radius = 0.25 * min(np.ptp(x), np.ptp(y))
    inside = (x[None, :] - np.median(x)) ** 2 + (
        y[:, None] - np.median(y)
    ) ** 2 <= radius**2
    want = values.values[inside].mean(axis=0)
    np.testing.assert_allclose(state.results["roi_spectrum"], want, rtol=1e-5)
    energy = values["energy"].values
    lo, hi = np.quantile(energy, [0.45, 0.55])
    window = (energy >= lo) & (energy <= hi)
    np.testing.assert_allclose(
        state.results["window_image"], values.values[..., window].sum(-1), rtol=1e-5
    )
    hist = state.results["histogram"]
    assert int(hist.sum()) == values.size
    titles = [title for title, _ in DEMO_STEPS]
    assert titles.index("histogram of all values") > titles.index(
        "compute the navigator image"
    )
