"""Fault injection: non-finite numbers (NaN, ±inf) are refused where they are read and
where they are produced (docs/reliability.md, issue 22 §3)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from rdx.records import RunRecords, read_json, read_jsonl, write_json
from rdx.run import execute
from tests.helpers.cli import rdx_cli
from tests.helpers.faults import cfg, fake_pipeline

ROOT = Path(__file__).resolve().parents[2]
BAD_SUMMARY = '{"acc": NaN, "reward": 0.5, "acc_plus_reward": Infinity}'


# ---------------------------------------------------------------- records


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", '{"a": [1, NaN]}'])
def test_json_records_refuse_non_finite_numbers(tmp_path, text):
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="non-finite"):
        read_json(path)


def test_no_record_is_written_holding_a_non_finite_number(tmp_path):
    from rdx.finite import NonFinite, first_non_finite

    path = tmp_path / "summary.json"
    with pytest.raises(NonFinite, match=r"eval\.reward=nan"):
        write_json(path, {"acc": 0.5, "eval": {"reward": float("nan")}})
    assert not path.exists() and not list(tmp_path.iterdir())  # no temp file either
    assert first_non_finite({"a": [1.0, float("-inf")]}) == ("a.1", float("-inf"))
    assert first_non_finite({"a": 1, "b": "nan"}) is None


def test_a_nan_line_of_metrics_is_skipped_like_a_torn_one(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train/loss": 0.5}\n{"step": 2, "train/loss": NaN}\n')
    with caplog.at_level(logging.WARNING, logger="rdx"):
        assert read_jsonl(path) == [{"step": 1, "train/loss": 0.5}]
    assert "skipped 1 unreadable line" in caplog.text


def test_a_completed_run_whose_summary_holds_nan_is_redone(tmp_path, monkeypatch, caplog):
    trained = fake_pipeline(monkeypatch)
    assert execute(cfg(), tmp_path) == pytest.approx(1.8)
    (tmp_path / "summary.json").write_text(BAD_SUMMARY)
    with caplog.at_level(logging.INFO, logger="rdx"):
        assert execute(cfg(), tmp_path) == pytest.approx(1.8)
    assert "nothing to do" not in caplog.text and "damaged; the run is redone" in caplog.text
    assert trained == [0, 1]  # rebuilt from the checkpoint, no epoch retrained
    assert read_json(tmp_path / "summary.json")["acc_plus_reward"] == pytest.approx(1.8)


def test_a_summary_that_would_hold_nan_fails_the_run(tmp_path, monkeypatch):
    from rdx.finite import NonFinite

    fake_pipeline(monkeypatch)
    trainer = sys.modules["rdx.pipeline.offpolicy.trainer"]  # fake_pipeline's stand-in
    monkeypatch.setattr(trainer, "train", lambda *a: {"acc": float("nan"), "reward": 0.1})
    with pytest.raises(NonFinite, match="acc=nan"):
        execute(cfg(), tmp_path)
    assert not (tmp_path / "summary.json").exists()
    assert RunRecords(tmp_path).status()["state"] == "failed"


# ---------------------------------------------------------------- training


def test_check_step_names_the_first_non_finite_loss_or_gradient():
    from rdx.finite import NonFinite, check_step, in_step

    check_step(1, torch.tensor(0.5))
    with pytest.raises(NonFinite, match="at step 2: the loss is nan"):
        check_step(2, torch.tensor(float("nan")))
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.tensor([0.0, float("inf"), 1.0])
    with pytest.raises(NonFinite, match="at step 7: a gradient is not finite"):
        check_step(7, 1.0, [w])
    w.grad = torch.full((3,), 3e38)  # huge but finite: a norm would overflow, this must not
    check_step(8, 1.0, [w])
    check_step(9, 1.0, None)  # fp16: the scaler handles inf gradients
    with pytest.raises(NonFinite, match="at step 4, PPO update 2: the loss is inf") as err:
        with in_step(4):
            check_step("PPO update 2", float("inf"))
    assert err.value.step == 4  # the run's step: where the run is recorded as diverged
    with pytest.raises(NonFinite) as err:
        check_step(3, torch.tensor(float("nan")))
    assert err.value.step == 3


@pytest.mark.slow
def test_a_diverging_run_stops_at_the_first_nan_step_and_is_recorded_as_diverged(tmp_path):
    """trainer.lr=1e30: step 1 blows the weights up, step 2's loss is NaN. The run is a
    result (summary.json and status.json say where it diverged), not a crash."""
    run = tmp_path / "run"
    args = ["experiment=smoke", "logger=none", "trainer.threads=1", "trainer.lr=1e30",
            f"hydra.run.dir={run}"]  # fmt: skip
    proc = rdx_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Traceback" not in log
    assert "training diverged at step 2: the loss is nan" in log
    assert "recorded as diverged" in log and "done: diverged at epoch 1, step 2" in log
    status = read_json(run / "status.json")
    assert status["state"] == "completed" and status["diverged"] == {"epoch": 1, "step": 2}
    summary = read_json(run / "summary.json")
    assert (summary["diverged_epoch"], summary["diverged_step"]) == (1, 2)
    assert summary["acc"] is None and summary["acc_plus_reward"] is None
    assert not [k for k in summary if k.startswith("eval/") and summary[k] is not None]
    assert (summary["dropout"], summary["lr"]) == ("quantile", 1e30)  # its settings kept
    metrics = read_jsonl(run / "metrics.jsonl")
    losses = [r["train/loss"] for r in metrics if "train/loss" in r]
    assert all(v == v for v in losses)  # no NaN was logged before the stop
    assert [r["step"] for r in metrics if r.get("kind") == "diverged"] == [2]
    assert not [r for r in metrics if r.get("kind") == "epoch"]  # no epoch finished
    again = rdx_cli(*args)  # a result: the same command answers from it
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already completed" in again.stdout + again.stderr


# ---------------------------------------------------------------- analysis


def _runs_with_a_nan_summary(root: Path) -> Path:
    from tests.analysis.test_analysis import make_run

    make_run(root, "0")
    make_run(root, "1", dropout="quantile", gamma=0.8)
    bad = make_run(root, "2", dropout="quantile", gamma=0.8, seed=1)
    summary = json.loads((bad / "summary.json").read_text())
    nan, inf = float("nan"), float("inf")  # Python's json writes them as NaN, Infinity
    (bad / "summary.json").write_text(json.dumps({**summary, "acc": nan, "acc_plus_reward": inf}))
    assert "NaN" in (bad / "summary.json").read_text()
    return bad


def test_collect_names_a_run_with_a_nan_summary_and_leaves_it_out(tmp_path):
    from analysis.collect import collect_local

    _runs_with_a_nan_summary(tmp_path)
    done, incomplete = collect_local(tmp_path)
    assert done["run_dir"].tolist() == ["0", "1"]
    row = incomplete.iloc[0]
    assert row["run_dir"] == "2" and row["state"] == "unreadable"
    assert "non-finite number NaN" in row["reason"]


def test_collect_wandb_names_a_finished_run_with_an_infinite_metric():
    from analysis.collect import collect_wandb

    class Run:
        def __init__(self, name, value):
            self.summary, self.config = {"acc": 0.5, "acc_plus_reward": value}, {}
            self.state, self.path, self.group = "finished", ["e", "p", name], None

    class Api:
        def runs(self, *a, **k):
            return [Run("good", 0.9), Run("bad", float("inf"))]

    done, incomplete = collect_wandb("e/p", api=Api())
    assert done["run_dir"].tolist() == ["wandb:e/p/good"]
    assert incomplete.iloc[0]["state"] == "unreadable"
    assert "acc_plus_reward=inf" in incomplete.iloc[0]["reason"]


def _csv_with_an_inf_row(tmp_path: Path) -> Path:
    from analysis.collect import collect_local

    _runs_with_a_nan_summary(tmp_path / "runs")
    done, _ = collect_local(tmp_path / "runs")
    bad = {**done.iloc[1].to_dict(), "seed": 1, "run_dir": "2"}
    bad.update(acc=float("nan"), acc_plus_reward=float("inf"))
    csv = tmp_path / "runs.csv"
    pd.concat([done, pd.DataFrame([bad])]).to_csv(csv, index=False)  # as an old collect did
    assert "inf" in csv.read_text()
    return csv


def test_tables_leave_out_and_name_a_run_with_inf_never_a_cell(tmp_path, capsys):
    from analysis.tables import main

    csv = _csv_with_an_inf_row(tmp_path)
    assert main(["--csv", str(csv), "--out", str(tmp_path / "tables")]) == 0
    err = capsys.readouterr().err
    assert "left out 1 run(s)" in err and "2 (acc_plus_reward=inf)" in err
    table = (tmp_path / "tables" / "table1.md").read_text()
    assert "inf" not in table and "nan" not in table


def test_claims_leave_out_and_name_a_run_with_inf(tmp_path, capsys):
    from analysis.claims import main

    csv = _csv_with_an_inf_row(tmp_path)
    main(["--csv", str(csv)])
    out, err = capsys.readouterr()
    assert "2 (acc_plus_reward=inf)" in err
    assert "inf" not in out and "nan" not in out.lower().replace("n/a", "")


def test_tables_fail_in_one_line_when_every_run_is_non_finite(tmp_path, capsys):
    from analysis.tables import main

    csv = tmp_path / "runs.csv"
    csv.write_text(
        "attribute,dropout,seed,acc,reward,acc_plus_reward,run_dir\nsport,none,0,inf,0.1,inf,0\n"
    )
    assert main(["--csv", str(csv), "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 run(s) hold a non-finite number: 0 (acc=inf)" in err[0]
