"""A quick look at a signal, HyperSpy's ``s.plot()``, and decomposition plots.

:func:`plot` draws the navigator (the sum over the signal dims, or an
image the user gives) beside the signal at one navigation pixel; clicks,
drags and arrow keys on the navigator move the pixel, through matplotlib's
own events, so the figure is interactive in Jupyter with ipympl
(``%matplotlib widget``) and in desktop windows, and static (saveable) in
scripts. Only the chunk holding the current pixel is read for the signal
panel. matplotlib is an optional dependency (``xsignal[plot]``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import xarray as xr

from . import navigators
from .dims import _check_dataarray, coordinate_values, navigation_dims, signal_dims
from .lazy import compute, compute_all
from .reductions import navigator as summed

__all__ = ["plot", "plot_decomposition"]


def _pyplot() -> ModuleType:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            'plotting needs matplotlib: pip install "xsignal[plot]" (or matplotlib)'
        ) from err
    return plt


def _new_figure(plt: ModuleType, figsize: tuple[float, float]) -> Any:
    """A pyplot figure that a notebook shows once.

    Jupyter shows pyplot figures when the cell ends (inline: a picture;
    ipympl: the live canvas), and a figure again when it is the cell's
    value (a call returning it on the last line). Figures made here are of
    a :class:`matplotlib.figure.Figure` subclass whose picture, in an
    IPython kernel, is drawn once: with the inline backend the first
    display closes it (so the end of the cell does not draw it again);
    with a live canvas (ipympl) the value shows as text, as
    ``plt.subplots()``'s tuple does.
    """
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class ShownOnce(Figure):
            """A matplotlib Figure shown once in notebooks (see _new_figure)."""

        ShownOnce.__name__ = ShownOnce.__qualname__ = "Figure"
        _FIGURE_CLASS = ShownOnce
        _register_in_ipython(plt, Figure, ShownOnce)
    return plt.figure(figsize=figsize, layout="constrained", FigureClass=_FIGURE_CLASS)


_FIGURE_CLASS: Any = None
_PICTURES = ("image/png", "image/jpeg", "image/svg+xml", "application/pdf")


def _register_in_ipython(plt: ModuleType, base: type, cls: type) -> None:
    """In an IPython kernel, pictures of ``cls`` as described in
    :func:`_new_figure` (other figures are left as they are)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    for mime in _PICTURES:
        formatter = shell.display_formatter.formatters.get(mime)
        if formatter is None:
            continue
        try:
            picture = formatter.lookup_by_type(base)
        except KeyError:
            continue  # this kernel draws no such picture of figures

        def once(figure: Any, picture: Any = picture) -> Any:
            if "inline" not in plt.get_backend():
                return None  # a live canvas, shown by its backend
            drawn = picture(figure)
            plt.close(figure)  # drawn: the end of the cell skips it
            return drawn

        formatter.for_type(cls, once)


def _label(da: xr.DataArray, dim: Hashable) -> str:
    units = da.coords[dim].attrs.get("units") if dim in da.coords else None
    return f"{dim} ({units})" if units else str(dim)


def _extent(da: xr.DataArray, xdim: Hashable, ydim: Hashable) -> list[float]:
    """imshow's extent putting pixel centres on their coordinates, the first
    row at the top (as HyperSpy draws images)."""

    def edges(dim: Hashable) -> tuple[float, float]:
        v = coordinate_values(da, dim)
        half = (v[-1] - v[0]) / (len(v) - 1) / 2 if len(v) > 1 else 0.5
        return v[0] - half, v[-1] + half

    x0, x1 = edges(xdim)
    y0, y1 = edges(ydim)
    return [x0, x1, y1, y0]


def _units(da: xr.DataArray, dim: Hashable) -> Any:
    return da.coords[dim].attrs.get("units") if dim in da.coords else None


def _draw_image(
    figure: Any,
    ax: Any,
    da: xr.DataArray,
    ydim: Hashable,
    xdim: Hashable,
    label: str | None = None,
) -> Any:
    """``da`` over (``ydim``, ``xdim``) as HyperSpy draws an image: first row
    at the top, pixel centres on their coordinates, labels with units, a
    labelled colour bar (``label``, default the data's name and units);
    square pixels when both axes have the same units (a map in nm is not
    stretched). Returns the image artist."""
    image = da.transpose(ydim, xdim)
    same_units = _units(image, ydim) == _units(image, xdim)
    im = ax.imshow(
        np.asarray(image.values, dtype=float),
        extent=_extent(image, xdim, ydim),
        origin="upper",
        aspect="equal" if same_units else "auto",
        interpolation="nearest",
    )
    figure.colorbar(im, ax=ax, label=label or _intensity_label(da))
    ax.set_xlabel(_label(image, xdim))
    ax.set_ylabel(_label(image, ydim))
    return im


def _intensity_label(da: xr.DataArray) -> str:
    units = da.attrs.get("units")
    name = da.attrs.get("long_name") or da.name or "intensity"
    return f"{name} ({units})" if units else str(name)


class SignalPlot:
    """The state of one :func:`plot` figure (``figure.xsignal``).

    Attributes
    ----------
    pixel : dict
        The current navigation pixel, ``{dim: index}``.
    figure : matplotlib.figure.Figure
    navigator_axes, signal_axes : matplotlib Axes or None
    """

    def __init__(
        self,
        da: xr.DataArray,
        navigator: xr.DataArray | None,
        pixel: dict[Hashable, int],
        figure: Any,
        summed: bool = False,
    ) -> None:
        self.da = da
        self.summed = summed  # the navigator is the sum over the signal dims
        self.nav = navigation_dims(da)
        self.sig = signal_dims(da)
        self.pixel = pixel
        self.figure = figure
        self.navigator = navigator
        # matplotlib objects (Axes; a Line2D, AxesImage or Text artist)
        self.navigator_axes: Any = None
        self.signal_axes: Any = None
        self._marker: Any = None
        self._artist: Any = None
        self._dragging = False

    # --- drawing -------------------------------------------------------------

    def draw(self) -> None:
        fig = self.figure
        panels = 2 if self.navigator is not None else 1
        axes = fig.subplots(1, panels, squeeze=False)[0]
        if self.navigator is not None:
            self.navigator_axes = axes[0]
            self._draw_navigator(axes[0])
        self.signal_axes = axes[-1]
        self._draw_signal(axes[-1])
        fig.canvas.mpl_connect("button_press_event", self._on_press)
        fig.canvas.mpl_connect("motion_notify_event", self._on_motion)
        fig.canvas.mpl_connect("button_release_event", self._on_release)
        fig.canvas.mpl_connect("key_press_event", self._on_key)

    def _image_dims(self) -> tuple[Hashable, ...]:
        """The navigation dims the navigator panel shows (the last two)."""
        return self.nav[-2:]

    def _draw_navigator(self, ax: Any) -> None:
        nav = self._navigator_view()
        shown = self._image_dims()
        title = self.da.attrs.get("title") or "navigator"
        label = self._navigator_label()
        if len(shown) == 2:
            _draw_image(self.figure, ax, nav, *shown, label)
            (self._marker,) = ax.plot([], [], "s", mfc="none", mec="red", ms=10, mew=2)
        else:
            (xdim,) = shown
            ax.plot(coordinate_values(nav, xdim), np.asarray(nav.values, dtype=float))
            ax.set_xlabel(_label(nav, xdim))
            ax.set_ylabel(label)
            self._marker = ax.axvline(0, color="red")
        ax.set_title(str(title))
        self._move_marker()

    def _navigator_label(self) -> str:
        """What the navigator shows: "counts (sum over energy)" for the sum
        over the signal dims, else the given image's own name."""
        nav = self.navigator
        assert nav is not None
        if self.summed:
            over = ", ".join(map(str, self.sig))
            what = self.da.attrs.get("units") or self.da.name or "intensity"
            return f"{what} (sum over {over})"
        return _intensity_label(nav) if (nav.name or nav.attrs) else "navigator"

    def _navigator_view(self) -> xr.DataArray:
        """The navigator over the shown dims (others at the current pixel)."""
        other = {d: self.pixel[d] for d in self.nav[:-2]}
        nav = self.navigator
        assert nav is not None  # drawn only with a navigator
        return nav.isel({d: i for d, i in other.items() if d in nav.dims})

    def _move_marker(self) -> None:
        shown = self._image_dims()
        if self._marker is None:
            return
        if len(shown) == 2:
            ydim, xdim = shown
            x = coordinate_values(self.da, xdim)[self.pixel[xdim]]
            y = coordinate_values(self.da, ydim)[self.pixel[ydim]]
            self._marker.set_data([x], [y])
        else:
            (xdim,) = shown
            x = coordinate_values(self.da, xdim)[self.pixel[xdim]]
            self._marker.set_xdata([x, x])

    def current_signal(self) -> xr.DataArray:
        """The signal at the current pixel (reads only its chunk)."""
        return compute(self.da.isel(self.pixel), progress=False)

    def _signal_view(self) -> xr.DataArray:
        signal = self.current_signal()
        extra = self.sig[:-2]  # more than two signal dims: the first slice
        return signal.isel({d: 0 for d in extra})

    def _draw_signal(self, ax: Any) -> None:
        signal = self._signal_view()
        shown = self.sig[-2:]
        if len(shown) == 2:
            label = _intensity_label(self.da)
            self._artist = _draw_image(self.figure, ax, signal, *shown, label)
        elif len(shown) == 1:
            (xdim,) = shown
            (self._artist,) = ax.plot(
                coordinate_values(signal, xdim), np.asarray(signal.values, dtype=float)
            )
            ax.set_xlabel(_label(signal, xdim))
            ax.set_ylabel(_intensity_label(self.da))
        else:  # no signal dims: one number per pixel
            self._artist = ax.text(
                0.5,
                0.5,
                f"{float(signal.values):g}",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=16,
            )
            ax.set_axis_off()
        ax.set_title(self._where())

    def _where(self) -> str:
        """The current pixel in coordinate units: "y = 3.2 nm, x = 1.6 nm"
        (the index where a dim has no numeric coordinate)."""
        if not self.pixel:
            return "signal"
        parts = []
        for dim, index in self.pixel.items():
            coord = self.da.coords.get(dim)
            if coord is None or coord.dtype.kind not in "iuf":
                parts.append(f"{dim}={index}")
                continue
            units = coord.attrs.get("units")
            value = f"{float(coord.values[index]):.4g}"
            parts.append(f"{dim} = {value} {units}" if units else f"{dim} = {value}")
        return ", ".join(parts)

    def _redraw_signal(self) -> None:
        signal = self._signal_view()
        values = np.asarray(signal.values, dtype=float)
        ax = self.signal_axes
        if len(self.sig[-2:]) == 2:
            self._artist.set_data(values.reshape(self._artist.get_array().shape))
            finite = values[np.isfinite(values)]
            if finite.size:
                self._artist.set_clim(finite.min(), finite.max())
        elif len(self.sig[-2:]) == 1:
            self._artist.set_ydata(values)
            ax.relim()
            ax.autoscale_view()
        else:
            self._artist.set_text(f"{float(values):g}")
        ax.set_title(self._where())

    # --- moving --------------------------------------------------------------

    def set_pixel(self, **indices: int) -> None:
        """Move to the pixel ``dim=index`` (clipped to the data) and redraw."""
        for dim, index in indices.items():
            if dim not in self.pixel:
                raise ValueError(
                    f"{dim!r} is not a navigation dim; they are {self.nav}"
                )
            self.pixel[dim] = int(np.clip(index, 0, self.da.sizes[dim] - 1))
        if self.navigator is not None and self.nav[:-2]:
            self._refresh_navigator()
        self._move_marker()
        self._redraw_signal()
        self.figure.canvas.draw_idle()

    def _refresh_navigator(self) -> None:
        values = np.asarray(self._navigator_view().values, float)
        images = self.navigator_axes.images
        if images:
            images[0].set_data(values)
            finite = values[np.isfinite(values)]
            if finite.size:  # colours for what is there (NaN: not yet)
                images[0].set_clim(finite.min(), finite.max())
        elif self.navigator_axes.lines:
            self.navigator_axes.lines[0].set_ydata(values)
            self.navigator_axes.relim()
            self.navigator_axes.autoscale_view()

    def fill_navigator(self, lazy: xr.DataArray, show_share: bool = True) -> None:
        """Compute the navigator ``lazy`` (drawn as NaN so far) and draw it
        in as its blocks complete, the share done in the panel's title; the
        figure is redrawn at each step (a window or ipympl canvas updates)."""
        ax = self.navigator_axes
        title = ax.get_title()
        self.figure.canvas.draw_idle()  # the signal panel and an empty navigator
        self.figure.canvas.flush_events()

        def show(partial: Any, fraction: float) -> None:
            self.navigator = partial
            self._refresh_navigator()
            if show_share and fraction < 1:
                ax.set_title(f"{title} ({fraction:.0%})")
            self.figure.canvas.draw_idle()
            self.figure.canvas.flush_events()  # the window's events, if any

        (self.navigator,) = compute_all(lazy, progress=show)
        ax.set_title(title)
        self._refresh_navigator()
        self.figure.canvas.draw_idle()

    def _nearest(self, dim: Hashable, value: float) -> int:
        return int(np.nanargmin(np.abs(coordinate_values(self.da, dim) - value)))

    def _on_press(self, event: Any) -> None:
        if event.inaxes is not self.navigator_axes or event.button != 1:
            return
        self._dragging = True
        self._jump(event)

    def _on_motion(self, event: Any) -> None:
        if self._dragging and event.inaxes is self.navigator_axes:
            self._jump(event)

    def _on_release(self, event: Any) -> None:
        self._dragging = False

    def _jump(self, event: Any) -> None:
        if event.xdata is None:
            return
        shown = self._image_dims()
        moves = {shown[-1]: self._nearest(shown[-1], event.xdata)}
        if len(shown) == 2 and event.ydata is not None:
            moves[shown[0]] = self._nearest(shown[0], event.ydata)
        self.set_pixel(**{str(k): v for k, v in moves.items()})

    def _on_key(self, event: Any) -> None:
        shown = self._image_dims()
        if not shown:
            return
        xdim = shown[-1]
        steps = {"right": (xdim, 1), "left": (xdim, -1)}
        if len(shown) == 2:  # the first row is at the top: up is one row back
            steps.update({"up": (shown[0], -1), "down": (shown[0], 1)})
        if event.key in steps:
            dim, step = steps[event.key]
            self.set_pixel(**{str(dim): self.pixel[dim] + step})


def _start_pixel(
    da: xr.DataArray, pixel: Mapping[Any, int] | None
) -> dict[Hashable, int]:
    nav = navigation_dims(da)
    out = {d: 0 for d in nav}
    for dim, index in (pixel or {}).items():
        if dim not in out:
            raise ValueError(f"pixel names {dim!r}, not a navigation dim of {nav}")
        size = da.sizes[dim]
        if not -size <= int(index) < size:
            raise IndexError(f"pixel {dim}={index} is outside 0..{size - 1}")
        out[dim] = int(index) % size
    return out


def _navigator(da: xr.DataArray, navigator: Any) -> xr.DataArray | None:
    """The navigator to draw: the sum over the signal dims (lazy when
    ``da`` is), the one given (in memory), or None."""
    nav = navigation_dims(da)
    if navigator is None or not nav:
        return None
    if isinstance(navigator, str):
        if navigator != "auto":
            raise ValueError(
                f"navigator must be 'auto', None or an array, not {navigator!r}"
            )
        return summed(da)
    if isinstance(navigator, xr.DataArray):
        missing = [d for d in nav[-2:] if d not in navigator.dims]
        if missing:
            raise ValueError(
                f"the navigator has dims {navigator.dims} but must have the "
                f"navigation dims {nav[-2:]}"
            )
        return compute(navigator, progress=False)
    values = np.asarray(navigator)
    shape = tuple(da.sizes[d] for d in nav)
    if values.shape not in (shape, shape[-2:]):
        raise ValueError(
            f"the navigator has shape {values.shape} but the navigation shape "
            f"is {shape}"
        )
    dims = nav if values.shape == shape else nav[-2:]
    return xr.DataArray(
        values, dims=dims, coords={d: da.coords[d] for d in dims if d in da.coords}
    )


def plot(
    da: xr.DataArray,
    pixel: Mapping[Any, int] | None = None,
    navigator: Any = "auto",
    *,
    figure: Any = None,
    progress: bool | None = None,
) -> Any:
    """Draw the navigator and the signal at one pixel (HyperSpy's ``s.plot()``).

    Left, the navigator: the sum over the signal dims (the one stored in
    the file where the data was saved with it, read at once; else drawn at
    once and filled in as the pass over the data completes its blocks),
    an image you give, or none; the first row at
    the top, axes in coordinate units with their units, a colour bar, a red
    square at the current pixel (a line and a vertical marker for one
    navigation dim; more than two: the last two, the others at the pixel).
    Right, the signal at the pixel: a line against its coordinate (one
    signal dim) or an image with a colour bar (two), read from its chunk
    only. Clicking or dragging on the navigator and the arrow keys move
    the pixel (in Jupyter with ipympl, ``%matplotlib widget``, or a desktop
    window); in a script pass ``pixel=`` and save the figure.

    Parameters
    ----------
    da : xarray.DataArray
        In memory or lazy.
    pixel : dict, optional
        Navigation indices to start at, e.g. ``{"y": 5, "x": 3}`` (others 0).
    navigator : "auto", None or array
        "auto": the sum over the signal dims; None: no navigator panel; a
        DataArray over the navigation dims or an array of the navigation
        shape: that image.
    figure : matplotlib Figure, optional
        Draw into it (cleared first); default a new figure.
    progress : bool, optional
        While the navigator is computed, the share done in its title
        (``False``: none).

    Returns
    -------
    matplotlib.figure.Figure
        With ``figure.xsignal``, the :class:`SignalPlot` holding the current
        ``pixel`` and ``set_pixel(**indices)``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import xsignal
    >>> from xsignal.testing import spectrum_image
    >>> data = spectrum_image((16, 16, 64), rank=2).data.chunk({"y": 4})
    >>> fig = data.signal.plot(pixel={"y": 5, "x": 3})
    >>> fig.xsignal.pixel
    {'y': 5, 'x': 3}
    >>> fig.xsignal.set_pixel(x=7)
    >>> fig.xsignal.signal_axes.get_title()
    'y = 10 nm, x = 14 nm'
    """
    _check_dataarray(da)
    plt = _pyplot()
    start = _start_pixel(da, pixel)
    nav_image = _navigator(da, navigator)
    pending = None
    if nav_image is not None and nav_image.chunks is not None:
        if navigators.stored(da) is not None:  # read from the file: small
            nav_image = compute(nav_image, progress=False)
        else:  # drawn at once, filled in as the pass goes
            pending = nav_image
            nav_image = nav_image.copy(data=np.full(nav_image.shape, np.nan))
    if figure is None:
        panels = 2 if nav_image is not None else 1
        figure = _new_figure(plt, (5.2 * panels, 4.2))
    else:
        figure.clear()
    summed = isinstance(navigator, str)  # "auto", checked by _navigator
    state = SignalPlot(da, nav_image, start, figure, summed=summed)
    state.draw()
    figure.xsignal = state  # keeps the event handlers alive with the figure
    if pending is not None:
        state.fill_navigator(pending, show_share=progress is not False)
    return figure


def plot_decomposition(
    result: Any, components: int | Sequence[int] | None = None, *, figure: Any = None
) -> Any:
    """Factors and loadings side by side, one row per component.

    A factor over one signal dim is a line against its coordinate, over two
    an image; a loading over two navigation dims is an image (first row at
    the top), over one a line; images have colour bars, axes units.

    Parameters
    ----------
    result : Decomposition or Separation
    components : int, list of int or None
        The first ``n`` components, those indices, or all.
    figure : matplotlib Figure, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import xsignal
    >>> from xsignal.testing import spectrum_image
    >>> dec = xsignal.decomposition(spectrum_image((8, 8, 32), rank=2).data, "SVD", 3)
    >>> fig = dec.plot(2)
    >>> len(fig.axes)  # two rows of factor, loading (and the loadings' colour bars)
    6
    """
    plt = _pyplot()
    chosen = result._components(components)
    factors, loadings = compute_all(  # one pass over shared inputs
        result.factors.isel(component=chosen),
        result.loadings.isel(component=chosen),
        progress=False,
    )
    if figure is None:
        figure = _new_figure(plt, (9, 2.6 * len(chosen) + 0.4))
    else:
        figure.clear()
    axes = figure.subplots(len(chosen), 2, squeeze=False)
    for row, index in enumerate(chosen):
        _draw_component(
            figure, axes[row, 0], factors.isel(component=row), f"factor {index}"
        )
        _draw_component(
            figure, axes[row, 1], loadings.isel(component=row), f"loading {index}"
        )
    figure.suptitle(result.algorithm)
    return figure


def _draw_component(figure: Any, ax: Any, part: xr.DataArray, title: str) -> None:
    dims = [d for d in part.dims if d != "component"]
    if len(dims) >= 2:
        image = part.isel({d: 0 for d in dims[:-2]})
        ydim, xdim = dims[-2:]
        _draw_image(figure, ax, image, ydim, xdim, title.split()[0])
    elif len(dims) == 1:
        (xdim,) = dims
        ax.plot(coordinate_values(part, xdim), np.asarray(part.values, dtype=float))
        ax.set_xlabel(_label(part, xdim))
        ax.set_ylabel(title.split()[0])  # "factor" or "loading"
    else:
        ax.text(
            0.5, 0.5, f"{float(part.values):g}", ha="center", transform=ax.transAxes
        )
    ax.set_title(title)
