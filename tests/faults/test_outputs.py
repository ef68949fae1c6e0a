"""Fault injection: analysis outputs on a full disk, a truncated runs CSV, and a runs dir
whose name holds a space (issue 33, "Analysis that writes half a file" and `make tables
RUNS=...`). Every output is written whole or not at all; a reader refuses a CSV that ends
mid-row (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

from analysis import collect, tables
from tests.analysis.test_analysis import make_run
from tests.helpers.cli import make_target
from tests.helpers.faults import fill, tmp_files, tmpfs

ROOT = Path(__file__).resolve().parents[2]


def _runs(root: Path, n: int) -> Path:
    for seed in range(n):
        make_run(root, f"n{seed}", seed=seed)
        make_run(root, f"q{seed}", dropout="quantile", gamma=0.8, seed=seed)
    return root


def test_collect_on_a_full_disk_leaves_the_old_csv_whole(tmp_path, capsys):
    """Before: a truncated runs.csv (fewer rows, cut mid-row) and a traceback."""
    runs = _runs(tmp_path / "runs", 2)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        out = disk / "runs.csv"
        assert collect.main(["--runs", str(runs), "--out", str(out)]) == 0
        before = out.read_bytes()
        _runs(tmp_path / "more", 300)  # ~300 bytes a row: ~180 KB, beyond the disk
        capsys.readouterr()
        code = collect.main(["--runs", str(tmp_path / "more"), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err == [
            f"collect: error: No space left on device: {out}; nothing half-written is left "
            "there: free space (or pick another --out) and rerun"
        ]
        assert out.read_bytes() == before  # the previous file, whole
        assert tmp_files(disk) == []


def test_tables_on_a_full_disk_leave_no_empty_table(tmp_path, capsys):
    """Before: a 0-byte table1.md and a traceback."""
    runs = _runs(tmp_path / "runs", 2)
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    with tmpfs(tmp_path / "disk", "16k") as disk:
        (disk / "tables").mkdir()
        fill(disk)
        capsys.readouterr()
        code = tables.main(["--csv", str(csv), "--out", str(disk / "tables"), "--allow-missing"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        assert len(err) == 1 and err[0].startswith("tables: error: No space left on device: ")
        assert str(disk / "tables") in err[0]
        assert sorted(p.name for p in (disk / "tables").iterdir()) == []  # no 0-byte table
        assert tmp_files(disk) == []


def test_a_csv_cut_mid_row_is_refused(tmp_path, capsys):
    """Before: read as fewer runs, without a word ("n = 3 per cell")."""
    runs = _runs(tmp_path / "runs", 4)
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    data = csv.read_bytes()
    csv.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 20])  # into the last row
    capsys.readouterr()
    code = tables.main(["--csv", str(csv), "--out", str(tmp_path / "tables"), "--allow-missing"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [
        f"tables: error: {csv} is not complete: it ends mid-row, after 8 line(s) (a write cut "
        "short, e.g. by a full disk); rerun analysis.collect (make tables does)"
    ]
    assert not (tmp_path / "tables" / "table1.md").exists()


def test_make_tables_with_a_space_in_runs(tmp_path):
    """Before: `/bin/sh: ü: not found`, error 127 (RUNS unquoted in the Makefile)."""
    sweep = tmp_path / "my runs" / "a ü"
    for job, dropout, gamma in ((0, "none", None), (1, "quantile", 0.8)):
        make_run(sweep, str(job), dropout=dropout, gamma=gamma)
    proc = make_target("figures", sweep, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "tables" / "table1.md").stat().st_size > 0
    assert (tmp_path / "figures" / "fig6.png").stat().st_size > 0
