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
