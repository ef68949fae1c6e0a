"""analysis.claims: verdicts on runs built with a known, a null and a reversed effect.

Every fixture is a tidy CSV or run dirs written by hand (summary.json, status.json,
metrics.jsonl), so each effect below is known exactly: the per-unit noise sums to zero, and
the effect is the planted shift.
"""

import json
import math
from pathlib import Path

import pytest

from analysis import claims, runs
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
            write_run(root, name, summary(attribute, seed, dropout, gamma, value))


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
        (0.0, "inconclusive", "inconclusive"),
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
        r = rows[("random γ=0.8 does not help: random − N/A < 0", metric)]
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


# ---------------------------------------------------------------- by-epoch claims


def epoch_runs(root: Path, na: float, quantile: float, pretrained: float) -> None:
    """3-epoch curves of every objective: 0.5 + slope × epoch, the last epoch + noise.

    So a run's last − first epoch is 2 × slope + noise (noise negated for init=behavior),
    and the mean change of an arm is exactly 2 × its slope.
    """
    for (attribute, seed), noise in NOISE.items():
        for init, dropout, gamma, slope, sign in (
            ("random", "none", None, na, 1),
            ("random", "quantile", 0.8, quantile, 1),
            ("behavior", "none", None, pretrained, -1),
        ):
            curve = [0.5 + slope * e for e in range(3)]
            curve[-1] += sign * noise
            write_run(
                root,
                f"{init}/{attribute}-{seed}-{dropout}",
                summary(attribute, seed, dropout, gamma, 0.6, init=init),
                curve,
            )


FIG3A_NA = "Fig. 3a: without dropout both objectives decline (init=random)"
FIG3A_Q = "Fig. 3a: quantile γ=0.8 raises both (init=random)"
FIG3B = "Fig. 3b: init=behavior avoids the decline: N/A's change − init=random's"
OBJECTIVES = ["train/acc", "train/reward", "eval/likelihood", "eval/reward"]


@pytest.mark.parametrize(
    ("slopes", "expect"),
    [
        # N/A declines, quantile rises, a pretrained init stays flat: the paper's Fig. 3.
        ((-0.05, 0.05, 0.0), "holds"),
        ((0.0, 0.0, 0.0), "inconclusive"),
        # N/A rises, quantile declines, and the pretrained init declines more than random.
        ((0.05, -0.05, 0.0), "does not hold"),
    ],
)
def test_epoch_claims_verdicts(tmp_path, slopes, expect):
    na, quantile, pretrained = slopes
    epoch_runs(tmp_path, na, quantile, pretrained)
    blocks = run_claims(tmp_path)
    assert len(blocks) == 1  # init is compared, not a block of its own
    rows = by_claim(blocks)
    for key in OBJECTIVES:
        metric = f"{key}: last − first epoch"
        a, q, b = rows[(FIG3A_NA, metric)], rows[(FIG3A_Q, metric)], rows[(FIG3B, metric)]
        assert a.effect == pytest.approx(2 * na) and len(a.diffs) == 6
        assert q.effect == pytest.approx(2 * quantile)
        assert b.effect == pytest.approx(2 * (pretrained - na)) and len(b.diffs) == 6
        assert a.verdict == q.verdict == b.verdict == expect, key
        assert a.data == ("train batches" if key.startswith("train/") else "held-out")
    # The final-metric claims are made per init: the init is named in each claim.
    assert rows[("quantile γ=0.8 beats N/A (init=random)", "acc_plus_reward")].effect == 0
    assert rows[("quantile beats N/A (init=behavior)", "acc_plus_reward")].verdict == "no runs"


def test_cli_markdown_reproducible_and_csv_needs_runs_for_epochs(tmp_path, capsys):
    from analysis import collect

    runs, out = tmp_path / "runs", tmp_path / "docs" / "claims.md"
    epoch_runs(runs, -0.05, 0.05, 0.0)
    assert claims.main(["--runs", str(runs), "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert out.read_text() == first.out  # the same Markdown on stdout and in --out
    assert f"claims: wrote {out}" in first.err
    line = next(x for x in first.out.splitlines() if x.startswith(f"| {FIG3A_NA}"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:] == [
        "train/acc: last − first epoch",
        "train batches",
        "-0.100",
        cells[4],
        "6",
        "holds",
    ]
    assert cells[4].startswith("[-0.1") and cells[4].endswith("]")
    assert claims.main(["--runs", str(runs)]) == 0
    assert capsys.readouterr().out == first.out  # seeded bootstrap: identical output

    # From the CSV with the runs root: the same table; without it, no per-epoch values.
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    capsys.readouterr()
    assert claims.main(["--csv", str(csv), "--runs", str(runs)]) == 0
    assert capsys.readouterr().out == first.out
    assert claims.main(["--csv", str(csv)]) == 0
    got = capsys.readouterr()
    rows = [x for x in got.out.splitlines() if x.startswith(f"| {FIG3A_NA}")]
    assert rows and all(x.rstrip(" |").endswith("no runs") for x in rows)
    assert "(per-epoch claims need --runs)" in got.err


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
                        attribute, seed, dropout, gamma, value, **{"sampling.stop_at_eos": eos}
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
                summary(attribute, seed, dropout, gamma, 0.6 + shift, **extra),
            )
    (block,) = run_claims(tmp_path)  # one block: the option splits arms, not the grid
    rows = {(r.claim, r.metric): r for r in block.rows}
    exact = rows[("random γ=0.8 does not help: random − N/A < 0", "acc_plus_reward")]
    repl = rows[
        ("random (with replacement) γ=0.8 does not help: random − N/A < 0", "acc_plus_reward")
    ]
    assert exact.effect == pytest.approx(-0.2) and len(exact.diffs) == 6
    assert repl.effect == pytest.approx(0.0) and len(repl.diffs) == 6
    assert (
        rows[("quantile γ=0.8 beats random (with replacement) γ=0.8", "acc_plus_reward")].verdict
        == "holds"
    )
    assert "top_k=0" not in block.context  # a setting shared by all runs is not named
