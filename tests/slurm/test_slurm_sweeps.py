"""Sweeps on the local SLURM cluster: one job array, preemption, submitit's requeue.

Each test skips via the `slurm_cluster` fixture when no cluster answers. Run with
`scripts/slurm-up && pytest -m slurm tests/slurm/test_slurm_sweeps.py` (3-5 minutes on 2
idle cores).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.polling import wait_until as _wait
from tests.helpers.slurm import finish as _finish
from tests.helpers.slurm import launch
from tests.helpers.slurm import report as _report
from tests.helpers.slurm import run as _run
from tests.helpers.slurm import sacct as _sacct
from tests.helpers.slurm import slurm_job_ids as _slurm_job_ids
from tests.helpers.slurm import state as _state
from tests.helpers.slurm import wait_sacct as _wait_sacct

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
# Long enough that the run is still training when the signal lands, a second or two after
# its first epoch's checkpoint (an epoch takes 1-10 s here, with other jobs on the CPU);
# from the signal on, rdx trains no further.
EPOCHS = 25  # long enough on an idle machine (an epoch ~1 s) for the preemption to land mid-run
# The preempted job holds both CPUs (so the urgent job must preempt it) and runs 2 torch
# threads; the reference run uses the same, so both do the same float arithmetic.
RUN = ["experiment=smoke", f"trainer.epochs={EPOCHS}", "trainer.threads=2", "logger.mode=offline"]
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.mem_gb=1"]


def _sweep(*args: str) -> subprocess.Popen:
    return launch("-m", *args)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    """summary.json of an uninterrupted local run of the preemption tests' config."""
    run_dir = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        [sys.executable, "-m", "rdx.train", *RUN, f"cache_dir={cache}", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def test_sweep_is_one_job_array_of_completed_runs(slurm_cluster, cache, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _sweep(
        "sweeps=smoke",
        *SLURM,
        "launcher.cpus_per_task=1",
        f"cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
    )
    out = _finish(proc, timeout=900)
    assert proc.returncode == 0, out[-3000:]
    ids = _slurm_job_ids(sweep)
    array = {job.split("_")[0] for job in ids}
    assert len(ids) == 3 and len(array) == 1, ids  # one array, three tasks
    (array_id,) = array
    states = _wait_sacct(array_id, ["COMPLETED"] * 3)
    print(_report(array_id))
    assert sorted(job for job, _ in states) == [f"{array_id}_{i}" for i in range(3)]
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["counts"] == {"completed": 3}
    arms = []
    for job in record["jobs"]:
        run_dir = Path(job["run_dir"])
        assert run_dir.parent == sweep and _state(run_dir) == "completed"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert job["acc_plus_reward"] == summary["acc_plus_reward"]
        assert summary["sweep"] == "smoke"
        arms.append((summary["dropout"], summary["gamma"]))
        # one CPU per task -> one torch thread (SLURM_CPUS_PER_TASK)
        assert "torch threads 1" in (run_dir / "train.log").read_text()
    assert arms == [("none", None), ("random", 0.4), ("quantile", 0.8)]


def _start_and_wait_for_first_epoch(cache, sweep: Path) -> tuple[subprocess.Popen, str, str]:
    proc = _sweep(
        *RUN, *SLURM, "launcher.cpus_per_task=2", f"cache_dir={cache}", f"hydra.sweep.dir={sweep}"
    )
    run_dir = sweep / "0"
    try:
        _wait("the first epoch's checkpoint", lambda: (run_dir / "checkpoint.pt").exists(), 600)
    except AssertionError:
        proc.kill()
        raise
    (job_id,) = _slurm_job_ids(sweep)  # a one-job sweep is a plain job, not an array
    return proc, job_id, (run_dir / ".wandb_id").read_text()


def _check_resumed(sweep: Path, wandb_id: str, reference: dict) -> None:
    run_dir = sweep / "0"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["attempts"] == 2, status
    log = (run_dir / "train.log").read_text()
    resumed = re.findall(r"resuming from \S+ at epoch (\d+)", log)
    assert len(resumed) == 1 and 1 <= int(resumed[0]) < EPOCHS, log[-2000:]
    # The requeued job continued its W&B run: same id file, one offline run dir per attempt.
    assert (run_dir / ".wandb_id").read_text() == wandb_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))) == 2
    assert json.loads((run_dir / "summary.json").read_text()) == reference
    assert json.loads((sweep / "sweep.json").read_text())["counts"] == {"completed": 1}


def test_preempted_job_requeues_and_resumes_to_the_same_summary(
    slurm_cluster, cache, reference, tmp_path
):
    assert {"debug", "urgent"} <= slurm_cluster, f"partitions: {slurm_cluster}"
    sweep = tmp_path / "sweep"
    proc, job, wandb_id = _start_and_wait_for_first_epoch(cache, sweep)
    urgent = _run(
        "sbatch",
        "--parsable",
        "-p",
        "urgent",
        "-c",
        "2",
        "-J",
        "urgent",
        f"--output={tmp_path}/urgent-%j.out",
        "--wrap",
        "sleep 2",
    ).strip()
    try:
        # SLURM sends SIGTERM at preemption: rdx marks the run before SIGKILL and the requeue.
        _wait("status.json to say preempted", lambda: _state(sweep / "0") == "preempted", 30, 0.2)
        out = _finish(proc, timeout=600)
    finally:
        subprocess.run(["scancel", urgent], check=False)
    assert proc.returncode == 0, out[-3000:]
    _wait_sacct(urgent, ["COMPLETED"])
    _wait("the job's second run to end", lambda: _sacct(job)[-1][1] != "RUNNING", 60)
    report = _report(job, urgent)
    print(report)
    states = [s for _, s in _sacct(job)]
    # sacct -D keeps the preempted run: PREEMPTED here (REQUEUED on some SLURM versions).
    assert len(states) == 2 and states[0] in ("PREEMPTED", "REQUEUED"), report
    assert states[-1] == "COMPLETED", report
    _check_resumed(sweep, wandb_id, reference)


def test_submitit_signal_requeues_through_checkpoint_and_resumes(
    slurm_cluster, cache, reference, tmp_path
):
    """USR2 is what submitit asks SLURM to send before the time limit (and on preemption
    where the cluster sets preempt_send_user_signal): submitit calls the launcher's
    checkpoint(), requeues the job with `scontrol requeue` and exits."""
    sweep = tmp_path / "sweep"
    proc, job, wandb_id = _start_and_wait_for_first_epoch(cache, sweep)
    _run("scancel", "--signal=USR2", job)
    _wait("status.json to say preempted", lambda: _state(sweep / "0") == "preempted", 30, 0.2)
    out = _finish(proc, timeout=600)
    assert proc.returncode == 0, out[-3000:]
    _wait_sacct(job, ["REQUEUED", "COMPLETED"])
    print(_report(job))
    submitit_log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.out"))
    assert "Calling checkpoint method." in submitit_log
    assert f"Requeued job {job}" in submitit_log
    _check_resumed(sweep, wandb_id, reference)
