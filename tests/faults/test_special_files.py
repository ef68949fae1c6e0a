"""Fault injection: special files in place of records, damaged checkpoints of the right
hash, a crafted pickle under a remade cache marker (docs/reliability.md, issue 22 §4 and
its partial cases).

A FIFO in place of a record would block its reader forever: each test here runs under an
alarm, so a regression fails in seconds instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rdx.pipeline.cache import MARKER, cached, verify, write_marker
from rdx.records import RunRecords, read_json, read_jsonl
from rdx.run import execute
from tests.helpers.faults import cfg, crafted_checkpoints, fake_pipeline

HANG_S = 20


class Hung(BaseException):
    """Not an OSError (TimeoutError is one): code that suppresses OSError must not eat it."""


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    def hung(signum, frame):
        raise Hung(f"blocked for {HANG_S} s: a special file was opened blocking")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> Path:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mkfifo(path)
    return path


# ---------------------------------------------------------------- special files


@pytest.mark.parametrize("kind", ["fifo", "directory", "dev-null"])
def test_open_record_takes_only_regular_files(tmp_path, kind):
    from rdx.records import NotRegularFile, open_record

    path = tmp_path / "summary.json"
    if kind == "fifo":
        fifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/null")
    with pytest.raises(NotRegularFile, match="not a regular file") as err:
        open_record(path)
    assert err.value.filename == str(path)
    with pytest.raises(NotRegularFile):
        read_json(path)
    (tmp_path / "ok.json").write_text("{}")
    with open_record(tmp_path / "ok.json") as f:
        assert f.read() == b"{}"


def test_a_fifo_as_a_log_reads_empty_and_is_replaced_on_append(tmp_path, caplog):
    records = RunRecords(tmp_path)
    fifo(records.metrics_path)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert read_jsonl(records.metrics_path) == []
        records.append_metrics({"kind": "epoch", "epoch": 0})
    assert "not a regular file (a FIFO)" in caplog.text
    assert records.read_metrics() == [{"kind": "epoch", "epoch": 0}]
    assert (tmp_path / "metrics.jsonl.damaged").exists()


def test_a_fifo_as_status_json_reads_as_absent_and_is_rewritten(tmp_path):
    records = RunRecords(tmp_path)
    fifo(records.status_path)
    assert records.status() is None
    records.set_status("running")
    assert json.loads(records.status_path.read_text())["state"] == "running"


@pytest.mark.parametrize("record", ["checkpoint.pt", "summary.json"])
def test_a_fifo_in_place_of_a_record_does_not_hang_the_run(tmp_path, monkeypatch, record, caplog):
    trained = fake_pipeline(monkeypatch)
    execute(cfg(), tmp_path)
    assert trained == [0, 1]
    fifo(tmp_path / record)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert execute(cfg(), tmp_path) == pytest.approx(1.8)
    assert "not a regular file" in caplog.text or "damaged" in caplog.text
    # The checkpoint is moved aside (the summary still answers); a summary is redone from
    # the checkpoint: no epoch retrained either way.
    assert trained == [0, 1]
    if record == "checkpoint.pt":
        assert (tmp_path / "checkpoint.pt.damaged").exists()
    assert read_json(tmp_path / "summary.json")["acc_plus_reward"] == pytest.approx(1.8)


def test_a_fifo_in_a_cache_entry_is_damage(tmp_path, caplog):
    calls: list[int] = []

    def build(out: Path) -> None:
        calls.append(1)
        torch.save({"x": torch.arange(3)}, out / "trajectories.pt")

    entry = cached(tmp_path, "trajectories", {"k": 1}, build, version=1)
    fifo(entry / "trajectories.pt")
    assert "trajectories.pt" in verify(entry)
    fifo(entry / MARKER)
    assert "unreadable completion marker" in verify(entry)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        again = cached(tmp_path, "trajectories", {"k": 1}, build, version=1)
    assert len(calls) == 2 and verify(again) is None


def test_a_fifo_as_the_lock_owner_file_does_not_hang_the_refusal(tmp_path):
    from tests.helpers.faults import held_by_another_process

    with held_by_another_process(tmp_path):
        fifo(tmp_path / ".rdx.lock.owner")
        with pytest.raises(Exception, match="in use by"):
            with RunRecords(tmp_path).lock():
                pass


# ---------------------------------------------------------------- damaged checkpoints


def test_a_checkpoint_of_the_right_hash_with_a_wrong_shape_restarts_clean(tmp_path, caplog):
    model = torch.nn.Linear(3, 2)
    records = RunRecords(tmp_path)
    records.config_hash = "h"
    wrong = {**model.state_dict(), "weight": torch.zeros(5, 5)}
    records.save_checkpoint({"epoch": 1, "step": 4, "history": [], "model": wrong})
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert records.load_checkpoint(model.state_dict()) is None
    assert "model weight weight: (5, 5) where (2, 3) is expected" in caplog.text
    assert "training restarts from epoch 0" in caplog.text
    assert (tmp_path / "checkpoint.pt.damaged").exists()
    records.save_checkpoint({"epoch": 1, "step": 4, "history": [], "model": model.state_dict()})
    assert records.load_checkpoint(model.state_dict())["epoch"] == 1  # the right one loads


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("epoch", "1", "epoch='1' is not a int"),
        ("epoch", -2, "epoch=-2 is negative"),
        ("step", 1.5, "step='1.5' is not a int"),
        ("history", "x", "history='x' is not a list"),
        ("torch_rng", [1, 2], "torch_rng is not a uint8 tensor"),
    ],
)
def test_a_checkpoint_with_a_field_of_the_wrong_type_restarts_clean(
    tmp_path, monkeypatch, caplog, field, value, said
):
    trained = fake_pipeline(monkeypatch)
    execute(cfg(epochs=1), tmp_path)
    records = RunRecords(tmp_path)
    state = torch.load(records.checkpoint_path, weights_only=True)
    torch.save({**state, "step": 3, field: value}, records.checkpoint_path)  # the right hash
    (tmp_path / "summary.json").unlink()
    with caplog.at_level(logging.WARNING, logger="rdx"):
        execute(cfg(epochs=1), tmp_path)  # no traceback, every rerun
    assert said in caplog.text and trained == [0, 0]
    assert (tmp_path / "checkpoint.pt.damaged").exists()


# ---------------------------------------------------------------- crafted cache entry


def test_a_crafted_pickle_under_a_remade_marker_is_rebuilt_without_torch_advice(tmp_path, caplog):
    from rdx.pipeline.cache import cached_tensors

    calls: list[int] = []

    def build(out: Path) -> None:
        calls.append(1)
        torch.save({"texts": ["a"]}, out / "trajectories.pt")

    entry = cached(tmp_path, "trajectories", {"k": 1}, build, version=1)
    _, crafted, marker = crafted_checkpoints(tmp_path)[0]
    os.replace(crafted, entry / "trajectories.pt")
    (entry / MARKER).unlink()
    write_marker(entry)  # checksums match the crafted file
    assert verify(entry) is None
    with caplog.at_level(logging.WARNING, logger="rdx"):
        path, data = cached_tensors(tmp_path, "trajectories", {"k": 1}, build, 1, "trajectories.pt")
    assert data == {"texts": ["a"]} and len(calls) == 2 and path == entry
    assert not marker.exists(), "unpickling ran code"
    assert "does not load (not plain data" in caplog.text
    assert "weights_only" not in caplog.text and "weights_only=False" not in caplog.text
