"""`python -m benchmarks [--quick]`: every benchmark, one table, benchmarks/results.json.

Order matters on a small machine: the compute figures run first, in this process, while
nothing else does; the process-level figures then start jobs of their own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

from benchmarks import compute, jobs, peak, projection
from benchmarks.common import Figure, format_table
from rdx.records import git_sha, write_json

PARTS = ("compute", "jobs", "projection", "grid")
DEFAULT_PARTS = PARTS[:3]  # the measured grid takes ~20 min more: --only grid (make bench-grid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    ap.add_argument(
        "--only",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: all but grid)",
    )
    args = ap.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"--only={args.only!r}: unknown {unknown}; expected a subset of {PARTS}")

    tic = time.perf_counter()
    figures: list[Figure] = []
    machine = peak.measure_peak(args.quick)
    print(_describe(machine), flush=True)
    if "compute" in parts:
        figures += compute.run(args.quick, machine)
        print(format_table(figures), flush=True)
    if "jobs" in parts:
        figures += jobs.run(args.quick)
    if "projection" in parts:
        # CPU-scaled until scripts/gpu-check has written its JSON beside this run's
        figures += projection.run(args.out.parent / "gpu.json", measure=True, measured=figures)
    if "grid" in parts:
        figures += jobs.grid(args.quick)
    elapsed = time.perf_counter() - tic

    print()
    print(format_table(figures))
    missed = [f.name for f in figures if f.met is False]
    print(f"\n{len(figures)} figures in {elapsed:.0f} s; goals missed: {len(missed)}")
    write_json(
        args.out,
        {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "git_sha": git_sha(),
            "quick": args.quick,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": machine,
            "seconds": elapsed,
            "figures": [f.to_dict() for f in figures],
        },
    )
    print(f"wrote {args.out}")
    return 0


def _describe(machine: dict) -> str:
    return "machine: " + ", ".join(
        f"{k}={v}" for k, v in machine.items() if not isinstance(v, dict)
    )


if __name__ == "__main__":
    sys.exit(main())
