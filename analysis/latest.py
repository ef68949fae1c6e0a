"""Which runs `make tables/figures/claims` read when no RUNS is given: the latest sweep.

    python -m analysis.latest [runs]    # prints the chosen directory; says which on stderr

A sweep is a directory holding Hydra's `multirun.yaml` or rdx's `sweep.json`, i.e. what one
`python -m rdx.train -m ...` writes (`runs/multirun/<date>/<time>/`). The latest is the one
whose runs most recently started or ended (their status.json), so finishing an older sweep
with `hydra.sweep.dir=...` makes it the latest again; a sweep whose runs have no status yet
counts by its marker file's time. With no sweep under the root, the whole root is read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable
from pathlib import Path

from analysis.collect import find_run_dirs
from rdx.records import natural_key, read_json

MARKERS = ("multirun.yaml", "sweep.json")


def sweep_dirs(root: Path) -> list[Path]:
    """Every sweep directory under `root` (the root itself included), in natural order."""
    found = {p.parent for name in MARKERS for p in root.rglob(name)}
    return sorted(found, key=lambda p: natural_key(p.as_posix()))


def _time(value: object) -> float | None:
    """An ISO time from status.json as a POSIX time; None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:  # rdx writes UTC with an offset; a bare time is read as UTC
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def last_activity(sweep_dir: Path) -> float:
    """The latest `started`/`ended` of the sweep's runs, else its marker file's mtime."""
    times = []
    for run_dir in find_run_dirs(sweep_dir):
        try:
            status = read_json(run_dir / "status.json")
        except (OSError, ValueError):  # missing or torn: the run says nothing about time
            continue
        if isinstance(status, dict):
            times += [t for t in map(_time, (status.get("started"), status.get("ended"))) if t]
    if times:
        return max(times)
    return max((sweep_dir / m).stat().st_mtime for m in MARKERS if (sweep_dir / m).is_file())


def latest_sweep(root: Path) -> tuple[Path | None, int]:
    """(the latest sweep under `root` or None, how many sweeps there are)."""
    sweeps = sweep_dirs(root)
    if not sweeps:
        return None, 0
    # Ties (same second) go to the later directory in natural order.
    ranked = sorted(enumerate(sweeps), key=lambda item: (last_activity(item[1]), item[0]))
    return ranked[-1][1], len(sweeps)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the latest sweep dir under a runs root.")
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs"))
    args = parser.parse_args(None if argv is None else list(argv))
    if not args.root.is_dir():
        print(f"analysis: error: runs root {args.root} is not a directory", file=sys.stderr)
        return 2
    chosen, count = latest_sweep(args.root)
    if chosen is None:
        print(f"analysis: no sweep under {args.root}: reading every run in it", file=sys.stderr)
        print(args.root)
        return 0
    others = f"; {count - 1} older sweep(s) left out" if count > 1 else ""
    print(
        f"analysis: reading the latest sweep {chosen}{others} (RUNS=<dir> reads another)",
        file=sys.stderr,
    )
    print(chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
