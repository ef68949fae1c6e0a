"""Fault injection on the run-dir lock: stale temp files of a killed writer, a second holder
told who holds it (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from rdx.records import (
    RunDirError,
    RunRecords,
)
from tests.helpers.faults import held_by_another_process, tmp_files


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
