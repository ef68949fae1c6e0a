"""Fault injection on execute's resume policy: a completed dir, resume=force, more or fewer
epochs, Ctrl-C, a dir held by another process, a full disk mid-run (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from rdx.records import (
    RunDirError,
    config_hash,
    config_identity,
    read_jsonl,
)
from rdx.run import execute
from tests.helpers.faults import cfg, fake_pipeline, fill, held_by_another_process, tmp_files, tmpfs


def test_completed_dir_answers_only_the_same_settings(tmp_path, monkeypatch, caplog):
    trained = fake_pipeline(monkeypatch)
    assert execute(cfg(), tmp_path) == pytest.approx(1.8)
    assert trained == [0, 1]
    with caplog.at_level(logging.INFO, logger="rdx"):
        # Changes that do not change results: the old result, nothing retrained.
        assert execute(cfg(logger__mode="offline", trainer__threads=2), tmp_path) == 1.8
    assert "already completed with these settings" in caplog.text and trained == [0, 1]
    for changed, named in ((cfg(gamma=0.5), "gamma=0.8->0.5"), (cfg(seed=1), "seed=0->1")):
        with pytest.raises(RunDirError) as err:
            execute(changed, tmp_path)
        assert named in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RunDirError, match="resume=never"):
        execute(cfg(resume="never"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["acc_plus_reward"] == pytest.approx(1.8)  # never relabelled


def test_resume_force_continues_under_new_settings(tmp_path, monkeypatch, caplog):
    trained = fake_pipeline(monkeypatch)
    execute(cfg(epochs=1), tmp_path)
    changed = cfg(epochs=2, trainer__lr=1e-3, resume="force")
    with caplog.at_level(logging.WARNING, logger="rdx"):
        execute(changed, tmp_path)
    assert "resume=force" in caplog.text and "trainer.lr=0.0005->0.001" in caplog.text
    assert trained == [0, 1]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "completed"
    assert status["config_hash"] == config_hash(config_identity(dataclasses.asdict(changed)))


def test_more_epochs_extend_a_run_and_fewer_are_refused(tmp_path, monkeypatch, caplog):
    trained = fake_pipeline(monkeypatch)
    assert execute(cfg(epochs=2), tmp_path) == pytest.approx(1.8)
    assert execute(cfg(epochs=3), tmp_path) == pytest.approx(2.8)  # epoch 2 only
    assert trained == [0, 1, 2]
    assert json.loads((tmp_path / "status.json").read_text())["attempts"] == 2
    with pytest.raises(RunDirError, match="holds a run of 3 epochs and trainer.epochs=2"):
        execute(cfg(epochs=2), tmp_path)
    assert execute(cfg(epochs=3), tmp_path) == pytest.approx(2.8) and trained == [0, 1, 2]


def test_ctrl_c_ends_interrupted_and_resumes(tmp_path, monkeypatch):
    def interrupt(records):
        raise KeyboardInterrupt

    trained = fake_pipeline(monkeypatch, {1: interrupt})
    with pytest.raises(KeyboardInterrupt):
        execute(cfg(), tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "interrupted" and "resumes" in status["error"]
    fake_pipeline(monkeypatch)  # no interruption this time
    assert execute(cfg(), tmp_path) == pytest.approx(1.8)
    assert trained == [0]
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1]


def test_run_dir_held_by_another_process_is_refused(tmp_path, monkeypatch):
    fake_pipeline(monkeypatch)
    with held_by_another_process(tmp_path) as holder:
        with pytest.raises(RunDirError, match=f"in use by pid {holder.pid}"):
            execute(cfg(), tmp_path)
    assert not (tmp_path / "status.json").exists()  # the refused run wrote nothing


def test_full_disk_during_a_run_ends_failed_with_the_reason(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        fake_pipeline(monkeypatch, {1: lambda records: fill(disk)})
        with pytest.raises(OSError):
            execute(cfg(), disk / "run")
        status = json.loads((disk / "run" / "status.json").read_text())
        assert status["state"] == "failed" and "No space left on device" in status["error"]
        assert tmp_files(disk) == []
