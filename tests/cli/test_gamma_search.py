"""γ found by hydra-optuna-sweeper (sweeps/gamma_search.yaml): the pre-launch check of the
sweeper's syntaxes, the objective it maximises, and one real 3-trial search (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from rdx.selection import heldout_acc_plus_reward
from rdx.train import check_overrides, sweep_values

ROOT = Path(__file__).resolve().parents[2]


def _values(arg: str) -> list[str]:
    return sweep_values(OverridesParser.create().parse_overrides([arg])[0])


def test_sweep_values_of_every_sweeper_syntax():
    assert _values("gamma=interval(0.1,0.9)") == ["0.1", "0.9"]
    assert _values("trainer.lr=tag(log,interval(1e-4,1e-2))") == ["0.0001", "0.01"]
    assert _values("seed=int(interval(1,5))") == ["1", "5"]
    assert _values("gamma=choice(0.2,0.8)") == ["0.2", "0.8"]
    assert _values("seed=range(0,3)") == ["0", "1", "2"]
    assert _values("gamma=0.2,0.4") == ["0.2", "0.4"]


@pytest.mark.parametrize(
    "arg, key, checked",
    [
        ("gamma=interval(0.1,0.9)", "gamma", {0.1, 0.9}),
        ("trainer.lr=tag(log,interval(1e-4,1e-2))", "lr", {1e-4, 1e-2}),
        ("gamma=choice(0.2,0.6)", "gamma", {0.2, 0.6}),
    ],
)
def test_sweeper_syntaxes_pass_the_pre_launch_check(
    arg, key, checked, tmp_path, capsys, monkeypatch
):
    """Each syntax is accepted (no exit, nothing on stderr) after both ends of the interval,
    or each choice, were validated as a config of their own."""
    import rdx.train

    validated, validate = [], rdx.train.validate

    def recording_validate(raw):
        cfg = validate(raw)
        validated.append(cfg.trainer.lr if key == "lr" else cfg.gamma)
        return cfg

    monkeypatch.setattr(rdx.train, "validate", recording_validate)
    check_overrides(
        ["-m", "sweeps=gamma_search", "experiment=smoke", arg, f"hydra.sweep.dir={tmp_path}"]
    )
    assert capsys.readouterr().err == ""
    assert checked <= set(validated)


@pytest.mark.parametrize(
    "arg", ["gamma=interval(0.1,0.9)", "trainer.lr=tag(log,interval(1e-4,1e-2))"]
)
def test_an_interval_under_the_basic_sweeper_points_at_gamma_search(arg, tmp_path, capsys):
    """Hydra's basic sweeper cannot sample an interval (it ended in a traceback): one line."""
    with pytest.raises(SystemExit) as exit_:
        check_overrides(["-m", "experiment=smoke", arg, f"hydra.sweep.dir={tmp_path}"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rdx: config error: {arg}: an interval")
    assert "sweeps=gamma_search" in lines[0]


def test_an_interval_reaching_past_the_allowed_range_fails_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        check_overrides(
            ["-m", "sweeps=gamma_search", "gamma=interval(0.1,1.0)", f"hydra.sweep.dir={tmp_path}"]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rdx: config error: gamma=1.0: expected a number in [0, 1)")
    assert len(err.splitlines()) == 1


def test_objective_is_the_held_out_figure():
    summary = {"acc": 0.9, "reward": 0.9, "eval/acc": 0.25, "eval/reward": 0.5}
    assert heldout_acc_plus_reward(summary) == pytest.approx(0.75)
    with pytest.raises(KeyError, match="eval/acc"):
        heldout_acc_plus_reward({"acc": 0.9, "eval/reward": 0.5})


@pytest.mark.slow
def test_three_trial_search_writes_the_best_gamma(tmp_path):
    """`-m sweeps=gamma_search experiment=smoke hydra.sweeper.n_trials=3`: three normal runs
    (records in <sweep dir>/<n>), and optimization_results.yaml holds the γ of the trial
    with the highest held-out Acc+Reward."""
    cmd = [
        sys.executable, "-m", "rdx.train", "-m", "sweeps=gamma_search", "experiment=smoke",
        "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = {}
    for n in range(3):
        summary = json.loads((tmp_path / str(n) / "summary.json").read_text())
        assert json.loads((tmp_path / str(n) / "status.json").read_text())["state"] == "completed"
        assert summary["sweep"] == "gamma_search" and summary["dropout"] == "quantile"
        trials[summary["gamma"]] = heldout_acc_plus_reward(summary)
    assert len(trials) == 3 and all(0.1 <= g <= 0.9 for g in trials)
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    best = max(trials, key=trials.get)
    assert result["best_params"]["gamma"] == pytest.approx(best)
    assert result["best_value"] == pytest.approx(trials[best])


def test_sweep_value_reads_the_run_dirs_summary(tmp_path):
    from rdx.selection import sweep_value

    assert sweep_value(tmp_path) is None  # stage=prepare writes no summary
    (tmp_path / "summary.json").write_text(
        json.dumps({"acc_plus_reward": 1.7, "eval/acc": 0.125, "eval/reward": 0.5})
    )
    assert sweep_value(tmp_path) == pytest.approx(0.625)
