"""The ``xsignal`` command: demo, info, convert, decompose."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import xsignal

from .demo import DEMO_SIZES
from .demo import run_demo as run_demo_steps
from .dims import SIGNAL_DIMS_ATTR
from .io.atomic import leftovers, restores, settle
from .io.common import is_url
from .io.save import format_for

DEFAULT_COMPONENTS = 10
DECOMPOSITION_OUTPUTS = (".nc", ".hspy")


def _check_output(out: Path, overwrite: bool, source: str | None = None) -> None:
    """Refuse an output that cannot be written, before any work: an
    existing one without ``--overwrite``, one in a missing folder, one
    inside the input ``source`` (a folder store would change while read)."""
    if source is not None and not is_url(source) and not is_url(str(out)):
        inside = Path(source).resolve()
        if inside.is_dir() and out.resolve().is_relative_to(inside):
            raise ValueError(
                f"cannot write {out} inside the input {source}: the input "
                "would change while it is read; write it elsewhere"
            )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} to write {out.name} in")


def _open_one(
    path: str,
    *,
    lazy: bool = True,
    variable: str | None = None,
    allow_external: bool = False,
) -> xr.DataArray:
    """:func:`xsignal.open` of one file; a glob matching several is bad input."""
    opened = xsignal.open(
        path, lazy=lazy, variable=variable, allow_external=allow_external
    )
    if isinstance(opened, list):
        raise ValueError(f"{path!r} matches {len(opened)} files; give one file")
    return opened


def run_decompose(args: argparse.Namespace) -> int:
    """``xsignal decompose FILE -a ALGO -k N -o OUT``: decompose a file lazily
    and write the result: ``OUT.nc`` the Dataset of ``Decomposition.to_dataset``
    (netCDF), ``OUT.hspy`` HyperSpy's layout, the factors and the loadings as
    two signals (``hs.load`` gives a list: the factors a spectrum per
    component, the loadings an image per component)."""
    path = args.file
    if not is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    stem = Path(path.rstrip("/")).name.split(".")[0]
    out = Path(args.output or f"{stem}_decomposition.nc")
    if out.suffix.lower() not in DECOMPOSITION_OUTPUTS:
        raise ValueError(
            f"{out}: decompose writes {' or '.join(DECOMPOSITION_OUTPUTS)} "
            "(netCDF, or HyperSpy's factors and loadings)"
        )
    _check_output(out, args.overwrite, path)
    if args.plot:
        _check_output(Path(args.plot), True, path)
    da = _open_one(path, variable=args.variable, allow_external=args.allow_external)
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
        mask = _open_one(args.mask, lazy=False).astype(bool)
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
        if out.suffix.lower() == ".hspy":
            _write_hyperspy_decomposition(ds, da, tmp)
        else:
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


def _write_hyperspy_decomposition(ds: xr.Dataset, da: xr.DataArray, path: Path) -> None:
    """The factors and loadings of ``ds`` as two HyperSpy signals: factors
    over the data's signal dims, loadings over its navigation dims (images
    for a 2D scan), each with ``component`` as navigation."""
    from .io.hspy import write_hspy_signals

    sig, nav = da.signal.signal_dims, da.signal.navigation_dims
    factors = xsignal.set_signal_dims(ds["factors"].rename("factors"), *sig)
    loadings = xsignal.set_signal_dims(ds["loadings"].rename("loadings"), *nav)
    write_hspy_signals(
        [(part, part.shape) for part in (factors, loadings)], path, compression=None
    )


def add_allow_external(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--allow-external",
        action="store_true",
        help="read HDF5 files whose data or links reach other files (external "
        "links, external storage, virtual datasets); refused by default",
    )


def add_decompose_parser(sub: Any) -> None:
    cmd = sub.add_parser("decompose", help="decompose a file (SVD, PCA, ORPCA, ORNMF)")
    cmd.add_argument("file")
    add_allow_external(cmd)
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
        help="the result: .nc (netCDF) or .hspy (HyperSpy: the factors and the "
        "loadings as two signals); default FILE's name + _decomposition.nc in "
        "the current folder",
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
    run_demo_steps(
        args.size,
        out=args.out,
        keep_data=args.keep_data,
        progress=False if args.no_progress else None,
        where=args.scheduler_name,
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    path = args.file
    if not is_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    da = _open_one(path, variable=args.variable, allow_external=args.allow_external)
    print(info_text(da, path))
    return 0


def parse_chunks(text: str | None) -> dict[Hashable, int] | None:
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
    chunks: dict[Hashable, int] = {}
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
    if not is_url(args.output):
        _check_output(Path(args.output), args.overwrite, args.input)
    chunks = parse_chunks(args.chunks)
    da = _open_one(
        args.input, variable=args.variable, allow_external=args.allow_external
    )
    if args.dtype:
        da = xsignal.change_dtype(da, args.dtype)
    compression = None if args.compression == "none" else args.compression
    start = time.perf_counter()
    with xsignal.set_options(progress=None if args.progress else False):
        xsignal.save(
            da,
            args.output,
            format=args.format,
            chunks=chunks,
            compression=compression,
            overwrite=args.overwrite,
        )
    seconds = time.perf_counter() - start
    out = _open_one(args.output)
    print(f"wrote {args.output} in {seconds:.2f} s: {out.signal!r}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    total = 0
    found = leftovers(args.folder, recursive=args.recursive)
    for path in found:
        size = _stored_bytes(path) or 0
        if args.dry_run:
            target = restores(path)
            did = f"would restore to {target}" if target else "would remove"
        else:
            did = settle(path)
        total += size if "remove" in did else 0
        print(f"{did}: {path} ({human_bytes(size)})")
    done = "found" if args.dry_run else "removed"
    print(
        f"{done} {len(found)} temporary file(s) of killed saves in {args.folder} "
        f"({human_bytes(total)})"
    )
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


def _dims_text(da: xr.DataArray, dims: tuple[Hashable, ...]) -> str:
    parts = []
    for dim in dims:
        units = da.coords[dim].attrs.get("units") if dim in da.coords else None
        parts.append(f"{dim}: {da.sizes[dim]}" + (f" ({units})" if units else ""))
    return ", ".join(parts) or "none"


def info_text(da: xr.DataArray, path: str | Path) -> str:
    """The lines ``xsignal info`` prints for an opened array."""
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
    demo.add_argument(
        "--out",
        default="xsignal-demo",
        help="folder for the figures (default ./xsignal-demo)",
    )
    demo.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the synthetic data file (in --out); by default it is removed",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=run_demo)

    info = sub.add_parser("info", help="describe a file's signal, chunks and sizes")
    info.add_argument("file")
    info.add_argument(
        "--variable", help="variable, HDF5 dataset path or signal name to describe"
    )
    add_allow_external(info)
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
    add_allow_external(convert)
    convert.set_defaults(func=run_convert)
    add_decompose_parser(sub)

    clean = sub.add_parser(
        "clean",
        help="list and remove the temporary files of saves that were killed",
    )
    clean.add_argument("folder")
    clean.add_argument(
        "--dry-run", action="store_true", help="only list what would be removed"
    )
    clean.add_argument(
        "-r", "--recursive", action="store_true", help="also look in subfolders"
    )
    clean.set_defaults(func=run_clean)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be a positive number")
    try:
        with scheduler(args.scheduler, args.workers) as name:
            args.scheduler_name = name
            code: int = args.func(args)
            return code
    except (OSError, ValueError, TypeError, NotImplementedError, ImportError) as err:
        # bad input: one line naming the problem, no traceback
        print(f"xsignal {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
