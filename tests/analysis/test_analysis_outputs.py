"""What make tables/figures/claims leave behind: only what the runs they read support, each
file naming those runs; analysis.runs as the one loader, with rdx's own vocabularies."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from analysis import claims, figures, harmless, runs, tables
from rdx.data.corpus import ATTRIBUTES
from rdx.method import DROPOUT_MODES
from tests.analysis.test_analysis import make_run

REPO = Path(__file__).resolve().parents[2]


def grid(root: Path, epochs_with_eval: str = "every") -> Path:
    """N/A and quantile γ=0.8 for one attribute, seeds 0 and 1, under root/sweep."""
    for seed in (0, 1):
        make_run(root, f"sweep/na{seed}", seed=seed)
        make_run(root, f"sweep/q{seed}", dropout="quantile", gamma=0.8, seed=seed)
    if epochs_with_eval == "last":  # what trainer.epoch_metrics=last writes
        for path in root.rglob("metrics.jsonl"):
            lines = [json.loads(x) for x in path.read_text().splitlines()[:-1]]
            for rec in lines:
                if rec["kind"] == "epoch" and rec["epoch"] < 2:
                    for key in ("eval/likelihood", "eval/reward", "eval/acc"):
                        rec.pop(key)
            path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    csv = root / "runs.csv"
    from analysis import collect

    assert collect.main(["--runs", str(root), "--out", str(csv)]) == 0
    return csv


def test_tables_name_their_runs_and_remove_tables_the_runs_do_not_support(tmp_path, capsys):
    csv, out = grid(tmp_path), tmp_path / "tables"
    out.mkdir()
    (out / "table2.md").write_text("an earlier sweep's table 2\n")  # no table2 in these runs
    assert tables.main(["--csv", str(csv), "--out", str(out), "--runs", str(tmp_path)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "table1.md",
        "table1.tex",
        "table34.md",
        "table34.tex",
    ]
    line = f"4 run(s) under {tmp_path}: sweep/na0, sweep/na1, sweep/q0, sweep/q1"
    assert (out / "table1.md").read_text().endswith(f"\nSource: {line}\n")
    assert (out / "table34.tex").read_text().startswith(f"% rdx runs: {line}\n")


def test_tables_of_a_csv_without_runs_remove_the_old_ones_and_fail(tmp_path, capsys):
    out = tmp_path / "tables"
    out.mkdir()
    for name in ("table1.md", "table1.tex", "table34.md", "claims.md"):
        (out / name).write_text("old\n")
    csv = tmp_path / "runs.csv"
    csv.write_text("dataset,attribute,dropout,seed,run_dir\n")  # what collect writes for none
    assert tables.main(["--csv", str(csv), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"tables: error: {csv} has no completed runs (removed 3 older table file(s))\n"
    assert sorted(p.name for p in out.iterdir()) == ["claims.md"]  # claims' own, not ours


def test_tables_leave_ppo_and_dpo_runs_to_harmless(tmp_path, capsys):
    csv, out = tmp_path / "runs.csv", tmp_path / "tables"
    out.mkdir()
    (out / "table1.md").write_text("old\n")
    pd.DataFrame(
        [{"dataset": "hh", "attribute": "harmless", "algo": "ppo", "dropout": "none", "seed": 0}]
    ).to_csv(csv, index=False)
    assert tables.main(["--csv", str(csv), "--out", str(out)]) == 0
    assert "no off-policy runs" in capsys.readouterr().out
    assert not (out / "table1.md").exists()


def test_figures_remove_their_older_files_and_skip_fig3_without_epoch_curves(tmp_path, capsys):
    csv, out = grid(tmp_path, "last"), tmp_path / "figures"
    out.mkdir()
    stale = ["fig3_synthetic_world.png", "fig6_2.png", "fig6_5.pdf", "pareto_yelp.pdf"]
    for name in [*stale, "fig4.png", "notes.txt"]:
        (out / name).write_text("old")
    assert figures.main(["--csv", str(csv), "--runs", str(tmp_path), "--out", str(out)]) == 0
    got = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "fig4.png",  # analysis.harmless's
        "fig6.pdf",
        "fig6.png",
        "notes.txt",
        "pareto_synthetic.pdf",
        "pareto_synthetic.png",
    ]
    assert "removed 4 older figure(s) these runs do not support" in got.out
    assert (
        "figures: warning: fig3: 4 run(s) measured their last epoch only (one dot, not a "
        "curve), left out"
    ) in got.err
    assert "trainer.epoch_metrics=every" in got.err
    meta = Image.open(out / "pareto_synthetic.png").text["Description"]
    assert meta == f"rdx runs: 4 run(s) under {tmp_path}: sweep/na0, sweep/na1, sweep/q0, sweep/q1"


def test_fig3_counts_epochs_from_one_and_keeps_plain_tick_labels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    recs = runs.load(grid(tmp_path))
    made: list = []
    real_save = figures._save
    monkeypatch.setattr(
        figures, "_save", lambda fig, *args: made.append(fig) or real_save(fig, *args)
    )
    figures.fig3(recs, tmp_path, tmp_path, [])
    (fig,) = made
    ax = fig.axes[0]
    xs = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    assert xs == [1, 2, 3]  # metrics.jsonl's epochs 0, 1, 2
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""  # no "1e-5+2.396e-1" above
    plt.close(fig)


def test_fig3_draws_the_papers_train_axes_first_when_runs_logged_them(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    csv = grid(tmp_path)
    for path in tmp_path.rglob("metrics.jsonl"):  # add the paper's axes to every epoch record
        lines = [json.loads(x) for x in path.read_text().splitlines()[:-1]]
        for rec in lines:
            if rec["kind"] == "epoch":
                rec.update({"train/acc": 0.5 - 0.1 * rec["epoch"], "train/reward": 0.25})
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    made: list = []
    real_save = figures._save
    monkeypatch.setattr(
        figures, "_save", lambda fig, *args: made.append(fig) or real_save(fig, *args)
    )
    figures.fig3(runs.load(csv), tmp_path, tmp_path, [])
    (fig,) = made
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["accuracy (train)", "reward (train)", "likelihood β(τ̂)", "reward R(τ̂)"]
    ys = [round(y, 6) for line in fig.axes[0].get_lines() for y in line.get_ydata()]
    assert ys[:3] == [0.5, 0.4, 0.3]  # the mean over seeds of train/acc by epoch
    plt.close(fig)


def test_gamma_colours_are_spread_by_rank():
    recs = [{"dropout": "quantile", "gamma": g, "delta": None} for g in (0.8, 0.9, 0.95)]
    levels = figures.gamma_levels(recs)
    colours = [figures.style(r, levels)["color"] for r in recs]
    # neighbouring γs are far apart in RGB (as values, 0.8 0.9 0.95 were one blue)
    for a, b in zip(colours, colours[1:], strict=False):
        assert sum((x - y) ** 2 for x, y in zip(a[:3], b[:3], strict=True)) ** 0.5 > 0.25


def test_fig6_defaults_to_the_papers_gamma(tmp_path):
    for gamma, rel in ((0.2, "a"), (0.9, "b"), (0.8, "c"), (0.8, "d")):
        make_run(tmp_path, rel, dropout="quantile", gamma=gamma, seed=1 if rel == "c" else 2)
    recs = [
        {"run_dir": rel, "dropout": "quantile", "gamma": g, "seed": s, "dataset": "synthetic",
         "attribute": "positive", "model": "tiny", "delta": None}
        for g, rel, s in ((0.2, "a", 2), (0.9, "b", 2), (0.8, "d", 2), (0.8, "c", 1))
    ]  # fmt: skip
    path, title, rec = figures.heatmap_run(recs, tmp_path, None)
    assert path == tmp_path / "c" and rec["seed"] == 1  # γ = 0.8, then the lowest seed


def test_claims_remove_their_older_file_and_name_their_runs(tmp_path, capsys):
    grid(tmp_path)
    out = tmp_path / "claims.md"
    out.write_text("an earlier sweep's claims\n")
    assert claims.main(["--csv", str(tmp_path / "bad.csv"), "--out", str(out)]) == 1
    assert not out.exists()  # a failed run leaves no claims of other runs behind
    assert claims.main(["--runs", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.endswith(
        f"\nSource: 4 run(s) under {tmp_path}: sweep/na0, sweep/na1, sweep/q0, sweep/q1\n"
    )


def test_table5_marks_bytes_that_are_not_a_character():
    assert harmless._visible("i\ufffd on a .") == "i[?] on a ."


def test_make_tables_on_an_empty_runs_dir_leaves_no_earlier_table(tmp_path):
    venv = REPO / ".venv"
    if not (venv / "bin" / "python").exists():
        pytest.skip("make's recipes need the project venv at .venv")
    (tmp_path / "empty").mkdir()
    (tmp_path / "tables").mkdir()
    for name in ("table1.md", "table34.tex", "fig4.md", "table5.md"):
        (tmp_path / "tables" / name).write_text("an earlier sweep's\n")
    make = ["make", "-s", "-f", str(REPO / "Makefile"), f"VENV={venv}"]
    proc = subprocess.run(
        [*make, "-o", str(venv / ".rdx-installed"), "tables", "RUNS=empty"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "collect: 0 completed run(s)" in proc.stdout
    assert "tables: error: results/runs.csv has no completed runs" in proc.stderr
    assert list((tmp_path / "tables").iterdir()) == []


# ---------------------------------------------------------------- one loader


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_analysis_reads_runs_through_one_module_and_never_the_cli():
    for name in ("figures", "claims", "tables"):
        mods = _imports(REPO / "analysis" / f"{name}.py")
        assert "analysis.runs" in mods, name
        assert name == "tables" or "analysis.tables" not in mods, name
    for path in (REPO / "analysis").glob("*.py"):
        assert "rdx.train" not in _imports(path), path.name


def test_the_attribute_table_and_dropout_modes_are_rdxs():
    assert runs.ATTRIBUTES == [a for attrs in ATTRIBUTES["synthetic"].values() for a in attrs]
    assert sorted(runs.DROPOUTS) == sorted(DROPOUT_MODES)
    assert runs.DROPOUTS[:3] == ["none", "random", "quantile"]  # the paper's row order
