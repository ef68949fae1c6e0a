"""Fault-suite helpers: crafted files, a run dir held by another process, the pipeline
stand-in that checkpoints like the trainer, and the configs the tests run."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import pickle
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rdx.config import Config, LoggerConfig, TrainerConfig

ROOT = Path(__file__).resolve().parents[2]


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


def counting_builder(calls: list[int]):
    def build(out: Path) -> None:
        calls.append(1)
        torch.save({"x": torch.arange(4), "texts": ["a", "b"], "n": 3}, out / "trajectories.pt")
        (out / "model.safetensors").write_bytes(os.urandom(2048))
        (out / "metrics.json").write_text(json.dumps({"heldout_accuracy": 0.9}))
        (out / "sub").mkdir()
        (out / "sub" / "tokenizer.json").write_text("{}")

    return build


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
