"""What the SLURM tests ask the local cluster (scripts/slurm-up) and how they launch rdx on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def sacct(job_id: str) -> list[tuple[str, str]]:
    """(JobID, State) of each allocation, requeued runs included (-D), oldest first."""
    out = run("sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State", "-j", job_id)
    return [(j, s.split()[0]) for j, s in (line.split("|") for line in out.splitlines() if line)]


def wait_sacct(job_id: str, states: list[str]) -> list[tuple[str, str]]:
    """sacct once it shows `states` (it lags the job's end by a second or two)."""
    wait_until(
        f"sacct to show {job_id} {states}", lambda: [s for _, s in sacct(job_id)] == states, 60
    )
    return sacct(job_id)


def report(*job_ids: str) -> str:
    return run(
        "sacct", "-D", "-X", "-o", "JobID,Partition,State,Start,End", "-j", ",".join(job_ids)
    )


def slurm_job_ids(sweep: Path) -> list[str]:
    """The sweep's SLURM job ids from submitit's folders: `14_0` ... for the tasks of array
    14 (plus `14` holding its sbatch script), or `15` for a one-job sweep (a plain job)."""
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if re.fullmatch(r"[\d_]+", p.name))
    tasks = [name for name in names if "_" in name]
    return tasks or names


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (the first value of each key)."""
    fields: dict[str, str] = {}
    for token in run("scontrol", "-o", "show", "job", job_id).split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def state(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text())["state"]
    except (OSError, ValueError):
        return None


def launch(*args: str, module: str = "rdx.train") -> subprocess.Popen:
    """`python -m <module> *args` in the background, this checkout's rdx first on the path:
    sbatch exports the environment, so the jobs import the same rdx."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"sweep still running after {timeout:.0f}s:\n{out[-3000:]}") from None
    return out
