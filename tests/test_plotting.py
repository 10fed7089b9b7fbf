"""da.signal.plot and dec.plot on the Agg backend, driven by real matplotlib
mouse and key events sent to the canvas."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from clusters import local_client

import xsignal
from xsignal.testing import spectrum_image

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.backend_bases import KeyEvent, MouseEvent  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def spectra(lazy: bool = True) -> xr.DataArray:
    da = spectrum_image((6, 8, 32), rank=3, seed=4).data
    da = da.assign_coords(
        y=("y", np.arange(6) * 2.0, {"units": "nm"}),
        x=("x", 10 + np.arange(8) * 0.5, {"units": "nm"}),
    )
    return da.chunk({"y": 2}) if lazy else da


def click(fig, ax, x, y, kind="button_press_event", button=1):
    px, py = ax.transData.transform((x, y))
    MouseEvent(kind, fig.canvas, px, py, button=button)._process()


def key(fig, name):
    KeyEvent("key_press_event", fig.canvas, name)._process()


def signal_line(fig) -> np.ndarray:
    return fig.xsignal.signal_axes.get_lines()[0].get_ydata()


def test_navigator_is_drawn_like_hyperspy():
    da = spectra()
    fig = da.signal.plot()
    nav, sig = fig.xsignal.navigator_axes, fig.xsignal.signal_axes
    image = nav.images[0]
    expected = da.sum("energy").values
    np.testing.assert_allclose(image.get_array(), expected, rtol=1e-5)
    left, right, bottom, top = image.get_extent()
    assert top < bottom  # the first row at the top
    assert (left, right) == pytest.approx((9.75, 13.75))
    assert nav.get_xlabel() == "x (nm)" and nav.get_ylabel() == "y (nm)"
    assert sig.get_xlabel() == "energy (eV)"
    # both axes in nm: square pixels, though the pixels are 2 x 0.5 nm
    assert nav.get_aspect() == 1.0
    (colour_bar,) = [ax for ax in fig.axes if ax not in (nav, sig)]
    assert colour_bar.get_ylabel() == "counts (sum over energy)"
    assert sig.get_title() == "y = 0 nm, x = 10 nm"
    assert len(fig.axes) == 3  # navigator, its colour bar, signal
    np.testing.assert_allclose(signal_line(fig), da.isel(y=0, x=0).values)


def test_click_drag_and_keys_move_the_pixel():
    da = spectra()
    fig = da.signal.plot()
    nav = fig.xsignal.navigator_axes
    click(fig, nav, x=11.5, y=8.0)  # x index 3, y index 4
    assert fig.xsignal.pixel == {"y": 4, "x": 3}
    np.testing.assert_allclose(signal_line(fig), da.isel(y=4, x=3).values)
    marker = nav.get_lines()[0].get_data()
    assert (marker[0][0], marker[1][0]) == (11.5, 8.0)
    click(fig, nav, x=13.4, y=2.2, kind="motion_notify_event")  # dragging
    assert fig.xsignal.pixel == {"y": 1, "x": 7}
    click(fig, nav, x=13.4, y=2.2, kind="button_release_event")
    click(fig, nav, x=10.0, y=0.0, kind="motion_notify_event")  # not dragging
    assert fig.xsignal.pixel == {"y": 1, "x": 7}
    key(fig, "left")
    key(fig, "up")  # the first row is at the top
    assert fig.xsignal.pixel == {"y": 0, "x": 6}
    key(fig, "up")  # stays inside the data
    assert fig.xsignal.pixel == {"y": 0, "x": 6}
    np.testing.assert_allclose(signal_line(fig), da.isel(y=0, x=6).values)
    assert fig.xsignal.signal_axes.get_title() == "y = 0 nm, x = 13 nm"


def test_script_pixel_and_savefig(tmp_path):
    da = spectra(lazy=False)
    fig = xsignal.plot(da, pixel={"y": 5, "x": -1})
    assert fig.xsignal.pixel == {"y": 5, "x": 7}
    np.testing.assert_allclose(signal_line(fig), da.isel(y=5, x=7).values)
    fig.savefig(tmp_path / "look.png")
    assert (tmp_path / "look.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="'z'"):
        da.signal.plot(pixel={"z": 1})
    with pytest.raises(IndexError, match="x=8"):
        da.signal.plot(pixel={"x": 8})


def test_only_the_pixels_chunk_is_read(tmp_path):
    from dask.callbacks import Callback

    xsignal.save(spectra(), tmp_path / "si.nc")  # 3 chunks of 2 rows
    da = xsignal.open(tmp_path / "si.nc")
    fig = da.signal.plot(navigator=None)  # no navigator: nothing else to read
    assert fig.xsignal.navigator_axes is None and len(fig.axes) == 1
    reads = []

    class Count(Callback):
        def _pretask(self, key, dsk, state):
            if isinstance(key, tuple) and key[0] == da.data.name:
                reads.append(key)

    with Count(), dask.config.set({"optimization.fuse.active": False}):
        fig.xsignal.set_pixel(y=3)
    assert reads == [(da.data.name, 1, 0, 0)]  # the second row chunk only
    np.testing.assert_allclose(signal_line(fig), da.isel(y=3, x=0).values)


def test_given_navigator_and_images_with_colour_bars():
    stem = xr.DataArray(
        np.random.default_rng(1).random((3, 4, 8, 10)).astype("f4"),
        dims=("y", "x", "ky", "kx"),
        coords={"kx": ("kx", np.arange(10) * 0.1, {"units": "1/nm"})},
        attrs={"units": "counts"},
    ).signal.set_signal_dims("ky", "kx")
    virtual = np.arange(12.0).reshape(3, 4)
    fig = stem.signal.plot(navigator=virtual, pixel={"y": 2, "x": 1})
    np.testing.assert_array_equal(
        fig.xsignal.navigator_axes.images[0].get_array(), virtual
    )
    shown = fig.xsignal.signal_axes.images[0]
    np.testing.assert_allclose(shown.get_array(), stem.isel(y=2, x=1).values)
    assert fig.xsignal.signal_axes.get_xlabel() == "kx (1/nm)"
    assert len(fig.axes) == 4  # two images, two colour bars
    # ky has no coordinate, kx is in 1/nm: pixels as wide as the axes allow
    assert fig.xsignal.signal_axes.get_aspect() == "auto"
    labels = sorted(ax.get_ylabel() for ax in fig.axes[2:])
    assert labels == ["intensity (counts)", "navigator"]
    click(fig, fig.xsignal.navigator_axes, x=3, y=0)
    np.testing.assert_allclose(shown.get_array(), stem.isel(y=0, x=3).values)
    with pytest.raises(ValueError, match="navigation shape"):
        stem.signal.plot(navigator=np.zeros((2, 2)))


def test_one_navigation_dim_is_a_line():
    line = spectra(lazy=False).isel(y=0)
    fig = line.signal.plot()
    nav = fig.xsignal.navigator_axes
    np.testing.assert_allclose(nav.get_lines()[0].get_ydata(), line.sum("energy"))
    click(fig, nav, x=12.0, y=float(line.sum("energy").mean()))
    assert fig.xsignal.pixel == {"x": 4}
    key(fig, "right")
    assert fig.xsignal.pixel == {"x": 5}
    assert nav.lines[1].get_xdata()[0] == 12.5  # the vertical marker


def test_a_single_pixel_has_no_navigator():
    fig = spectra(lazy=False).isel(y=0, x=0).signal.plot()
    assert len(fig.axes) == 1 and fig.xsignal.pixel == {}


def test_decomposition_and_separation_plots():
    data = spectra(lazy=True)
    dec = data.signal.decomposition("SVD", 3)
    fig = dec.plot()
    factor_axes = [ax for ax in fig.axes if ax.get_title().startswith("factor")]
    loading_axes = [ax for ax in fig.axes if ax.get_title().startswith("loading")]
    assert len(factor_axes) == len(loading_axes) == 3
    assert factor_axes[0].get_xlabel() == "energy (eV)"
    assert factor_axes[0].get_ylabel() == "factor"
    assert loading_axes[0].get_xlabel() == "x (nm)"
    assert loading_axes[0].get_aspect() == 1.0
    bars = [ax for ax in fig.axes if ax not in factor_axes + loading_axes]
    assert {ax.get_ylabel() for ax in bars} == {"loading"}
    np.testing.assert_allclose(
        loading_axes[1].images[0].get_array(), dec.loadings.isel(component=1).values
    )
    assert len(fig.axes) == 9  # 3 factors, 3 loadings, 3 colour bars
    bss = dec.blind_source_separation(3)
    assert len(bss.plot([0, 2]).axes) == 6


def test_without_matplotlib_the_error_names_it():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import numpy as np, xarray as xr, xsignal\n"
        "try:\n"
        "    xr.DataArray(np.ones((2, 3))).signal.plot()\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "matplotlib" in out.stdout and "xsignal[plot]" in out.stdout


class RecordingCanvas:
    """An Agg canvas that keeps the navigator's picture at every redraw."""

    @staticmethod
    def figure(frames: list) -> object:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        class Canvas(FigureCanvasAgg):
            def draw_idle(self, *args, **kwargs):
                images = self.figure.axes[0].images if self.figure.axes else []
                if images:
                    frames.append(np.ma.filled(images[0].get_array(), np.nan).copy())
                super().draw_idle(*args, **kwargs)

        fig = Figure()
        Canvas(fig)
        return fig


def check_progressive(da, frames, fig):
    want = xsignal.navigator(da).values
    assert np.isnan(frames[0]).all()  # drawn at once, before any block
    np.testing.assert_allclose(frames[-1], want, rtol=1e-6)  # then filled in
    np.testing.assert_allclose(fig.xsignal.navigator.values, want, rtol=1e-6)
    for frame in frames:  # each picture: blocks done, NaN elsewhere
        done = ~np.isnan(frame)
        np.testing.assert_allclose(frame[done], want[done], rtol=1e-6)
    assert fig.axes[0].get_title() == "synthetic spectrum image"  # no share left


def test_without_a_stored_navigator_the_picture_fills_in():
    da = spectra()
    frames: list = []
    fig = da.signal.plot(figure=RecordingCanvas.figure(frames), pixel={"y": 3})
    check_progressive(da, frames, fig)
    assert len(frames) >= 2


def test_the_picture_fills_in_on_a_cluster():
    da = spectra()
    frames: list = []
    with local_client(processes=False):
        fig = da.signal.plot(figure=RecordingCanvas.figure(frames))
    check_progressive(da, frames, fig)
