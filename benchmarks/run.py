"""Run the workloads and print each tool's time as ratios against raw and HyperSpy.

Each workload module ``benchmarks/w*.py`` has a ``run(ctx) -> list[Row]``.
"vs raw" is the median of per-pair ratios (the tool and the raw baseline run
back to back, :func:`benchmarks.common.compare`); "vs HyperSpy" divides a
tool's median time by the workload's HyperSpy 2.5 row's (run in its own
virtualenv, skipped when missing). The table prints as markdown, and can also
be written as markdown (``--markdown``) and as an rst ``list-table`` (``--rst``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import pkgutil
import platform
import sys
from pathlib import Path

import benchmarks
from benchmarks.common import HYPERSPY, Context, Row, hyperspy_available

HEADER = (
    "workload",
    "tool",
    "median s",
    "vs raw",
    "vs HyperSpy",
    "degrees",
    "peak MiB",
    "notes",
)


LEGEND = (
    "Times are medians; *vs raw* is the median of per-pair ratios (the tool "
    "and the raw h5py baseline run back to back, so load from other users of "
    "a shared machine hits both; for W10 the baseline is the machine's limit "
    "named in the notes: the raw pass or the exact-SVD limit); *vs HyperSpy* "
    "is the tool's median time over HyperSpy 2.5's (unpaired, its own "
    "process); *degrees* is the largest principal angle from the true "
    "factors; *peak MiB* is resident memory. Ratios vary by some 10-30% "
    "between runs on a shared machine."
)


def workloads() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(benchmarks.__path__)]
    return sorted(n for n in names if n[:1] == "w" and n[1:2].isdigit())


def add_hyperspy_ratios(rows: list[Row]) -> None:
    """Fill ``vs_hyperspy`` of xsignal rows from their workload's HyperSpy row."""
    hs = {r.workload: r.seconds for r in rows if r.tool == HYPERSPY}
    for r in rows:
        base = hs.get(r.workload)
        if r.tool.startswith("xsignal") and base and base == base:  # not NaN
            r.vs_hyperspy = r.seconds / base


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def _ratio(value: float | None) -> str:
    return _fmt(value, ".3f" if value is not None and value < 0.1 else ".2f", "x")


def cells(r: Row) -> tuple[str, ...]:
    return (
        r.workload,
        r.tool,
        _fmt(r.seconds, ".3f"),
        _ratio(r.vs_raw),
        _ratio(r.vs_hyperspy),
        _fmt(r.degrees, ".2f"),
        _fmt(r.peak_mib, ".0f"),
        r.extra,
    )


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def rst(rows: list[Row], title: str = "Benchmark results") -> str:
    """The table as an rst ``list-table`` directive."""
    lines = [
        f".. list-table:: {title}",
        "   :header-rows: 1",
        "",
    ]
    for row in (HEADER, *map(cells, rows)):
        first = True
        for cell in row:
            text = cell.replace("|", "\\|").replace("*", "\\*")
            bullet = "   * -" if first else "     -"
            lines.append(bullet + (" " + text if text else ""))
            first = False
    return "\n".join(lines)


def describe(ctx: Context) -> str:
    """One line on when and where this ran."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (small sizes)" if ctx.quick else "full sizes"
    hs = "HyperSpy 2.5 found" if hyperspy_available() else "no HyperSpy"
    return (
        f"{now}, {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {mode}, {ctx.repeats} repeats, {hs}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small data, 2 repeats")
    parser.add_argument("--only", default="", help="comma-separated, e.g. W1,W3")
    parser.add_argument(
        "--full", action="store_true", help="also W7 on the 4 GiB file (minutes)"
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--rst", type=Path, help="also write an rst list-table here")
    parser.add_argument("--title", default="Benchmark results", help="table title")
    args = parser.parse_args(argv)
    only = {w.strip().lower() for w in args.only.split(",") if w.strip()}
    ctx = Context(
        quick=args.quick,
        repeats=args.repeats or (2 if args.quick else 5),
        full=args.full or "w7" in only,
    )
    rows: list[Row] = []
    for name in workloads():
        if only and name.split("_")[0] not in only:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(ctx))
    order = {w: i for i, w in reversed(list(enumerate(r.workload for r in rows)))}
    rows.sort(key=lambda r: order[r.workload])  # stable: a workload's rows together
    add_hyperspy_ratios(rows)
    about = describe(ctx)
    print(markdown(rows))
    print(about + "".join(f"\n- {n}" for n in ctx.notes))
    if args.markdown:
        text = f"## {args.title}\n\n{about}. {LEGEND}\n\n{markdown(rows)}\n"
        args.markdown.write_text(text + "".join(f"\n- {n}" for n in ctx.notes))
    if args.rst:
        text = (
            f".. Written by python -m benchmarks --rst.\n\n{about}. {LEGEND}\n\n"
            f"{rst(rows, args.title)}\n"
        )
        args.rst.write_text(text + "".join(f"\n- {n}\n" for n in ctx.notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
