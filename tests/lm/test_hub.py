"""Hub presets name the paper's models, and fail fast and in one line offline."""

import os
import subprocess
import sys
import time

import pytest

from rdx.config import ConfigError
from rdx.hub import HubUnavailable
from rdx.lm.models import load_hub
from tests.cli.test_config import CONF, ROOT, compose_cfg
from tests.helpers.harmless_hub import PRESETS as HARMLESS_PRESETS

# the paper's models: presets and what they must say
PRESETS = {
    ("model", "gpt2"): ("gpt2", "pretrained", "all"),
    ("model", "gpt2-large"): ("gpt2-large", "pretrained", "all"),
    ("model", "xglm-1.7b"): ("facebook/xglm-1.7B", "pretrained", "last_layer"),
    ("model", "opt-6.7b"): ("facebook/opt-6.7b", "pretrained", "last_layer"),
    ("behavior", "gpt2"): ("gpt2", None, None),
    ("behavior", "opt-6.7b"): ("facebook/opt-6.7b", None, None),
    ("reward", "bert"): ("bert-base-uncased", None, None),
}


# ------------------------------------------------------------------ presets, offline failure


@pytest.mark.parametrize("group, name", sorted(PRESETS))
def test_presets_name_the_papers_models(group, name, monkeypatch):
    monkeypatch.setenv("RDX_HUB", "1")  # downloads allowed, and the hub answers:
    monkeypatch.setattr("rdx.hub.reachable", lambda: True)
    cfg = compose_cfg(f"{group}={name}")
    hub, init, trainable = PRESETS[(group, name)]
    node = getattr(cfg, group)
    assert (node.name, node.hub) == (name, hub)
    if group == "model":
        assert (node.init, node.trainable) == (init, trainable)
    if group == "reward":
        # the authors' finetune_BERT.py: lr 5e-6, batch 256, stop at 0.95 (conf/reward/bert.yaml)
        assert node.train_epochs >= 1 and node.train_lr == pytest.approx(5e-6)
        assert (node.train_batch_size, node.stop_accuracy) == (256, 0.95)


def test_every_hub_preset_file_is_tested():
    files = {
        (g, p.stem) for g in ("model", "behavior", "reward") for p in (CONF / g).glob("*.yaml")
    }
    built_here = {
        ("model", "tiny"),
        ("behavior", "tiny"),
        ("reward", "tiny"),
        ("reward", "tiny_rm"),
    }
    # the harmlessness presets are run offline in tests/pipeline/test_harmless.py
    harmless = {("model", name) for name in HARMLESS_PRESETS} | {("reward", "hh-rm")}
    assert files - built_here - harmless == set(PRESETS)


@pytest.mark.parametrize("group, name", sorted(PRESETS))
def test_hub_preset_fails_fast_offline_with_one_line(group, name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RDX_HUB"}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty HF cache
    proc = subprocess.run(
        [sys.executable, "-m", "rdx.train", f"{group}={name}", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    hub = PRESETS[(group, name)][0]
    assert lines == [
        f"rdx: config error: {group}.hub={hub!r}: not a local directory and not in the Hugging "
        "Face cache, and downloads are off; save it where there is hub access (huggingface-cli "
        f"download {hub} --local-dir DIR) and pass {group}.hub=DIR, or set RDX_HUB=1 to "
        "download it"
    ], proc.stderr
    assert not (tmp_path / "run" / "status.json").exists()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every socket connection attempted (each refused), and every sleep (a retry's backoff)."""
    import socket

    calls: list[object] = []

    def refuse(self, address):
        calls.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(time, "sleep", lambda s: calls.append(("sleep", s)))
    return calls


@pytest.mark.parametrize("group, name", sorted(PRESETS))
def test_hub_preset_fails_offline_before_any_network_call(
    group, name, connects, monkeypatch, tmp_path
):
    # "fast" as behaviour: the config check answers from the local cache alone, so there is
    # no connection to wait on and no retry to back off from
    monkeypatch.delenv("RDX_HUB", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match=f"{group}.hub=.*downloads are off"):
        compose_cfg(f"{group}={name}")
    assert connects == []


def test_opted_in_hub_that_does_not_answer_is_a_config_error(monkeypatch):
    monkeypatch.setenv("RDX_HUB", "1")
    monkeypatch.setattr("rdx.hub.reachable", lambda: False)
    with pytest.raises(ConfigError, match="model.hub='gpt2': RDX_HUB=1 but the Hugging Face hub"):
        compose_cfg("model=gpt2")


def test_load_hub_fails_without_the_hub_and_without_retries(connects, monkeypatch, tmp_path):
    monkeypatch.delenv("RDX_HUB", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HubUnavailable) as err:
        load_hub("causal", "facebook/opt-6.7b")
    assert connects == []  # no connection tried, no backoff slept: not ~30 s of retries
    assert "\n" not in str(err.value) and "--local-dir DIR" in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.hub=/no/such/model"], "model.hub='/no/such/model': directory not found"),
        (["trainer.micro_batch=0"], "trainer.micro_batch=0: expected a number > 0"),
        (["reward.train_epochs=0"], "reward.train_epochs=0: expected >= 1"),
    ],
)
def test_bad_hub_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        compose_cfg(*overrides)
