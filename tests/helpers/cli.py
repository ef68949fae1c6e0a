"""`python -m rdx.train` as a user runs it, for the tests that need the whole CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rdx_cli(
    *args: str, cwd: Path = ROOT, timeout: float = 900, module: str = "rdx.train"
) -> subprocess.CompletedProcess:
    """Run `python -m rdx.train *args` (W&B off, this checkout's rdx first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_target(target: str, runs: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`make <target> RUNS=<runs>` from README, in `cwd`, on the venv running the tests
    when the checkout has none of its own (a git worktree); the venv counts as installed."""
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        venv = Path(sys.executable).parents[1]
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), f"VENV={venv}"]
    return subprocess.run(
        [*make, "-o", str(venv / ".rdx-installed"), target, f"RUNS={runs}"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
    )
