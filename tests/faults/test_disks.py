"""Fault injection on full and read-only disks: records stay whole and the run ends failed
with the reason (docs/reliability.md).
"""

from __future__ import annotations

import errno
import subprocess

import pytest
import torch

from rdx.pipeline.cache import cached
from rdx.records import (
    RunRecords,
    write_json,
)
from tests.helpers.faults import counting_builder, fill, tmp_files, tmpfs


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
            cached(disk / "cache", "scores", {"k": 4}, counting_builder(calls), version=1)
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
