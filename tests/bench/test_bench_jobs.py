"""The process-level benchmarks' arithmetic and plumbing (the timed runs are `make bench`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import jobs
from benchmarks.__main__ import main as bench_main


def test_job_times_come_from_the_trainers_perf_marks(tmp_path):
    lines = [
        {"kind": "step", "step": 1, "epoch": 0, "train/loss": 1.0},
        {"kind": "perf", "event": "first_step", "epoch": 0, "time": 1000.0},
        {"kind": "perf", "event": "first_step", "epoch": 1, "time": 1010.5},  # a resumed attempt
        {"kind": "perf", "event": "trained", "epoch": 1, "time": 1030.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    job = jobs._job(tmp_path, t0=1005.0, wall=27.0)
    # the last attempt's start: 1010.5 - 1005 s start-up, then 1030 - 1010.5 s of training
    assert (job.startup, job.train, job.wall) == (5.5, 19.5, 27.0)


def test_reject_seconds_runs_the_real_cli_and_checks_its_error(monkeypatch):
    # the real CLI refuses the typo (exit 2 naming the key); its speed is make bench's
    assert jobs.reject_seconds(reps=1) > 0

    def accepting(args, env):  # a CLI that printed the value but exited 0
        cmd = [sys.executable, "-c", "print(\"dropout='quantil'\")"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return proc, time.time()

    monkeypatch.setattr(jobs, "_start", accepting)
    with pytest.raises(RuntimeError, match="a bad config was not rejected as expected"):
        jobs.reject_seconds(reps=1)


def test_child_processes_get_no_inherited_thread_or_wandb_settings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("WANDB_SERVICE", "3-1-unix-/x")
    env = jobs._env(RDX_PARALLEL_JOBS="2")
    assert "OMP_NUM_THREADS" not in env and "WANDB_SERVICE" not in env
    assert env["RDX_PARALLEL_JOBS"] == "2"


def test_bench_cli_rejects_an_unknown_part(capsys):
    with pytest.raises(SystemExit) as err:
        bench_main(["--only", "compute,jobz"])
    assert err.value.code == 2
    assert "--only='compute,jobz'" in capsys.readouterr().err


@pytest.mark.slow  # 10 s: the benchmark CLI end to end
def test_bench_cli_writes_results_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert bench_main(["--quick", "--only", "projection", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["machine"]["fp32_gflops"] > 0
    figs = {f["name"].split(" (")[0]: f for f in data["figures"]}
    assert set(figs) == {
        f"Table {t} at paper scale, {e}, one 8×H100 node" for t in (1, 2) for e in ("hf", "vllm")
    }
    assert all(f["unit"] == "h" and math.isfinite(f["value"]) for f in figs.values())
    assert "Table 1 at paper scale" in capsys.readouterr().out


def test_table1_builds_count_each_artifact_as_often_as_the_grid_needs_it():
    log = (
        "[2026-11-25 21:48:38,964][rdx][INFO] - cache: built tokenizer/ff68 in 0.5 s\n"
        "[2026-11-25 21:55:36,023][rdx][INFO] - cache: built behavior/5c27 in 60.0 s\n"
        "[2026-11-25 21:55:44,373][rdx][INFO] - cache: reusing reward/95b1\n"
        "[2026-11-25 21:55:44,373][rdx][INFO] - cache: built reward/95b1 in 8.25 s\n"
        "[2026-11-25 21:55:50,929][rdx][INFO] - cache: built trajectories/feb7 in 6.5 s\n"
        "[2026-11-25 21:55:55,744][rdx][INFO] - cache: built scores/e862 in 4.0 s\n"
    )
    stages = jobs.stage_seconds(log)
    assert stages == {
        "tokenizer": 0.5,
        "behavior": 60.0,
        "reward": 8.25,
        "trajectories": 6.5,
        "scores": 4.0,
    }
    # tokenizer and β once, R for 2 tasks, trajectories + scores for 6 attributes
    assert jobs.table1_builds(stages) == pytest.approx(0.5 + 60 + 2 * 8.25 + 6 * (6.5 + 4.0))


def test_grid_times_the_documented_command_and_requires_every_run(tmp_path, monkeypatch):
    """make bench-grid: `-m sweeps=table1 launcher=joblib` on an empty cache, wall minutes
    from process start to exit; a grid with a run missing is an error, not a figure."""
    started = {}

    def fake_start(args, env):
        started["args"] = args
        sweep = Path(next(a for a in args if a.startswith("hydra.sweep.dir=")).split("=", 1)[1])
        for job in range(started.get("runs", 54)):
            (sweep / str(job)).mkdir(parents=True)
            (sweep / str(job) / "summary.json").write_text("{}")
        return None, 1000.0  # a fixed clock: the figure must not depend on this machine's speed

    monkeypatch.setattr(jobs, "_start", fake_start)
    monkeypatch.setattr(jobs, "_finish", lambda proc, t0, what: 1090.0 - t0)
    (fig,) = jobs.grid(False, tmp_path / "a")
    assert started["args"][:4] == ["-m", "sweeps=table1", "launcher=joblib", "logger=none"]
    assert f"cache_dir={tmp_path / 'a' / 'cache'}" in started["args"]
    assert fig.unit == "min" and fig.value == pytest.approx(1.5)
    assert fig.goal == "<= 20 min" and fig.met is True
    started["runs"] = 53
    with pytest.raises(RuntimeError, match="53 of 54 runs completed"):
        jobs.grid(False, tmp_path / "b")


def test_compare_puts_two_results_side_by_side():
    from benchmarks.compare import compare

    def fig(name, value, base, goal, met):
        ratio = value / base if base else None
        return {"name": name, "value": value, "unit": "u", "ratio": ratio, "goal": goal, "met": met}

    before = {
        "figures": [fig("mfu", 100.0, 400.0, ">= 60% MFU", False), fig("old", 1.0, 0, None, None)]
    }
    after = {
        "figures": [
            fig("mfu", 300.0, 400.0, ">= 60% MFU", True),
            fig("new", 2.0, 1.0, ">= 2x", True),
        ]
    }
    rows = compare(before, after).splitlines()
    assert rows[2] == "| mfu | 100 u (25.0%) | 300 u (75.0%) | >= 60% MFU | no → yes |"
    assert rows[3] == "| new | – | 2 u (2.00x) | >= 2x | – → yes |"
    assert rows[4] == "| old | 1 u | – | – | – → – |"
