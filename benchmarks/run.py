"""Run the workloads and print xsignal's time as a ratio of each baseline's.

Each workload module ``benchmarks/w*.py`` has a ``run(ctx) -> list[Row]``;
rows whose ``baseline`` names another row's tool of the same workload get a
ratio. Times are medians of several repeats in this same process run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks
from benchmarks.common import Context, Row


def workloads() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(benchmarks.__path__)]
    return sorted(n for n in names if n[:1] == "w" and n[1:2].isdigit())


def table(rows: list[Row]) -> str:
    by_key = {(r.workload, r.tool): r for r in rows}
    lines = [
        "| workload | tool | median s | vs baseline | peak MiB | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = ""
        base = by_key.get((r.workload, r.baseline)) if r.baseline else None
        if base is not None and base.seconds > 0:
            ratio = f"{r.seconds / base.seconds:.2f}x {r.baseline}"
        peak = f"{r.peak_mib:.0f}" if r.peak_mib is not None else ""
        lines.append(
            f"| {r.workload} | {r.tool} | {r.seconds:.3f} | {ratio} | {peak} "
            f"| {r.extra} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small data, 2 repeats")
    parser.add_argument("--only", default="", help="comma-separated, e.g. W1,W3")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    ctx = Context(quick=args.quick, repeats=args.repeats or (2 if args.quick else 5))
    only = {w.strip().lower() for w in args.only.split(",") if w.strip()}
    rows: list[Row] = []
    for name in workloads():
        if only and name.split("_")[0] not in only:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(ctx))
    text = table(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
