"""analysis.harmless: the fig4 table (mean ± std by hand), bars, table5's rule, duplicates."""

import json

import pandas as pd
import pytest

from analysis.harmless import main


def write_runs(root, rows):
    for r in rows:
        d = root / r["run_dir"]
        d.mkdir(parents=True)
        samples = [
            {"prompt": f"\n\nHuman: q{i} ?\n\nAssistant:", "response": f" answer {i}", "reward": rw}
            for i, rw in enumerate(r.pop("_rewards"))
        ]
        (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    csv = root / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def run(model, algo, dropout, gamma, seed, reward, bleu, name, rewards=(0.5, -1.0, 0.2)):
    return {
        "dataset": "hh_synthetic",
        "attribute": "harmless",
        "model": model,
        "algo": algo,
        "dropout": dropout,
        "gamma": gamma,
        "seed": seed,
        "eval/reward": reward,
        "eval/bleu": bleu,
        "eval/rougeL": 0.3,
        "eval/meteor": 0.2,
        "acc": 0.5,
        "run_dir": name,
        "_rewards": list(rewards),
    }


@pytest.fixture
def runs(tmp_path):
    rows = [
        run("tiny", "ppo", "none", None, 0, 0.2, 0.10, "0"),
        run("tiny", "ppo", "none", None, 1, 0.4, 0.20, "1"),
        run("tiny", "ppo", "quantile", 0.8, 0, 0.6, 0.10, "2"),
        run("tiny", "ppo", "quantile", 0.8, 1, 1.0, 0.10, "3"),
        run("tiny", "dpo", "none", None, 0, -0.5, 0.30, "4", rewards=(0.1, 0.3, -2.0)),
        run("tiny", "dpo", "none", None, 1, -0.1, 0.30, "5"),
        {**run("tiny", None, "quantile", 0.8, 0, 0.9, 0.1, "6"), "algo": None},  # off-policy
    ]
    return tmp_path, write_runs(tmp_path, rows)


def test_fig4_table_figure_and_table5(runs, tmp_path):
    root, csv = runs
    out, figs, rest = tmp_path / "tables", tmp_path / "figures", tmp_path / "rest.csv"
    assert (
        main(
            [
                "--csv",
                str(csv),
                "--runs",
                str(root),
                "--out",
                str(out),
                "--figures",
                str(figs),
                "--rest",
                str(rest),
            ]
        )
        == 0
    )
    md = (out / "fig4.md").read_text()
    # PPO: reward mean(0.2, 0.4) = 0.3, std sqrt(0.02) = 0.141; PPO + R.D.: 0.8 ± 0.283 (best)
    assert "| tiny | PPO | 0.300 ± 0.141 | 0.150 ± 0.071 |" in md
    assert "| tiny | PPO + R.D. | **0.800 ± 0.283** |" in md
    assert "| tiny | DPO | -0.300 ± 0.283 | **0.300 ± 0.000** |" in md
    assert md.index("| tiny | PPO |") < md.index("PPO + R.D.") < md.index("| tiny | DPO |")
    assert "\\textbf{0.800 $\\pm$ 0.283}" in (out / "fig4.tex").read_text()
    assert (figs / "fig4.png").stat().st_size > 0 and (figs / "fig4.pdf").is_file()
    t5 = (out / "table5.md").read_text().splitlines()
    dpo = [line for line in t5 if line.startswith("| tiny | DPO |")]
    # the lowest-seed DPO run's two lowest rewards: -2.0 (q2), then 0.1 (q0)
    assert dpo == [
        "| tiny | DPO | -2.00 | Human: q2 ? | Assistant: answer 2 |",
        "| tiny | DPO | 0.10 | Human: q0 ? | Assistant: answer 0 |",
    ]
    assert list(pd.read_csv(rest)["run_dir"].astype(str)) == ["6"]  # the off-policy run


def test_duplicates_fail_and_no_runs_clears_stale_outputs(tmp_path):
    rows = [
        run("tiny", "dpo", "none", None, 0, 0.1, 0.1, "a"),
        run("tiny", "dpo", "none", None, 0, 0.2, 0.1, "b"),
    ]
    csv = write_runs(tmp_path, rows)
    rest = tmp_path / "rest.csv"
    rest.write_text("stale")
    args = ["--csv", str(csv), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f")]
    assert main([*args, "--rest", str(rest)]) == 1  # two runs of one cell
    assert not rest.exists()  # every run is DPO: no off-policy CSV for analysis.tables
    assert main([*args, "--duplicates", "latest"]) == 0
    assert (tmp_path / "t" / "fig4.md").is_file()
    offpolicy = [{"dataset": "synthetic", "dropout": "none", "seed": 0, "run_dir": "x"}]
    pd.DataFrame(offpolicy).to_csv(csv, index=False)
    assert main(args) == 0
    assert not (tmp_path / "t" / "fig4.md").exists() and not (tmp_path / "f" / "fig4.png").exists()
