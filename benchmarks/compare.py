"""Two `make bench` results side by side, as a Markdown table (docs/performance.md's):

    .venv/bin/python -m benchmarks.compare before.json after.json [--names before,after]

Rows are matched by figure name, in the order of the second file (figures only the first
has come last); a figure one run lacks shows "–". Each cell is the value with its ratio
to its own baseline where it has one, since machines here differ up to 2× between
sessions and a ratio measured in one run is what compares.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def cell(fig: dict | None) -> str:
    if fig is None or fig["value"] is None or math.isnan(fig["value"]):
        return "–"
    v = fig["value"]
    value = f"{v:,.0f} {fig['unit']}" if abs(v) >= 100 else f"{v:.3g} {fig['unit']}"
    ratio = fig.get("ratio")
    if ratio is None or math.isnan(ratio):
        return value
    shown = f"{100 * ratio:.1f}%" if "MFU" in (fig.get("goal") or "") else f"{ratio:.2f}x"
    return f"{value} ({shown})"


def met(fig: dict | None) -> str:
    if fig is None or fig.get("met") is None:
        return "–"
    return "yes" if fig["met"] else "no"


def compare(before: dict, after: dict, names: tuple[str, str] = ("before", "after")) -> str:
    old = {f["name"]: f for f in before["figures"]}
    new = {f["name"]: f for f in after["figures"]}
    order = list(new) + [n for n in old if n not in new]
    lines = [
        f"| figure | {names[0]} | {names[1]} | goal | met ({names[0]} → {names[1]}) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in order:
        a, b = old.get(name), new.get(name)
        goal = (b or a).get("goal") or "–"
        lines.append(f"| {name} | {cell(a)} | {cell(b)} | {goal} | {met(a)} → {met(b)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--names", default="before,after", help="column names, comma-separated")
    args = ap.parse_args(argv)
    names = tuple(args.names.split(",", 1))
    if len(names) != 2:
        ap.error(f"--names={args.names!r}: expected two names separated by a comma")
    runs = []
    for path in (args.before, args.after):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            ap.error(f"{path}: not a benchmarks results file ({err})")
    print(compare(*runs, names=names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
