import json
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis import collect, figures, runs, tables

AXES = {
    "dataset": "synthetic",
    "attribute": "positive",
    "model": "tiny",
    "behavior": "tiny",
    "reward_model": "tiny",
    "init": "random",
    "dropout": "none",
    "gamma": None,
    "delta": None,
    "seed": 0,
    "epochs": 3,
    "lr": 5e-4,
    "sweep": "t1",
}


def make_run(
    root: Path,
    rel: str,
    state: str = "completed",
    summary: bool = True,
    error: str | None = None,
    **axes,
) -> Path:
    """A run dir as the trainer writes it: status, summary, metrics.jsonl, trace.jsonl."""
    run = root / rel
    run.mkdir(parents=True)
    ax = {**AXES, **axes}
    q = ax["dropout"] == "quantile"
    (run / "status.json").write_text(
        json.dumps({"state": state, "error": error, "git_sha": "abc", "started": 0, "ended": 1})
    )
    lines = []
    for epoch in range(3):
        lines.append({"kind": "step", "step": epoch, "epoch": epoch, "train/loss": 1.0})
        like = 0.3 + (0.1 if q else -0.05) * epoch + 0.01 * ax["seed"]
        reward = 0.5 + (0.1 if q else -0.05) * epoch
        lines.append(
            {
                "kind": "epoch",
                "epoch": epoch,
                "eval/likelihood": like,
                "eval/reward": reward,
                "eval/acc": 0.2,
            }
        )
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"kind": ')
    keep = [True, False, True, True]
    (run / "trace.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "epoch": e,
                    "r_hat": [0.1 * e, 0.2, 0.3, 0.4],
                    "pi_mean": [0.5, 0.4, 0.3, 0.2],
                    "keep": keep if q else [True] * 4,
                }
            )
            for e in range(3)
        )
    )
    if summary:
        s = {
            "acc": 0.4,
            "reward": 0.5,
            "acc_plus_reward": 0.9,
            "eval/likelihood": like,
            "eval/reward": reward,
            "eval/bleu": 0.1,
            **ax,
        }
        (run / "summary.json").write_text(json.dumps(s))
    return run


# ---------------------------------------------------------------- collect


def test_collect_splits_completed_and_incomplete(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "multirun/2026-11-25/12-00-00/0", dropout="none")
    make_run(runs, "multirun/2026-11-25/12-00-00/1", dropout="quantile", gamma=0.8)
    make_run(
        runs,
        "multirun/2026-11-25/12-00-00/2",
        state="failed",
        error="CUDA OOM",
        dropout="quantile",
        gamma=0.2,
    )
    make_run(runs, "runs/2026-11-25/13-00-00", state="running", summary=False)
    make_run(runs, "runs/2026-11-25/14-00-00", state="preempted", summary=False)
    # Hydra reports this job as done, but the trainer never wrote its summary.
    make_run(runs, "runs/2026-11-25/15-00-00", state="completed", summary=False)
    (runs / "multirun/2026-11-25/12-00-00/2/.hydra").mkdir()
    (runs / "multirun/2026-11-25/12-00-00/2/.hydra/overrides.yaml").write_text(
        "- dropout=quantile\n- gamma=0.2\n"
    )
    out = tmp_path / "results" / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(out)]) == 0

    df = pd.read_csv(out)
    assert list(df["run_dir"]) == [
        "multirun/2026-11-25/12-00-00/0",
        "multirun/2026-11-25/12-00-00/1",
    ]
    assert list(df["dropout"]) == ["none", "quantile"]
    assert math.isnan(df["gamma"][0]) and df["gamma"][1] == 0.8
    assert list(df.columns[:13]) == collect.AXES
    assert df["acc_plus_reward"].tolist() == [0.9, 0.9]
    assert df["eval/likelihood"][1] == pytest.approx(0.5)  # 0.3 + 0.1 * 2

    bad = pd.read_csv(tmp_path / "results" / "runs.incomplete.csv")
    assert dict(zip(bad["run_dir"], bad["state"], strict=True)) == {
        "multirun/2026-11-25/12-00-00/2": "failed",
        "runs/2026-11-25/13-00-00": "running",
        "runs/2026-11-25/14-00-00": "preempted",
        "runs/2026-11-25/15-00-00": "completed",
    }
    reasons = dict(zip(bad["run_dir"], bad["reason"], strict=True))
    assert reasons["multirun/2026-11-25/12-00-00/2"] == "CUDA OOM"
    assert reasons["runs/2026-11-25/15-00-00"] == "completed but no summary.json"
    err = capsys.readouterr().err
    assert "4 incomplete run(s)" in err
    assert "CUDA OOM; dropout=quantile gamma=0.2" in err


def test_collect_torn_summary_is_incomplete(tmp_path):
    runs = tmp_path / "runs"
    run = make_run(runs, "a")
    (run / "summary.json").write_text('{"acc": 0.')
    done, bad = collect.collect_local(runs)
    assert done.empty
    assert bad["state"].tolist() == ["unreadable"]


class FakeRun:
    def __init__(self, id_, state, config, summary, group="sw"):
        self.path = ["ent", "proj", id_]
        self.state, self.config, self.summary, self.group = state, config, summary, group


class FakeApi:
    calls = []

    def runs(self, path, filters=None, order=None):
        FakeApi.calls.append((path, filters, order))
        return [
            # nested Hydra-style config: axes found under their leaf names
            FakeRun(
                "r1",
                "finished",
                {
                    "dataset": {"name": "synthetic"},
                    "attribute": "positive",
                    "model": {"name": "tiny"},
                    "dropout": {"mode": "quantile"},
                    "gamma": 0.8,
                    "seed": 1,
                },
                {
                    "acc_plus_reward": 1.25,
                    "eval/reward": 0.7,
                    "_step": 9,
                    "dataset": "synthetic",
                    "model": "tiny",
                    "dropout": "quantile",
                },
            ),
            FakeRun("r2", "crashed", {"attribute": "world", "seed": 0}, {}),
        ]


def test_collect_wandb_with_fake_api(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    out = tmp_path / "runs.csv"
    filters = '{"config.dataset.name": "synthetic"}'
    rc = collect.main(
        ["--source", "wandb", "--project", "ent/proj", "--filters", filters, "--out", str(out)]
    )
    assert rc == 0
    assert FakeApi.calls[-1] == ("ent/proj", {"config.dataset.name": "synthetic"}, "+created_at")
    df = pd.read_csv(out)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["dataset"], row["attribute"], row["dropout"], row["gamma"], row["seed"]) == (
        "synthetic",
        "positive",
        "quantile",
        0.8,
        1,
    )
    assert row["acc_plus_reward"] == 1.25 and row["sweep"] == "sw"
    assert row["run_dir"] == "wandb:ent/proj/r1"
    assert "_step" not in df.columns
    bad = pd.read_csv(tmp_path / "runs.incomplete.csv")
    assert bad[["run_dir", "state"]].values.tolist() == [["wandb:ent/proj/r2", "crashed"]]


# ---------------------------------------------------------------- tables

HEADER = "dataset,attribute,model,init,dropout,gamma,seed,acc_plus_reward,eval/bleu,run_dir\n"
# Hand-written tidy CSV. Cell values by hand (std with ddof=1):
#   N/A x positive: 0.60, 0.70, 0.80 -> mean 0.700, std 0.100
#   quantile 0.8 x positive: 0.90, 1.00 -> mean 0.950, std sqrt(0.005) = 0.0707 -> 0.071
#   quantile 0.2 x world: 0.55, 0.59 -> mean 0.570, std sqrt(0.0008) = 0.0283 -> 0.028
ROWS = """\
synthetic,positive,tiny,random,none,,0,0.60,0.10,r/0
synthetic,positive,tiny,random,none,,1,0.70,0.12,r/1
synthetic,positive,tiny,random,none,,2,0.80,0.14,r/2
synthetic,positive,tiny,random,quantile,0.8,0,0.90,0.20,r/3
synthetic,positive,tiny,random,quantile,0.8,1,1.00,0.18,r/4
synthetic,positive,tiny,random,quantile,0.2,0,0.75,0.15,r/5
synthetic,positive,tiny,random,random,0.8,0,0.65,0.11,r/6
synthetic,world,tiny,random,none,,0,0.50,0.09,r/7
synthetic,world,tiny,random,quantile,0.8,0,0.52,0.10,r/8
synthetic,world,tiny,random,quantile,0.2,0,0.55,0.11,r/9
synthetic,world,tiny,random,quantile,0.2,1,0.59,0.13,r/10
synthetic,world,tiny,random,random,0.8,0,0.40,0.08,r/11
"""


def write_csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "runs.csv"
    path.write_text(HEADER + body)
    return path


def md_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """Markdown table body as {(first col, second col): remaining cells}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set(":-"):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_table1_cells_order_and_bold(tmp_path, capsys):
    out = tmp_path / "tables"
    assert tables.main(["--csv", str(write_csv(tmp_path, ROWS)), "--out", str(out)]) == 0
    md = (out / "table1.md").read_text()
    rows = md_rows(md)
    assert list(rows) == [
        ("dropout", "γ"),
        ("N/A", "–"),
        ("random", "0.8"),
        ("quantile", "0.2"),
        ("quantile", "0.8"),
    ]
    assert rows[("dropout", "γ")] == ["Positive", "World"]  # paper order, only present ones
    # modal n is 1, so cells with more seeds carry their n
    assert rows[("N/A", "–")] == ["0.700 ± 0.100 (n=3)", "0.500"]
    assert rows[("quantile", "0.8")] == ["**0.950 ± 0.071 (n=2)**", "0.520"]
    assert rows[("quantile", "0.2")] == ["0.750", "**0.570 ± 0.028 (n=2)**"]
    assert rows[("random", "0.8")] == ["0.650", "0.400"]
    assert "n = 1 per cell unless marked" in md
    tex = (out / "table1.tex").read_text()
    assert r"\textbf{0.950 $\pm$ 0.071 (n=2)}" in tex
    assert r"N/A & -- & 0.700 $\pm$ 0.100 (n=3) & 0.500 \\" in tex
    assert r"dropout & $\gamma$ & Positive & World \\" in tex
    # table34: No = N/A, Yes = quantile at the largest γ (0.8); bold is per attribute pair
    t34 = md_rows((out / "table34.md").read_text())
    assert t34[("Positive", "No")] == ["0.120 ± 0.020 (n=3)"]
    assert t34[("Positive", "Yes")] == ["**0.190 ± 0.014 (n=2)**"]
    assert t34[("World", "No")] == ["0.090"] and t34[("World", "Yes")] == ["**0.100**"]
    assert "Yes = quantile γ=0.8 (the largest γ present)" in (out / "table34.md").read_text()
    assert not (out / "table2.md").exists()
    assert "skipped table2: needs ≥2 target models" in capsys.readouterr().out


def test_table2_needs_two_models_and_bolds_per_model(tmp_path):
    body = (
        ROWS
        + """\
synthetic,positive,big,behavior,none,,0,1.10,0.1,b/0
synthetic,positive,big,behavior,quantile,0.8,0,1.05,0.1,b/1
synthetic,world,big,behavior,none,,0,0.70,0.1,b/2
synthetic,world,big,behavior,quantile,0.8,0,0.80,0.1,b/3
"""
    )
    out = tmp_path / "tables"
    assert tables.main(["--csv", str(write_csv(tmp_path, body)), "--out", str(out)]) == 0
    rows = md_rows((out / "table2.md").read_text())
    # The two targets differ in init too, so the label says so.
    assert rows[("big (init=behavior)", "N/A")] == ["**1.100**", "0.700"]
    assert rows[("big (init=behavior)", "quantile")] == ["1.050", "**0.800**"]
    assert rows[("tiny (init=random)", "N/A")] == ["0.700 ± 0.100 (n=3)", "0.500"]
    assert rows[("tiny (init=random)", "quantile")] == ["**0.950 ± 0.071 (n=2)**", "**0.520**"]
    # table1 and table34 get one block per target instead of pooling them
    assert (out / "table1.md").read_text().count("**Table 1.**") == 2


def test_missing_cell_fails_unless_allowed(tmp_path, capsys):
    body = "".join(line + "\n" for line in ROWS.splitlines() if not line.endswith("r/8"))
    csv, out = write_csv(tmp_path, body), tmp_path / "tables"
    assert tables.main(["--csv", str(csv), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "missing cell: table1 dropout=quantile γ=0.8 attribute=world" in err
    assert not (out / "table1.md").exists()

    assert tables.main(["--csv", str(csv), "--out", str(out), "--allow-missing"]) == 0
    md = (out / "table1.md").read_text()
    assert md_rows(md)[("quantile", "0.8")] == ["**0.950 ± 0.071 (n=2)**", "—"]
    assert "Missing cells (—): table1 dropout=quantile γ=0.8 attribute=world" in md
    assert "---" in (out / "table1.tex").read_text()
    assert "missing cell shown as —" in capsys.readouterr().err


def test_full_grid_demands_all_six_attributes(tmp_path, capsys):
    csv = write_csv(tmp_path, ROWS)
    assert tables.main(["--csv", str(csv), "--out", str(tmp_path / "t"), "--full-grid"]) == 1
    assert "attribute=negative" in capsys.readouterr().err


def test_duplicate_cell_fails_naming_axes(tmp_path, capsys):
    body = ROWS + "synthetic,world,tiny,random,quantile,0.2,1,0.60,0.1,again/10\n"
    assert tables.main(["--csv", str(write_csv(tmp_path, body)), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tables: error: duplicated cell: dataset=synthetic model=tiny")
    cell = "attribute=world dropout=quantile gamma=0.2 sample_set=0 seed=1"
    assert f"{cell} has 2 runs (r/10, again/10)" in err


def test_gamma_on_na_runs_is_not_a_setting(tmp_path):
    # A sweep that sets gamma on N/A runs: still one N/A row (and seeds 0 and 1 pool).
    body = """\
synthetic,positive,tiny,random,none,0.2,0,0.60,0.1,a
synthetic,positive,tiny,random,none,0.8,1,0.80,0.1,b
"""
    grids = tables.table1(runs.load(write_csv(tmp_path, body)))
    assert grids[0].row_labels == [("N/A", "–")]
    assert sorted(grids[0].cells[0][0]) == [0.6, 0.8]


# ---------------------------------------------------------------- figures


def test_figures_written(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in (0, 1):
        for init in ("random", "behavior"):
            make_run(root, f"{init}/na{seed}", seed=seed, init=init)
            make_run(root, f"{init}/q{seed}", dropout="quantile", gamma=0.8, seed=seed, init=init)
        make_run(root, f"random/q2_{seed}", dropout="quantile", gamma=0.2, seed=seed)
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(root), "--out", str(csv)]) == 0
    out = tmp_path / "fig"
    assert figures.main(["--csv", str(csv), "--runs", str(root), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "fig3_synthetic_positive.pdf",
        "fig3_synthetic_positive.png",
        "fig6.pdf",
        "fig6.png",
        "pareto_synthetic.pdf",
        "pareto_synthetic.png",
    ]
    for path in out.iterdir():
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF"), path
        assert path.stat().st_size > 5000
    # Fig. 6 is the paper's γ = 0.8 run (lowest seed, first in the CSV), not the first
    # quantile run (random/q2_0, γ = 0.2), and it names that run in its metadata
    from PIL import Image

    assert Image.open(out / "fig6.png").text["Description"] == (
        f"rdx runs: 1 run(s) under {root}: behavior/q0"
    )
    assert b"/Subject (rdx runs: 1 run\\(s\\) under" in (out / "fig6.pdf").read_bytes()
    # --heatmap-run picks another run, given relative to --runs
    chosen = figures.heatmap_run(runs.load(csv), root, Path("random/q2_1"))
    assert chosen[1] == "synthetic / positive / tiny / quantile γ=0.2 / seed 1"
    assert figures.fig6(chosen[0], out, chosen[1])[0].name == "fig6.png"


def test_fig3_reads_epoch_records(tmp_path):
    run = make_run(tmp_path, "a", dropout="quantile", gamma=0.8)
    curves = runs.epoch_curves(run)  # the torn last line is skipped
    assert sorted(curves) == [0, 1, 2]
    assert curves[2]["eval/reward"] == pytest.approx(0.7)


def test_collect_orders_hydra_job_dirs_naturally(tmp_path):
    for job in (10, 2, 1):
        make_run(tmp_path, f"multirun/2026-11-25/12-00-00/{job}", seed=job)
    done, _ = collect.collect_local(tmp_path)
    assert done["seed"].tolist() == [1, 2, 10]


def test_latex_escapes_labels(tmp_path):
    body = ROWS.replace("synthetic,", "my_data,")
    out = tmp_path / "t"
    assert tables.main(["--csv", str(write_csv(tmp_path, body)), "--out", str(out)]) == 0
    tex = (out / "table1.tex").read_text()
    assert r"dataset=my\_data" in tex and "my_data" not in tex


# ---------------------------------------------------------------- which runs: duplicates, latest


def set_record(run: Path, ended: str | None = None, started: str | None = None, **summary):
    """Rewrite a make_run dir's status times and summary values."""
    status = json.loads((run / "status.json").read_text())
    status.update(started=started or ended, ended=ended)
    (run / "status.json").write_text(json.dumps(status))
    data = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**data, **summary}))


def test_duplicates_latest_keeps_the_run_that_ended_last(tmp_path, capsys):
    root = tmp_path / "runs"
    # The same cell and seed in two sweeps; the one that ended later sorts first by path,
    # so only its end time can make it win.
    for sweep, ended, value in (("a", "2026-11-30T09:00:00+00:00", 1.3),
                                ("b", "2026-11-29T09:00:00+00:00", 0.7)):  # fmt: skip
        for dropout, gamma in (("none", None), ("quantile", 0.8)):
            run = make_run(root, f"{sweep}/{dropout}", dropout=dropout, gamma=gamma, sweep=sweep)
            set_record(run, ended, acc_plus_reward=value)
    csv, out = tmp_path / "runs.csv", tmp_path / "tables"
    assert collect.main(["--runs", str(root), "--out", str(csv)]) == 0
    assert pd.read_csv(csv)["ended"].tolist()[0] == "2026-11-30T09:00:00+00:00"
    capsys.readouterr()

    assert tables.main(["--csv", str(csv), "--out", str(out), "--duplicates", "fail"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tables: error: duplicated cell: dataset=")
    assert "has 2 runs (a/none, b/none)" in err and "--duplicates latest keeps" in err

    assert tables.main(["--csv", str(csv), "--out", str(out), "--duplicates", "latest"]) == 0
    rows = md_rows((out / "table1.md").read_text())
    assert rows[("N/A", "–")] == ["**1.300**"] and rows[("quantile", "0.8")] == ["**1.300**"]
    assert (
        "tables: --duplicates latest: left out 2 older duplicate run(s), e.g. b/none "
        "(kept a/none) (and 1 more)\n"
    ) in capsys.readouterr().err
    # Without end times (e.g. an older CSV), the later row of the CSV wins.
    recs, dropped = runs.keep_latest(
        [{"attribute": "x", "seed": 0, "run_dir": d, "ended": None} for d in ("p", "q")]
    )
    assert [r["run_dir"] for r in recs] == ["q"] and dropped[0][1]["run_dir"] == "p"


def test_config_axes_split_blocks_instead_of_duplicating(tmp_path):
    # Two sampling regimes of one grid: two Table 1 blocks, each named by its regime.
    body = "".join(
        line.rstrip("\n") + f",{eos}\n"
        for eos in ("True", "False")
        for line in ROWS.splitlines(keepends=True)
    )
    path = tmp_path / "runs.csv"
    path.write_text(HEADER.rstrip("\n") + ",sampling.stop_at_eos\n" + body)
    recs = runs.load(path)
    assert runs.config_axes(recs) == ["sampling.stop_at_eos"]
    grids = tables.table1(recs)
    assert [g.context.split(", ")[-1] for g in grids] == [
        "sampling.stop_at_eos=False",
        "sampling.stop_at_eos=True",
    ]
    assert grids[0].cells == grids[1].cells
    # A flat key counts when rdx's summary writes it as a setting (top_k) or when its value
    # is text or true/false; other numbers are metrics. random_replacement is an arm's option.
    rec = {"mine": "x", "top_k": 0, "n_trajectories": 64, "run_dir": "x", "ended": "t"}
    assert runs.config_axes([{**rec, "random_replacement": True}]) == ["mine", "top_k"]


def test_latest_sweep_is_the_one_that_ran_last(tmp_path, capsys):
    from analysis import latest

    runs = tmp_path / "runs"
    assert latest.main([str(runs)]) == 2
    assert capsys.readouterr().err == f"analysis: error: runs root {runs} is not a directory\n"
    make_run(runs, "2026-11-30/12-00-00")  # a single run is not a sweep
    assert latest.main([str(runs)]) == 0
    got = capsys.readouterr()
    assert got.out == f"{runs}\n" and "no sweep under" in got.err
    # By time, not by name: sweep "b" ended first; "a" is still running but started later.
    for name, started, ended in (
        ("b", "2026-11-30T08:00:00+00:00", "2026-11-30T09:00:00+00:00"),
        ("a", "2026-11-30T10:00:00+00:00", None),
    ):
        sweep = runs / "multirun" / name
        set_record(make_run(sweep, "0"), ended, started)
        (sweep / "multirun.yaml").write_text("{}\n")
    assert latest.latest_sweep(runs) == (runs / "multirun" / "a", 2)
    assert latest.main([str(runs)]) == 0
    got = capsys.readouterr()
    assert got.out == f"{runs / 'multirun' / 'a'}\n"
    assert got.err == (
        f"analysis: reading the latest sweep {runs / 'multirun' / 'a'}; 1 older sweep(s) left "
        "out (RUNS=<dir> reads another)\n"
    )


def test_make_tables_without_runs_reads_the_latest_sweep(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    runs = tmp_path / "runs"
    for sweep, day, value in (("2026-11-29/10-00-00", "2026-11-29", 0.5),
                              ("2026-11-30/09-00-00", "2026-11-30", 1.5)):  # fmt: skip
        sweep_dir = runs / "multirun" / sweep
        for job, dropout, gamma in ((0, "none", None), (1, "quantile", 0.8)):
            run = make_run(sweep_dir, str(job), dropout=dropout, gamma=gamma)
            set_record(run, f"{day}T10:0{job}:00+00:00", acc_plus_reward=value)
        (sweep_dir / "sweep.json").write_text("{}\n")
    make_run(runs, "2026-11-30/12-00-00", acc_plus_reward=9.0)  # not a sweep: never read
    venv = repo / ".venv"
    make = ["make", "-s", "-f", str(repo / "Makefile"), f"VENV={venv}"]
    no_install = ["-o", str(venv / ".rdx-installed")]  # the venv counts as installed
    proc = subprocess.run(
        [*make, *no_install, "tables", "claims"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    chosen = "runs/multirun/2026-11-30/09-00-00"
    assert f"analysis: reading the latest sweep {chosen}; 1 older sweep(s) left out" in proc.stderr
    df = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert df["run_dir"].astype(str).tolist() == ["0", "1"]
    assert df["acc_plus_reward"].tolist() == [1.5, 1.5]
    rows = md_rows((tmp_path / "tables" / "table1.md").read_text())
    assert rows[("N/A", "–")] == ["**1.500**"]
    claims_md = (tmp_path / "tables" / "claims.md").read_text()
    assert "| quantile γ=0.8 beats N/A" in claims_md and "| no runs" in claims_md


def test_random_replacement_is_a_row_and_new_modes_keep_gamma(tmp_path):
    header = HEADER.rstrip("\n") + ",random_replacement\n"
    body = """\
synthetic,positive,tiny,random,none,,0,0.60,0.1,a,False
synthetic,positive,tiny,random,random,0.8,0,0.50,0.1,b,False
synthetic,positive,tiny,random,random,0.8,0,0.55,0.1,c,True
synthetic,positive,tiny,random,prompt_quantile,0.8,0,0.90,0.1,d,False
synthetic,positive,tiny,random,prompt_quantile,0.2,0,0.70,0.1,e,False
"""
    path = tmp_path / "runs.csv"
    path.write_text(header + body)
    (grid,) = tables.table1(runs.load(path))
    assert grid.row_labels == [
        ("N/A", "–"),
        ("random", "0.8"),
        ("random (with replacement)", "0.8"),
        ("prompt_quantile", "0.2"),
        ("prompt_quantile", "0.8"),
    ]
    assert [c[0] for c in grid.cells] == [[0.6], [0.5], [0.55], [0.7], [0.9]]
