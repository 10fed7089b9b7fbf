"""``xsignal demo``: the whole lazy pipeline on a synthetic spectrum image.

Each step computes something a microscopist would and, when matplotlib is
installed, draws it into the output folder: the quick look (navigator and
a spectrum), a region's mean spectrum, the histogram, the scree plot, the
factors and loadings, and the model against the data at one pixel. The
synthetic data file goes to a temporary folder and is removed at the end
unless it is asked to be kept.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import xsignal

from . import engine
from .testing import write_spectrum_image

DEMO_SIZES = {
    "tiny": (32, 32, 256),
    "S": (128, 128, 1024),
    "M": (256, 256, 1024),
    "L": (1024, 1024, 1024),
}


@dataclass
class DemoState:
    """What the demo's steps share: folders, the data, and the results.

    ``folder`` holds the synthetic data file, ``out`` the figures (the same
    folder unless given).
    """

    folder: Path
    shape: tuple[int, ...]
    progress: bool | None
    out: Path | None = None
    data: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def compute(self, *objs: Any, desc: str) -> tuple[Any, ...]:
        """One ``dask.compute`` with a progress bar labelled ``desc``."""
        return engine.compute(*objs, progress=self.progress, desc=desc)

    def figure(self, **kwargs: Any) -> Any:
        """A new matplotlib Figure (no pyplot state), or None without it."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            return None
        return Figure(layout="constrained", **kwargs)

    def save(self, fig: Any, name: str) -> str:
        folder = self.out or self.folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        fig.savefig(path, dpi=90)
        self.written.append(path)
        return f"; drew {name}"


def _units(da: Any, dim: str) -> str:
    units = da.coords[dim].attrs.get("units") if dim in da.coords else None
    return f"{dim} ({units})" if units else dim


def step_write(state: DemoState) -> str:
    path = state.folder / "spectrum_image.nc"
    write_spectrum_image(path, state.shape, rank=4, seed=0)
    state.results["path"] = path
    return f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB on disk"


def step_open(state: DemoState) -> str:
    state.data = xsignal.open(state.results["path"])
    return repr(state.data.signal)


def step_navigator(state: DemoState) -> str:
    """The navigator image, then the quick look: navigator and a spectrum."""
    da = state.data
    (image,) = state.compute(da.signal.navigator(), desc="navigator")
    state.results["navigator"] = image
    summary = (
        f"navigator image {dict(image.sizes)}: min {float(image.min()):.4g}, "
        f"max {float(image.max()):.4g}"
    )
    fig = state.figure(figsize=(10, 4))
    if fig is None:
        return summary
    centre = {d: n // 2 for d, n in zip(da.signal.navigation_dims, image.shape)}
    xsignal.plot(da, pixel=centre, navigator=image, figure=fig)
    return summary + state.save(fig, "quick_look.png")


def _centre_of_mass(spectrum: np.ndarray, energy: np.ndarray) -> float:
    """Centre of mass of one spectrum, in the units of ``energy``."""
    return float((spectrum * energy).sum() / spectrum.sum())


def step_map(state: DemoState) -> str:
    da = state.data
    (sig,) = da.signal.signal_dims[:1]
    energy = np.asarray(da[sig].values, dtype=da.dtype)
    com = da.signal.map(_centre_of_mass, energy=energy, output_dtype="f8")
    (image,) = state.compute(com, desc="map")
    state.results["centre_of_mass"] = image
    pixels = da.signal.navigation_size
    return (
        f"centre of mass of {pixels} spectra (a Python function per pixel): "
        f"{float(image.min()):.2f} .. {float(image.max()):.2f} "
        f"{da[sig].attrs.get('units', '')}".rstrip()
    )


def step_roi_virtual_detector(state: DemoState) -> str:
    """A region's mean spectrum and an energy-window image, from ROIs, lazily."""
    da = state.data
    ydim, xdim = da.signal.navigation_dims[-2:]
    x, y = da[xdim].values, da[ydim].values
    radius = 0.25 * min(np.ptp(x), np.ptp(y))
    disc = xsignal.CircleROI(cx=float(np.median(x)), cy=float(np.median(y)), r=radius)
    region = disc(da)
    spectrum = xsignal.nanmean(region, "navigation")
    peak = xsignal.valuemax(spectrum)
    members = xsignal.nansum(region.isel(energy=0).notnull(), None)
    energy = da["energy"].values
    lo, hi = np.quantile(energy, [0.45, 0.55])
    window = xsignal.RectangularROI(left=lo, top=y.min(), right=hi, bottom=y.max())
    # a virtual detector over (energy, y): the window image over the navigation
    image = xsignal.nansum(window(da, dims=("energy", ydim)), "energy")
    spectrum, peak, members, image = state.compute(
        spectrum, peak, members, image, desc="ROIs"
    )
    state.results["roi_spectrum"] = spectrum
    state.results["window_image"] = image
    summary = (
        f"circle ROI r={radius:g} around the centre ({int(members)} pixels): mean "
        f"spectrum peaks at {float(peak):g} eV; {lo:g}-{hi:g} eV window image "
        f"{dict(image.sizes)}: mean {float(image.mean()):.4g}"
    )
    fig = state.figure(figsize=(6, 3.5))
    if fig is None:
        return summary
    ax = fig.subplots()
    ax.plot(spectrum["energy"].values, spectrum.values)
    ax.axvspan(lo, hi, color="orange", alpha=0.3, label="window of the image")
    ax.set_xlabel(_units(spectrum, "energy"))
    ax.set_ylabel(f"mean ({da.attrs.get('units', 'counts')})")
    ax.set_title(f"mean spectrum of {int(members)} pixels in a circle ROI")
    ax.legend()
    return summary + state.save(fig, "roi_spectrum.png")


def step_histogram(state: DemoState) -> str:
    """Histogram of the spectrum image's values, bins by the streaming fd rule."""
    start = time.perf_counter()
    hist = xsignal.histogram(state.data, bins="fd")
    stats_seconds = time.perf_counter() - start
    (hist,) = state.compute(hist, desc="histogram")
    state.results["histogram"] = hist
    mode = float(hist["bin"][int(hist.argmax("bin"))])
    summary = (
        f"{hist.sizes['bin']} bins (fd rule, statistics pass {stats_seconds:.2f} s), "
        f"{int(hist.sum())} values, mode near {mode:.4g}"
    )
    fig = state.figure(figsize=(6, 3.5))
    if fig is None:
        return summary
    ax = fig.subplots()
    ax.stairs(hist.values, hist.attrs.get("bin_edges", None), fill=True)
    ax.set_yscale("log")
    ax.set_xlabel(f"value ({state.data.attrs.get('units', 'counts')})")
    ax.set_ylabel("count")
    ax.set_title(f"histogram of all values ({hist.sizes['bin']} bins, fd rule)")
    return summary + state.save(fig, "histogram.png")


def step_decomposition(state: DemoState) -> str:
    """SVD of the lazy data (Poisson scaled): the scree plot, and the first
    four factors and loadings."""
    result = xsignal.decomposition(
        state.data,
        "SVD",
        6,
        normalize_poissonian_noise=True,
        progress=state.progress,
    )
    (loadings,) = state.compute(result.loadings, desc="loadings")
    result.loadings = loadings
    state.results["decomposition"] = result
    ratio = ", ".join(f"{r:.3g}" for r in result.explained_variance_ratio.values)
    summary = f"SVD, 6 components; explained variance ratio {ratio}"
    fig = state.figure(figsize=(5, 3.5))
    if fig is None:
        return summary + "; matplotlib is not installed: no figures drawn"
    result.plot_explained_variance_ratio(ax=fig.subplots())
    summary += state.save(fig, "scree.png")
    fig = state.figure(figsize=(9, 11))
    result.plot(4, figure=fig)
    return summary + state.save(fig, "factors_loadings.png").replace(";", ",")


def step_model(state: DemoState) -> str:
    """The rank-4 model, lazily, its mean absolute residual (one pass), and
    model against data at the centre pixel."""
    da = state.data
    result = state.results["decomposition"]
    model = result.model(4)
    residual = abs(model - da).mean()
    centre = {d: da.sizes[d] // 2 for d in da.signal.navigation_dims}
    value, at_model, at_data = state.compute(
        residual, model.isel(centre), da.isel(centre), desc="model"
    )
    summary = f"rank-4 model: mean absolute residual {float(value):.3g} counts"
    fig = state.figure(figsize=(6, 3.5))
    if fig is None:
        return summary
    ax = fig.subplots()
    energy = at_data["energy"].values
    ax.plot(energy, at_data.values, label="data", alpha=0.6)
    ax.plot(energy, at_model.values, label="rank-4 model")
    ax.set_xlabel(_units(at_data, "energy"))
    ax.set_ylabel(da.attrs.get("units", "counts"))
    where = ", ".join(f"{d}={i}" for d, i in centre.items())
    ax.set_title(f"model and data at {where}")
    ax.legend()
    return summary + state.save(fig, "model_vs_data.png")


DemoStep = Callable[[DemoState], str]
DEMO_STEPS: list[tuple[str, DemoStep]] = [
    ("write a synthetic spectrum image", step_write),
    ("open it lazily", step_open),
    ("compute the navigator image", step_navigator),
    ("map a function over every spectrum", step_map),
    (
        "ROI spectrum and energy-window image (virtual detector)",
        step_roi_virtual_detector,
    ),
    ("histogram of all values", step_histogram),
    ("decompose it (SVD, 6 components)", step_decomposition),
    ("rebuild the rank-4 model", step_model),
]


def run_demo(
    size: str = "S",
    *,
    out: str | Path = "xsignal-demo",
    keep_data: bool = False,
    progress: bool | None = None,
    where: str = "threads",
) -> DemoState:
    """Run every step, print what each found and the summary; return the state.

    The data file is written to a temporary folder (to ``out`` with
    ``keep_data``) and removed at the end unless ``keep_data``; the figures
    go to ``out``.
    """
    shape = DEMO_SIZES[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = out if keep_data else Path(tempfile.mkdtemp(prefix="xsignal-demo-"))
    state = DemoState(folder=folder, shape=shape, progress=progress, out=out)
    print(
        f"xsignal {xsignal.__version__} demo: {'x'.join(map(str, shape))} "
        f"float32 spectrum image, on {where}; figures in {out.resolve()}"
    )
    timings = []
    try:
        for title, step in DEMO_STEPS:
            start = time.perf_counter()
            summary = step(state)
            seconds = time.perf_counter() - start
            timings.append((title, seconds))
            print(f"- {title} ({seconds:.2f} s): {summary}", flush=True)
    finally:
        if state.data is not None:
            xsignal.close_file(state.data)
        if not keep_data:
            shutil.rmtree(folder, ignore_errors=True)
    width = max(len(t) for t, _ in timings)
    print("\nsummary")
    for title, seconds in timings:
        print(f"  {title:<{width}}  {seconds:7.2f} s")
    print(f"  {'total':<{width}}  {sum(s for _, s in timings):7.2f} s")
    if keep_data:
        print(f"data kept: {state.results['path']}")
    print(f"figures in {out.resolve()}:" if state.written else "no figures drawn")
    for path in state.written:
        print(f"  {path.name}")
    return state
