"""Fault injection: a sweep dir is one sweep's (docs/reliability.md, issue 22 §1).

A second sweep into a sweep dir, while the first runs or after it with other overrides, is
refused in one line before any job launches; a job refused its run dir is never counted
as completed, in sweep.json or the exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdx.records import RunDirError, write_json
from rdx.sweep import summarize_sweep
from tests.helpers.faults import held_by_another_process

ROOT = Path(__file__).resolve().parents[2]
CLAIM, TOKEN_ENV = ".rdx-sweep.json", "RDX_SWEEP_TOKEN"  # rdx.sweep's names


def claim_sweep_dir(sweep_dir: Path, overrides: list[str]):
    from rdx.sweep import claim_sweep_dir

    return claim_sweep_dir(sweep_dir, overrides)


def sweep(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "-m",
            "experiment=smoke",
            "logger=none",
            "stage=prepare",
            *args,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=ROOT,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def rdx_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rdx:")]


def completed_job(job_dir: Path, gamma: float) -> None:
    """A job dir as sweep A's job left it: completed, its config γ."""
    job_dir.mkdir(parents=True)
    write_json(job_dir / "status.json", {"state": "completed", "error": None, "attempts": 1})
    write_json(job_dir / "summary.json", {"acc": 0.5, "reward": 0.5, "acc_plus_reward": 1.0})
    (job_dir / "config.yaml").write_text(f"gamma: {gamma}\n")


def test_a_sweep_dir_is_claimed_once_and_by_one_sweep(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    first = claim_sweep_dir(tmp_path, ["seed=0,1", "stage=prepare"])
    token = json.loads((tmp_path / CLAIM).read_text())["token"]
    assert os.environ[TOKEN_ENV] == token
    with pytest.raises(RunDirError, match=f"in use by the sweep of pid {os.getpid()}") as err:
        claim_sweep_dir(tmp_path, ["gamma=0.2,0.4"])
    assert "seed=0,1 stage=prepare" in str(err.value) and "\n" not in str(err.value)
    first.release()
    with pytest.raises(RunDirError, match="holds another sweep"):
        claim_sweep_dir(tmp_path, ["gamma=0.2,0.4"])
    # The same sweep again (to resume it), overrides in any order: a new launch token.
    again = claim_sweep_dir(tmp_path, ["stage=prepare", "seed=0,1"])
    assert json.loads((tmp_path / CLAIM).read_text())["token"] != token
    again.release()


def test_a_refused_job_is_not_counted_completed(tmp_path, monkeypatch):
    """The job dir holds sweep A's completed run; this launch's job there was refused."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    claim_sweep_dir(tmp_path, ["gamma=0.2"]).release()
    completed_job(tmp_path / "0", gamma=0.8)
    token = json.loads((tmp_path / CLAIM).read_text())["token"]
    write_json(
        tmp_path / "0" / ".rdx-sweep-job.json", {"token": "a-previous-launch", "refused": "x"}
    )
    assert summarize_sweep(tmp_path)["jobs"][0]["state"] == "completed"  # not this launch's
    write_json(tmp_path / "0" / ".rdx-sweep-job.json", {"token": token, "refused": "in use"})
    record = summarize_sweep(tmp_path)
    assert record["counts"] == {"refused": 1}
    job = record["jobs"][0]
    assert job["error"] == "in use" and job["acc_plus_reward"] is None


def test_a_second_sweep_while_the_first_runs_is_refused_before_launch(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    x = tmp_path / "X"
    held = claim_sweep_dir(x, ["seed=0,1", "stage=prepare"])  # sweep A, still running
    completed_job(x / "0", gamma=0.8)
    before = (x / CLAIM).read_text()
    try:
        proc = sweep(x, "gamma=0.2,0.4")
    finally:
        held.release()
    lines = rdx_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "sweep dir" in lines[0] and "is in use by the sweep" in lines[0]
    assert "Traceback" not in proc.stderr
    assert (x / CLAIM).read_text() == before and not (x / "sweep.json").exists()
    assert not (x / "0" / ".hydra").exists() and not (x / "1").exists()  # nothing launched


def test_a_second_sweep_after_the_first_with_other_values_is_refused(tmp_path):
    x = tmp_path / "X"
    x.mkdir()
    write_json(x / CLAIM, {"overrides": ["seed=0,1", "stage=prepare"], "token": "a"})
    completed_job(x / "0", gamma=0.8)
    write_json(x / "sweep.json", {"jobs": ["sweep A's"]})
    proc = sweep(x, "gamma=0.2,0.4")
    lines = rdx_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "holds another sweep (seed=0,1 stage=prepare)" in lines[0]
    assert json.loads((x / "sweep.json").read_text()) == {"jobs": ["sweep A's"]}


def test_a_job_refused_its_held_run_dir_fails_the_sweep(tmp_path):
    x = tmp_path / "X"
    completed_job(x / "0", gamma=0.8)
    with held_by_another_process(x / "0"):
        proc = sweep(x, "gamma=0.2")
    lines = rdx_lines(proc.stderr)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert any("job 0: run dir error" in line and "in use by pid" in line for line in lines)
    assert not any("runs completed" in line for line in lines)
    record = json.loads((x / "sweep.json").read_text())
    assert record["counts"] == {"refused": 1}
    assert record["jobs"][0]["acc_plus_reward"] is None
    assert json.loads((x / "0" / "status.json").read_text())["state"] == "completed"  # A's
