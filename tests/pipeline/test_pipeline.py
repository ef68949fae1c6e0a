"""End to end on the smoke preset: records written, resume equals uninterrupted, cache reuse."""

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

from rdx.pipeline.offpolicy.examples import PPLM_PREFIXES
from rdx.records import RunRecords
from rdx.run import execute
from tests.cli.test_config import compose_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def smoke(cache, *overrides):
    return compose_cfg("experiment=smoke", f"cache_dir={cache}", *overrides)


@pytest.fixture(scope="module")
def finished(cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = execute(smoke(cache), run_dir)
    return run_dir, result


def test_run_writes_every_record(finished):
    run_dir, result = finished
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.yaml",
        "status.json",
        "metrics.jsonl",
        "summary.json",
        "samples.jsonl",
        "trace.jsonl",
        "checkpoint.pt",
    } <= names
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["error"] is None and status["ended"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["acc_plus_reward"] == pytest.approx(summary["acc"] + summary["reward"])
    assert result == pytest.approx(summary["acc_plus_reward"])
    assert 0 <= summary["acc"] <= 1 and 0 <= summary["reward"] <= 1
    for key in (
        "likelihood",
        "reward",
        "acc",
        "bleu",
        "rouge1",
        "rouge2",
        "rougeL",
        "meteor",
        "length",
        "distinct2",
    ):
        assert f"eval/{key}" in summary
    assert (summary["dataset"], summary["attribute"], summary["dropout"], summary["gamma"]) == (
        "synthetic",
        "positive",
        "quantile",
        0.8,
    )
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["dropout"]["mode"] == "quantile" and config["trainer"]["epochs"] == 2


def test_metrics_and_trace_have_one_record_per_step_and_epoch(finished):
    run_dir, _ = finished
    records = RunRecords(run_dir).read_metrics()
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    # smoke: 64 prefixes x 2 samples = 128 trajectories, batch 32 -> 4 steps/epoch, log_every 1
    assert [r["epoch"] for r in epochs] == [0, 1]
    # trainer.epoch_metrics=last: train/reward and eval/* in the last epoch only; train/acc
    # (free: the training forward's) in every epoch
    assert "train/acc" in epochs[0] and "train/reward" not in epochs[0]
    assert not any(k.startswith("eval/") for k in epochs[0])
    assert {"train/acc", "train/reward", "eval/reward", "eval/meteor"} <= epochs[1].keys()
    assert [r["step"] for r in steps] == list(range(1, 9))
    perf = {r["event"]: r for r in records if r["kind"] == "perf"}  # the benchmarks' clock
    assert perf.keys() == {"first_step", "trained"}
    assert (perf["first_step"]["epoch"], perf["trained"]["epoch"]) == (0, 1)
    assert perf["first_step"]["time"] < perf["trained"]["time"]
    keep = {r["train/keep_frac"] for r in steps}
    assert keep == {7 / 32}  # quantile 0.8 of 32 distinct values keeps 32 - ceil(0.8*31) = 7
    trace = [json.loads(line) for line in (run_dir / "trace.jsonl").read_text().splitlines()]
    assert [t["epoch"] for t in trace] == [0, 1] and len(trace[0]["r_hat"]) == 32
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    held_out = [s for s in samples if "source" not in s]  # the rest: Table 6's PPLM rows
    assert len(held_out) == 32 and {"prefix", "generation", "reward"} <= samples[0].keys()
    assert [s["given_prefix"] for s in samples[32:]] == list(PPLM_PREFIXES["sentiment"])


def test_epoch_metrics_every_measures_each_epoch_and_trains_the_same(finished, cache, tmp_path):
    """epoch_metrics=every (Fig. 3's curves) adds the measurements of epoch 0 and changes
    nothing else: the greedy decoding and the held-out evaluation use no training stream."""
    run_dir, _ = finished
    execute(smoke(cache, "trainer.epoch_metrics=every"), tmp_path)
    every = [r for r in RunRecords(tmp_path).read_metrics() if r["kind"] == "epoch"]
    last = [r for r in RunRecords(run_dir).read_metrics() if r["kind"] == "epoch"]
    assert {"train/reward", "eval/reward", "eval/likelihood"} <= every[0].keys()
    assert every[1] == last[1]
    assert every[0]["train/acc"] == last[0]["train/acc"]


def test_completed_run_is_not_rerun(finished, cache, caplog):
    run_dir, result = finished
    before = (run_dir / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="rdx"):
        assert execute(smoke(cache), run_dir) == pytest.approx(result)
    assert "already completed" in caplog.text
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_interrupted_run_resumes_to_the_same_summary(finished, cache, tmp_path, monkeypatch):
    run_dir, _ = finished
    original = RunRecords.save_checkpoint

    def crash_after_first_epoch(self, state):
        original(self, state)
        raise KeyboardInterrupt("simulated preemption")

    monkeypatch.setattr(RunRecords, "save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        execute(smoke(cache), tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "interrupted" and "resumes" in status["error"]  # Ctrl-C
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 1

    monkeypatch.setattr(RunRecords, "save_checkpoint", original)
    execute(smoke(cache), tmp_path)
    resumed = json.loads((tmp_path / "summary.json").read_text())
    uninterrupted = json.loads((run_dir / "summary.json").read_text())
    assert resumed == uninterrupted
    epochs = [r["epoch"] for r in RunRecords(tmp_path).read_metrics() if r["kind"] == "epoch"]
    assert epochs == [0, 1]  # the resumed epoch is not logged twice
    perf = [
        (r["event"], r["epoch"]) for r in RunRecords(tmp_path).read_metrics() if r["kind"] == "perf"
    ]
    assert perf == [("first_step", 0), ("first_step", 1), ("trained", 1)]  # one start per attempt
    assert json.loads((tmp_path / "status.json").read_text())["attempts"] == 2


def test_seeds_share_artifacts_and_dropout_arms_differ(cache, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="rdx"):
        execute(smoke(cache, "dropout=none", "seed=1"), tmp_path / "none")
    assert "cache: building" not in caplog.text  # built once by the module fixture
    assert caplog.text.count("cache: reusing") == 5
    none = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert none["dropout"] == "none" and none["gamma"] is None and none["seed"] == 1
    keep = {
        r["train/keep_frac"]
        for r in RunRecords(tmp_path / "none").read_metrics()
        if r["kind"] == "step"
    }
    assert keep == {1.0}


def test_other_attribute_builds_only_its_own_artifacts(cache, tmp_path, caplog):
    cfg = dataclasses.replace(smoke(cache, "attribute=sport"), stage="prepare")
    with caplog.at_level(logging.INFO, logger="rdx"):
        assert execute(cfg, tmp_path) is None
    built = {
        line.split("cache: building ")[1].split("/")[0]
        for line in caplog.text.splitlines()
        if "cache: building" in line
    }
    # the tokenizer and β are shared by every attribute; R is per task (topic here); β's
    # rows are sampled and scored in chunks, then merged into the entries a run reads
    assert built == {"reward", "trajectory-chunks", "score-chunks", "trajectories", "scores"}
    assert not (tmp_path / "summary.json").exists()


def test_wandb_offline_run_keeps_its_id_across_a_resume(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no key -> auto means offline
    for name in ("WANDB_MODE", "WANDB_DISABLED"):  # a user's own setting would win over auto
        monkeypatch.delenv(name, raising=False)
    cfg = smoke(cache, "logger.mode=auto", "trainer.epochs=1")
    execute(cfg, tmp_path / "run")
    run_id = (tmp_path / "run" / ".wandb_id").read_text()
    offline = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1, "an offline W&B run with the persisted id"
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["wandb_id"] == run_id
    # a longer second attempt in the same dir resumes the same W&B run
    (tmp_path / "run" / "status.json").unlink()
    execute(
        dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, epochs=2)),
        tmp_path / "run",
    )
    assert (tmp_path / "run" / ".wandb_id").read_text() == run_id
    assert len(list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))) >= 1


def test_wandb_ignores_a_service_token_inherited_from_another_process(tmp_path, monkeypatch):
    """A job submitted from a process with a W&B run inherits its WANDB_SERVICE: without
    this, the job attaches to that service (unreachable on another node; on the same node a
    requeued job found its own run id 'in use' there, which failed CI)."""
    import wandb

    from rdx import logger as rdx_logger
    from rdx.config import LoggerConfig

    wandb.teardown()  # a service that an earlier test started in this process would be reused
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    own = f"3-{os.getpid()}-unix-/tmp/mine.sock"
    monkeypatch.setenv("WANDB_SERVICE", own)
    rdx_logger.drop_inherited_service()
    assert os.environ["WANDB_SERVICE"] == own  # several runs in one process share theirs
    monkeypatch.setenv("WANDB_SERVICE", f"3-{os.getppid()}-unix-{tmp_path}/gone.sock")
    w = rdx_logger.WandbLogger(LoggerConfig(mode="offline"), tmp_path, "n", {}, None, [])
    try:
        assert w.run is not None and w.mode == "offline"
        assert "gone.sock" not in os.environ.get("WANDB_SERVICE", "")  # its own, new one
    finally:
        w.finish()


def test_fixed_length_sets_train_epoch_e_on_set_e_mod_k(cache, tmp_path):
    """sampling=fixed_length with two sample sets and a set rule: every trajectory, held-out
    sample and π generation has T − p continuation tokens; epoch e's batches are set
    e mod 2's rows (the mean of its steps' r̂ is that set's mean r̂: the 4 batches of 32
    cover its 128 rows); prompt_quantile at γ=0.5 over 2 samples per prefix keeps one."""
    from rdx.method.objective import bi_objective_reward
    from rdx.pipeline.offpolicy.artifacts import prepare

    cfg = smoke(
        cache,
        "sampling=fixed_length",
        "sampling.fresh_per_epoch=2",
        "trainer.epochs=3",
        "dropout=prompt_quantile",
        "gamma=0.5",
    )
    prep = prepare(cfg)
    new = cfg.sampling.total_len - cfg.sampling.prefix_len
    assert len(prep.sets) == 2 and len(prep.train) == 128
    for s in prep.sets:
        assert (s.seqs.lengths - s.seqs.prefix_lens == new).all()
        assert (s.mask.sum(1) == new).all()
    p = int(prep.train.prefix_lens[0])
    a, b = (s.seqs.tokens for s in prep.sets)
    assert torch.equal(a[:, :p], b[:, :p]) and not torch.equal(a, b)  # same prefixes, new draws
    assert (prep.eval.lengths - prep.eval.prefix_lens == new).all()

    execute(cfg, tmp_path)
    records = RunRecords(tmp_path).read_metrics()
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["train/sample_set"] for r in epochs] == [0, 1, 0]
    for e in range(3):
        steps = [r["train/r_hat_mean"] for r in records if r["kind"] == "step" and r["epoch"] == e]
        data = prep.sets[e % 2]
        r_hat = bi_objective_reward(data.reward("logit", prep.label), data.behavior_prob)
        assert sum(steps) / len(steps) == pytest.approx(r_hat.mean().item(), abs=1e-5)
    keep = [r["train/keep_frac"] for r in records if r["kind"] == "step"]
    assert sum(keep) / len(keep) == pytest.approx(0.5, abs=0.02)  # ties at the median keep both
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["stop_at_eos"], summary["fresh_per_epoch"], summary["prefix_pool"]) == (
        False,
        2,
        "task",
    )
    assert summary["eval/length"] == new and summary["dropout"] == "prompt_quantile"


def test_prepare_entry_point_builds_the_artifacts_and_checks_typos(cache, tmp_path):
    """`python -m rdx.prepare` runs the train CLI with stage=prepare: artifacts built, the run
    completed without training; a mistyped group option is the same one-line error."""
    import subprocess
    import sys

    env = {**os.environ, "RDX_CACHE": str(cache)}
    run_dir = tmp_path / "prep"
    args = ["experiment=smoke", "logger=none", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "rdx.prepare", *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert not (run_dir / "summary.json").exists()  # nothing trained
    assert "artifacts ready" in proc.stderr + proc.stdout
    typo = subprocess.run(
        [sys.executable, "-m", "rdx.prepare", "dropout=quantil"], capture_output=True, text=True
    )
    assert typo.returncode == 2
    assert typo.stderr.strip().startswith("rdx: config error: dropout='quantil'")


def test_sample_sets_draw_other_rows_from_the_same_beta_and_the_judge_scores(cache, tmp_path):
    """sampling.seed: other prefixes and continuations from the same β and R (a replicate of
    β's sample set); eval.judge: a second R, on half of R's sentences, scores π's text."""
    from rdx.pipeline.offpolicy.artifacts import prepare

    a, b = prepare(smoke(cache)), prepare(smoke(cache, "sampling.seed=1"))
    assert (a.paths["behavior"], a.paths["reward"]) == (b.paths["behavior"], b.paths["reward"])
    assert a.paths["trajectories"] != b.paths["trajectories"]
    assert not torch.equal(a.train.tokens, b.train.tokens)
    assert not torch.equal(a.reward_logits, b.reward_logits)
    cfg = smoke(cache, "sampling.seed=1", "eval.judge=true")
    judge_dir = prepare(cfg).paths["judge"]
    execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    metrics = json.loads((Path(judge_dir) / "metrics.json").read_text())
    assert summary["sample_set"] == 1
    assert summary["judge_accuracy"] == metrics["heldout_accuracy"]
    assert 0.0 < summary["eval/judge_reward"] < 1.0
    assert judge_dir != a.paths["reward"]
