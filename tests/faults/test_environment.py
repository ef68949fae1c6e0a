"""Fault injection on the environment: WordNet missing, W&B's variables, a damaged W&B run
id (docs/reliability.md).
"""

from __future__ import annotations

import sys
import types

import pytest

from rdx.config import Config, ConfigError, LoggerConfig
from rdx.logger import resolve_mode
from rdx.run import preflight


def test_preflight_finds_missing_wordnet_before_any_work(monkeypatch, tmp_path):
    """nltk searching only an empty directory: the run stops before any work, and the
    check itself does not load WordNet (that waits for METEOR's first use)."""
    import nltk.data

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ConfigError, match="WordNet.*python -m rdx.pipeline.wordnet"):
        preflight(Config())


def test_preflight_refuses_the_vllm_engine_without_vllm_or_cuda(monkeypatch):
    """sampling.engine=vllm: a missing vLLM names the extra to install; with vLLM (the
    CPU stand-in) but no CUDA, the run stops there too. Both in one line, before any work."""
    import dataclasses
    import importlib.util

    from tests.helpers import fake_vllm

    cfg = Config()
    cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, engine="vllm"))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"vLLM is not installed; pip install 'rdx\[vllm\]'"):
        preflight(cfg)
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="vLLM needs a CUDA device"):
        preflight(cfg)


@pytest.mark.parametrize(
    "env, mode",
    [
        ({"WANDB_MODE": "disabled"}, "disabled"),
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}, "offline"),
        ({"WANDB_MODE": "dryrun"}, "offline"),
        ({"WANDB_DISABLED": "true"}, "disabled"),
        ({"WANDB_API_KEY": "x" * 40}, "online"),
    ],
)
def test_logger_auto_honours_wandb_environment(monkeypatch, tmp_path, env, mode):
    for key in ("WANDB_MODE", "WANDB_DISABLED", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_mode(LoggerConfig(mode="auto")) == mode
    assert resolve_mode(LoggerConfig(mode="online")) == "online"  # an explicit mode wins


@pytest.mark.parametrize("stored", [b"", b"\xff\xfe\x00", b"../../etc", b"ab12cd34"])
def test_a_damaged_wandb_id_starts_a_new_run_id(tmp_path, monkeypatch, stored):
    from rdx.logger import WandbLogger

    seen = {}
    fake = types.SimpleNamespace(init=lambda **kw: seen.update(kw) or types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    (tmp_path / ".wandb_id").write_bytes(stored)
    WandbLogger(LoggerConfig(mode="offline"), tmp_path, "n", {}, None, [])
    if stored == b"ab12cd34":
        assert seen["id"] == "ab12cd34"  # a requeued job continues its W&B run
    else:
        assert len(seen["id"]) == 8 and seen["id"] != stored.decode("latin-1")
    assert (tmp_path / ".wandb_id").read_text() == seen["id"]
