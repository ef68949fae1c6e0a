"""Fault injection on a run dir's records: torn lines, damaged status files and
checkpoints, crafted pickles, and the config hash (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle

import pytest
import torch

from rdx.config import Config
from rdx.records import (
    RunDirError,
    RunRecords,
    config_hash,
    config_identity,
)
from tests.helpers.faults import crafted_checkpoints


def test_torn_last_line_is_skipped_and_the_next_record_gets_its_own_line(tmp_path, caplog):
    records = RunRecords(tmp_path)
    records.append_metrics({"kind": "epoch", "epoch": 0})
    with records.metrics_path.open("a") as f:
        f.write('{"kind": "epoch", "ep')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert records.read_metrics() == [{"kind": "epoch", "epoch": 0}]
    assert "skipped 1 unreadable line" in caplog.text
    records.append_metrics({"kind": "epoch", "epoch": 1})
    assert [r["epoch"] for r in records.read_metrics()] == [0, 1]
    records.trim_metrics(1)  # resume: the torn line and later epochs are dropped
    assert records.metrics_path.read_text() == '{"kind": "epoch", "epoch": 0}\n'


@pytest.mark.parametrize("content", [b"", b'{"state": "runn', b"\x00\xff garbage", b"[1, 2]"])
def test_damaged_status_reads_as_absent_and_is_rewritten(tmp_path, content):
    records = RunRecords(tmp_path)
    records.status_path.write_bytes(content)
    assert records.status() is None
    records.set_status("running")
    assert records.status()["state"] == "running" and records.status()["attempts"] == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-checkpoint"])
def test_damaged_checkpoint_falls_back_to_a_clean_restart(tmp_path, damage, caplog):
    records = RunRecords(tmp_path)
    records.save_checkpoint({"epoch": 1, "model": {"w": torch.ones(3)}})
    data = records.checkpoint_path.read_bytes()
    records.checkpoint_path.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": os.urandom(4096),
            "empty": b"",
            "not-a-checkpoint": b"",
        }[damage]
    )
    if damage == "not-a-checkpoint":
        torch.save([1, 2, 3], records.checkpoint_path)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert records.load_checkpoint() is None
    assert "training restarts from epoch 0" in caplog.text
    assert not records.checkpoint_path.exists()
    assert (tmp_path / "checkpoint.pt.damaged").exists()  # kept for a post-mortem


def test_crafted_pickle_in_a_run_dir_runs_no_code(tmp_path):
    for kind, path, marker in crafted_checkpoints(tmp_path):
        with pytest.raises(Exception):  # noqa: B017 - the point is that it loads nothing
            torch.load(path, weights_only=True)
        run = tmp_path / f"run-{kind}"
        records = RunRecords(run)
        os.replace(path, records.checkpoint_path)
        assert records.load_checkpoint() is None
        assert records.checkpoint_info() is None
        assert not marker.exists(), f"{kind}: unpickling ran code"
    # The files are real exploits: a plain pickle load does run them.
    again = tmp_path / "again"
    again.mkdir()
    _, path, marker = crafted_checkpoints(again)[1]
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_checkpoint_is_plain_data_with_the_config_hash(tmp_path):
    """What the trainer saves (state dicts, RNG state, history, W&B id) loads with
    weights_only=True, with the hash of the settings that made it."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    records = RunRecords(tmp_path)
    records.identity = config_identity({"gamma": 0.8, "seed": 0})
    records.config_hash = config_hash(records.identity)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": 1,
        "step": 4,
        "history": [{"train/acc": 0.5}],
        "torch_rng": torch.get_rng_state(),
        "wandb_id": "abcd1234",
    }
    records.save_checkpoint(state)
    loaded = torch.load(records.checkpoint_path, weights_only=True)
    assert loaded["config_hash"] == records.config_hash
    assert loaded["config"] == {"gamma": 0.8, "seed": 0}
    assert torch.equal(loaded["torch_rng"], torch.get_rng_state())
    assert loaded["optimizer"]["state"][0]["step"] == 1
    assert records.load_checkpoint()["wandb_id"] == "abcd1234"

    other = RunRecords(tmp_path)  # the same dir under gamma=0.5
    other.identity = config_identity({"gamma": 0.5, "seed": 0})
    other.config_hash = config_hash(other.identity)
    with pytest.raises(RunDirError, match=r"gamma=0\.8->0\.5.*resume=force"):
        other.load_checkpoint()
    other.force_resume = True
    assert other.load_checkpoint()["epoch"] == 1


def test_config_hash_ignores_only_what_does_not_change_results():
    base = dataclasses.asdict(Config())

    def changed(**kv) -> dict:
        cfg = json.loads(json.dumps(base))
        for key, value in kv.items():
            node = cfg
            *parents, last = key.split("__")
            for p in parents:
                node = node[p]
            node[last] = value
        return cfg

    h = config_hash(config_identity(base))
    for same in (
        {"logger__kind": "none"},
        {"logger__mode": "offline"},
        {"trainer__threads": 7},
        {"trainer__log_every": 3},
        {"stage": "prepare"},
        {"cache_dir": "/elsewhere"},
        {"sweep": "table1"},
        {"resume": "force"},
        {"trainer__epochs": 6},  # a run extends; rdx.run checks the checkpoint's epoch
        {"sampling__vllm_memory": 0.5},  # where vLLM's memory goes draws no other row
    ):
        assert config_hash(config_identity(changed(**same))) == h, same
    for different in (
        {"gamma": 0.5},
        {"seed": 1},
        {"trainer__lr": 1e-3},
        {"dropout__mode": "random"},
        {"sampling__temperature": 1.0},
        {"dataset__path": "/data"},
        {"sampling__engine": "vllm"},
        {"sampling__likelihood": "engine"},
        {"reward__stop_accuracy": 0.95},
        {"reward__train_max_sentences": 1000},
    ):
        assert config_hash(config_identity(changed(**different))) != h, different
    # a run recorded before sampling.engine and sampling.likelihood existed keeps its hash
    before = changed()
    del before["sampling"]["engine"], before["sampling"]["likelihood"]
    assert config_hash(config_identity(before)) == h
    # and one from before R's cap, stop and precision (issue 31)
    for key in ("train_max_sentences", "stop_accuracy", "stop_check_steps", "train_precision"):
        del before["reward"][key]
    assert config_hash(config_identity(before)) == h
