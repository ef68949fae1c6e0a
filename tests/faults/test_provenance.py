"""Fault injection: a run resumed under a new commit (issue 33, "Crashes and provenance"):
status.json records each attempt's git sha, the latest as `git_sha` (docs/reliability.md)."""

from __future__ import annotations

import json

from rdx import records as rdx_records
from rdx.records import RunRecords


def test_each_attempts_commit_is_recorded(tmp_path, monkeypatch):
    """Before: the first attempt's sha stayed, though the code had changed."""
    records = RunRecords(tmp_path)
    for sha in ("aaa111", "bbb222"):
        monkeypatch.setattr(rdx_records, "git_sha", lambda sha=sha: sha)
        records.set_status("running", config_hash="h")
        records.set_status("interrupted" if sha == "aaa111" else "completed")
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["attempts"] == 2 and status["state"] == "completed"
    assert status["git_sha"] == "bbb222" and status["git_shas"] == ["aaa111", "bbb222"]


def test_a_status_from_before_keeps_its_first_commit(tmp_path, monkeypatch):
    (tmp_path / "status.json").write_text(
        json.dumps({"state": "interrupted", "git_sha": "old000", "attempts": 1})
    )
    monkeypatch.setattr(rdx_records, "git_sha", lambda: "new111")
    RunRecords(tmp_path).set_status("running")
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["git_shas"] == ["old000", "new111"] and status["git_sha"] == "new111"
