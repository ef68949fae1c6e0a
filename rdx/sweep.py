"""After a sweep (-m): every job's status.json into <sweep dir>/sweep.json (docs/design.md §6).

Hydra and submitit report failed jobs as completed, so the launching process reads each
job's own status.json, writes one sweep.json, names the runs that did not complete, and
makes the command's exit status 1 when any did not.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rdx.records import natural_key, read_json, write_json


class SweepRecorder(Callback):
    """Remembers the sweep dir of a multirun (conf/train.yaml hydra.callbacks).

    Runs in the launching process before any job; resolving `hydra.sweep.dir` here caches
    its `${now:}` on the same config object the launcher reads, so both see one directory.
    """

    sweep_dir: ClassVar[Path | None] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepRecorder.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()


def _read_record(path: Path) -> dict[str, Any]:
    """A job's status or summary; a damaged or missing file reads as empty."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Every job dir's status into <sweep_dir>/sweep.json: job -> run dir, state, result."""
    job_dirs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and ((p / "status.json").exists() or (p / ".hydra").is_dir())
    ]
    job_dirs.sort(key=lambda p: natural_key(p.name))  # Hydra's job dirs 0, 1, ..., 10
    jobs = []
    for job_dir in job_dirs:
        status = _read_record(job_dir / "status.json")
        summary = _read_record(job_dir / "summary.json")
        overrides = job_dir / ".hydra" / "overrides.yaml"
        state = status.get("state", "unknown")
        error = status.get("error") if status else "no status.json: the job ended before rdx ran"
        jobs.append(
            {
                "job": job_dir.name,
                "run_dir": str(job_dir),
                "state": state,
                "error": error,
                "acc_plus_reward": summary.get("acc_plus_reward") if state == "completed" else None,
                "attempts": status.get("attempts"),
                "overrides": list(OmegaConf.load(overrides)) if overrides.exists() else None,
            }
        )
    record = {
        "sweep_dir": str(sweep_dir),
        "counts": dict(Counter(job["state"] for job in jobs)),
        "jobs": jobs,
    }
    write_json(sweep_dir / "sweep.json", record)
    return record


def check_sweep(sweep_dir: Path) -> bool:
    """Write sweep.json and say which runs did not complete; True if every run completed."""
    record = summarize_sweep(sweep_dir)
    jobs = record["jobs"]
    bad = [job for job in jobs if job["state"] != "completed"]
    if not jobs:
        print(f"rdx: sweep {sweep_dir}: no job dirs found", file=sys.stderr)
        return False
    if not bad:
        print(
            f"rdx: sweep {sweep_dir}: {len(jobs)}/{len(jobs)} runs completed "
            f"(summary: {sweep_dir / 'sweep.json'})",
            file=sys.stderr,
        )
        return True
    print(
        f"rdx: sweep {sweep_dir}: {len(bad)} of {len(jobs)} runs did not complete "
        f"(summary: {sweep_dir / 'sweep.json'}):",
        file=sys.stderr,
    )
    for job in bad:
        print(
            f"  job {job['job']} {job['state']}: {job['error']}  [{job['run_dir']}]",
            file=sys.stderr,
        )
    return False
