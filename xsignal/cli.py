"""The ``xsignal`` command: demo, info."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import xsignal

from .io.save import format_for, is_url
from .progress import progress_bar
from .testing import write_spectrum_image

DEMO_SIZES = {
    "tiny": (32, 32, 256),
    "S": (128, 128, 1024),
    "M": (256, 256, 1024),
    "L": (1024, 1024, 1024),
}


@dataclass
class DemoState:
    """What the demo's steps share: the folder, the data, and the results."""

    folder: Path
    shape: tuple[int, ...]
    progress: bool | None
    data: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def step_write(state: DemoState) -> str:
    path = state.folder / "spectrum_image.nc"
    write_spectrum_image(path, state.shape, rank=4, seed=0)
    state.results["path"] = path
    state.written.append(path)
    return f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB on disk"


def step_open(state: DemoState) -> str:
    state.data = xsignal.open(state.results["path"])
    return repr(state.data.signal)


def step_navigator(state: DemoState) -> str:
    da = state.data
    image = da.signal.navigator().signal.compute(progress=state.progress)
    state.results["navigator"] = image
    return (
        f"navigator image {dict(image.sizes)}: min {float(image.min()):.4g}, "
        f"max {float(image.max()):.4g}"
    )


DemoStep = Callable[[DemoState], str]
DEMO_STEPS: list[tuple[str, DemoStep]] = [
    ("write a synthetic spectrum image", step_write),
    ("open it lazily", step_open),
    ("compute the navigator image", step_navigator),
]


def _centre_of_mass(spectrum: np.ndarray, energy: np.ndarray) -> float:
    """Centre of mass of one spectrum, in the units of ``energy``."""
    return float((spectrum * energy).sum() / spectrum.sum())


def step_map(state: DemoState) -> str:
    da = state.data
    (sig,) = da.signal.signal_dims[:1]
    energy = np.asarray(da[sig].values, dtype=da.dtype)
    com = da.signal.map(_centre_of_mass, energy=energy, output_dtype="f8")
    (image,) = xsignal.compute(com, progress=state.progress)
    state.results["centre_of_mass"] = image
    pixels = da.signal.navigation_size
    return (
        f"centre of mass of {pixels} spectra (a Python function per pixel): "
        f"{float(image.min()):.2f} .. {float(image.max()):.2f} "
        f"{da[sig].attrs.get('units', '')}".rstrip()
    )


DEMO_STEPS.append(("map a function over every spectrum", step_map))


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
    spectrum, peak, members, image = xsignal.compute(
        spectrum, peak, members, image, progress=state.progress
    )
    state.results["roi_spectrum"] = spectrum
    state.results["window_image"] = image
    return (
        f"circle ROI r={radius:g} around the centre ({int(members)} pixels): mean "
        f"spectrum peaks at {float(peak):g} eV; {lo:g}-{hi:g} eV window image "
        f"{dict(image.sizes)}: mean {float(image.mean()):.4g}"
    )


DEMO_STEPS.append(
    (
        "ROI spectrum and energy-window image (virtual detector)",
        step_roi_virtual_detector,
    )
)


def step_histogram(state: DemoState) -> str:
    """Histogram of the spectrum image's values, bins by the streaming fd rule."""
    start = time.perf_counter()
    hist = xsignal.histogram(state.data, bins="fd")
    stats_seconds = time.perf_counter() - start
    (hist,) = xsignal.compute(hist, progress=state.progress)
    state.results["histogram"] = hist
    mode = float(hist["bin"][int(hist.argmax("bin"))])
    return (
        f"{hist.sizes['bin']} bins (fd rule, statistics pass {stats_seconds:.2f} s), "
        f"{int(hist.sum())} values, mode near {mode:.4g}"
    )


DEMO_STEPS.append(("histogram of all values", step_histogram))


def step_decomposition(state: DemoState) -> str:
    """SVD of the lazy data (Poisson scaled), a scree plot and the first
    factors and loadings as PNG when matplotlib is installed."""
    result = xsignal.decomposition(
        state.data,
        "SVD",
        6,
        normalize_poissonian_noise=True,
        progress=state.progress,
    )
    (loadings,) = xsignal.compute(result.loadings, progress=state.progress)
    state.results["decomposition"] = result
    ratio = ", ".join(f"{r:.3g}" for r in result.explained_variance_ratio.values)
    summary = f"SVD, 6 components; explained variance ratio {ratio}"
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return summary + "; matplotlib is not installed: no plots written"
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    result.plot_explained_variance_ratio(ax=fig.subplots())
    scree = state.folder / "decomposition_scree.png"
    fig.savefig(scree, dpi=100)
    n = 4
    fig = Figure(figsize=(3 * n, 5.5), layout="constrained")
    axes = fig.subplots(2, n)
    sig = result.factors.dims[-1]
    for i in range(n):
        factor = result.factors.isel(component=i)
        axes[0, i].plot(factor[sig].values, factor.values)
        axes[0, i].set_title(f"factor {i}")
        axes[0, i].set_xlabel(str(sig))
        image = loadings.isel(component=i)
        axes[1, i].imshow(image.values.reshape(image.shape[0], -1), cmap="viridis")
        axes[1, i].set_title(f"loading {i}")
        axes[1, i].set_axis_off()
    panels = state.folder / "decomposition_factors_loadings.png"
    fig.savefig(panels, dpi=80)
    state.written += [scree, panels]
    return summary + f"; wrote {scree.name}, {panels.name}"


DEMO_STEPS.append(("decompose it (SVD, 6 components)", step_decomposition))


def step_model(state: DemoState) -> str:
    """The rank-4 model, lazily, and its mean absolute residual (one pass)."""
    result = state.results["decomposition"]
    model = result.model(4)
    residual = abs(model - state.data).mean()
    (value,) = xsignal.compute(residual, progress=state.progress)
    return f"rank-4 model: mean absolute residual {float(value):.3g} counts"


DEMO_STEPS.append(("rebuild the rank-4 model", step_model))


DEFAULT_COMPONENTS = 10


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that cannot be written, before any work."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} to write {out.name} in")


def run_decompose(args: argparse.Namespace) -> int:
    """``xsignal decompose FILE -a ALGO -k N -o OUT``: decompose a file lazily
    and write the result (``Decomposition.to_dataset``) as netCDF."""
    path = args.file
    if not is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    stem = Path(path.rstrip("/")).name.split(".")[0]
    out = Path(args.output or f"{stem}_decomposition.nc")
    _check_output(out, args.overwrite)
    if args.plot:
        _check_output(Path(args.plot), True)
    da = xsignal.open(path, variable=args.variable)
    if args.dtype:
        da = xsignal.change_dtype(da, args.dtype)
    elif da.dtype.kind in "iub":
        print(f"note: {da.dtype} data decomposed as float32 (choose with --dtype)")
        da = xsignal.change_dtype(da, "float32")
    k = args.output_dimension
    if k is None:
        k = min(DEFAULT_COMPONENTS, da.signal.signal_size, da.signal.navigation_size)
        print(
            f"note: {k} components (the default); the scree plot (--plot) shows "
            "how many hold signal, then choose with -k"
        )
    mask = None
    if args.mask:
        mask = xsignal.open(args.mask, lazy=False).astype(bool)
    progress = False if args.no_progress else None
    start = time.perf_counter()
    result = xsignal.decomposition(
        da,
        args.algorithm,
        k,
        navigation_mask=mask,
        normalize_poissonian_noise=args.poisson,
        centre=args.centre,
        progress=progress,
    )
    (ds,) = xsignal.compute(result.to_dataset(), progress=progress)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(out)  # never a half-written result
    finally:
        tmp.unlink(missing_ok=True)
    ratio = ", ".join(f"{r:.3g}" for r in result.explained_variance_ratio.values[:8])
    print(
        f"{result!r}\n  explained variance ratio: {ratio}\n"
        f"  {time.perf_counter() - start:.2f} s; wrote {out}"
    )
    if args.plot:
        result.plot_explained_variance_ratio().figure.savefig(args.plot, dpi=100)
        print(f"  scree plot: {args.plot}")
    return 0


def add_decompose_parser(sub: Any) -> None:
    cmd = sub.add_parser("decompose", help="decompose a file (SVD, PCA, ORPCA, ORNMF)")
    cmd.add_argument("file")
    cmd.add_argument(
        "-a", "--algorithm", default="SVD", help="SVD (default), PCA, ORPCA, ORNMF"
    )
    cmd.add_argument(
        "-k",
        "--output-dimension",
        type=int,
        help=f"number of components (default {DEFAULT_COMPONENTS}; the scree "
        "plot, --plot, shows how many hold signal)",
    )
    cmd.add_argument(
        "-o",
        "--output",
        help="netCDF file for the result (default: FILE's name + "
        "_decomposition.nc in the current folder)",
    )
    cmd.add_argument(
        "--dtype",
        help="decompose the values as this dtype (default: integers as float32)",
    )
    cmd.add_argument(
        "--poisson", action="store_true", help="normalize Poissonian noise"
    )
    cmd.add_argument("--centre", choices=["navigation", "signal"])
    cmd.add_argument("--variable", help="variable or dataset path to decompose")
    cmd.add_argument(
        "--mask",
        metavar="FILE",
        help="boolean navigation mask (True = leave the pixel out), a file "
        "xsignal.open reads, with the data's navigation dims",
    )
    cmd.add_argument("--plot", metavar="PNG", help="also write the scree plot here")
    cmd.add_argument("--overwrite", action="store_true")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmd.set_defaults(func=run_decompose)


def run_demo(args: argparse.Namespace) -> int:
    shape = DEMO_SIZES[args.size]
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="xsignal-"))
    folder.mkdir(parents=True, exist_ok=True)
    progress = False if args.no_progress else None
    state = DemoState(folder=folder, shape=shape, progress=progress)
    print(
        f"xsignal {xsignal.__version__} demo: {'x'.join(map(str, shape))} "
        f"float32 spectrum image in {folder}, on {args.scheduler_name}"
    )
    timings = []
    for title, step in DEMO_STEPS:
        start = time.perf_counter()
        summary = step(state)
        seconds = time.perf_counter() - start
        timings.append((title, seconds))
        print(f"- {title} ({seconds:.2f} s): {summary}", flush=True)
    width = max(len(t) for t, _ in timings)
    print("\nsummary")
    for title, seconds in timings:
        print(f"  {title:<{width}}  {seconds:7.2f} s")
    print(f"  {'total':<{width}}  {sum(s for _, s in timings):7.2f} s")
    print("files written:")
    for path in state.written:
        print(f"  {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    path = args.file
    if not is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    print(info_text(xsignal.open(path, variable=args.variable), path))
    return 0


def parse_chunks(text: str | None) -> dict[str, int] | None:
    """``"y=4,x=256"`` -> ``{"y": 4, "x": 256}`` (``-1`` = whole dim).

    Examples
    --------
    >>> parse_chunks("y=4, energy=-1")
    {'y': 4, 'energy': -1}
    >>> parse_chunks(None) is None
    True
    """
    if not text:
        return None
    chunks = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            chunks[name.strip()] = int(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                f"--chunks takes dim=size pairs separated by commas "
                f"(e.g. y=4,x=256,energy=-1), not {text!r}"
            )
    return chunks


def run_convert(args: argparse.Namespace) -> int:
    fmt, _ = format_for(args.output, args.format)  # a bad extension: before any work
    chunks = parse_chunks(args.chunks)
    da = xsignal.open(args.input, variable=args.variable)
    if args.dtype:
        da = xsignal.change_dtype(da, args.dtype)
    compression = None if args.compression == "none" else args.compression
    start = time.perf_counter()
    with progress_bar(None if args.progress else False, desc=f"convert to {fmt}"):
        xsignal.save(
            da,
            args.output,
            format=args.format,
            chunks=chunks,
            compression=compression,
            overwrite=args.overwrite,
        )
    seconds = time.perf_counter() - start
    out = xsignal.open(args.output)
    print(f"wrote {args.output} in {seconds:.2f} s: {out.signal!r}")
    return 0


def _stored_bytes(path: str | Path) -> int | None:
    """Bytes of a file, or of every file in a store's folder; None for URLs."""
    if is_url(str(path)):
        return None
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def human_bytes(n: float) -> str:
    """A size in bytes as people read it.

    Examples
    --------
    >>> human_bytes(512), human_bytes(36_000), human_bytes(4 * 2**30)
    ('512 B', '35.2 KiB', '4.00 GiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def _dims_text(da: xr.DataArray, dims: tuple) -> str:
    parts = []
    for dim in dims:
        units = da.coords[dim].attrs.get("units") if dim in da.coords else None
        parts.append(f"{dim}: {da.sizes[dim]}" + (f" ({units})" if units else ""))
    return ", ".join(parts) or "none"


def info_text(da: xr.DataArray, path: str | Path) -> str:
    """The lines ``xsignal info`` prints for an opened array."""
    from .dims import SIGNAL_DIMS_ATTR

    s = da.signal
    marking = "marked" if SIGNAL_DIMS_ATTR in da.attrs else "unmarked: the last dim"
    lines = [
        f"{path}",
        f"  {s!r}",
        f"  format:          {da.encoding.get('format', 'unknown')}",
    ]
    if da.attrs.get("title"):
        lines.append(f"  title:           {da.attrs['title']}")
    lines += [
        f"  navigation dims: {_dims_text(da, s.navigation_dims)}",
        f"  signal dims:     {_dims_text(da, s.signal_dims)} ({marking})",
        f"  dtype:           {da.dtype}",
        f"  in memory:       {human_bytes(da.nbytes)}",
    ]
    stored = _stored_bytes(path)
    if stored is not None:
        lines.append(f"  on disk:         {human_bytes(stored)}")
    if da.chunks is not None:
        block = tuple(max(c) for c in da.chunks)
        nbytes = int(np.prod(block)) * da.dtype.itemsize
        lines.append(f"  chunks:          {block}, {human_bytes(nbytes)} each")
    if "chunksizes" in da.encoding:
        disk = da.encoding["chunksizes"]
        lines.append(f"  on-disk chunks:  {disk if disk else 'none (contiguous)'}")
        lines.append(f"  compression:     {da.encoding.get('compression')}")
    for name, coord in da.coords.items():
        values = np.asarray(coord.values)
        if values.size and values.dtype.kind in "iuf":
            units = coord.attrs.get("units", "")
            lines.append(
                f"  coord {name}: {values.min():g} .. {values.max():g} {units}".rstrip()
            )
    return "\n".join(lines)


@contextlib.contextmanager
def scheduler(address: str | None, workers: int | None) -> Iterator[str]:
    """Run the block on a dask.distributed cluster when asked; yield its name.

    ``address`` connects to a running scheduler; ``workers`` starts a local
    cluster of that many single-threaded worker processes on loopback.
    Neither: dask's threaded scheduler.
    """
    if not address and not workers:
        yield "threads"
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise SystemExit(
            "xsignal: --scheduler/--workers need dask.distributed: "
            'pip install "xsignal[distributed]"'
        ) from err
    if address:
        with Client(address) as client:
            yield f"distributed {client.scheduler.address}"
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        yield f"local cluster of {workers} worker processes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xsignal", description="HyperSpy's lazy signal toolbox for xarray."
    )
    parser.add_argument("--version", action="version", version=xsignal.__version__)
    parser.add_argument(
        "--scheduler",
        default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
        metavar="ADDRESS",
        help="run on this dask.distributed scheduler "
        "(default: $DASK_SCHEDULER_ADDRESS, else dask's threads)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a local dask.distributed cluster of N worker processes",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the lazy pipeline on synthetic data")
    demo.add_argument(
        "--size",
        choices=list(DEMO_SIZES),
        default="S",
        help="data size: tiny 32x32x256, S 128x128x1024 (default), "
        "M 256x256x1024, L 1024x1024x1024 (4 GiB)",
    )
    demo.add_argument("--dir", help="folder for the files (default: a new temp folder)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=run_demo)

    info = sub.add_parser("info", help="describe a file's signal, chunks and sizes")
    info.add_argument("file")
    info.add_argument(
        "--variable", help="variable, HDF5 dataset path or signal name to describe"
    )
    info.set_defaults(func=run_info)

    convert = sub.add_parser(
        "convert",
        help="convert any file xsignal reads to netCDF (.nc), HyperSpy (.hspy, "
        ".zspy) or zarr (.zarr, .zip), the format from OUTPUT's extension",
    )
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument(
        "--format",
        choices=["netcdf", "hspy", "zspy", "zarr"],
        help="the output format when its extension does not say",
    )
    convert.add_argument(
        "--chunks", help="on-disk chunks as dim=size pairs, e.g. y=4,x=256,energy=-1"
    )
    convert.add_argument(
        "--compression",
        choices=["auto", "gzip", "zstd", "lz4", "lzf", "none"],
        default="auto",
        help="auto: gzip for HDF5 formats, zstd for zarr",
    )
    convert.add_argument("--dtype", help="convert the values, e.g. float32")
    convert.add_argument("--variable", help="variable or dataset path to convert")
    convert.add_argument(
        "--overwrite", action="store_true", help="replace an existing output file"
    )
    convert.add_argument("--no-progress", dest="progress", action="store_false")
    convert.set_defaults(func=run_convert)
    add_decompose_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be a positive number")
    try:
        with scheduler(args.scheduler, args.workers) as name:
            args.scheduler_name = name
            return args.func(args)
    except (OSError, ValueError, TypeError, NotImplementedError) as err:
        # bad input: one line naming the problem, no traceback
        print(f"xsignal {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
