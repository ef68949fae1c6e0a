"""The messages a newcomer meets (issue 23, item 5): one line each, saying what to do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from analysis import collect, tables
from rdx import launch_checks, train

REPO = Path(__file__).resolve().parents[2]


def _exit(capsys, fn, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as err:
        fn(*args)
    return err.value.code, capsys.readouterr().err


def test_missing_cell_advice_works_from_make(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text(
        "dataset,attribute,model,init,dropout,gamma,seed,acc_plus_reward,run_dir\n"
        "synthetic,positive,tiny,random,none,,0,0.6,a\n"
        "synthetic,positive,tiny,random,quantile,0.8,0,0.7,b\n"
        "synthetic,world,tiny,random,none,,0,0.5,c\n"
    )
    assert tables.main(["--csv", str(csv), "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--allow-missing (make: ALLOW_MISSING=1) renders it as —" in err
    assert "ALLOW_MISSING ?=" in (REPO / "Makefile").read_text()
    assert "$(if $(ALLOW_MISSING),--allow-missing)" in (REPO / "Makefile").read_text()


def test_a_sweep_preset_without_multirun_is_refused(capsys):
    code, err = _exit(capsys, train.check_overrides, ["sweeps=smoke"])
    assert code == 2
    assert err == (
        "rdx: config error: sweeps=smoke: a sweep preset runs its grid only with -m "
        "(python -m rdx.train -m sweeps=smoke ...); without -m one job of the defaults would "
        "run, labelled sweep=smoke\n"
    )


def test_one_job_of_a_preset_can_still_be_rerun_by_hand(capsys):
    train.check_overrides(["sweeps=smoke", "+sweeps/arm=quantile-0.8"])  # no exit
    assert capsys.readouterr().err == ""


def test_multirun_with_cfg_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["rdx.train", "-m", "gamma=0.2,0.4", "--cfg", "job"])
    code, err = _exit(capsys, train.cli)
    assert code == 2
    assert err == (
        "rdx: error: -m and --cfg do not go together: --cfg prints one job's config; drop -m "
        "and give one value per key, e.g. python -m rdx.train gamma=0.2 --cfg job\n"
    )


def test_slurm_without_a_cluster_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo
    code, err = _exit(capsys, train.check_overrides, ["-m", "sweeps=smoke", "launcher=slurm"])
    assert code == 2
    assert err == (
        "rdx: launcher error: launcher=slurm: no SLURM here (sbatch/sinfo not installed); "
        "start the local one with scripts/slurm-up, or run on this machine with "
        "launcher=joblib\n"
    )


def test_slurm_whose_controller_does_not_answer(monkeypatch, tmp_path):
    for tool, body in (("sbatch", "exit 0"), ("sinfo", _FATAL)):
        path = tmp_path / tool
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launch_checks.slurm_problem() == (
        "launcher=slurm: no SLURM cluster answered (sinfo: error: resolve_ctls_from_dns_srv: "
        "res_nsearch error: Unknown host); start the local one with scripts/slurm-up, or run "
        "on this machine with launcher=joblib"
    )


_FATAL = (
    "echo 'sinfo: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host' >&2\n"
    "echo 'sinfo: fatal: Could not establish a configuration source' >&2\nexit 1"
)


def test_wandb_without_an_api_key_is_one_line(monkeypatch, tmp_path, capsys):
    import wandb
    from wandb.errors import UsageError

    def no_key(*_a, **_k):
        raise UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "Api", no_key)
    out = tmp_path / "runs.csv"
    assert collect.main(["--source", "wandb", "--project", "me/rdx", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "collect: error: W&B project me/rdx: No API key configured. Use `wandb login` to log "
        "in. (an API key comes from WANDB_API_KEY or `wandb login`; without SOURCE=wandb, make "
        "reads local run dirs)\n"
    )


def test_gamma_ignored_by_the_dropout_warns_once(capsys):
    train.check_overrides(["gamma=0.8", "dropout=none"])
    assert capsys.readouterr().err == (
        "rdx: warning: gamma is ignored by dropout=none (recorded as null); γ applies to "
        "quantile, random, prompt_quantile, global_top (threshold reads dropout.delta)\n"
    )
    # a sweep over both: one line for all its N/A jobs; no line without a gamma override
    train.check_overrides(["-m", "dropout=none,quantile,threshold", "gamma=0.2,0.8"])
    err = capsys.readouterr().err
    assert err.count("rdx: warning:") == 1 and "dropout=none and dropout=threshold" in err
    train.check_overrides(["dropout=none"])
    assert capsys.readouterr().err == ""


def test_readme_says_smoke_turns_wandb_off():
    smoke = (REPO / "conf" / "experiment" / "smoke.yaml").read_text()
    assert "logger:\n  mode: disabled" in smoke
    readme = (REPO / "README.md").read_text()
    assert "`experiment=smoke` turns W&B off" in readme


def test_a_prepare_only_run_dir_is_not_an_incomplete_run(tmp_path):
    prep = tmp_path / "runs" / "prep"
    prep.mkdir(parents=True)
    (prep / "status.json").write_text(json.dumps({"state": "completed"}))
    (prep / "config.yaml").write_text("stage: prepare\nseed: 0\n")
    broken = tmp_path / "runs" / "broken"  # a training run that lost its summary still counts
    broken.mkdir()
    (broken / "status.json").write_text(json.dumps({"state": "completed"}))
    (broken / "config.yaml").write_text("stage: train\n")
    done, incomplete = collect.collect_local(tmp_path / "runs")
    assert done.empty
    assert incomplete["run_dir"].tolist() == ["broken"]
    assert incomplete["reason"].tolist() == ["completed but no summary.json"]
