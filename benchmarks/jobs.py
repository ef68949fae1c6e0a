"""Process-level benchmarks: what a researcher running a sweep actually waits for.

Each job is a real `python -m rdx.train` process with W&B off. Start-up and training
times come from the wall-clock marks the trainer writes to metrics.jsonl (`kind: perf`,
events `first_step` and `trained`), against the moment this script started the process.
Quick mode runs `experiment=smoke`; full mode the embedded default for `FULL_EPOCHS`
epochs, plus one whole default run that the Table 1 projection scales up.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Figure
from rdx.records import RunRecords

FULL_EPOCHS = 1
SWEEP_RUNS = 3
PARALLEL_REPS = 2
# Table 1 of the embedded default: 6 attributes × (N/A + random and quantile at 4 γ).
TABLE1_ATTRIBUTES, TABLE1_TASKS, TABLE1_ARMS, DEFAULT_EPOCHS = 6, 2, 9, 5
# What a caller's environment may set that would change what is measured: thread counts,
# and a W&B service to attach to.
_INHERITED_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RDX_PARALLEL_JOBS", "WANDB_SERVICE")


@dataclass
class Job:
    wall: float  # process start → exit, s
    startup: float  # process start → first training step, s
    train: float  # first training step → training done, s
    run_dir: Path


def _size(quick: bool) -> list[str]:
    base = ["logger=none"]
    return base + (["experiment=smoke"] if quick else [f"trainer.epochs={FULL_EPOCHS}"])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_VARS}
    env.update(extra)
    return env


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdx.train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, t0


def _finish(proc: subprocess.Popen, t0: float, what: str) -> float:
    out, _ = proc.communicate()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark job {what} failed ({proc.returncode}):\n{out[-3000:]}")
    return wall


def _marks(run_dir: Path) -> dict[str, float]:
    """The last (this attempt's) time of each perf event in the run's metrics.jsonl."""
    return {
        r["event"]: r["time"] for r in RunRecords(run_dir).read_metrics() if r["kind"] == "perf"
    }


def _job(run_dir: Path, t0: float, wall: float) -> Job:
    m = _marks(run_dir)
    return Job(wall, m["first_step"] - t0, m["trained"] - m["first_step"], run_dir)


def run_jobs(
    overrides: list[str], cache: Path, root: Path, names: list[str], env: dict[str, str]
) -> list[Job]:
    """Start one training job per name at once; wait for all."""
    started = []
    for name in names:
        args = [*overrides, f"cache_dir={cache}", f"hydra.run.dir={root / name}"]
        started.append((name, *_start(args, env)))
    jobs = []
    for name, proc, t0 in started:
        wall = _finish(proc, t0, name)
        jobs.append(_job(root / name, t0, wall))
    return jobs


def prepare(overrides: list[str], cache: Path, root: Path) -> tuple[float, dict[str, float]]:
    """Build the artifacts into `cache` (stage=prepare): wall seconds, seconds per stage."""
    args = [*overrides, "stage=prepare", f"cache_dir={cache}", f"hydra.run.dir={root}"]
    proc, t0 = _start(args, _env())
    wall = _finish(proc, t0, "prepare")
    return wall, stage_seconds((root / "train.log").read_text())


def stage_seconds(log: str) -> dict[str, float]:
    """{stage: seconds} from the cache's 'cache: built <stage>/<key> in <s> s' log lines."""
    return {m[1]: float(m[2]) for m in re.finditer(r"cache: built (\w+)/\S+ in ([\d.]+) s", log)}


def table1_builds(stages: dict[str, float]) -> float:
    """Seconds of artifact building for Table 1: one tokenizer and β for the corpus, one R
    per task (sentiment, topic), trajectories and their scores per attribute."""
    per_attribute = stages.get("trajectories", 0.0) + stages.get("scores", 0.0)
    once = stages.get("tokenizer", 0.0) + stages.get("behavior", 0.0)
    return once + TABLE1_TASKS * stages.get("reward", 0.0) + TABLE1_ATTRIBUTES * per_attribute


def reject_seconds(reps: int = 3) -> float:
    """Median wall time of `python -m rdx.train dropout=quantil` (a typo) to its exit 2."""
    times = []
    for _ in range(reps):
        proc, t0 = _start(["dropout=quantil"], _env())
        out, _ = proc.communicate()
        times.append(time.time() - t0)
        if proc.returncode != 2 or "dropout='quantil'" not in out:
            raise RuntimeError(f"a bad config was not rejected as expected:\n{out[-2000:]}")
    return statistics.median(times)


def sweep(overrides: list[str], cache: Path, sweep_dir: Path, runs: int) -> float:
    """A `-m` sweep of `runs` seeds (basic launcher) on a fresh cache; wall seconds."""
    seeds = ",".join(str(s) for s in range(runs))
    args = ["-m", *overrides, f"seed={seeds}", f"cache_dir={cache}", f"hydra.sweep.dir={sweep_dir}"]
    proc, t0 = _start(args, _env())
    return _finish(proc, t0, "sweep")


def grid(quick: bool, work: Path | None = None) -> list[Figure]:
    """The Table 1 grid of the embedded default, run end to end: `-m sweeps=table1` with the
    joblib launcher (a worker per core) on an empty cache; wall seconds and runs completed."""
    with tempfile.TemporaryDirectory(prefix="rdx-grid-") as tmp:
        root = Path(work) if work else Path(tmp)
        size = ["logger=none", "experiment=smoke"] if quick else ["logger=none"]
        args = ["-m", "sweeps=table1", "launcher=joblib", *size]
        args += [f"cache_dir={root / 'cache'}", f"hydra.sweep.dir={root / 'sweep'}"]
        proc, t0 = _start(args, _env())
        wall = _finish(proc, t0, "table1 grid")
        done = len(list((root / "sweep").glob("*/summary.json")))
    runs = TABLE1_ATTRIBUTES * TABLE1_ARMS
    if done != runs:
        raise RuntimeError(f"table1 grid: {done} of {runs} runs completed in {root / 'sweep'}")
    return [
        Figure(
            f"Table 1 grid, embedded default ({runs} runs), measured",
            wall / 60,
            "min",
            goal="<= 20 min",
            note=("smoke size; " if quick else "")
            + "python -m rdx.train -m sweeps=table1 launcher=joblib (2 workers × 1 thread) "
            "on an empty cache, artifact builds included, process start to exit",
        )
    ]


def run(quick: bool, work: Path | None = None) -> list[Figure]:
    """All process-level figures; `work` holds the runs and caches (a temp dir if None)."""
    with tempfile.TemporaryDirectory(prefix="rdx-bench-") as tmp:
        return _run(quick, Path(work) if work else Path(tmp))


def _run(quick: bool, work: Path) -> list[Figure]:
    size = _size(quick)
    mode = "smoke" if quick else f"default, {FULL_EPOCHS} epoch"
    figures: list[Figure] = []

    # Sweep overhead: one artifact build + N trainings, against the sweep doing exactly that.
    build, stages = prepare(size, work / "cache-a", work / "prepare")
    (single,) = run_jobs(size, work / "cache-a", work / "single", ["0"], _env())
    swept = sweep(size, work / "cache-b", work / "sweep", SWEEP_RUNS)
    ideal = build + SWEEP_RUNS * single.train
    figures.append(
        Figure(
            f"sweep overhead ({SWEEP_RUNS} runs, {mode})",
            swept,
            "s",
            baseline=ideal,
            baseline_name="build + N × train",
            goal="<= 1.15x",
            note=f"build {build:.1f} s (its own process), train-only {single.train:.1f} s per run; "
            "the sweep runs its jobs in one process (Hydra basic launcher) on a fresh cache",
        )
    )
    figures.append(
        Figure(
            "job start-up (process start → first step)",
            single.startup,
            "s",
            goal="<= 6 s",
            note="cached artifacts; imports, config, artifact loading, building π",
        )
    )
    figures.append(Figure("reject a bad config (exit 2)", reject_seconds(), "s", goal="<= 2 s"))

    # Parallel jobs on all cores: rdx's threads (cores ÷ jobs) against one job alone. Each
    # setting runs PARALLEL_REPS times, round-robin, and keeps its best wall time: single
    # ~20 s processes on a shared machine vary by tens of percent.
    cores = len(os.sched_getaffinity(0))
    names = [str(i) for i in range(cores)]
    settings = {
        "alone": (size, ["0"], _env()),
        "solo": (size, ["0"], _env(RDX_PARALLEL_JOBS=str(cores))),  # 1 job, its 1 thread
        "split": (size, names, _env(RDX_PARALLEL_JOBS=str(cores))),
        "over": ([*size, f"trainer.threads={cores}"], names, _env()),
    }
    best: dict[str, float] = {}
    for rep in range(PARALLEL_REPS):
        for key, (args, job_names, env) in settings.items():
            done = run_jobs(args, work / "cache-a", work / f"{key}-{rep}", job_names, env)
            best[key] = min(best.get(key, float("inf")), max(j.wall for j in done))
    alone_wall, split_wall, over_wall = best["alone"], best["split"], best["over"]
    one = 3600 / alone_wall
    figures.append(
        Figure(
            f"{cores} jobs × 1 thread vs 1 job × 1 thread (contention)",
            cores * 3600 / split_wall,
            "runs/h",
            baseline=3600 / best["solo"],
            baseline_name="1 job × 1 thread alone",
            goal=f">= {0.9 * cores:.1f}x",
            note=f"{mode}; {cores}.00x = the jobs do not slow each other; the row below "
            f"also holds how much a 2nd thread speeds one job (alone {alone_wall:.1f} s on "
            f"{cores} threads, {best['solo']:.1f} s on 1)",
        )
    )
    figures.append(
        Figure(
            f"{cores} jobs × {1} thread, aggregate",
            cores * 3600 / split_wall,
            "runs/h",
            baseline=one,
            baseline_name=f"1 job × {cores} threads",
            goal=f">= {0.9 * cores:.1f}x",
            note=f"{mode}; whole processes (start-up included), all started together; "
            f"best of {PARALLEL_REPS}",
        )
    )
    figures.append(
        Figure(
            f"{cores} jobs × {cores} threads (oversubscribed)",
            cores * 3600 / over_wall,
            "runs/h",
            baseline=one,
            baseline_name=f"1 job × {cores} threads",
            note="torch's default threads per job: what rdx's cores ÷ jobs setting avoids",
        )
    )

    if quick:
        figures.append(
            Figure(
                "Table 1 grid, embedded default (54 runs)",
                float("nan"),
                "min",
                goal="<= 30 min",
                note="projected in full mode only (needs default-size runs)",
            )
        )
    else:
        # A whole default run, measured: a 1-epoch run's first epoch also pays one-time
        # costs (WordNet's load for METEOR, warm-up), so 5 × it would overstate a run.
        default = [f for f in size if not f.startswith("trainer.epochs=")]
        (full,) = run_jobs(default, work / "cache-a", work / "default-run", ["0"], _env())
        per_run = full.startup + full.train
        parallel = (cores * 3600 / split_wall) / one
        runs = TABLE1_ATTRIBUTES * TABLE1_ARMS
        builds = table1_builds(stages)
        minutes = (builds + runs * per_run / max(parallel, 1.0)) / 60
        figures.append(
            Figure(
                f"Table 1 grid, embedded default ({runs} runs)",
                minutes,
                "min",
                goal="<= 30 min",
                note=f"projected: artifact builds {builds:.0f} s (β once, R per task, "
                f"trajectories and scores per attribute; measured stages "
                + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
                + f") + {runs} runs × {per_run:.0f} s (a measured {DEFAULT_EPOCHS}-epoch run) "
                f"÷ {parallel:.2f} (measured {cores}-job speed-up)",
            )
        )
    return figures
