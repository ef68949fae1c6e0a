"""Fault injection: a damaged record in metrics.jsonl on resume, and a large log (issue 33,
"Crashes and provenance"). A line that is no record of an epoch is moved aside, never a
TypeError at every resume; the log is trimmed line by line, not read whole
(docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rdx.records import RunRecords

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("epoch", [None, "1", True, -1, 1.5, [0]])
def test_a_record_with_a_damaged_epoch_is_moved_aside(tmp_path, caplog, epoch):
    """Before: `{"epoch": null}` made every resume fail with a TypeError in trim_metrics."""
    records = RunRecords(tmp_path)
    for e in (0, 1, 2):
        records.append_metrics({"kind": "epoch", "epoch": e})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"kind": "epoch", "epoch": epoch}) + "\n")
        f.write('{"kind": "step", "epoch": 1, "train/loss": NaN}\n{"kind": "ep')  # NaN, torn
    records.trim_metrics(2)
    assert records.read_metrics() == [{"kind": "epoch", "epoch": 0}, {"kind": "epoch", "epoch": 1}]
    aside = (tmp_path / "metrics.jsonl.damaged").read_text().splitlines()
    assert aside[0] == json.dumps({"kind": "epoch", "epoch": epoch}) and len(aside) == 3
    assert [m for m in caplog.messages if "damaged line" in m] == [
        f"{tmp_path / 'metrics.jsonl'}: 3 damaged line(s) (torn, not JSON, or an epoch that "
        "is not a count) moved to metrics.jsonl.damaged"
    ]
    records.append_metrics({"kind": "epoch", "epoch": 2})  # the resumed run logs on
    assert [r["epoch"] for r in records.read_metrics()] == [0, 1, 2]


def test_a_large_log_is_trimmed_without_holding_it(tmp_path):
    """Before: a 287 MB metrics.jsonl peaked at 2.8 GB on resume (read and parsed whole)."""
    line = json.dumps({"kind": "step", "epoch": 0, "train/loss": 0.5, "pad": "x" * 200})
    with (tmp_path / "metrics.jsonl").open("w") as f:
        for _ in range(200_000):  # ~48 MB
            f.write(line + "\n")
    size = (tmp_path / "metrics.jsonl").stat().st_size
    code = (
        "import resource, sys\n"
        "from rdx.records import RunRecords\n"
        "r = RunRecords(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r.trim_metrics(1)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    grown_kib = int(proc.stdout.strip())
    assert grown_kib * 1024 < size / 4, (grown_kib, size)  # read whole: ~7x the size
    assert (tmp_path / "metrics.jsonl").stat().st_size == size  # every epoch-0 line kept
