"""The run loop every algorithm shares: resume, epochs, records, W&B, checkpoint, summary.

    state = resume(...)                         # checkpoint.pt, if the run dir holds one
    for epoch in remaining epochs:
        step = algorithm.train_epoch(epoch, step, log_step)  # non-finite: `diverged`, return
        record, samples = algorithm.evaluate(epoch)
        write the epoch record (metrics.jsonl, W&B, samples.jsonl, trace.jsonl, the log line)
        save checkpoint.pt
    return algorithm.summary(history)

An algorithm (rdx.pipeline.offpolicy.trainer, rdx.pipeline.harmless.ppo, .dpo) supplies
only what differs: its stateful objects, one epoch of training, its evaluation and its
summary's own keys (the `Algorithm` protocol). Each random stream is seeded from (run seed,
epoch, stream), so a run resumed from an epoch checkpoint replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch

from rdx.config import Config
from rdx.finite import NonFinite
from rdx.logger import WandbLogger
from rdx.records import RunRecords

log = logging.getLogger("rdx")

LogStep = Callable[[int, int, dict[str, float]], None]  # (epoch, step, record)


def stream(seed: int, epoch: int, kind: int) -> torch.Generator:
    """The random stream `kind` of one epoch of a run (epoch −1: before training)."""
    return torch.Generator().manual_seed(stream_seed(seed, epoch, kind))


def stream_seed(seed: int, epoch: int, kind: int = 0) -> int:
    return seed * 1_000_003 + epoch * 101 + kind


class Algorithm(Protocol):
    """What one training algorithm plugs into `run`."""

    # Objects with state_dict/load_state_dict saved in checkpoint.pt under these names
    # (a name a checkpoint lacks is left as built: older checkpoints had no fp16 scaler).
    state: dict[str, Any]
    shown: tuple[str, ...]  # epoch-record keys of the epoch's log line

    def begin(self, start_epoch: int, records: RunRecords, logger: WandbLogger) -> None:
        """Before the first remaining epoch (e.g. π_ref's own figures on a fresh run)."""

    def train_epoch(self, epoch: int, step: int, log_step: LogStep) -> int:
        """One epoch of updates; returns the step count after it."""

    def evaluate(self, epoch: int) -> tuple[dict[str, Any], list[dict] | None]:
        """The epoch's record (its history entry) and the samples.jsonl rows, if any."""

    def trace(self, epoch: int) -> dict[str, Any] | None:
        """A trace.jsonl row for the epoch, or None."""

    def finish(self, records: RunRecords) -> None:
        """After the last epoch."""

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """summary.json: the last epoch's figures and the run's axes (`axes`)."""


def run(
    cfg: Config, algorithm: Algorithm, records: RunRecords, logger: WandbLogger
) -> dict[str, Any]:
    """Run (or resume) training in records' run dir; returns the summary."""
    start_epoch, step, history = resume(records, algorithm.state)
    # Records of a partial epoch after the checkpoint would be logged twice otherwise.
    records.trim_metrics(start_epoch)
    records.trim_metrics(start_epoch, "trace.jsonl")
    algorithm.begin(start_epoch, records, logger)

    def log_step(epoch: int, step: int, rec: dict[str, float]) -> None:
        records.append_metrics({"kind": "step", "step": step, "epoch": epoch, **rec})
        logger.log(rec, step=step)

    for epoch in range(start_epoch, cfg.trainer.epochs):
        try:
            step = algorithm.train_epoch(epoch, step, log_step)
        except NonFinite as err:  # check_step stopped it before the weights took a NaN
            return diverged(cfg, algorithm, records, history, epoch, err)
        rec, samples = algorithm.evaluate(epoch)
        history.append(rec)
        record_epoch(cfg, records, logger, epoch, step, rec, samples, algorithm.shown)
        trace = algorithm.trace(epoch)
        if trace is not None:
            records.append_jsonl("trace.jsonl", {"epoch": epoch, **trace})
        save(records, logger, algorithm.state, epoch, step, history)
    algorithm.finish(records)
    return algorithm.summary(history)


def diverged(
    cfg: Config,
    algorithm: Algorithm,
    records: RunRecords,
    history: list[dict[str, Any]],
    epoch: int,
    err: NonFinite,
) -> dict[str, Any]:
    """The summary of a run whose loss or gradient went non-finite in `epoch`: a result, not
    a crash (the authors' AG News N/A runs ended in NaN; dropping such runs would hide the
    collapse the paper is about). Its settings as the algorithm records them, no figures
    (it has no last epoch to report), and where it diverged: `diverged_epoch` (1-based, as
    the log line's) and `diverged_step` (the optimisation step, 1-based). metrics.jsonl
    keeps every finished epoch and a `diverged` record; the checkpoint stays at the last
    finished epoch, so the same command answers "already completed" from the summary."""
    log.warning("epoch %d/%d: %s; recorded as diverged", epoch + 1, cfg.trainer.epochs, err)
    records.append_metrics(
        {"kind": "diverged", "epoch": epoch, "step": err.step, "error": str(err)}
    )
    algorithm.finish(records)
    summary = algorithm.summary(history)
    figures = {k: None for k in summary if k in HEADLINE or k.startswith(("eval/", "train/"))}
    return {**summary, **figures, "diverged_epoch": epoch + 1, "diverged_step": err.step}


def resume(records: RunRecords, state: dict[str, Any]) -> tuple[int, int, list[dict]]:
    """Load checkpoint.pt into `state` and the torch RNG; (start epoch, step, history)."""
    # Checked against the model's names, shapes and dtypes: a checkpoint of the right hash
    # that does not fit is damaged (moved aside, a clean restart), not a traceback.
    model = state["model"].state_dict() if "model" in state else None
    checkpoint = records.load_checkpoint(model)
    if checkpoint is None:
        return 0, 0, []
    for name, obj in state.items():
        if name in checkpoint:
            obj.load_state_dict(checkpoint[name])
    torch.set_rng_state(checkpoint["torch_rng"])
    epoch, step = checkpoint["epoch"], checkpoint["step"]
    log.info("resuming from %s at epoch %d (step %d)", records.checkpoint_path, epoch, step)
    return epoch, step, checkpoint["history"]


def save(
    records: RunRecords,
    logger: WandbLogger,
    state: dict[str, Any],
    epoch: int,
    step: int,
    history: list[dict[str, Any]],
) -> None:
    """checkpoint.pt after `epoch`: every stateful object, the counters and the RNG."""
    records.save_checkpoint(
        {
            **{name: obj.state_dict() for name, obj in state.items()},
            "epoch": epoch + 1,
            "step": step,
            "history": history,
            "torch_rng": torch.get_rng_state(),
            "wandb_id": getattr(logger.run, "id", None),
        }
    )


def record_epoch(
    cfg: Config,
    records: RunRecords,
    logger: WandbLogger,
    epoch: int,
    step: int,
    rec: dict[str, Any],
    samples: list[dict] | None,
    shown: tuple[str, ...],
) -> None:
    """The epoch record where every algorithm writes it: metrics.jsonl, W&B, samples.jsonl
    (the latest evaluation's responses) and the log line."""
    if samples is not None:
        records.write_jsonl("samples.jsonl", samples)
    records.append_metrics({"kind": "epoch", "epoch": epoch, "step": step, **rec})
    logger.log({"epoch": epoch + 1, **rec}, step=step)
    figures = "  ".join(f"{k.removeprefix('train/')} {rec[k]:.3f}" for k in shown if k in rec)
    log.info("epoch %d/%d  %s", epoch + 1, cfg.trainer.epochs, figures)


def axes(cfg: Config) -> dict[str, Any]:
    """The run's settings every summary.json records, whatever the algorithm."""
    return {
        "dataset": cfg.dataset.name,
        "attribute": cfg.attribute,
        "model": cfg.model.name,
        "model_hub": cfg.model.hub,
        "trainable": cfg.model.trainable,
        "behavior": cfg.behavior.name,
        "reward_model": cfg.reward.name,
        "init": cfg.model.init,
        "dropout": cfg.dropout.mode,
        "gamma": cfg.gamma,
        "delta": cfg.dropout.delta,
        "seed": cfg.seed,
        "epochs": cfg.trainer.epochs,
        "lr": cfg.trainer.lr,
        "sweep": cfg.sweep,
    }


HEADLINE = ("acc", "reward", "acc_plus_reward")


def headline(acc: float | None, reward: float | None, last: dict[str, Any]) -> dict[str, Any]:
    """summary.json's first keys: the tables' acc, reward and Acc+Reward, then eval/*
    (None where a run diverged before its first epoch ended: it has no epoch to report)."""
    return {
        "acc": acc,
        "reward": reward,
        "acc_plus_reward": None if acc is None or reward is None else acc + reward,
        **{k: v for k, v in last.items() if k.startswith("eval/")},
    }
