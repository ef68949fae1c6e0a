"""Fault injection on the artifact cache: damaged entries rebuilt, never trusted; stale temp
dirs of killed builds; failed builds leave nothing (docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from rdx.pipeline.cache import MARKER, cached, verify
from tests.helpers.faults import counting_builder, crafted_checkpoints, tmp_files


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
    entry = cached(tmp_path, "trajectories", {"k": 1}, counting_builder(calls), version=1)
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
        again = cached(tmp_path, "trajectories", {"k": 1}, counting_builder(calls), version=1)
    assert again == entry and len(calls) == 2
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert verify(again) is None
    assert torch.load(again / "trajectories.pt", weights_only=True)["texts"] == ["a", "b"]
    assert tmp_files(tmp_path) == []
    if damage == "crafted-pickle":
        assert not marker.exists()


def test_stale_temp_dirs_of_killed_builds_are_removed(tmp_path):
    calls: list[int] = []
    key_dir = cached(tmp_path, "scores", {"k": 2}, counting_builder(calls), version=1)
    stale = key_dir.with_name(f"{key_dir.name}.tmp-99999")
    stale.mkdir()
    (stale / "half.pt").write_bytes(b"\0" * 100)
    (key_dir / MARKER).unlink()  # force a rebuild of this key
    cached(tmp_path, "scores", {"k": 2}, counting_builder(calls), version=1)
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
