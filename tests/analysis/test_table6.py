"""Table 6: leave-one-word-out attribution by hand, and tables/table6.md from a fixture."""

import json

import pytest

from analysis import collect, table6
from rdx.pipeline.offpolicy.examples import PPLM_PREFIXES, word_drop_attribution


def fake_r(texts):
    """R's probability: 0.3, + 0.5 with "delicious", + 0.1 with "big"."""
    return [0.3 + 0.5 * ("delicious" in t.split()) + 0.1 * ("big" in t.split()) for t in texts]


def test_word_drop_attribution_by_hand():
    full, attribution = word_drop_attribution(fake_r, "The chicken", " is so delicious, a big one")
    # "delicious," keeps its comma, so only "big" counts: 0.3 + 0.1; dropping it costs 0.1.
    assert full == pytest.approx(0.4)
    assert attribution == [("is", 0.0), ("so", 0.0), ("delicious,", 0.0), ("a", 0.0),
                           ("big", pytest.approx(0.1)), ("one", 0.0)]  # fmt: skip
    full, attribution = word_drop_attribution(fake_r, "The chicken", "is delicious")
    assert full == pytest.approx(0.8) and attribution[1] == ("delicious", pytest.approx(0.5))
    assert word_drop_attribution(fake_r, "The chicken", "") == (pytest.approx(0.3), [])


def test_pplm_prefixes_hold_the_papers_table6_prefixes():
    assert {"The chicken", "The country"} <= set(PPLM_PREFIXES["sentiment"])
    assert "The issue focused on" in PPLM_PREFIXES["topic"]


def run(root, name, attribute, dropout, gamma, samples, init="random", seed=0):
    d = root / name
    d.mkdir(parents=True)
    summary = {"dataset": "synthetic", "attribute": attribute, "dropout": dropout,
               "gamma": gamma, "seed": seed, "init": init, "model": "tiny",
               "acc": 0.5, "reward": 0.5, "acc_plus_reward": 1.0}  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "status.json").write_text(json.dumps({"state": "completed"}))
    (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def test_table6_from_samples(tmp_path, capsys):
    pplm = {"source": "pplm", "prefix": "the chicken", "generation": "is so delicious today",
            "reward": 0.91, "attribution": [["is", 0.0], ["so", 0.02], ["delicious", 0.4],
                                            ["today", -0.01]]}  # fmt: skip
    held = [{"prefix": "the food", "generation": "was bad", "reward": 0.2},
            {"prefix": "the staff", "generation": "was rude", "reward": 0.7}]  # fmt: skip
    runs = tmp_path / "runs"
    run(runs, "pos-q95", "positive", "quantile", 0.95, [*held, pplm])
    run(runs, "pos-q8", "positive", "quantile", 0.8, [held[0]])  # a smaller γ: not shown
    run(runs, "pos-na", "positive", "none", None, [held[0]])  # N/A: not shown
    run(runs, "neg-q95", "negative", "quantile", 0.95, held)  # made before PPLM rows
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    capsys.readouterr()
    out = tmp_path / "tables"
    assert table6.main(["--csv", str(csv), "--runs", str(runs), "--out", str(out)]) == 0
    text = (out / "table6.md").read_text()
    lines = [x for x in text.splitlines() if x.startswith("| synthetic")]
    # Paper order: negative before positive; the prefix underlined; "delicious" (−0.4) and
    # "so" (−0.02) over 0.01 in bold, "is" and "today" not.
    assert lines[0].split("|")[2].strip() == "Negative"
    assert "<u>the staff</u> was rude" in lines[0] and "0.700" in lines[0]
    assert "<u>the chicken</u> is **so** **delicious** today" in lines[1]
    assert "pos-q95 (γ=0.95" in text and "pos-q8" not in text
    err = capsys.readouterr().err
    assert "neg-q95: no PPLM-prefix rows; showing its highest-reward samples" in err


def test_table6_without_quantile_runs_fails_in_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    run(runs, "na", "positive", "none", None, [])
    csv = tmp_path / "runs.csv"
    assert collect.main(["--runs", str(runs), "--out", str(csv)]) == 0
    capsys.readouterr()
    assert table6.main(["--csv", str(csv), "--runs", str(runs)]) == 1
    assert capsys.readouterr().err == (
        "table6: error: no quantile runs: Table 6 shows quantile dropout's text\n"
    )
