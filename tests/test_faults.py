"""Fault injection: what a killed job, a torn file, a second process, a full or read-only
disk, a crafted pickle or changed settings do to a run dir and the artifact cache
(docs/reliability.md lists each case and its result).

The fast tests drive rdx.records, rdx.pipeline.cache and rdx.run.execute directly (the
pipeline replaced by a stand-in that checkpoints like the trainer). The slow ones run
`python -m rdx.train experiment=smoke` as a user would, kill it with SIGKILL or SIGINT at
several points, and check that the rerun ends with the summary of an uninterrupted run;
they share one artifact cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rdx.config import Config, ConfigError, LoggerConfig, TrainerConfig
from rdx.logger import resolve_mode
from rdx.pipeline.cache import MARKER, cached, verify
from rdx.records import (
    RunDirError,
    RunRecords,
    config_hash,
    config_identity,
    read_jsonl,
    write_json,
)
from rdx.run import execute, preflight

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


class Evil:
    """A pickle that creates a directory when unpickled: proof that code would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def crafted_checkpoints(tmp_path: Path) -> list[tuple[str, Path, Path]]:
    """(kind, file, marker): a torch.save zip and a raw pickle, each running os.mkdir."""
    out = []
    for kind in ("torch-zip", "raw-pickle"):
        marker = tmp_path / f"pwned-{kind}"
        path = tmp_path / f"{kind}.pt"
        payload = {"epoch": 1, "model": Evil(marker)}
        if kind == "torch-zip":
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload))
        out.append((kind, path, marker))
    return out


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at `path` (root only); skips the test, saying why, where not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> None:
    """Write until the disk under `directory` is full."""
    with (directory / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name)


# ---------------------------------------------------------------- records


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
    ):
        assert config_hash(config_identity(changed(**same))) == h, same
    for different in (
        {"gamma": 0.5},
        {"seed": 1},
        {"trainer__lr": 1e-3},
        {"dropout__mode": "random"},
        {"sampling__temperature": 1.0},
        {"dataset__path": "/data"},
    ):
        assert config_hash(config_identity(changed(**different))) != h, different


# ---------------------------------------------------------------- lock


@contextlib.contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen]:
    """Another process holding run_dir's lock until the block ends (then SIGKILLed)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rdx.records import RunRecords\n"
            "with RunRecords(sys.argv[1]).lock():\n"
            "    print('held', flush=True); time.sleep(120)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock; no stale lock file blocks
        holder.wait()


def test_stale_temp_files_of_a_killed_write_are_removed_by_the_next_holder(tmp_path):
    for name in (".status.json.tmp-4242", ".checkpoint.pt.tmp-4242"):
        (tmp_path / name).write_bytes(b"\0" * 1000)  # what kill -9 mid-write leaves
    with RunRecords(tmp_path).lock():
        assert tmp_files(tmp_path) == []


def test_second_holder_of_a_run_dir_is_told_the_pid_and_host(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        with pytest.raises(RunDirError) as err:
            with RunRecords(tmp_path).lock():
                pass
        message = str(err.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
    with RunRecords(tmp_path).lock():  # free again after the holder's kill -9
        with RunRecords(tmp_path).lock():  # and nests within this process
            owner = json.loads((tmp_path / ".rdx.lock.owner").read_text())
            assert owner["pid"] == os.getpid()


# ---------------------------------------------------------------- cache


def _builder(calls: list[int]):
    def build(out: Path) -> None:
        calls.append(1)
        torch.save({"x": torch.arange(4), "texts": ["a", "b"], "n": 3}, out / "trajectories.pt")
        (out / "model.safetensors").write_bytes(os.urandom(2048))
        (out / "metrics.json").write_text(json.dumps({"heldout_accuracy": 0.9}))
        (out / "sub").mkdir()
        (out / "sub" / "tokenizer.json").write_text("{}")

    return build


@pytest.mark.parametrize(
    "damage",
    [
        "truncate-pt",
        "garbage-safetensors",
        "garbage-json",
        "missing-file",
        "missing-marker",
        "garbage-marker",
        "crafted-pickle",
    ],
)
def test_damaged_cache_entry_is_rebuilt_not_trusted(tmp_path, damage, caplog):
    calls: list[int] = []
    entry = cached(tmp_path, "trajectories", {"k": 1}, _builder(calls), version=1)
    assert verify(entry) is None and len(calls) == 1
    pt = entry / "trajectories.pt"
    if damage == "truncate-pt":
        pt.write_bytes(pt.read_bytes()[:100])
    elif damage == "garbage-safetensors":
        (entry / "model.safetensors").write_bytes(os.urandom(2048))  # same size
    elif damage == "garbage-json":
        (entry / "metrics.json").write_text("{not json")
    elif damage == "missing-file":
        (entry / "sub" / "tokenizer.json").unlink()
    elif damage == "missing-marker":
        (entry / MARKER).unlink()
    elif damage == "garbage-marker":
        (entry / MARKER).write_bytes(b"\x00\x01")
    else:
        _, crafted, marker = crafted_checkpoints(tmp_path)[0]
        os.replace(crafted, pt)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        again = cached(tmp_path, "trajectories", {"k": 1}, _builder(calls), version=1)
    assert again == entry and len(calls) == 2
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert verify(again) is None
    assert torch.load(again / "trajectories.pt", weights_only=True)["texts"] == ["a", "b"]
    assert tmp_files(tmp_path) == []
    if damage == "crafted-pickle":
        assert not marker.exists()


def test_stale_temp_dirs_of_killed_builds_are_removed(tmp_path):
    calls: list[int] = []
    key_dir = cached(tmp_path, "scores", {"k": 2}, _builder(calls), version=1)
    stale = key_dir.with_name(f"{key_dir.name}.tmp-99999")
    stale.mkdir()
    (stale / "half.pt").write_bytes(b"\0" * 100)
    (key_dir / MARKER).unlink()  # force a rebuild of this key
    cached(tmp_path, "scores", {"k": 2}, _builder(calls), version=1)
    assert not stale.exists() and tmp_files(tmp_path) == []


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(out: Path) -> None:
        (out / "partial.pt").write_bytes(b"\0" * 100)
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cached(tmp_path, "behavior", {"k": 3}, broken, version=1)
    assert list((tmp_path / "behavior").glob("*")) == [
        p for p in (tmp_path / "behavior").glob("*.lock")
    ]


# ---------------------------------------------------------------- full and read-only disks


def test_full_disk_keeps_records_whole_and_ends_failed(tmp_path):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        records = RunRecords(disk / "run")
        with records.lock():
            records.set_status("running")
            records.save_checkpoint({"epoch": 1, "model": {"w": torch.ones(4)}})
            before = records.checkpoint_path.read_bytes()
            fill(disk)
            with pytest.raises(OSError) as err:
                records.save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(50_000)}})
            assert err.value.errno == errno.ENOSPC
            with pytest.raises(OSError):
                write_json(records.dir / "summary.json", {"acc": 1.0, "pad": "x" * 20_000})
            assert records.checkpoint_path.read_bytes() == before  # the old one is intact
            assert tmp_files(disk) == [] and not (records.dir / "summary.json").exists()
            records.set_status("failed", error="OSError: [Errno 28] No space left on device")
            status = records.status()
            assert status["state"] == "failed" and "No space left" in status["error"]

        # A cache build on the full disk leaves no half-written dir either.
        calls: list[int] = []
        with pytest.raises(OSError):
            cached(disk / "cache", "scores", {"k": 4}, _builder(calls), version=1)
        assert tmp_files(disk) == []


def test_read_only_disk_reports_the_final_state_on_stderr(tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        records = RunRecords(disk / "run")
        records.set_status("running")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(OSError) as err:
            write_json(records.dir / "summary.json", {})
        assert err.value.errno == errno.EROFS
        records.set_status("failed", error="OSError: read-only")  # must not raise
        line = capsys.readouterr().err.strip()
        assert line.startswith("rdx: cannot write") and "ended failed: OSError" in line
        assert "\n" not in line


# ---------------------------------------------------------------- execute: resume policy


def fake_pipeline(monkeypatch, hooks: dict[int, object] | None = None) -> list[int]:
    """Replace prepare and train by a stand-in that checkpoints after every epoch like the
    trainer (records.load_checkpoint, trim_metrics, save_checkpoint); returns the epochs
    it trained. hooks[epoch](records) runs before that epoch."""
    trained: list[int] = []
    hooks = hooks or {}

    def train(cfg, prep, records, logger):
        state = records.load_checkpoint()
        start, history = (state["epoch"], state["history"]) if state else (0, [])
        records.trim_metrics(start)
        for epoch in range(start, cfg.trainer.epochs):
            if epoch in hooks:
                hooks[epoch](records)
            trained.append(epoch)
            history.append({"value": cfg.seed * 10 + epoch + (cfg.gamma or 0)})
            records.append_metrics({"kind": "epoch", "epoch": epoch})
            records.save_checkpoint(
                {"epoch": epoch + 1, "history": history, "torch_rng": torch.get_rng_state()}
            )
        return {"acc": 0.5, "reward": 0.25, "acc_plus_reward": history[-1]["value"]}

    artifacts = types.SimpleNamespace(prepare=lambda cfg: None)
    monkeypatch.setitem(sys.modules, "rdx.pipeline.offpolicy.artifacts", artifacts)
    trainer = types.SimpleNamespace(train=train)
    monkeypatch.setitem(sys.modules, "rdx.pipeline.offpolicy.trainer", trainer)
    return trained


def cfg(**changes) -> Config:
    trainer = dataclasses.replace(TrainerConfig(), epochs=changes.pop("epochs", 2), threads=1)
    base = Config(trainer=trainer, logger=LoggerConfig(kind="none"))
    for key, value in changes.items():
        if "__" in key:
            group, field = key.split("__")
            changes_group = dataclasses.replace(getattr(base, group), **{field: value})
            base = dataclasses.replace(base, **{group: changes_group})
        else:
            base = dataclasses.replace(base, **{key: value})
    return base


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


# ---------------------------------------------------------------- environment


def test_preflight_finds_missing_wordnet_before_any_work(monkeypatch, tmp_path):
    """nltk searching only an empty directory: the run stops before any work, and the
    check itself does not load WordNet (that waits for METEOR's first use)."""
    import nltk.data

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ConfigError, match="WordNet.*python -m rdx.pipeline.wordnet"):
        preflight(Config())


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


# ---------------------------------------------------------------- analysis


def test_collect_marks_a_non_numeric_metric_unreadable(tmp_path):
    from analysis.collect import collect_local
    from tests.test_analysis import make_run

    make_run(tmp_path, "0")
    bad = make_run(tmp_path, "1", dropout="quantile", gamma=0.8)
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps({**summary, "eval/reward": "high"}))
    done, incomplete = collect_local(tmp_path)
    assert done["run_dir"].tolist() == ["0"]
    row = incomplete.iloc[0]
    assert row["state"] == "unreadable" and "eval/reward='high'" in row["reason"]


def test_make_tables_and_figures_on_a_sweep_dir(tmp_path):
    """README's flow: a sweep writes job dirs 0, 1, ...; make tables/figures RUNS=<it>."""
    from tests.test_analysis import make_run

    sweep = tmp_path / "runs" / "multirun" / "2026-11-30" / "10-00-00"
    for job, dropout, gamma in ((0, "none", None), (1, "quantile", 0.8)):
        make_run(sweep, str(job), dropout=dropout, gamma=gamma)
    venv = ROOT / ".venv"
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), f"VENV={venv}"]
    no_install = ["-o", str(venv / ".rdx-installed")]  # the venv counts as installed
    for target in ("tables", "figures"):
        proc = subprocess.run(
            [*make, *no_install, target, f"RUNS={sweep}"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "tables" / "table1.md").is_file()
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert any(n.startswith("fig3_") for n in figures) and "fig6.png" in figures, figures


# ---------------------------------------------------------------- end to end (slow)


def rdx_train(run_dir: Path, cache: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "experiment=smoke",
            "logger=none",
            "trainer.threads=1",
            f"hydra.run.dir={run_dir}",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "RDX_CACHE": str(cache), "WANDB_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


def kill_when(proc: subprocess.Popen, ready, sig=signal.SIGKILL, timeout: float = 240) -> bool:
    """Send `sig` as soon as ready() holds; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(sig)
            return True
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the run never reached the kill point")


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """A killed cache build, then the run that completes it: the reference summary."""
    root = tmp_path_factory.mktemp("faults")
    cache = root / "cache"
    run = root / "reference"
    proc = rdx_train(run, cache)
    killed = kill_when(proc, lambda: any(cache.glob("*/*.tmp-*")))
    proc.wait()
    assert killed, "the run ended before any cache build started"
    assert any(cache.glob("*/*.tmp-*")), "the kill left the build's temp dir"
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert not any(cache.glob("*/*.tmp-*")), "stale temp dirs were cleaned"
    assert all(verify(entry) is None for entry in cache.glob("*/*") if entry.is_dir())
    return {"root": root, "cache": cache, "summary": summary_of(run), "run": run}


@pytest.mark.slow
def test_kill_9_mid_epoch_with_a_crafted_checkpoint_then_resume(reference):
    run, cache = reference["root"] / "mid-epoch", reference["cache"]
    metrics = run / "metrics.jsonl"
    proc = rdx_train(run, cache)
    assert kill_when(proc, lambda: metrics.exists() and '"step"' in metrics.read_text())
    proc.wait()
    # Someone drops a crafted pickle where the checkpoint goes: it must not run.
    _, crafted, marker = crafted_checkpoints(reference["root"])[0]
    os.replace(crafted, run / "checkpoint.pt")
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert not marker.exists()
    assert (run / "checkpoint.pt.damaged").exists()
    assert summary_of(run) == {**reference["summary"]}
    epochs = [r["epoch"] for r in read_jsonl(metrics) if r["kind"] == "epoch"]
    assert epochs == [0, 1]


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_then_refuses_other_settings(reference):
    run, cache = reference["root"] / "after-checkpoint", reference["cache"]
    proc = rdx_train(run, cache)
    assert kill_when(proc, lambda: (run / "checkpoint.pt").exists())
    proc.wait()
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # as killed
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert summary_of(run) == reference["summary"]
    assert json.loads((run / "status.json").read_text())["attempts"] == 2

    for args, named in (
        (["gamma=0.5"], "gamma=0.8->0.5"),
        (["seed=1"], "seed=0->1"),
        (["resume=never"], "resume=never"),
    ):
        code, lines = finish(rdx_train(run, cache, *args))
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("rdx: run dir error:") and named in lines[0], lines[0]
    assert summary_of(run) == reference["summary"]  # the old result, still labelled as such


@pytest.mark.slow
def test_second_process_is_refused_and_ctrl_c_resumes(reference):
    run, cache = reference["root"] / "two-processes", reference["cache"]
    first = rdx_train(run, cache)
    owner = run / ".rdx.lock.owner"
    deadline = time.monotonic() + 120
    while not owner.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    code, lines = finish(rdx_train(run, cache))
    assert code == 2 and len(lines) == 1, lines
    assert f"in use by pid {first.pid} on host {socket.gethostname()}" in lines[0]
    assert kill_when(first, lambda: (run / "checkpoint.pt").exists(), signal.SIGINT)
    code, lines = finish(first)
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0], lines
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    code, lines = finish(rdx_train(run, cache))
    assert code == 0, lines
    assert summary_of(run) == reference["summary"]


@pytest.mark.slow
def test_full_disk_run_ends_failed_in_one_line(reference, tmp_path):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        run = disk / "run"
        code, lines = finish(rdx_train(run, reference["cache"]))
        assert code == 2 and len(lines) == 1, lines
        assert "No space left on device" in lines[0]
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "failed" and "No space left" in status["error"]
        assert tmp_files(disk) == []
