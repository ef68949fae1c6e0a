"""Fault injection on analysis: a non-numeric metric, make tables and figures on a sweep dir
(docs/reliability.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import make_target

ROOT = Path(__file__).resolve().parents[2]


def test_collect_marks_a_non_numeric_metric_unreadable(tmp_path):
    from analysis.collect import collect_local
    from tests.analysis.test_analysis import make_run

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
    from tests.analysis.test_analysis import make_run

    sweep = tmp_path / "runs" / "multirun" / "2026-11-30" / "10-00-00"
    for job, dropout, gamma in ((0, "none", None), (1, "quantile", 0.8)):
        make_run(sweep, str(job), dropout=dropout, gamma=gamma)
    for target in ("tables", "figures"):
        proc = make_target(target, sweep, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "tables" / "table1.md").is_file()
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert any(n.startswith("fig3_") for n in figures) and "fig6.png" in figures, figures
