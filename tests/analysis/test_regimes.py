"""analysis.regimes: the regime map on run dirs written by hand with planted effects."""

import json
from pathlib import Path

import pytest

from analysis import regimes

ATTRS = ["negative", "positive"]
SETS, SEEDS = [0, 1, 2], [0, 1]


def write(root: Path, name: str, **summary) -> None:
    run = root / name
    run.mkdir(parents=True)
    summary.setdefault("acc", summary["acc_plus_reward"] / 2)  # collect needs both halves
    summary.setdefault("reward", summary["acc_plus_reward"] / 2)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "status.json").write_text(json.dumps({"state": "completed", "ended": None}))


def base(attribute, sample_set, seed, dropout, pool, top_k, **extra):
    return {
        "dataset": "yelp", "attribute": attribute, "model": "tiny", "behavior": "tiny",
        "reward_model": "tiny", "init": "random", "epochs": 3, "lr": 1e-4, "delta": None,
        "dropout": dropout, "gamma": 0.8 if dropout == "quantile" else None,
        "sample_set": sample_set, "seed": seed, "prefix_pool": pool, "temperature": 1.0,
        "repetition_penalty": 1.2, "top_k": top_k, "stop_at_eos": False, "sweep": "regimes",
        **extra,
    }  # fmt: skip


# Planted quantile − N/A per (pool, top_k), on every replicate, plus a per-(set, seed) wobble
# that averages to 0 within each cluster's two seeds: the effect is exactly the plant.
PLANT = {("attribute", None): 0.2, ("attribute", 50): 0.1, ("task", None): -0.1,
         ("task", 50): -0.3}  # fmt: skip
WOBBLE = {0: 0.02, 1: -0.02}


def map_runs(root: Path, judge_sign: int = 1) -> None:
    for (pool, top_k), plant in PLANT.items():
        for a in ATTRS:
            for s in SETS:
                for seed in SEEDS:
                    for dropout in ("none", "quantile"):
                        v = 0.5 + (plant + WOBBLE[seed] * (s + 1) if dropout == "quantile" else 0)
                        judge = 0.5 + judge_sign * (v - 0.5)
                        write(
                            root,
                            f"{pool}-{top_k}/{a}-{s}-{seed}-{dropout}",
                            **base(a, s, seed, dropout, pool, top_k, acc_plus_reward=v,
                                   **{"eval/acc": 0.1, "eval/reward": v,
                                      "eval/judge_reward": judge}),  # fmt: skip
                        )


def test_per_regime_effects_verdicts_and_factor_contrasts(tmp_path):
    map_runs(tmp_path)
    result = regimes.build(regimes.load_records(tmp_path, None))
    rows = {(label, attr): e for label, attr, _, _, e in result["rows"]}
    win = rows[("attribute's pool, T=1, penalty 1.2, all tokens", "both")]["train Acc+Reward"]
    assert win.effect == pytest.approx(0.2) and (win.k, win.positive) == (6, 6)
    assert win.p == pytest.approx(2 / 64) and win.verdict == regimes.WIN
    lose = rows[("task's pool, T=1, penalty 1.2, top-50", "both")]["held-out Acc+Reward"]
    assert lose.effect == pytest.approx(-0.3) and lose.verdict == regimes.LOSE
    one = rows[("task's pool, T=1, penalty 1.2, all tokens", "negative")]["train Acc+Reward"]
    assert one.k == 3 and one.verdict == regimes.UNSURE  # 3 sample sets: p ≥ 0.25
    factors = {words: e for words, e, _ in result["factors"]}
    # pool: (−0.1 − 0.2 + −0.3 − 0.1) / 2 = −0.35; top-k: (0.1 − 0.2 + −0.3 + 0.1) / 2 = −0.15
    assert factors["prefix pool"]["train Acc+Reward"].effect == pytest.approx(-0.35)
    assert factors["top-k"]["train Acc+Reward"].effect == pytest.approx(-0.15)
    assert factors["temperature"]["train Acc+Reward"].diffs == []  # one level only
    # both attributes got the same plant: negative → positive moves nothing, on 12 units
    attribute = factors["attribute"]["train Acc+Reward"]
    assert attribute.effect == pytest.approx(0.0, abs=1e-12) and len(attribute.diffs) == 12
    overall = result["overall"]["train Acc+Reward"]
    assert overall.effect == pytest.approx(-0.025) and overall.k == 24


def test_the_judge_disagreeing_in_sign_shows(tmp_path):
    map_runs(tmp_path, judge_sign=-1)
    result = regimes.build(regimes.load_records(tmp_path, None))
    rows = {(label, attr): e for label, attr, _, _, e in result["rows"]}
    e = rows[("attribute's pool, T=1, penalty 1.2, all tokens", "both")]
    assert e["held-out Acc+Reward"].effect == pytest.approx(0.2)
    assert e["held-out Acc+Judge"].effect == pytest.approx(-0.2)


def test_a_moved_setting_is_its_own_row_not_pooled(tmp_path):
    map_runs(tmp_path)
    for a in ATTRS:
        for s in SETS:
            for seed in SEEDS:
                for dropout, v in (("none", 0.5), ("quantile", 0.9)):
                    summ = base(a, s, seed, dropout, "task", 50, lr=5e-4, acc_plus_reward=v)
                    write(tmp_path, f"lr/{a}-{s}-{seed}-{dropout}", **summ)
    result = regimes.build(regimes.load_records(tmp_path, None))
    rows = {(label, attr): e for label, attr, _, _, e in result["rows"]}
    moved = rows[("task's pool, T=1, penalty 1.2, top-50 (lr=0.0005)", "both")]
    assert moved["train Acc+Reward"].effect == pytest.approx(0.4)
    main = rows[("task's pool, T=1, penalty 1.2, top-50", "both")]
    assert main["train Acc+Reward"].effect == pytest.approx(-0.3)


def test_cli_writes_the_table_and_figure_or_skips_in_a_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    map_runs(runs)
    out, figs = tmp_path / "tables", tmp_path / "figures"
    assert regimes.main(["--runs", str(runs), "--out", str(out), "--figures", str(figs)]) == 0
    text = (out / "regimes.md").read_text()
    assert text.startswith("# The regime map")
    assert "| attribute's pool, T=1, penalty 1.2, all tokens | both" in text
    assert "+0.200 [+0.200, +0.200] p 0.03 6/6+" in text  # the wobble cancels per cluster
    assert (figs / "regimes.png").stat().st_size > 10_000 and (figs / "regimes.pdf").is_file()
    other = tmp_path / "other"
    write(other, "a", **base("negative", 0, 0, "none", "task", 50, acc_plus_reward=0.5))
    capsys.readouterr()
    # A CSV without a map skips in a line and leaves no earlier map behind.
    assert regimes.main(["--runs", str(other), "--out", str(out), "--figures", str(figs)]) == 0
    assert "no regime map in these runs" in capsys.readouterr().out
    assert not (out / "regimes.md").exists() and not (figs / "regimes.png").exists()
