"""Fault injection end to end (slow): `python -m rdx.train experiment=smoke` killed with
SIGKILL or SIGINT, a second process, a full disk; each rerun ends with the summary of an
uninterrupted run (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdx.pipeline.cache import verify
from rdx.records import (
    read_jsonl,
)
from tests.helpers.faults import crafted_checkpoints, tmp_files, tmpfs

ROOT = Path(__file__).resolve().parents[2]


def rdx_train(run_dir: Path, cache: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "experiment=smoke",
            "logger=none",
            "trainer.threads=1",
            f"hydra.run.dir={run_dir}",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "RDX_CACHE": str(cache), "WANDB_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


def kill_when(proc: subprocess.Popen, ready, sig=signal.SIGKILL, timeout: float = 240) -> bool:
    """Send `sig` as soon as ready() holds; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(sig)
            return True
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the run never reached the kill point")


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """A killed cache build, then the run that completes it: the reference summary."""
    root = tmp_path_factory.mktemp("faults")
    cache = root / "cache"
    run = root / "reference"
    proc = rdx_train(run, cache)
    killed = kill_when(proc, lambda: any(cache.glob("*/*.tmp-*")))
    proc.wait()
    assert killed, "the run ended before any cache build started"
    assert any(cache.glob("*/*.tmp-*")), "the kill left the build's temp dir"
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert not any(cache.glob("*/*.tmp-*")), "stale temp dirs were cleaned"
    assert all(verify(entry) is None for entry in cache.glob("*/*") if entry.is_dir())
    return {"root": root, "cache": cache, "summary": summary_of(run), "run": run}


@pytest.mark.slow
def test_kill_9_mid_epoch_with_a_crafted_checkpoint_then_resume(reference):
    run, cache = reference["root"] / "mid-epoch", reference["cache"]
    metrics = run / "metrics.jsonl"
    proc = rdx_train(run, cache)
    assert kill_when(proc, lambda: metrics.exists() and '"step"' in metrics.read_text())
    proc.wait()
    # Someone drops a crafted pickle where the checkpoint goes: it must not run.
    _, crafted, marker = crafted_checkpoints(reference["root"])[0]
    os.replace(crafted, run / "checkpoint.pt")
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert not marker.exists()
    assert (run / "checkpoint.pt.damaged").exists()
    assert summary_of(run) == {**reference["summary"]}
    epochs = [r["epoch"] for r in read_jsonl(metrics) if r["kind"] == "epoch"]
    assert epochs == [0, 1]


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_then_refuses_other_settings(reference):
    run, cache = reference["root"] / "after-checkpoint", reference["cache"]
    proc = rdx_train(run, cache)
    assert kill_when(proc, lambda: (run / "checkpoint.pt").exists())
    proc.wait()
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # as killed
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert summary_of(run) == reference["summary"]
    assert json.loads((run / "status.json").read_text())["attempts"] == 2

    for args, named in (
        (["gamma=0.5"], "gamma=0.8->0.5"),
        (["seed=1"], "seed=0->1"),
        (["resume=never"], "resume=never"),
    ):
        code, lines = finish(rdx_train(run, cache, *args))
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("rdx: run dir error:") and named in lines[0], lines[0]
    assert summary_of(run) == reference["summary"]  # the old result, still labelled as such


@pytest.mark.slow
def test_second_process_is_refused_and_ctrl_c_resumes(reference):
    run, cache = reference["root"] / "two-processes", reference["cache"]
    first = rdx_train(run, cache)
    owner = run / ".rdx.lock.owner"
    deadline = time.monotonic() + 120
    while not owner.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    code, lines = finish(rdx_train(run, cache))
    assert code == 2 and len(lines) == 1, lines
    assert f"in use by pid {first.pid} on host {socket.gethostname()}" in lines[0]
    assert kill_when(first, lambda: (run / "checkpoint.pt").exists(), signal.SIGINT)
    code, lines = finish(first)
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0], lines
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert summary_of(run) == reference["summary"]


@pytest.mark.slow
def test_full_disk_run_ends_failed_in_one_line(reference, tmp_path):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        run = disk / "run"
        code, lines = finish(rdx_train(run, reference["cache"]))
        assert code == 2 and len(lines) == 1, lines
        assert "No space left on device" in lines[0]
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "failed" and "No space left" in status["error"]
        assert tmp_files(disk) == []
