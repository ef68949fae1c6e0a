"""Sweep presets (sweeps/), launchers (conf/launcher/), the post-sweep check and preemption.

Fast tests compose every preset and launcher; `slow` ones run real sweeps on the smoke
preset: a capped parallel local sweep sharing one artifact build, failing jobs that fail the
sweep, and a run that is signalled the way SLURM and submitit signal a preempted job.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rdx.config import Config, validate

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
PRESETS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
ATTRIBUTES = ["negative", "positive", "world", "sport", "business", "sci_tech"]
# sweeps/<name>.yaml that runs only with an experiment (the paper-size grids: hub data)
EXPERIMENT_PRESETS = {
    p: "paper_table1" for p in ("paper_table1", "paper_table2", "paper_table2_lora")
}


def compose_full(*overrides: str):
    """The composed config with its hydra node (sweeper params, launcher)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def job_config(*overrides: str) -> Config:
    cfg = compose_full(*overrides)
    task = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    return validate(OmegaConf.to_container(OmegaConf.create(task), resolve=True))


def sweep_params(preset: str) -> dict[str, list[str]]:
    """Each swept key's values (an optuna interval's two ends, as the pre-launch check)."""
    from rdx.train import sweep_values

    params = compose_full(f"sweeps={preset}").hydra.sweeper.params
    parser = OverridesParser.create()
    parsed = {key: parser.parse_overrides([f"{key}={value}"])[0] for key, value in params.items()}
    return {
        key: sweep_values(o) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for key, o in parsed.items()
    }


def sweep_jobs(preset: str, *extra: str) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of `-m sweeps=<preset> <extra>`."""
    params = [f"{k}={','.join(v)}" for k, v in sweep_params(preset).items()]
    overrides = OverridesParser.create().parse_overrides([*params, *extra])
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return batch


# PRESETS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_every_value_of_every_sweep_preset_composes(preset, monkeypatch):
    """Each value of each swept key, the others at their first value, so no option rots."""
    # Hub presets (table2's gpt2 ...) cannot be resolved offline; the rest is validated.
    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)
    params = sweep_params(preset)
    assert compose_full(f"sweeps={preset}").sweep == preset  # the W&B group / tables column
    first = {key: values[0] for key, values in params.items()}
    # A preset documented for one experiment is composed with it (its header's command).
    extra = [f"experiment={EXPERIMENT_PRESETS[preset]}"] if preset in EXPERIMENT_PRESETS else []
    for key, values in params.items():
        for value in values:
            overrides = [f"{k}={value if k == key else v}" for k, v in first.items()]
            cfg = job_config(f"sweeps={preset}", *extra, *overrides)
            assert cfg.sweep == preset, overrides


def test_table1_is_the_papers_grid():
    jobs = sweep_jobs("table1")
    assert len(jobs) == 54
    assert len(sweep_jobs("table1", "seed=0,1,2")) == 162  # seeds on the command line win
    cells = set()
    for arm in sweep_params("table1")["+sweeps/arm"]:
        cfg = job_config("sweeps=table1", f"+sweeps/arm={arm}")
        cells.add((cfg.dropout.mode, cfg.gamma))
    gammas = (0.2, 0.4, 0.6, 0.8)
    expected = {("none", None)} | {(m, g) for m in ("random", "quantile") for g in gammas}
    assert cells == expected
    attributes = {o.split("=")[1] for job in jobs for o in job if o.startswith("attribute=")}
    assert attributes == set(ATTRIBUTES)


@pytest.mark.parametrize(
    "preset, runs, axes",
    [
        ("table2", 60, {"model": ["tiny", "gpt2", "gpt2-large", "xglm-1.7b", "opt-6.7b"]}),
        ("fig3", 48, {"model.init": ["random", "behavior"]}),
        ("tables34", 12, {"attribute": ATTRIBUTES}),
        ("smoke", 3, {"+sweeps/arm": ["none", "random-0.4", "quantile-0.8"]}),
        ("regimes", 384, {"sampling.top_k": ["null", "50"], "sampling.seed": ["0", "1", "2"]}),
    ],
)
def test_preset_sizes(preset, runs, axes):
    assert len(sweep_jobs(preset)) == runs
    params = sweep_params(preset)
    for key, values in axes.items():
        assert params[key] == values


def test_the_regime_map_passes_the_pre_launch_check_and_crosses_every_factor(capsys):
    from rdx.train import check_overrides

    check_overrides(["-m", "sweeps=regimes"])  # every value of all 384 jobs: no exit
    check_overrides(["-m", "experiment=smoke", "sweeps=regimes", "attribute=negative", "seed=0"])
    assert "error" not in capsys.readouterr().err
    seen = set()
    for job in sweep_jobs("regimes"):
        seen.add(tuple(o for o in job if o.split("=")[0] in {
            "sampling.prefix_pool", "sampling.temperature", "sampling.repetition_penalty",
            "sampling.top_k"}))  # fmt: skip
    assert len(seen) == 16
    cfg = job_config("sweeps=regimes", "sampling.top_k=null", "sampling.seed=2")
    assert cfg.eval.judge and cfg.sampling.top_k is None and cfg.sampling.seed == 2


def test_smoke_preset_brings_the_smoke_experiment():
    cfg = job_config("sweeps=smoke", "+sweeps/arm=random-0.4")
    assert (cfg.trainer.epochs, cfg.sampling.num_prefixes) == (2, 64)
    assert (cfg.dropout.mode, cfg.gamma) == ("random", 0.4)


# LAUNCHERS -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "launcher").glob("*.yaml")))
def test_every_launcher_composes(name):
    cfg = compose_full(f"launcher={name}")
    OmegaConf.resolve(cfg.hydra.launcher)  # every ${launcher.*} resolves
    assert isinstance(job_config(f"launcher={name}"), Config)


def test_basic_launcher_is_the_default():
    cfg = compose_full()
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")


def test_thread_rule_order(monkeypatch):
    """trainer.threads, then SLURM's CPUs per task, then OMP_NUM_THREADS (joblib's workers),
    then cores ÷ RDX_PARALLEL_JOBS; an empty or non-numeric variable is skipped."""
    from rdx.run import default_threads

    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS", "RDX_PARALLEL_JOBS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr("rdx.threads.runnable_others", lambda: 0)  # an idle machine
    assert default_threads(None) == 4
    monkeypatch.setenv("RDX_PARALLEL_JOBS", "2")
    assert default_threads(None) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "x")
    assert default_threads(None) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(None) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    assert default_threads(None) == 5
    assert default_threads(7) == 7


def test_joblib_launcher_runs_n_jobs_workers():
    cfg = compose_full("launcher=joblib", "launcher.n_jobs=3")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    # batch_size is a string field that the plugin turns into joblib's int
    assert (cfg.hydra.launcher.n_jobs, int(cfg.hydra.launcher.batch_size)) == (3, 1)


def test_local_launcher_caps_parallel_jobs():
    cfg = compose_full("launcher=local", "launcher.max_parallel=3")
    assert cfg.hydra.launcher._target_ == "hydra_plugins.rdx_launcher.CappedLocalLauncher"
    assert cfg.hydra.launcher.array_parallelism == 3


def test_slurm_launcher_passes_user_keys_to_submitit():
    cfg = compose_full(
        "launcher=slurm",
        "launcher.partition=gpu",
        "launcher.account=proj",
        "launcher.gpus_per_node=1",
        "launcher.cpus_per_task=8",
        "launcher.mem_gb=32",
        "launcher.timeout_min=60",
        "launcher.array_parallelism=4",
        "+launcher.additional_parameters.mail-type=FAIL",
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert {
        k: launcher[k]
        for k in (
            "partition",
            "account",
            "gpus_per_node",
            "cpus_per_task",
            "mem_gb",
            "timeout_min",
            "array_parallelism",
        )
    } == {
        "partition": "gpu",
        "account": "proj",
        "gpus_per_node": 1,
        "cpus_per_task": 8,
        "mem_gb": 32,
        "timeout_min": 60,
        "array_parallelism": 4,
    }
    # requeue on preemption, and submitit may requeue after a time limit (stock default: 0)
    assert launcher["additional_parameters"] == {"requeue": True, "mail-type": "FAIL"}
    assert launcher["max_num_timeout"] == 3


def test_local_group_sets_cluster_defaults_and_the_command_line_wins(tmp_path):
    """conf/local/<name>.yaml (git-ignored) as conf/local/README.md shows it."""
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "cluster.yaml").write_text(
        "# @package _global_\nlauncher:\n  partition: gpu\n  account: proj\n"
        "  additional_parameters:\n    constraint: a100\n"
    )
    common = [f"hydra.searchpath=[file://{tmp_path}]", "local=cluster", "launcher=slurm"]
    cfg = compose_full(*common)
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.account) == ("gpu", "proj")
    # merged into the preset's sbatch flags, not replacing them
    assert cfg.hydra.launcher.additional_parameters == {"requeue": True, "constraint": "a100"}
    cfg = compose_full(*common, "launcher.partition=debug")
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.account) == ("debug", "proj")


# CLI -------------------------------------------------------------------------------------
def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rdx.train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "arg, message",
    [
        (
            "sweeps=tabel1",
            "rdx: config error: sweeps='tabel1': expected one of fig3, fig3_authors, fig4, "
            "gamma_search, paper_table1, paper_table2, paper_table2_lora, regimes, rules, smoke, "
            "table1, table2, table2_lora, tables34",
        ),
        (
            "launcher=slrum",
            "rdx: config error: launcher='slrum': expected one of basic, joblib, local, slurm",
        ),
    ],
)
def test_mistyped_sweep_or_launcher_fails_in_one_line(tmp_path, arg, message):
    proc = run_cli("-m", arg, f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_smoke_regime_map_runs_end_to_end_into_its_table_and_figure(tmp_path):
    """sweeps=regimes under experiment=smoke, cut to 4 regimes (pool × top-k) of one attribute,
    seed and sample set: 8 runs, then what `make tables` runs on them."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "experiment=smoke", "sweeps=regimes", "attribute=negative", "seed=0",
        "sampling.seed=0", "sampling.temperature=1.0", "sampling.repetition_penalty=1.2",
        f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((sweep / "sweep.json").read_text())["counts"] == {"completed": 8}
    csv, tables, figures = tmp_path / "runs.csv", tmp_path / "tables", tmp_path / "figures"
    py = [sys.executable, "-m"]
    subprocess.run(
        [*py, "analysis.collect", "--runs", str(sweep), "--out", str(csv)], check=True, cwd=ROOT
    )
    regimes = [*py, "analysis.regimes", "--csv", str(csv), "--out", str(tables)]
    subprocess.run([*regimes, "--figures", str(figures)], check=True, cwd=ROOT, capture_output=True)
    text = (tables / "regimes.md").read_text()
    for regime in (
        "attribute's pool, T=1, penalty 1.2, all tokens",
        "task's pool, T=1, penalty 1.2, top-50",
    ):
        assert any(f"| {regime} " in line and "| negative " in line for line in text.split("\n"))
    assert (figures / "regimes.png").stat().st_size > 0 and (figures / "regimes.pdf").is_file()


def test_sweep_summary_names_every_job_and_its_state(tmp_path):
    """sweep.json from the job dirs alone: what `python -m rdx.train -m` writes at the end."""
    from rdx.sweep import check_sweep

    for job, state, summary in [
        ("0", "completed", {"acc_plus_reward": 1.25}),
        ("1", "failed", None),
        ("10", "preempted", None),
    ]:
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        (tmp_path / job / "status.json").write_text(
            json.dumps(
                {
                    "state": state,
                    "error": None if state == "completed" else f"{state} here",
                    "attempts": 1,
                }
            )
        )
        if summary:
            (tmp_path / job / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # a job that died before rdx ran
    (tmp_path / ".submitit").mkdir()
    assert check_sweep(tmp_path) is False
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert [(j["job"], j["state"]) for j in record["jobs"]] == [
        ("0", "completed"),
        ("1", "failed"),
        ("2", "unknown"),
        ("10", "preempted"),
    ]
    assert record["jobs"][0]["acc_plus_reward"] == 1.25
    assert record["jobs"][0]["overrides"] == ["seed=0"]
    assert record["jobs"][0]["run_dir"] == str(tmp_path / "0")
    assert record["jobs"][2]["error"].startswith("no status.json")
    assert record["counts"] == {"completed": 1, "failed": 1, "unknown": 1, "preempted": 1}


# SLOW: real sweeps -----------------------------------------------------------------------
def _log_time(line: str) -> datetime:
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")


def prepare_sweep(cache, sweep, *overrides: str, timeout: int = 600):
    """`-m experiment=smoke stage=prepare <overrides>` into `sweep`, artifacts in `cache`."""
    return run_cli(
        "-m",
        "experiment=smoke",
        "stage=prepare",
        *overrides,
        f"cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def parallel_sweep(tmp_path_factory):
    """4 prepare-only jobs, 2 at a time, on an empty cache: they race to build artifacts."""
    base = tmp_path_factory.mktemp("parallel")
    cache, sweep = base / "cache", base / "sweep"
    proc = prepare_sweep(
        cache, sweep, "seed=0,1,2,3", "launcher=local", "launcher.max_parallel=2", timeout=900
    )
    return proc, cache, sweep


@pytest.mark.slow
def test_parallel_local_sweep_builds_each_artifact_once(parallel_sweep):
    proc, cache, sweep = parallel_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["counts"] == {"completed": 4}
    logs = {job: (sweep / job / "train.log").read_text() for job in "0123"}
    built = [
        m.group(1) for text in logs.values() for m in re.finditer(r"cache: building (\S+)", text)
    ]
    kinds = sorted(key.split("/")[0] for key in built)
    # β's rows are sampled and scored in chunks (one each here), merged into the run's entries
    assert kinds == [
        "behavior",
        "reward",
        "score-chunks",
        "scores",
        "tokenizer",
        "trajectories",
        "trajectory-chunks",
    ], built
    assert sorted(p.parent.name + "/" + p.name for p in cache.glob("*/*") if p.is_dir()) == sorted(
        built
    )
    # Every job has the five a run reads, built by itself or reused (only their builder
    # touches the chunks); some waited on another's lock.
    five = r"cache: (?:building|reusing) (?:tokenizer|behavior|reward|trajectories|scores)/"
    for job, text in logs.items():
        assert len(re.findall(five, text)) == 5, job
    assert "(built by another job)" in "".join(logs.values())
    # cores ÷ parallel jobs torch threads in each job, fewer where other processes hold
    # cores (rdx.threads; on 2 cores both rules give 1)
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for job, text in logs.items():
        got = int(re.search(r"torch threads (\d+)", text).group(1))
        assert 1 <= got <= share, job


@pytest.mark.slow
def test_parallel_local_sweep_runs_at_most_max_parallel_jobs(parallel_sweep):
    _, _, sweep = parallel_sweep
    spans = []
    for job in "0123":
        lines = (sweep / job / "train.log").read_text().splitlines()
        start = next(line for line in lines if "run dir" in line)
        end = next(line for line in lines if "artifacts ready" in line)
        spans.append((_log_time(start), _log_time(end)))
    # Most jobs alive at once = most job starts inside another's span, plus itself.
    running = [sum(s <= start <= e for s, e in spans) for start, _ in spans]
    assert max(running) == 2, spans


@pytest.mark.slow
def test_joblib_sweep_reuses_its_workers_with_a_thread_share_each(parallel_sweep, tmp_path):
    """launcher=joblib: 4 jobs in at most n_jobs=2 worker processes (start-up paid per
    worker, not per job), each job with cores ÷ 2 torch threads (loky's OMP_NUM_THREADS)."""
    _, cache, _ = parallel_sweep
    sweep = tmp_path / "sweep"
    proc = prepare_sweep(cache, sweep, "seed=0,1,2,3", "launcher=joblib")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((sweep / "sweep.json").read_text())["counts"] == {"completed": 4}
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    pids = set()
    for job in "0123":
        line = re.search(r"torch threads (\d+), pid (\d+)", (sweep / job / "train.log").read_text())
        assert int(line[1]) == threads, job
        pids.add(line[2])
    assert 1 <= len(pids) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "local", "joblib"])
def test_failed_jobs_fail_the_sweep_and_say_why(parallel_sweep, tmp_path, launcher):
    """Hydra reports failed jobs as completed; rdx names every failed run and exits 1.

    A bad value in a sweep list fails the launch before any job (tests/cli/test_bad_input.py);
    these jobs fail inside: 1 and 3 ask this CUDA-less machine for CUDA, 2 and 3 keep no
    sentence of <= 1 word (a DataError when the corpus loads).
    """
    import torch

    if torch.cuda.is_available():
        pytest.skip("trainer.device=cuda is the failure under test: this machine has CUDA")
    _, cache, _ = parallel_sweep
    sweep = tmp_path / "sweep"
    proc = prepare_sweep(
        cache, sweep, "dataset.max_words=30,1", "trainer.device=cpu,cuda", f"launcher={launcher}"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    record = json.loads((sweep / "sweep.json").read_text())
    states = {j["job"]: (j["state"], j["error"]) for j in record["jobs"]}
    assert states["0"] == ("completed", None)
    assert states["1"][0] == "failed" and "ConfigError: trainer.device='cuda'" in states["1"][1]
    assert states["2"][0] == "failed" and "DataError" in states["2"][1]
    assert "dataset.max_words" in states["2"][1]
    assert states["3"][0] == "failed"
    status = json.loads((sweep / "2" / "status.json").read_text())
    assert status["state"] == "failed" and status["ended"]
    assert f"3 of 4 runs did not complete (summary: {sweep / 'sweep.json'})" in proc.stderr
    for job in "123":
        assert f"  job {job} failed: " in proc.stderr


@pytest.mark.slow
def test_scheduler_signals_mark_preempted_and_the_requeued_run_resumes(
    parallel_sweep, tmp_path, monkeypatch, caplog
):
    """What SLURM and submitit do to a preempted job, in one process.

    SIGTERM (preemption, time limit, scancel): submitit only logs it and SLURM kills the job
    later; rdx marks the run and waits for the kill. USR2 (submitit's signal): submitit
    requeues the job and exits. Either way status.json says `preempted` while the job waits,
    and the requeued run resumes to the summary of an uninterrupted one.
    """
    import rdx.run
    from rdx.records import RunRecords
    from rdx.run import execute
    from tests.cli.test_config import compose_cfg

    _, cache, _ = parallel_sweep
    cfg = compose_cfg("experiment=smoke", f"cache_dir={cache}", "trainer.epochs=3")
    execute(cfg, tmp_path / "uninterrupted")
    reference = json.loads((tmp_path / "uninterrupted" / "summary.json").read_text())

    monkeypatch.setenv("SLURM_JOB_ID", "1")  # rdx watches SIGTERM only under SLURM
    monkeypatch.setattr(rdx.run, "AWAIT_KILL_S", 0.5)  # the SIGKILL that never comes here
    seen = []

    def submitit_bypass(signum, frame):  # submitit's SIGTERM handler
        seen.append((signal.Signals(signum).name, RunRecords(run_dir).status()["state"]))

    def submitit_requeue(signum, frame):  # submitit's USR2 handler, after `scontrol requeue`
        seen.append((signal.Signals(signum).name, RunRecords(run_dir).status()["state"]))
        sys.exit(-1)

    original = RunRecords.save_checkpoint
    signum = signal.SIGTERM

    def signal_after_first_epoch(self, state):
        original(self, state)
        if state["epoch"] == 1:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(RunRecords, "save_checkpoint", signal_after_first_epoch)
    old = {
        s: signal.signal(s, h)
        for s, h in [(signal.SIGTERM, submitit_bypass), (signal.SIGUSR2, submitit_requeue)]
    }
    set_preempted = rdx.run._set_preempted

    def second_sigterm_while_marking(records, name):  # SLURM sends two, milliseconds apart
        os.kill(os.getpid(), signal.SIGTERM)
        set_preempted(records, name)

    monkeypatch.setattr(rdx.run, "_set_preempted", second_sigterm_while_marking)
    try:
        # SIGTERM: marked, then nothing more happens until the kill (here: a timeout). The
        # second SIGTERM, inside the first one's handler, must not keep it from marking.
        run_dir = tmp_path / "term"
        with pytest.raises(RuntimeError, match="SIGTERM from SLURM and no SIGKILL within"):
            execute(cfg, run_dir)
        assert seen == [("SIGTERM", "running"), ("SIGTERM", "preempted")]
        monkeypatch.setattr(rdx.run, "_set_preempted", set_preempted)
        assert "no SIGKILL" in json.loads((run_dir / "status.json").read_text())["error"]
        epochs = [r["epoch"] for r in RunRecords(run_dir).read_metrics() if r["kind"] == "epoch"]
        assert epochs == [0]  # no training after the signal

        # USR2: marked, submitit exits; status stays preempted, not failed.
        run_dir, signum = tmp_path / "usr2", signal.SIGUSR2
        with pytest.raises(SystemExit):
            execute(cfg, run_dir)
        assert seen[-1] == ("SIGUSR2", "preempted")
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "preempted" and status["ended"] is None
        assert status["error"].startswith("SIGUSR2 from the scheduler")
        assert not (run_dir / "summary.json").exists()
        # rdx's handlers are gone after the run: submitit's are back.
        assert signal.getsignal(signal.SIGUSR2) is submitit_requeue
        assert signal.getsignal(signal.SIGTERM) is submitit_bypass

        monkeypatch.setattr(RunRecords, "save_checkpoint", original)
        with caplog.at_level(logging.INFO, logger="rdx"):
            execute(cfg, run_dir)  # the requeued job: same command, same run dir
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["attempts"] == 2
    assert json.loads((run_dir / "summary.json").read_text()) == reference
    assert "resuming from" in caplog.text and "at epoch 1 " in caplog.text
    epochs = [r["epoch"] for r in RunRecords(run_dir).read_metrics() if r["kind"] == "epoch"]
    assert epochs == [0, 1, 2]  # the interrupted epoch is logged once
