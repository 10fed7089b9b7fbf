"""The ``xsignal`` command: demo, info."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import xsignal

from .testing import write_spectrum_image

DEMO_SIZES = {
    "tiny": (32, 32, 256),
    "S": (128, 128, 1024),
    "M": (256, 256, 1024),
    "L": (1024, 1024, 1024),
}


def open_lazy(path: str | Path) -> xr.DataArray:
    """Open a file lazily with the best reader available."""
    opener = getattr(xsignal, "open", None)
    if opener is not None:
        return opener(path)
    return xr.open_dataarray(path, engine="h5netcdf", chunks={})


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
    state.data = open_lazy(state.results["path"])
    return repr(state.data.signal)


def step_navigator(state: DemoState) -> str:
    da = state.data
    navigator = da.sum(da.signal.signal_dims)
    (image,) = xsignal.compute(navigator, progress=state.progress)
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


def run_decompose(args: argparse.Namespace) -> int:
    """``xsignal decompose FILE -a ALGO -k N -o OUT``: decompose a file lazily
    and write the result (``Decomposition.to_dataset``) as netCDF."""
    path = Path(args.file)
    if not path.exists():
        print(f"xsignal decompose: no such file: {path}", file=sys.stderr)
        return 2
    out = (
        Path(args.output)
        if args.output
        else path.with_name(path.stem + "_decomposition.nc")
    )
    if out.exists() and not args.overwrite:
        print(f"xsignal decompose: {out} exists (use --overwrite)", file=sys.stderr)
        return 2
    try:
        da = open_lazy(path)
    except Exception as err:  # any reader error becomes a one-line message
        print(f"xsignal decompose: cannot read {path}: {err}", file=sys.stderr)
        return 2
    progress = False if args.no_progress else None
    start = time.perf_counter()
    try:
        result = xsignal.decomposition(
            da,
            args.algorithm,
            args.output_dimension,
            normalize_poissonian_noise=args.poisson,
            centre=args.centre,
            progress=progress,
        )
        (ds,) = xsignal.compute(result.to_dataset(), progress=progress)
    except (TypeError, ValueError) as err:
        print(f"xsignal decompose: {err}", file=sys.stderr)
        return 2
    tmp = out.with_name(out.name + ".tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(out)  # never a half-written result
    ratio = ", ".join(f"{r:.3g}" for r in result.explained_variance_ratio.values[:8])
    print(
        f"{result!r}\n  explained variance ratio: {ratio}\n"
        f"  {time.perf_counter() - start:.2f} s; wrote {out}"
    )
    return 0


def add_decompose_parser(sub: Any) -> None:
    cmd = sub.add_parser("decompose", help="decompose a file (SVD, PCA, ORPCA, ORNMF)")
    cmd.add_argument("file")
    cmd.add_argument(
        "-a", "--algorithm", default="SVD", help="SVD (default), PCA, ORPCA, ORNMF"
    )
    cmd.add_argument("-k", "--output-dimension", type=int, help="number of components")
    cmd.add_argument("-o", "--output", help="netCDF file for the result")
    cmd.add_argument(
        "--poisson", action="store_true", help="normalize Poissonian noise"
    )
    cmd.add_argument("--centre", choices=["navigation", "signal"])
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
        f"float32 spectrum image in {folder}"
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
    path = Path(args.file)
    if not path.exists():
        print(f"xsignal info: no such file: {path}", file=sys.stderr)
        return 2
    try:
        da = open_lazy(path)
    except Exception as err:  # any reader error becomes a one-line message
        print(f"xsignal info: cannot read {path}: {err}", file=sys.stderr)
        return 2
    print(info_text(da, path))
    return 0


def info_text(da: xr.DataArray, path: Path) -> str:
    """The lines ``xsignal info`` prints for an opened array."""
    s = da.signal
    lines = [
        f"{path}",
        f"  {s!r}",
        f"  navigation dims: {s.navigation_dims} shape {s.navigation_shape}",
        f"  signal dims:     {s.signal_dims} shape {s.signal_shape}",
        f"  dtype:           {da.dtype}",
        f"  in memory:       {da.nbytes / 2**20:.1f} MiB",
        f"  on disk:         {path.stat().st_size / 2**20:.1f} MiB",
    ]
    if da.chunks is not None:
        lines.append(f"  chunks:          {tuple(max(c) for c in da.chunks)}")
    for name, coord in da.coords.items():
        values = np.asarray(coord.values)
        if values.size and values.dtype.kind in "iuf":
            units = coord.attrs.get("units", "")
            lines.append(
                f"  coord {name}: {values.min():g} .. {values.max():g} {units}".rstrip()
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xsignal", description="HyperSpy's lazy signal toolbox for xarray."
    )
    parser.add_argument("--version", action="version", version=xsignal.__version__)
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
    info.set_defaults(func=run_info)
    add_decompose_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
