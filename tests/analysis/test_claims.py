"""analysis.claims: verdicts on runs built with a known, a null and a reversed effect.

Every fixture is a tidy CSV or run dirs written by hand (summary.json, status.json,
metrics.jsonl), so each effect below is known exactly: the per-unit noise sums to zero, and
the effect is the planted shift.
"""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import claims, inference, runs
from analysis.collect import collect_local

ATTRIBUTES = ["positive", "world"]
SEEDS = [0, 1, 2]
# Per-(attribute, seed) noise, summing to 0 so that a planted shift is the exact mean effect.
NOISE = dict(
    zip(
        [(a, s) for a in ATTRIBUTES for s in SEEDS],
        [0.01, -0.01, 0.02, -0.02, 0.005, -0.005],
        strict=True,
    )
)


def summary(attribute, seed, dropout, gamma, value, **axes):
    """A run's summary: acc_plus_reward = value; held-out acc + reward = value + 0.1."""
    return {
        "dataset": "synthetic",
        "attribute": attribute,
        "model": "tiny",
        "behavior": "tiny",
        "reward_model": "tiny",
        "init": "random",
        "dropout": dropout,
        "gamma": gamma,
        "delta": None,
        "seed": seed,
        "epochs": 3,
        "lr": 5e-4,
        "sweep": "t",
        "acc": value / 2,
        "reward": value / 2,
        "acc_plus_reward": value,
        "eval/acc": 0.1,
        "eval/reward": value,
        "eval/likelihood": 1 + value,
        "eval/bleu": value / 10,
        "eval/meteor": value / 10,
        "eval/rouge1": 1 - value,
        "eval/rouge2": 0.5 - value,
        "eval/rougeL": 1 - value,
        **axes,
    }


def write_run(root: Path, rel: str, summ: dict, curve: list[float] | None = None, ended=None):
    """A completed run dir; `curve` gives every objective's value per epoch."""
    run = root / rel
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summ))
    status = {"state": "completed", "started": ended, "ended": ended}
    (run / "status.json").write_text(json.dumps(status))
    lines = []
    for epoch, v in enumerate(curve or []):
        keys = ("train/acc", "train/reward", "eval/likelihood", "eval/reward")
        lines.append({"kind": "epoch", "epoch": epoch, **{k: v for k in keys}})
        lines.append({"kind": "step", "epoch": epoch, "train/acc": 99.0})  # never read
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def final_runs(root: Path, shift: float) -> None:
    """N/A at 0.6 + noise; quantile 0.8 at N/A + shift; quantile 0.2 at N/A + shift / 2;
    random 0.8 at N/A − shift (so "random does not help" mirrors "quantile beats N/A")."""
    arms = [("none", None, 0.0), ("quantile", 0.8, shift), ("quantile", 0.2, shift / 2),
            ("random", 0.8, -shift)]  # fmt: skip
    for (attribute, seed), noise in NOISE.items():
        for dropout, gamma, delta in arms:
            # Noise only on N/A: every difference is shift + noise, whose mean is the shift.
            value = 0.6 + delta + (noise if dropout == "none" else 0.0)
            name = f"{attribute}-{seed}-{dropout}-{gamma}"
            # each (attribute, seed) its own draw of β's samples: 6 clusters, as many as
            # the sign-flip test needs to reach p < 0.05 (2 / 2^6 = 0.031)
            summ = summary(attribute, seed, dropout, gamma, value, sample_set=seed)
            write_run(root, name, summ)


RANDOM_NS = "random γ=0.8 does not help: random − N/A < 0.02 (non-superiority)"


def by_claim(blocks: list[claims.Block]) -> dict[tuple[str, str], claims.Row]:
    return {(row.claim, row.metric): row for block in blocks for row in block.rows}


def run_claims(root: Path) -> list[claims.Block]:
    """What `python -m analysis.claims --runs root` evaluates, as Block objects."""
    done, _ = collect_local(root)
    recs = runs.records(done, str(root)) if len(done) else []
    return claims.evaluate(recs, claims.Curves(root))


# ---------------------------------------------------------------- statistics


def test_verdict_rule():
    assert claims.verdict(0.01, 0.2, 1, 6) == "holds"
    assert claims.verdict(0.01, 0.2, -1, 6) == "does not hold"
    assert claims.verdict(-0.2, -0.01, -1, 6) == "holds"
    assert claims.verdict(-0.2, -0.01, 1, 6) == "does not hold"
    assert claims.verdict(-0.1, 0.1, 1, 6) == "inconclusive"
    assert claims.verdict(0.0, 0.1, 1, 6) == "inconclusive"  # 0 inside the CI
    assert claims.verdict(math.nan, math.nan, 1, 1) == "inconclusive"
    assert claims.verdict(math.nan, math.nan, 1, 0) == "no runs"


def test_bootstrap_is_seeded_and_brackets_the_mean():
    diffs = [0.19, 0.21, 0.22, 0.18, 0.205, 0.195]
    lo, hi = claims.bootstrap_ci(diffs, seed=0)
    assert (lo, hi) == claims.bootstrap_ci(diffs, seed=0)
    # Resample means of these six values lie within [min, max] and around 0.2.
    assert 0.18 <= lo < 0.2 < hi <= 0.22
    assert claims.bootstrap_ci([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))


# ---------------------------------------------------------------- final-metric claims


@pytest.mark.parametrize(
    ("shift", "expect", "random_expect"),
    [
        (0.2, "holds", "holds"),  # quantile better; random worse: "does not help" holds
        # No effect: six clusters' t(5) interval (±0.015) lies below the 0.02 margin.
        (0.0, "inconclusive", "holds"),
        (-0.2, "does not hold", "does not hold"),
    ],
)
def test_final_claims_verdicts(tmp_path, shift, expect, random_expect):
    final_runs(tmp_path, shift)
    rows = by_claim(run_claims(tmp_path))
    for metric in ("acc_plus_reward", "eval/acc + eval/reward"):
        q = rows[("quantile γ=0.8 beats N/A", metric)]
        assert q.effect == pytest.approx(shift) and len(q.diffs) == 6
        assert q.verdict == expect
        assert q.lo <= shift <= q.hi
        r = rows[(RANDOM_NS, metric)]
        assert r.effect == pytest.approx(-shift) and r.verdict == random_expect
        gamma = rows[("higher γ helps: quantile γ=0.8 − γ=0.2 > 0", metric)]
        # quantile 0.8 − 0.2 is exactly shift / 2 on every unit: the CI is a point.
        assert gamma.effect == pytest.approx(shift / 2)
        assert gamma.verdict == ("inconclusive" if shift == 0 else expect)
        qr = rows[("quantile γ=0.8 beats random γ=0.8", metric)]
        assert qr.effect == pytest.approx(2 * shift)
    # Acc+Reward's gain split into the two objectives: acc and reward are value / 2 each.
    for key, effect in (("acc", shift / 2), ("reward", shift / 2), ("eval/likelihood", shift)):
        row = rows[("quantile γ=0.8 raises both, vs N/A", key)]
        assert row.effect == pytest.approx(effect) and row.verdict == expect
    for what, key, effect in (("ROUGE-1 down", "eval/rouge1", -shift),
                              ("ROUGE-2 down", "eval/rouge2", -shift),
                              ("METEOR up", "eval/meteor", shift / 10)):  # fmt: skip
        row = rows[(f"Tables 3/4: {what}, quantile γ=0.8 − N/A", key)]
        assert row.effect == pytest.approx(effect) and row.verdict == expect
    bleu = rows[("Tables 3/4: BLEU up, quantile γ=0.8 − N/A", "eval/bleu")]
    rouge = rows[("Tables 3/4: ROUGE-L down, quantile γ=0.8 − N/A", "eval/rougeL")]
    assert bleu.effect == pytest.approx(shift / 10) and bleu.verdict == expect
    # ROUGE-L is 1 − value: it goes down exactly when the value goes up, as claimed.
    assert rouge.effect == pytest.approx(-shift) and rouge.verdict == expect
    assert rouge.data == "held-out"


def test_absent_arms_print_no_runs(tmp_path, capsys):
    for attribute, seed in NOISE:
        write_run(tmp_path, f"{attribute}-{seed}", summary(attribute, seed, "none", None, 0.6))
    assert claims.main(["--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = by_claim(run_claims(tmp_path))
    assert rows[("quantile beats N/A", "acc_plus_reward")].verdict == "no runs"
    assert (
        rows[("higher γ helps: quantile γmax − γmin > 0", "acc_plus_reward")].verdict == "no runs"
    )
    assert "| quantile beats N/A" in out and "no runs" in out and "| holds" not in out


def test_empty_runs_dir_lists_every_claim_as_no_runs(tmp_path, capsys):
    assert claims.main(["--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Runs: no completed runs" in out
    body = [line for line in out.splitlines() if line.startswith("| ") and "claim" not in line]
    assert body and all(line.rstrip(" |").endswith("no runs") for line in body)


def test_needs_runs_or_csv(capsys):
    assert claims.main([]) == 2
    assert capsys.readouterr().err == "claims: error: give --runs DIR and/or --csv FILE\n"


# ---------------------------------------------------------------- statistics: clusters


def test_clustered_bootstrap_resamples_attributes_not_seeds():
    # Two attributes, ten seeds each: every seed of one attribute at 1, of the other at 3.
    diffs = [1.0] * 10 + [3.0] * 10
    cells = [("d", "a")] * 10 + [("d", "b")] * 10
    # Resampling the two clusters gives means 1, 2 or 3 (p = 1/4, 1/2, 1/4): sd sqrt(0.5),
    # times sqrt(2 / 1) = 1.0 = SE; t(1) at 97.5 % is 12.706: CI 2 ± 12.7, nothing shown.
    lo, hi = claims.bootstrap_ci(diffs, cells)
    assert lo == pytest.approx(2 - 12.706, rel=0.03) and hi == pytest.approx(2 + 12.706, rel=0.03)
    # The 20 pairs as if independent: SE = 1 / sqrt(20) · sqrt(20 / 19) = 0.229, t(19) = 2.093.
    lo, hi = claims.bootstrap_ci(diffs)
    assert lo == pytest.approx(2 - 0.480, abs=0.02) and hi == pytest.approx(2 + 0.480, abs=0.02)
    # One cluster of its own per pair is the plain pairs bootstrap, draw for draw.
    assert claims.bootstrap_ci(diffs, list(range(20))) == (lo, hi)


def test_one_cluster_is_inconclusive_however_many_seeds():
    seeds = [("synthetic", "positive", 0, s) for s in range(8)]
    row = claims.Row("c", "m", "d", 1, [0.2 + 0.01 * s for s in range(8)], seeds)
    assert claims.judge(row).verdict == "inconclusive" and row.n_clusters == 1
    assert math.isnan(row.lo) and row.effect == pytest.approx(0.235)
    unclustered = claims.Row("c", "m", "d", 1, list(row.diffs), seeds)
    assert claims.judge(unclustered, cluster="unit").verdict == "holds"
    assert unclustered.n_clusters == 8


def test_non_superiority_rule():
    assert inference.non_superiority(-0.05, 0.019, 0.02, 6, 3) == "holds"
    assert inference.non_superiority(0.001, 0.019, 0.02, 6, 3) == "holds"  # small help, < margin
    assert inference.non_superiority(-0.05, 0.03, 0.02, 6, 3) == "inconclusive"
    assert inference.non_superiority(0.02, 0.09, 0.02, 6, 3) == "does not hold"
    assert inference.non_superiority(-0.05, 0.0, 0.02, 6, 1) == "inconclusive"  # one cluster
    assert inference.non_superiority(math.nan, math.nan, 0.02, 0, 0) == "no runs"


# ---------------------------------------------------------------- degeneration (Fig. 3a)

EPOCHS = 10
# The paper's grid: six attributes (the clusters) × three seeds.
CELLS = [("synthetic", a, s) for a in runs.ATTRIBUTES for s in (0, 1, 2)]


def rise_then_collapse(rng):
    """Accuracy peaks at epoch 3 (0.8) and ends near 0, as the paper's N/A curves."""
    base = [0.2, 0.45, 0.7, 0.8, 0.7, 0.5, 0.3, 0.15, 0.08, 0.05]
    return {e: v + rng.normal(0, 0.02) for e, v in enumerate(base)}


def monotone_rise(rng):
    return {e: 0.2 + 0.05 * e + rng.normal(0, 0.02) for e in range(EPOCHS)}


def flat_noise(rng):
    return {e: 0.5 + rng.normal(0, 0.05) for e in range(EPOCHS)}


def degeneration_verdict(shape, seed):
    rng = np.random.default_rng(seed)
    fell = inference.falls({u: shape(rng) for u in CELLS})
    row = claims.Row("N/A degenerates", "m", "d", 1, [fell[u] for u in CELLS], CELLS)
    return claims.judge(row).verdict


def test_first_half_of_training():
    assert inference.first_half(range(20)) == list(range(10))
    assert inference.first_half([0, 1, 2]) == [0, 1]
    assert inference.first_half([4, 5]) == [4]


def test_falls_on_hand_computed_curves():
    # The others' mean curve peaks at epoch 1 (of the first half 0..1): run a's fall is
    # its epoch-1 value 0.9 − its last 0.1 = 0.8, although its own first-half best is epoch 0.
    curves = {
        "a": {0: 1.0, 1: 0.9, 2: 0.5, 3: 0.1},
        "b": {0: 0.2, 1: 0.6, 2: 0.4, 3: 0.3},
        "c": {0: 0.2, 1: 0.8, 2: 0.4, 3: 0.9},
    }
    fell = inference.falls(curves)
    # b: others' mean at 0 is 0.6, at 1 is 0.85 -> epoch 1: 0.6 − 0.3; c: 0.6 vs 0.75 -> 1.
    assert fell == {"a": pytest.approx(0.8), "b": pytest.approx(0.3), "c": pytest.approx(-0.1)}
    assert inference.falls({"lone": {0: 0.3, 1: 0.7, 2: 0.1}}) == {"lone": pytest.approx(0.6)}
    assert inference.falls({"short": {0: 0.3}}) == {}


@pytest.mark.parametrize(
    ("shape", "expect"),
    [(rise_then_collapse, "holds"), (monotone_rise, "does not hold")],
)
def test_degeneration_rule_on_synthetic_curves(shape, expect):
    assert degeneration_verdict(shape, seed=0) == expect


def test_flat_noise_is_inconclusive_where_a_per_run_peak_would_fall():
    # 20 independent fixtures of flat noise: the rule reads inconclusive on nearly all
    # (a 95 % CI; two-sided false verdicts ~5 %), while each run's own first-half maximum
    # minus its last epoch is positive on average: the bias the leave-one-out peak removes.
    verdicts = [degeneration_verdict(flat_noise, seed) for seed in range(20)]
    assert verdicts.count("inconclusive") >= 17, verdicts
    rng = np.random.default_rng(0)
    naive = [max(c[e] for e in range(5)) - c[EPOCHS - 1] for c in (flat_noise(rng) for _ in CELLS)]
    assert np.mean(naive) > 0.03


def curve_runs(root: Path, shapes: dict[tuple[str, str, float | None], Any], trace=None):
    """Runs of every CELL for each (init, dropout, γ) -> shape(rng, attribute); every
    objective follows the shape; `trace` (π̄ of the probe batch per epoch) for quantile."""
    rng = np.random.default_rng(0)
    for (init, dropout, gamma), shape in shapes.items():
        for dataset, attribute, seed in CELLS:
            curve = shape(rng, attribute)
            run = write_run(
                root,
                f"{init}/{attribute}-{seed}-{dropout}",
                summary(attribute, seed, dropout, gamma, 0.6, init=init, dataset=dataset),
                [curve[e] for e in range(EPOCHS)],
            )
            if trace is not None and dropout == "quantile":
                lines = [{"epoch": e, "keep": [True, False, False], "pi_mean": trace(e),
                          "r_hat": [1.0, 0.0, 0.0]} for e in range(3)]  # fmt: skip
                (run / "trace.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def collapse(rng, attribute):
    return rise_then_collapse(rng)


def rise(rng, attribute):
    return monotone_rise(rng)


def collapse_if_negative(rng, attribute):
    return rise_then_collapse(rng) if attribute == "negative" else monotone_rise(rng)


FIG3A_NA = "Fig. 3a: N/A degenerates: last epoch below the first half's best (init=random)"
FIG3A_Q = "Fig. 3a: quantile γ=0.8 falls less than N/A: N/A's fall − quantile's (init=random)"
FIG3B = (
    "Fig. 3b: N/A's joint degeneration is less frequent at init=behavior than at init=random: "
    "share(random) − share(pretrained)"
)
OBJECTIVES = ["train/acc", "train/reward", "eval/likelihood", "eval/reward"]
FALL = "{}: best of first half − last epoch"


def test_fig3_claims_as_the_paper_states_them(tmp_path):
    # The paper's Fig. 3: N/A rises then collapses, quantile keeps rising; under the
    # pretrained init N/A still collapses on negative only (seeds 3/3), rises elsewhere.
    curve_runs(
        tmp_path,
        {
            ("random", "none", None): collapse,
            ("random", "quantile", 0.8): rise,
            ("behavior", "none", None): collapse_if_negative,
            ("behavior", "quantile", 0.8): rise,
        },  # fmt: skip
        trace=lambda e: [0.1 + 0.1 * e, 0.05 + 0.02 * e, 0.05 + 0.04 * e],
    )
    (block,) = run_claims(tmp_path)
    rows = by_claim([block])
    for key in OBJECTIVES:
        na, q = rows[(FIG3A_NA, FALL.format(key))], rows[(FIG3A_Q, FALL.format(key))]
        # best of the first half ≈ 0.8 (epoch 3), last ≈ 0.05: a fall of about 0.75.
        assert na.effect == pytest.approx(0.75, abs=0.03) and na.verdict == "holds"
        assert len(na.diffs) == 18 and na.n_clusters == 6
        # quantile's "fall" is 0.4 − 0.65 = −0.25 (it rose): the contrast is ≈ 1.0.
        assert q.effect == pytest.approx(1.0, abs=0.03) and q.verdict == "holds"
        pre = rows[(FIG3A_NA.replace("random", "behavior"), FALL.format(key))]
        assert pre.verdict == "inconclusive"  # 1 attribute of 6 collapses
    for data, pair in (("train batches", "train/acc and train/reward"),
                       ("held-out", "eval/likelihood and eval/reward")):  # fmt: skip
        row = rows[(FIG3B, f"{pair} both fall")]
        # Joint degeneration: every random-init unit, 3 of 18 pretrained ones: 1 − 1/6.
        assert row.effect == pytest.approx(5 / 6) and row.data == data
        # 5 clusters at +1 and negative's at 0: 4 of the 64 sign patterns reach 5/6 (the 5
        # all + or all −, either sign on the 0), p = 0.0625: the sixth cluster carries no
        # sign, so the effect rests on 5 clusters, too few for p < 0.05.
        assert row.p == pytest.approx(4 / 64) and row.n_positive == 5
        assert row.verdict == "inconclusive"
        assert row.note == "still at init=behavior: negative 3/3"
    # Appendix D: drop-out samples' π̄ rises by (0.04 + 0.08) / 2 over two traced epochs.
    metric = "π̄ of the probe batch: last − first traced epoch"
    drop_out = rows[
        ("Appendix D: π̄ of drop-out samples rises, quantile γ=0.8 (init=random)", metric)
    ]
    drop_in = rows[("Appendix D: π̄ of drop-in samples rises, quantile γ=0.8 (init=random)", metric)]
    assert drop_out.effect == pytest.approx(0.06) and drop_out.verdict == "holds"
    assert drop_in.effect == pytest.approx(0.2)


def test_cli_markdown_reproducible_and_csv_needs_runs_for_epochs(tmp_path, capsys):
    from analysis import collect

    runs, out = tmp_path / "runs", tmp_path / "docs" / "claims.md"
    curve_runs(runs, {("random", "none", None): collapse, ("random", "quantile", 0.8): rise})
    assert claims.main(["--runs", str(runs), "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert out.read_text() == first.out  # the same Markdown on stdout and in --out
    assert f"claims: wrote {out}" in first.err
    assert "resampling (dataset, attribute, sample set) clusters" in first.out
    line = next(x for x in first.out.splitlines() if x.startswith(f"| {FIG3A_NA}"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == [FALL.format("train/acc"), "train batches", cells[3]]
    # n, clusters, the sign-flip p (the smallest of 6 clusters: 2 / 64), signs, verdict, note
    assert cells[5:] == ["18", "6", "0.031", "6/6 +", "holds", ""]
    assert cells[4].startswith("[+0.7") and cells[4].endswith("]")
    assert claims.main(["--runs", str(runs)]) == 0
    assert capsys.readouterr().out == first.out  # seeded bootstrap: identical output
    assert claims.main(["--runs", str(runs), "--cluster", "unit"]) == 0
    unit_out = capsys.readouterr().out
    assert "resampling the pairs (unclustered)" in unit_out
    line = next(x for x in unit_out.splitlines() if x.startswith(f"| {FIG3A_NA}"))
    assert [c.strip() for c in line.strip("|").split("|")][5:7] == ["18", "18"]

    # From the CSV with the runs root: the same table; without it, no per-epoch values.
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    capsys.readouterr()
    assert claims.main(["--csv", str(csv), "--runs", str(runs)]) == 0
    assert capsys.readouterr().out == first.out
    assert claims.main(["--csv", str(csv)]) == 0
    got = capsys.readouterr()
    rows = [x for x in got.out.splitlines() if x.startswith(f"| {FIG3A_NA}")]
    assert rows and all("no runs" in x for x in rows)
    assert "(per-epoch claims need --runs)" in got.err


def test_table2_rows_one_per_model(tmp_path):
    for model, shift in (("tiny", 0.2), ("gpt2", 0.0)):
        for (attribute, seed), noise in NOISE.items():
            for dropout, gamma, value in (
                ("none", None, 0.6 + noise),
                ("quantile", 0.8, 0.6 + shift),
            ):
                write_run(tmp_path, f"{model}/{attribute}-{seed}-{dropout}",
                          summary(attribute, seed, dropout, gamma, value, model=model,
                                  sample_set=seed))  # fmt: skip
    blocks = run_claims(tmp_path)
    (t2,) = [b for b in blocks if b.context.startswith("Table 2")]
    rows = {(r.claim, r.metric): r for r in t2.rows}
    tiny = rows[("Table 2: quantile γ=0.8 beats N/A at model=tiny", "acc_plus_reward")]
    gpt2 = rows[("Table 2: quantile γ=0.8 beats N/A at model=gpt2", "acc_plus_reward")]
    assert tiny.effect == pytest.approx(0.2) and tiny.verdict == "holds"
    assert gpt2.effect == pytest.approx(0.0, abs=1e-12) and gpt2.verdict == "inconclusive"
    assert len(t2.rows) == 4  # two models × (train, held-out)


# ---------------------------------------------------------------- no silent pooling


def test_runs_differing_in_a_config_axis_are_separate_blocks(tmp_path):
    # The same cells and seeds under two sampling regimes: two blocks, each named, never
    # pooled (pooled, every seed would have two runs).
    for eos, shift in ((True, 0.0), (False, 0.2)):
        for (attribute, seed), noise in NOISE.items():
            for dropout, gamma, value in (
                ("none", None, 0.6 + noise),
                ("quantile", 0.8, 0.6 + shift),
            ):
                write_run(
                    tmp_path,
                    f"eos{eos}/{attribute}-{seed}-{dropout}",
                    summary(
                        attribute, seed, dropout, gamma, value, sample_set=seed,
                        **{"sampling.stop_at_eos": eos},
                    ),
                )
    blocks = run_claims(tmp_path)
    assert len(blocks) == 2
    verdicts = {
        b.context.split("sampling.stop_at_eos=")[1].split(",")[0]: {
            (r.claim, r.metric): r.verdict for r in b.rows
        }
        for b in blocks
    }
    key = ("quantile γ=0.8 beats N/A", "acc_plus_reward")
    assert verdicts["True"][key] == "inconclusive" and verdicts["False"][key] == "holds"


def test_two_runs_of_one_unit_are_refused_not_pooled(tmp_path, capsys):
    rec = summary("positive", 0, "none", None, 0.6, run_dir="a")
    with pytest.raises(runs.RunsError, match=r"two runs of one arm and unit .* a, b"):
        claims.values([rec, {**rec, "run_dir": "b"}], lambda r: r["acc_plus_reward"])
    # The same run twice under the CLI: the duplicates rule decides, in one line.
    for name, ended in (("old", "2026-11-29T10:00:00+00:00"), ("new", "2026-11-30T10:00:00+00:00")):
        write_run(tmp_path, name, summary("positive", 0, "none", None, 0.6), ended=ended)
    assert claims.main(["--runs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("claims: error: duplicated cell: ")
    assert claims.main(["--runs", str(tmp_path), "--duplicates", "latest"]) == 0
    assert "left out 1 older duplicate run(s), e.g. old (kept new)" in capsys.readouterr().err


def test_random_with_and_without_replacement_are_two_arms(tmp_path):
    # rdx records random_replacement on every run (false on N/A); only random runs use it.
    arms = [("none", None, False, 0.0), ("random", 0.8, False, -0.2), ("random", 0.8, True, 0.0),
            ("quantile", 0.8, False, 0.2)]  # fmt: skip
    for attribute, seed in NOISE:
        for dropout, gamma, repl, shift in arms:
            extra = {"random_replacement": repl, "stop_at_eos": False, "top_k": 0}
            write_run(
                tmp_path,
                f"{attribute}-{seed}-{dropout}-{repl}",
                summary(attribute, seed, dropout, gamma, 0.6 + shift, sample_set=seed, **extra),
            )
    (block,) = run_claims(tmp_path)  # one block: the option splits arms, not the grid
    rows = {(r.claim, r.metric): r for r in block.rows}
    exact = rows[(RANDOM_NS, "acc_plus_reward")]
    repl = rows[(RANDOM_NS.replace("random", "random (with replacement)", 1), "acc_plus_reward")]
    assert exact.effect == pytest.approx(-0.2) and len(exact.diffs) == 6
    assert repl.effect == pytest.approx(0.0) and len(repl.diffs) == 6
    assert (
        rows[("quantile γ=0.8 beats random (with replacement) γ=0.8", "acc_plus_reward")].verdict
        == "holds"
    )
    assert "top_k=0" not in block.context  # a setting shared by all runs is not named


def test_task_clusters_join_the_attributes_of_a_task():
    units = [("synthetic", a, 0, 0) for a in ("negative", "positive", "world", "sport")]
    assert {claims.cluster_of(u, "task") for u in units} == {
        ("synthetic", "sentiment", 0),
        ("synthetic", "topic", 0),
    }
    row = claims.judge(claims.Row("c", "m", "d", 1, [0.2, 0.2, 0.3, 0.3], units), cluster="task")
    assert row.n_clusters == 2 and row.effect == pytest.approx(0.25)
    # Two clusters at 0.2 and 0.3: SE = 0.05 · sqrt(2) / sqrt(2) = 0.05, t(1) = 12.706.
    assert row.hi - row.lo == pytest.approx(2 * 12.706 * 0.05, rel=0.03)


def test_judged_runs_repeat_the_held_out_rows_on_the_judge(tmp_path):
    """eval.judge's runs: quantile − N/A again on eval/acc + eval/judge_reward, where the
    judge here sees half of R's gain (it was not trained on by π)."""
    for (attribute, seed), noise in NOISE.items():
        for dropout, gamma, value in (("none", None, 0.6 + noise), ("quantile", 0.8, 0.8)):
            judge = {"eval/judge_reward": 0.5 + (value - 0.6) / 2}
            summ = summary(attribute, seed, dropout, gamma, value, sample_set=seed, **judge)
            write_run(tmp_path, f"{attribute}-{seed}-{dropout}", summ)
    rows = by_claim(run_claims(tmp_path))
    judged = rows[("quantile γ=0.8 beats N/A", "eval/acc + eval/judge_reward")]
    assert judged.data == "held-out, judged" and judged.effect == pytest.approx(0.1)
    assert judged.verdict == "holds" and (judged.n_clusters, judged.n_positive) == (6, 6)
    assert rows[("quantile γ=0.8 beats N/A", "eval/acc + eval/reward")].effect == pytest.approx(0.2)


# ---------------------------------------------------------------- issue 30 §3: more claims

SECTION_74 = (
    "§7.4: quantile γ=0.8 − N/A is larger at init=random than at init=behavior: "
    "gain(random) − gain(pretrained)"
)


@pytest.mark.parametrize(
    ("gain_random", "gain_behavior", "expect"),
    [(0.3, 0.1, "holds"), (0.2, 0.2, "inconclusive"), (0.1, 0.3, "does not hold")],
)
def test_non_pretrained_targets_gain_more(tmp_path, gain_random, gain_behavior, expect):
    # quantile − N/A is gain_random at init=random (noise on that N/A only) and gain_behavior
    # at init=behavior, so a unit's contrast is gain_random − gain_behavior − noise: its mean
    # is the planted difference (the noise sums to 0). Planted ±0.2 beats every |noise| ≤ 0.02:
    # 6/6 clusters of one sign, p = 2 / 64 = 0.031. Null: the contrast is −noise, 3 clusters
    # each way and a mean of exactly 0, so every sign pattern is as extreme: p = 1.
    for init, gain in (("random", gain_random), ("behavior", gain_behavior)):
        for (attribute, seed), noise in NOISE.items():
            for dropout, gamma, value in (
                ("none", None, 0.6 + (noise if init == "random" else 0.0)),
                ("quantile", 0.8, 0.6 + gain),
            ):
                summ = summary(attribute, seed, dropout, gamma, value, init=init, sample_set=seed)
                write_run(tmp_path, f"{init}/{attribute}-{seed}-{dropout}", summ)
    (block,) = run_claims(tmp_path)  # both inits in one block
    rows = by_claim([block])
    effect = gain_random - gain_behavior
    for metric in ("acc_plus_reward", "eval/acc + eval/reward"):  # held-out: value + 0.1 each
        row = rows[(SECTION_74, metric)]
        assert len(row.diffs) == 6 and row.n_clusters == 6
        assert row.effect == pytest.approx(effect, abs=1e-12) and row.verdict == expect
        assert row.n_positive == {"holds": 6, "inconclusive": 3, "does not hold": 0}[expect]
        assert row.p == pytest.approx(1.0 if effect == 0 else 2 / 64)


LINEAR = {0.2: 0.7, 0.4: 0.8, 0.8: 1.0}  # slope 0.5 on every unit
PEAKED = {0.2: 0.6, 0.4: 0.9, 0.8: 0.65}  # 0.8 beats 0.2, yet the trend falls
FLAT = {0.2: 0.6, 0.4: 0.6, 0.8: 0.6}
TREND = "higher γ helps: slope of quantile's value on γ (γ=0.2, 0.4, 0.8) > 0"


@pytest.mark.parametrize(
    ("by_gamma", "slope", "expect", "pair_expect"),
    [
        (LINEAR, 0.5, "holds", "holds"),
        # γ's deviations from their mean 7/15 are (−4, −1, 5) / 15, Σ dev² = 42/225;
        # Σ dev·y = (−4 · 0.6 − 0.9 + 5 · 0.65) / 15 = −0.05/15, slope = −0.05 · 15/42.
        (PEAKED, -0.05 * 15 / 42, "does not hold", "holds"),
        (FLAT, 0.0, "inconclusive", "inconclusive"),
    ],
)
def test_higher_gamma_helps_as_a_trend(tmp_path, by_gamma, slope, expect, pair_expect):
    # A unit's noise is the same at each γ, so each unit's slope is the planted one. A 7th
    # unit (its own sample set) ran γ=0.2 and 0.8 only: in the 0.8 − 0.2 row, not the trend's.
    units = [(a, s, s, NOISE[(a, s)], (0.2, 0.4, 0.8)) for a, s in NOISE]
    units.append(("negative", 0, 9, 0.0, (0.2, 0.8)))
    for attribute, seed, sample_set, noise, present in units:
        for gamma in present:
            summ = summary(attribute, seed, "quantile", gamma, by_gamma[gamma] + noise,
                           sample_set=sample_set)  # fmt: skip
            write_run(tmp_path, f"{attribute}-{sample_set}-{gamma}", summ)
    rows = by_claim(run_claims(tmp_path))
    for metric in ("acc_plus_reward", "eval/acc + eval/reward"):
        row = rows[(TREND, f"{metric}: slope on γ")]
        assert row.effect == pytest.approx(slope, abs=1e-12) and len(row.diffs) == 6
        assert row.verdict == expect
        pair = rows[("higher γ helps: quantile γ=0.8 − γ=0.2 > 0", metric)]
        assert pair.effect == pytest.approx(by_gamma[0.8] - by_gamma[0.2]) and len(pair.diffs) == 7
        assert pair.verdict == pair_expect


def test_higher_gamma_trend_needs_three_gammas(tmp_path):
    for attribute, seed in NOISE:
        for gamma in (0.2, 0.8):
            summ = summary(attribute, seed, "quantile", gamma, LINEAR[gamma], sample_set=seed)
            write_run(tmp_path, f"{attribute}-{seed}-{gamma}", summ)
    rows = by_claim(run_claims(tmp_path))
    trend = rows[("higher γ helps: slope of quantile's value on γ (≥ 3 γ) > 0",
                  "acc_plus_reward: slope on γ")]  # fmt: skip
    assert trend.verdict == "no runs" and not trend.diffs
    pair = rows[("higher γ helps: quantile γ=0.8 − γ=0.2 > 0", "acc_plus_reward")]
    assert pair.verdict == "holds"


def write_curves(run: Path, likelihood: list[float], reward: list[float]) -> None:
    """metrics.jsonl with one curve for the likelihood objectives (train/acc,
    eval/likelihood) and another for the reward ones (train/reward, eval/reward)."""
    lines = [
        {"kind": "epoch", "epoch": e, "train/acc": lk, "eval/likelihood": lk,
         "train/reward": rw, "eval/reward": rw}  # fmt: skip
        for e, (lk, rw) in enumerate(zip(likelihood, reward, strict=True))
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


COLLAPSE = [0.2, 0.45, 0.7, 0.8, 0.7, 0.5, 0.3, 0.15, 0.08, 0.05]  # peak 0.8 at epoch 3
RISE = [0.2 + 0.05 * e for e in range(EPOCHS)]  # 0.2 ... 0.65
LEVEL = [0.5] * EPOCHS
Q_RISES = "Fig. 3a: quantile γ=0.8 raises both objectives: last − first epoch (init=random)"
JOINT = ("Fig. 3a: both objectives fall together more often under N/A than under quantile "
         "γ=0.8: share(N/A) − share(quantile) (init=random)")  # fmt: skip


@pytest.mark.parametrize(
    ("na", "q", "rise", "rise_expect", "joint", "joint_expect", "note"),
    [
        # The paper's Fig. 3a. quantile: last − first = 0.65 − 0.2 = 0.45. N/A's fall is
        # 0.8 − 0.05 = 0.75 on both objectives; quantile's 0.4 (epoch 4, the first half's
        # best) − 0.65 < 0: share 18/18 − 0/18 = 1, 6/6 attributes +, p = 2 / 64.
        ((COLLAPSE, COLLAPSE), (RISE, RISE), 0.45, "holds", 1.0, "holds", "18/18, quantile 0/18"),
        # Reversed: quantile ends 0.05 − 0.2 = −0.15 below its start and falls jointly.
        ((RISE, RISE), (COLLAPSE, COLLAPSE), -0.15, "does not hold", -1.0, "does not hold",
         "0/18, quantile 18/18"),
        # Null: quantile flat (0 change). N/A's likelihood collapses while its reward rises:
        # one objective falls, never both together, so 0/18 − 0/18 = 0.
        ((COLLAPSE, RISE), (LEVEL, LEVEL), 0.0, "inconclusive", 0.0, "inconclusive",
         "0/18, quantile 0/18"),
    ],  # fmt: skip
)
def test_quantile_raises_both_and_na_declines_jointly(
    tmp_path, na, q, rise, rise_expect, joint, joint_expect, note
):
    for dropout, gamma, curves in (("none", None, na), ("quantile", 0.8, q)):
        for dataset, attribute, seed in CELLS:  # 6 attributes (the clusters) × 3 seeds
            summ = summary(attribute, seed, dropout, gamma, 0.6, dataset=dataset)
            write_curves(write_run(tmp_path, f"{attribute}-{seed}-{dropout}", summ), *curves)
    rows = by_claim(run_claims(tmp_path))
    for key in OBJECTIVES:
        row = rows[(Q_RISES, f"{key}: last − first epoch")]
        assert row.effect == pytest.approx(rise, abs=1e-12) and len(row.diffs) == 18
        assert row.verdict == rise_expect
    for pair in ("train/acc and train/reward", "eval/likelihood and eval/reward"):
        row = rows[(JOINT, f"{pair} both fall")]
        assert row.effect == pytest.approx(joint) and row.n_clusters == 6
        assert row.verdict == joint_expect and row.note == f"both fell: N/A {note}"
    # The per-objective row still sees N/A's likelihood fall in the null case: the joint
    # row is what asks for both at once.
    na_acc = rows[(FIG3A_NA, FALL.format("train/acc"))]
    assert na_acc.verdict == ("holds" if na[0] is COLLAPSE else "does not hold")
    # One init only: the §7.4 contrast has no pretrained runs to compare with.
    assert rows[(SECTION_74.replace("γ=0.8 ", "").replace("behavior", "pretrained"),
                 "acc_plus_reward")].verdict == "no runs"  # fmt: skip


DROP_OUT_VS_NA = ("Appendix D: π̄ of quantile γ=0.8's drop-out samples rises more than N/A's "
                  "on the same samples")  # fmt: skip


def write_trace(run: Path, keep: list[bool], pi_mean) -> None:
    lines = [{"epoch": e, "keep": keep, "pi_mean": pi_mean(e), "r_hat": [0.0] * len(keep)}
             for e in range(3)]  # fmt: skip
    (run / "trace.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.mark.parametrize(
    ("na_slopes", "effect", "expect"),
    [
        # quantile's drop-outs (rows 1, 2) rise 0.02 · 2 and 0.04 · 2 over epochs 0..2: 0.06;
        # N/A's same rows 0.01 · 2 and 0.03 · 2: 0.04, so 0.06 − 0.04 = +0.02. N/A's row 0
        # (rises by 1.0) is not a drop-out sample: read, it would give 0.06 − 0.36.
        ((0.01, 0.03), 0.02, "holds"),
        ((0.02, 0.04), 0.0, "inconclusive"),  # N/A's drop-out rows rise as quantile's
        ((0.05, 0.05), -0.04, "does not hold"),  # 0.06 − 0.10
    ],
)
def test_appendix_d_against_na_on_the_same_samples(tmp_path, na_slopes, effect, expect):
    # 6 units with their own sample sets, and a 7th whose N/A run has no trace: left out.
    units = [(a, s, s) for a, s in NOISE] + [("negative", 0, 9)]
    a, b = na_slopes
    for attribute, seed, sample_set in units:
        for dropout, gamma in (("none", None), ("quantile", 0.8)):
            summ = summary(attribute, seed, dropout, gamma, 0.6, sample_set=sample_set)
            run = write_run(tmp_path, f"{attribute}-{sample_set}-{dropout}", summ)
            if dropout == "quantile":
                write_trace(run, [True, False, False], lambda e: [0.1 + 0.1 * e, 0.05 + 0.02 * e,
                                                                  0.05 + 0.04 * e])  # fmt: skip
            elif sample_set != 9:  # N/A keeps every sample
                write_trace(run, [True] * 3, lambda e: [0.1 + 0.5 * e, 0.05 + a * e, 0.05 + b * e])
    rows = by_claim(run_claims(tmp_path))
    row = rows[(DROP_OUT_VS_NA, "π̄ of the drop-out samples: last − first traced epoch, "
                "quantile − N/A")]  # fmt: skip
    assert row.data == "probe batch" and len(row.diffs) == 6
    assert row.effect == pytest.approx(effect, abs=1e-12) and row.verdict == expect
    # The quantile-only row beside it sees the rise of 0.06 whatever N/A did (7 units).
    alone = rows[("Appendix D: π̄ of drop-out samples rises, quantile γ=0.8",
                  "π̄ of the probe batch: last − first traced epoch")]  # fmt: skip
    assert alone.effect == pytest.approx(0.06) and len(alone.diffs) == 7
