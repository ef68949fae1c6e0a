"""Fig. 3 at a scale that can show degeneration (issue 30 §2): the authors' uniform init as
a random init in the claims, and diverged runs kept, shown and counted."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.collect import collect_local
from tests.analysis.test_claims import (
    FIG3A_NA,
    by_claim,
    collapse,
    curve_runs,
    rise,
    run_claims,
)


def test_fig3b_compares_a_pretrained_init_with_the_uniform_init_as_with_random(tmp_path):
    # uniform is fresh weights (the authors' U(±0.05)), not a pretrained init: Fig. 3b
    # compares behavior with it; it is never the "pretrained" side.
    curve_runs(
        tmp_path,
        {
            ("uniform", "none", None): collapse,
            ("uniform", "quantile", 0.8): rise,
            ("behavior", "none", None): rise,
            ("behavior", "quantile", 0.8): rise,
        },
    )
    rows = by_claim(run_claims(tmp_path))
    claim = (
        "Fig. 3b: N/A's joint degeneration is less frequent at init=behavior than at "
        "init=uniform: share(random) − share(pretrained)"
    )
    row = rows[(claim, "train/acc and train/reward both fall")]
    assert row.effect == 1.0 and len(row.diffs) == 18 and row.verdict == "holds"
    assert row.note == "none at init=behavior"
    assert not [c for c, _ in rows if "at init=uniform than" in c]  # never the pretrained side


def diverge(run: Path, epoch: int, step: int) -> None:
    """Make `run` what rdx.pipeline.loop.diverged writes: the epochs before `epoch` in
    metrics.jsonl, a summary with its settings and no figures, status completed."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    kept = [x for x in lines if x["epoch"] < epoch - 1]
    kept.append({"kind": "diverged", "epoch": epoch - 1, "step": step, "error": "loss nan"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kept))
    summ = json.loads((run / "summary.json").read_text())
    figures = {k: None for k in summ if k in ("acc", "reward", "acc_plus_reward") or "/" in k}
    where = {"diverged_epoch": epoch, "diverged_step": step}
    (run / "summary.json").write_text(json.dumps({**summ, **figures, **where}))
    status = {"state": "completed", "ended": None, "diverged": {"epoch": epoch, "step": step}}
    (run / "status.json").write_text(json.dumps(status))


# N/A rises everywhere but diverges in 4 runs: every seed of negative, seed 0 of positive.
DIVERGED = [("negative", 0), ("negative", 1), ("negative", 2), ("positive", 0)]


@pytest.fixture
def diverged_runs(tmp_path):
    curve_runs(tmp_path, {("random", "none", None): rise, ("random", "quantile", 0.8): rise})
    for attribute, seed in DIVERGED:
        diverge(tmp_path / f"random/{attribute}-{seed}-none", epoch=6, step=5 * 8 + seed + 1)
    return tmp_path


def test_collect_keeps_a_diverged_run_as_a_row(diverged_runs):
    done, incomplete = collect_local(diverged_runs)
    assert incomplete.empty and len(done) == 36
    row = done[done["run_dir"] == "random/negative-1-none"].iloc[0]
    assert (row["diverged_epoch"], row["diverged_step"]) == (6, 42)
    assert pd.isna(row["acc_plus_reward"]) and pd.isna(row["eval/reward"])
    assert done["diverged_epoch"].notna().sum() == 4


def test_the_claims_count_a_diverged_run_as_a_collapse(diverged_runs):
    rows = by_claim(run_claims(diverged_runs))
    at = " (init=random)"
    joint = rows[
        (
            "Fig. 3a: N/A collapses more often than quantile γ=0.8, a diverged run a collapse: "
            f"share(N/A) − share(quantile){at}",
            "train/acc and train/reward both fall, or diverged",
        )
    ]
    # The rising runs never fall: the 4 diverged ones are N/A's only collapses.
    assert joint.effect == pytest.approx(4 / 18) and len(joint.diffs) == 18
    assert joint.note == "N/A 4/18 (4 diverged); quantile 0/18 (0 diverged)"
    count = rows[
        (
            f"Fig. 3a: runs that diverged (a non-finite loss or gradient): share(N/A) − "
            f"share(quantile γ=0.8){at}",
            "diverged",
        )
    ]
    assert count.effect == pytest.approx(4 / 18) and count.n_clusters == 6
    assert count.note == (
        "N/A 4/18: negative seed 0 at epoch 6 step 41, negative seed 1 at epoch 6 step 42, "
        "negative seed 2 at epoch 6 step 43 and 1 more; quantile 0/18"
    )
    # A diverged run has no last epoch: the fall rows measure the other 14 N/A runs.
    fall = rows[(FIG3A_NA, "train/acc: best of first half − last epoch")]
    assert len(fall.diffs) == 14


def test_a_table_shows_a_diverged_run_in_its_cell_and_counts_it(diverged_runs, tmp_path_factory):
    from analysis import collect, tables

    out = tmp_path_factory.mktemp("out")
    csv = out / "runs.csv"
    assert collect.main(["--runs", str(diverged_runs), "--out", str(csv)]) == 0
    assert tables.main(["--csv", str(csv), "--out", str(out)]) == 0
    md = (out / "table1.md").read_text()
    na = next(line for line in md.splitlines() if line.startswith("| N/A"))
    cells = [c.strip() for c in na.strip("|").split("|")]
    negative, positive = (c.strip("*") for c in cells[2:4])  # bold: ties with quantile
    assert negative == "diverged (3/3)"  # every seed diverged: shown, not missing
    # positive: the mean of seeds 1 and 2 only (0.6 each), seed 0 counted as diverged
    assert positive == "0.600 ± 0.000 (1/3 diverged)"
    assert "Diverged runs: 4, in N/A – Negative: 3/3; N/A – Positive: 1/3" in md
    assert "k/n diverged: runs whose training went non-finite" in md
    assert "diverged (3/3)" in (out / "table1.tex").read_text()


def test_the_scale_mode_sweeps_three_sizes_of_steps_per_epoch(tmp_path):
    """scripts/reproduce-cpu scale: one sweep per size (8, 32, 128 steps of 16 per epoch),
    each Yelp × {N/A, quantile 0.95} × 3 seeds at random init, in fig3_authors' regime."""
    from tests.cli.test_sweeps import job_config, sweep_jobs

    repo = Path(__file__).resolve().parents[2]
    yelp = tmp_path / "data" / "yelp"  # the pre-launch check wants the files to exist
    yelp.mkdir(parents=True)
    for k in (0, 1):
        (yelp / f"sentiment.train.{k}").write_text("a sentence\n")
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHON": "echo", "DATA": str(tmp_path / "data")}  # print commands
    proc = subprocess.run([repo / "scripts" / "reproduce-cpu", "scale", str(out)],
                          env=env, capture_output=True, text=True, check=True)  # fmt: skip
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line, steps in zip(lines, (8, 32, 128), strict=True):
        args = line.split()[3:]  # after "-m rdx.train -m"
        sweep_dir = f"hydra.sweep.dir={out}/yelp-scale{steps}-random-negative+positive"
        assert args[-1] == sweep_dir
        jobs = sweep_jobs("fig3_authors", *args[:-1])
        assert len(jobs) == 2 * 2 * 3  # attributes × arms × seeds
        arms = {next(o for o in job if o.startswith("+sweeps/arm=")) for job in jobs}
        assert arms == {"+sweeps/arm=none", "+sweeps/arm=quantile-0.95"}
        cfg = job_config(*next(job for job in jobs if "+sweeps/arm=quantile-0.95" in job))
        assert cfg.sampling.num_prefixes // cfg.trainer.batch_size == steps
        assert (cfg.model.init, cfg.dataset.name, cfg.trainer.epochs) == ("random", "yelp", 20)
        assert (cfg.sampling.online, cfg.eval.greedy, cfg.gamma) == (True, "plain", 0.95)
