"""Composition of every preset, validation of every user error, and the one-line CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rdx.config import Config, ConfigError, validate

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def compose_cfg(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return validate(OmegaConf.to_container(cfg, resolve=True))


def test_default_is_the_embedded_quantile_run():
    cfg = compose_cfg()
    assert (cfg.dataset.name, cfg.model.name, cfg.behavior.name, cfg.reward.name) == (
        "synthetic",
        "tiny",
        "tiny",
        "tiny",
    )
    assert (cfg.dropout.mode, cfg.gamma, cfg.trainer.batch_size) == ("quantile", 0.8, 64)
    assert (cfg.sampling.prefix_len, cfg.sampling.total_len, cfg.sampling.temperature) == (
        4,
        30,
        0.4,
    )


def test_none_and_threshold_record_gamma_as_null():
    assert compose_cfg("dropout=none", "gamma=0.4").gamma is None
    cfg = compose_cfg("dropout=threshold", "dropout.delta=-1.5")
    assert (cfg.gamma, cfg.dropout.delta) == (None, -1.5)


def test_overrides_reach_the_typed_config():
    cfg = compose_cfg(
        "dropout=random", "gamma=0.4", "attribute=sport", "seed=3", "trainer.is_clip=null"
    )
    assert (cfg.dropout.mode, cfg.gamma, cfg.attribute, cfg.seed) == ("random", 0.4, "sport", 3)
    assert cfg.trainer.is_clip is None


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes(name, monkeypatch):
    # Hub presets cannot be resolved offline; everything else about them is checked.
    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)
    assert isinstance(compose_cfg(f"experiment={name}"), Config)


def test_paper_table1_preset_carries_the_authors_settings(monkeypatch):
    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)
    cfg = compose_cfg("experiment=paper_table1")
    assert (cfg.model.hub, cfg.behavior.hub, cfg.reward.hub) == (
        "gpt2",
        "facebook/opt-6.7b",
        "bert-base-uncased",
    )
    assert (cfg.trainer.lr, cfg.trainer.epochs, cfg.trainer.batch_size) == (5e-6, 5, 64)
    assert (cfg.sampling.num_prefixes, cfg.sampling.samples_per_prefix) == (50000, 1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["gamma=1.0"], "gamma=1.0: expected a number in [0, 1) for quantile dropout"),
        (["gamma=-0.1", "dropout=random"], "gamma=-0.1: expected a number in [0, 1) for random"),
        (["gamma=abc"], "gamma='abc': expected a number"),
        (["attribute=happy"], "attribute='happy': dataset synthetic has negative, positive, world"),
        (["trainer.batch_size=1"], "trainer.batch_size=1: quantile dropout needs a batch of >= 2"),
        (["reward.output=softmax"], "reward.output='softmax': expected one of logit, prob"),
        (["trainer.lr=0"], "trainer.lr=0.0: expected a number > 0"),
        (["sampling.total_len=4"], "sampling.total_len=4: must exceed sampling.prefix_len=4"),
        (["dataset=yelp"], "dataset.name=yelp needs data: pass dataset.path=<dir>"),
        (["dataset.hub=true"], "dataset.hub=true: dataset=synthetic is generated and has no hub"),
        (["dataset=yelp", "dataset.path=/no/such/dir"], "dataset.path=/no/such/dir"),
        (["model.init=pretrained"], "model.init='pretrained': needs a hub model"),
        (["trainer.epochs=two"], "trainer.epochs='two': expected an integer"),
        (["sampling.engine=vlm"], "sampling.engine='vlm': expected one of hf, vllm"),
        (
            ["sampling.engine=vllm", "sampling.online=true"],
            "sampling.online=true with sampling.engine=vllm: online sampling draws each batch",
        ),
        (
            ["sampling.likelihood=engine"],
            "sampling.likelihood=engine with sampling.engine=hf: only vllm returns",
        ),
        (["sampling.vllm_memory=0"], "sampling.vllm_memory=0.0: expected a number in (0, 1]"),
        (["reward.stop_accuracy=1.5"], "reward.stop_accuracy=1.5: expected a number in (0, 1]"),
        (["reward.train_max_sentences=0"], "reward.train_max_sentences=0: expected a number > 0"),
        (
            ["sampling.engine=vllm", "sampling.temperature=3"],
            "sampling.temperature=3.0: vLLM accepts at most 2.0; use sampling.engine=hf",
        ),
        (
            ["sampling.engine=vllm", "trainer.device=cpu"],
            "sampling.engine=vllm with trainer.device=cpu: vLLM runs on CUDA",
        ),
    ],
)
def test_bad_values_name_key_value_and_allowed(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_cfg(*overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_vllm_engine_composes_with_the_rescored_likelihood():
    cfg = compose_cfg("sampling.engine=vllm")
    assert (cfg.sampling.engine, cfg.sampling.likelihood) == ("vllm", "rescore")
    engine = compose_cfg("sampling.engine=vllm", "sampling.likelihood=engine").sampling
    assert (engine.engine, engine.likelihood) == ("vllm", "engine")
    processed = compose_cfg(  # β_i from vLLM's processed log-probs (rdx.lm.engines)
        "sampling.engine=vllm", "sampling.likelihood=engine", "sampling.behavior_prob=processed"
    )
    assert processed.sampling.behavior_prob == "processed"


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="trainer.lrr: unknown key; allowed: .*lr"):
        compose_cfg("+trainer.lrr=1")


@pytest.mark.parametrize(
    "args, message",
    [
        (["gamma=1.5"], "rdx: config error: gamma=1.5: expected a number in [0, 1)"),
        (
            ["dropout=quantil"],
            "rdx: config error: dropout='quantil': "
            "expected one of global_top, none, prompt_quantile, quantile, random, threshold",
        ),
        (["-m", "dropout=none,rand"], "rdx: config error: dropout='rand': expected one of"),
        (["attribute=happy"], "rdx: config error: attribute='happy'"),
    ],
)
def test_cli_fails_fast_with_one_line(tmp_path, args, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            *args,
            f"hydra.run.dir={tmp_path}/run",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "status.json").exists()  # failed before any work


@pytest.mark.slow  # 17 s: builds the smoke artifacts before π fails to load
def test_unloadable_hub_model_is_one_line_and_recorded(tmp_path):
    # An existing but empty dir passes the config check and fails only when loaded.
    (tmp_path / "empty-model").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "experiment=smoke",
            f"cache_dir={tmp_path}/cache",
            f"model.hub={tmp_path}/empty-model",
            "model.init=pretrained",
            "stage=train",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rdx: hub error:")]
    assert len(errors) == 1 and "empty-model" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "HubUnavailable" in status["error"]
