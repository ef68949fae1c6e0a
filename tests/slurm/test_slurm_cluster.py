"""The local single-node SLURM cluster (scripts/slurm-up) does what sweeps rely on.

Each test skips via the `slurm_cluster` fixture when no cluster answers. Run with
`scripts/slurm-up && pytest -m slurm`.
"""

import subprocess
import sys

import pytest

from tests.helpers.polling import wait_until as _wait
from tests.helpers.slurm import report as _report
from tests.helpers.slurm import run as _run
from tests.helpers.slurm import scontrol_job as _scontrol_job

pytestmark = pytest.mark.slurm


def _sbatch(tmp_path, *args: str) -> str:
    out = _run("sbatch", "--parsable", f"--output={tmp_path}/slurm-%j.out", *args)
    return out.strip().split(";")[0]


def _sacct_states(job_id: str, *, duplicates: bool = False) -> list[str]:
    """States of the job's allocation records, oldest first (-D: also requeued runs)."""
    cmd = ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id]
    if duplicates:
        cmd.insert(1, "-D")
    # "CANCELLED by 0" -> "CANCELLED"
    return [line.split()[0] for line in _run(*cmd).splitlines() if line.strip()]


def test_sbatch_wrap_completes_in_sacct(slurm_cluster, tmp_path):
    job = _sbatch(tmp_path, "--wrap", "echo hello-from-slurm")
    states = _wait(
        f"job {job} to reach a final state in sacct",
        lambda: [s for s in _sacct_states(job) if s not in ("PENDING", "RUNNING", "COMPLETING")],
        timeout=60,
    )
    print(_report(job))
    assert states == ["COMPLETED"], _report(job)
    assert "hello-from-slurm" in (tmp_path / f"slurm-{job}.out").read_text()


def test_urgent_partition_preempts_and_requeues_debug_job(slurm_cluster, tmp_path):
    assert {"debug", "urgent"} <= slurm_cluster, f"partitions: {slurm_cluster}"
    # Both CPUs, so the urgent job can only start by preempting it.
    low = _sbatch(
        tmp_path, "--requeue", "-p", "debug", "-c", "2", "-J", "low", "--wrap", "sleep 15"
    )
    try:
        _wait(f"low job {low} to run", lambda: _scontrol_job(low)["JobState"] == "RUNNING", 60)
        high = _sbatch(tmp_path, "-p", "urgent", "-c", "1", "-J", "high", "--wrap", "sleep 3")
        # Preempted with PreemptMode=REQUEUE: back to the queue, restart counted.
        _wait(
            f"low job {low} to be requeued",
            lambda: int(_scontrol_job(low)["Restarts"]) >= 1,
            30,
            poll=0.5,
        )
        _wait(f"high job {high} to complete", lambda: _sacct_states(high) == ["COMPLETED"], 30)
        # Requeued jobs wait cred_expire (10 s in slurm-up), then rerun the full 15 s.
        _wait(f"low job {low} to complete", lambda: _sacct_states(low) == ["COMPLETED"], 90)
    finally:
        subprocess.run(["scancel", low], check=False)
    report = _report(low, high)
    print(report)
    low_runs = _sacct_states(low, duplicates=True)
    # sacct -D keeps the preempted run: state PREEMPTED (or REQUEUED on other versions).
    assert len(low_runs) >= 2 and low_runs[0] in ("PREEMPTED", "REQUEUED"), report
    assert low_runs[-1] == "COMPLETED", report
    info = _scontrol_job(low)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, info


def test_submitit_runs_function_and_polls_sacct(slurm_cluster, tmp_path):
    submitit = pytest.importorskip("submitit")

    def where_am_i(x):  # nested, so cloudpickle ships it by value to the job
        import os
        import socket
        import sys

        return x * x, sys.executable, socket.gethostname(), os.environ.get("SLURM_JOB_ID")

    executor = submitit.AutoExecutor(folder=tmp_path)
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1)
    job = executor.submit(where_am_i, 7)
    try:
        # job.done() asks sacct; bound the wait so a broken cluster fails, not hangs.
        _wait(f"submitit job {job.job_id}", job.done, timeout=120, poll=2)
    except AssertionError:
        job.cancel(check=False)
        raise
    value, executable, _host, slurm_job_id = job.result()
    print(_report(job.job_id))
    assert value == 49
    # submitit runs the job with sys.executable: the venv's interpreter.
    assert executable == sys.executable
    assert slurm_job_id == str(job.job_id)
    assert job.state == "COMPLETED"
    assert _sacct_states(str(job.job_id)) == ["COMPLETED"]
