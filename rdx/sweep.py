"""After a sweep (-m): every job's status.json into <sweep dir>/sweep.json (docs/design.md §6).

Hydra and submitit report failed jobs as completed, so the launching process reads each
job's own status.json, writes one sweep.json, names the runs that did not complete, and
makes the command's exit status 1 when any did not.

A sweep dir is one sweep's. The launching process claims it before any job starts (a
flock held until sweep.json is written, and `.rdx-sweep.json` naming the sweep's
overrides): a second sweep into it, while the first runs or after, with other overrides,
is refused in one line (the same command may run again, to resume the sweep). Each launch
has a token (RDX_SWEEP_TOKEN, which every launcher passes on to its jobs); a job refused
its run dir (held by another process, or holding another run) records that under the
token, so its dir's old status.json is never counted as this sweep's result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rdx.records import RunDirError, natural_key, read_json, read_record_bytes, write_json

CLAIM = ".rdx-sweep.json"  # in the sweep dir: whose it is
JOB_STAMP = ".rdx-sweep-job.json"  # in a job dir: a refusal under this launch's token
TOKEN_ENV = "RDX_SWEEP_TOKEN"


class SweepRecorder(Callback):
    """Claims the sweep dir of a multirun (conf/train.yaml hydra.callbacks).

    Runs in the launching process before any job; resolving `hydra.sweep.dir` here caches
    its `${now:}` on the same config object the launcher reads, so both see one directory.
    A sweep dir held by, or belonging to, another sweep ends the command here: one line,
    exit status 2, no job launched and the other sweep's sweep.json untouched.
    """

    sweep_dir: ClassVar[Path | None] = None
    _lock: ClassVar[Any] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        try:
            SweepRecorder._lock = claim_sweep_dir(sweep_dir, list(config.hydra.overrides.task))
        except RunDirError as err:
            print(f"rdx: run dir error: {err}", file=sys.stderr)
            sys.exit(2)
        SweepRecorder.sweep_dir = sweep_dir

    @staticmethod
    def release() -> None:
        """Let the sweep dir go (after sweep.json is written)."""
        if SweepRecorder._lock is not None:
            SweepRecorder._lock.release()
            SweepRecorder._lock = None


def _shown(overrides: list[str]) -> str:
    return " ".join(overrides) or "no overrides"


def claim_sweep_dir(sweep_dir: Path, overrides: list[str]) -> Any:
    """Hold `sweep_dir` for this sweep; returns the held lock (a FileLock).

    RunDirError (one line) when another sweep holds it, or when it belongs to a sweep of
    other overrides. A new token goes to CLAIM and to this process's environment, which
    the launchers pass on to every job.
    """
    from filelock import FileLock, Timeout

    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(sweep_dir / ".rdx-sweep.lock"), timeout=0, is_singleton=False)
    try:
        old = read_json(sweep_dir / CLAIM)
    except (OSError, ValueError):
        old = None
    old = old if isinstance(old, dict) else {}
    try:
        lock.acquire()
    except Timeout:
        raise RunDirError(
            f"sweep dir {sweep_dir} is in use by the sweep of pid {old.get('pid', '?')} on "
            f"host {old.get('host', '?')} ({_shown(old.get('overrides') or [])}); wait for "
            "it to end or pick another hydra.sweep.dir"
        ) from None
    mine = sorted(overrides)
    if old.get("overrides") is not None and sorted(old["overrides"]) != mine:
        lock.release()
        raise RunDirError(
            f"sweep dir {sweep_dir} holds another sweep ({_shown(old['overrides'])}); pick "
            "another hydra.sweep.dir, or rerun that sweep's command to resume it"
        )
    token = uuid.uuid4().hex
    try:
        write_json(
            sweep_dir / CLAIM,
            {
                "overrides": overrides,
                "token": token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
    except BaseException:
        lock.release()
        raise
    os.environ[TOKEN_ENV] = token
    return lock


def record_refusal(run_dir: str | Path, err: BaseException) -> None:
    """In a sweep job refused its run dir: say so under this launch's token (the dir's own
    records are another run's and stay untouched)."""
    token = os.environ.get(TOKEN_ENV)
    if token and isinstance(err, RunDirError):
        with contextlib.suppress(OSError):
            write_json(Path(run_dir) / JOB_STAMP, {"token": token, "refused": str(err)})


def _overrides(path: Path) -> list[str] | None:
    """Hydra's overrides.yaml of a job, or None when absent or damaged."""
    import yaml

    try:
        items = yaml.safe_load(read_record_bytes(path))
    except (OSError, yaml.YAMLError):  # absent, a FIFO, not YAML: the job is still listed
        return None
    return [str(x) for x in items] if isinstance(items, list) else None


def _refusal(job_dir: Path, token: str | None) -> str | None:
    """Why this launch's job in `job_dir` was refused its run dir, or None."""
    stamp = _read_record(job_dir / JOB_STAMP)
    return stamp.get("refused") if token and stamp.get("token") == token else None


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
    token = _read_record(sweep_dir / CLAIM).get("token")
    jobs = []
    for job_dir in job_dirs:
        status = _read_record(job_dir / "status.json")
        summary = _read_record(job_dir / "summary.json")
        overrides = job_dir / ".hydra" / "overrides.yaml"
        state = status.get("state", "unknown")
        error = status.get("error") if status else "no status.json: the job ended before rdx ran"
        refused = _refusal(job_dir, token)
        if refused is not None:  # its status.json is another run's: not this job's result
            state, error = "refused", refused
        jobs.append(
            {
                "job": job_dir.name,
                "run_dir": str(job_dir),
                "state": state,
                "error": error,
                "acc_plus_reward": summary.get("acc_plus_reward") if state == "completed" else None,
                "attempts": status.get("attempts"),
                "overrides": _overrides(overrides),
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
