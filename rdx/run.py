"""One run, from a validated Config to its records: the plumbing around trainer.train."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import yaml

from rdx.config import Config, to_dict
from rdx.records import RunRecords, git_sha, read_json, write_atomic, write_json

log = logging.getLogger("rdx")


def default_threads(requested: int | None) -> int:
    """Cores ÷ parallel jobs: two 2-thread jobs on 2 cores decode ~10× slower (DESIGN §7)."""
    if requested:
        return requested
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(os.environ.get("RDX_PARALLEL_JOBS", "1")))


def execute(cfg: Config, run_dir: str | Path) -> float | None:
    """Run or resume the job in run_dir; returns Acc+Reward (Hydra sweepers may optimise it)."""
    torch.set_num_threads(default_threads(cfg.trainer.threads))
    records = RunRecords(run_dir)
    summary_path = records.dir / "summary.json"
    status = records.status() or {}
    if status.get("state") == "completed" and summary_path.exists():
        log.info("%s already completed; nothing to do", records.dir)
        return read_json(summary_path)["acc_plus_reward"]

    write_atomic(records.dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    records.set_status("running")
    from rdx.logger import WandbLogger

    sha = git_sha()
    logger = WandbLogger(
        cfg.logger, records.dir, name=_run_name(cfg), config=to_dict(cfg),
        group=cfg.sweep, tags=[sha] if sha else [],
    )
    try:
        from rdx.artifacts import prepare

        prep = prepare(cfg)
        if cfg.stage == "prepare":
            log.info("artifacts ready: %s", prep.paths)
            records.set_status("completed")
            logger.finish()
            return None
        from rdx.trainer import train

        summary = train(cfg, prep, records, logger)
        write_json(summary_path, summary)
        logger.summary(summary)
        records.set_status("completed")
    except BaseException as err:
        # SystemExit/KeyboardInterrupt too: an interrupted run must not stay "running".
        records.set_status("failed", error=f"{type(err).__name__}: {err}")
        logger.finish(exit_code=1)
        raise
    logger.finish()
    log.info(
        "done: acc %.3f reward %.3f acc+reward %.3f -> %s",
        summary["acc"], summary["reward"], summary["acc_plus_reward"], summary_path,
    )
    return summary["acc_plus_reward"]


def _run_name(cfg: Config) -> str:
    gamma = "" if cfg.gamma is None else f"-g{cfg.gamma:g}"
    return f"{cfg.dataset.name}-{cfg.attribute}-{cfg.dropout.mode}{gamma}-s{cfg.seed}"
