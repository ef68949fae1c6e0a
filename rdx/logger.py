"""Weights & Biases logging, with the run id persisted so a requeued job continues its run."""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

from rdx.config import LoggerConfig
from rdx.records import read_record_bytes, write_atomic

log = logging.getLogger("rdx")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text()


def drop_inherited_service() -> None:
    """Forget a W&B service token (WANDB_SERVICE) that another process put in our environment.

    wandb saves its service's address in os.environ, and children inherit it: a job
    submitted from a process that had a W&B run (a notebook, a test session, a driver
    script) would attach to *that* process's service. On another node it cannot be
    reached; on the same node every job shares it, and a requeued job finds its own run
    id still registered by the attempt that was killed ("run ID ... is in use"). Each run
    owns its service; a token this process wrote itself (several runs in one process)
    is kept.
    """
    token = os.environ.get("WANDB_SERVICE", "")
    owner = re.match(r"[^-]+-(\d+)-", token)
    if token and (owner is None or int(owner.group(1)) != os.getpid()):
        log.info("wandb: ignoring WANDB_SERVICE inherited from process %s", owner and owner[1])
        del os.environ["WANDB_SERVICE"]


def resolve_mode(cfg: LoggerConfig) -> str:
    """W&B's mode: logger.kind=none disables it; logger.mode=auto follows W&B's own
    environment variables (WANDB_MODE=disabled|offline|online, WANDB_DISABLED=true), then
    logs online when an API key is set, offline otherwise; any other logger.mode wins."""
    if cfg.kind == "none":
        return "disabled"
    if cfg.mode == "auto":
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        if env in ("disabled", "offline", "online"):
            return env
        if env == "dryrun":  # wandb's old name for offline
            return "offline"
        if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
            return "disabled"
        return "online" if _has_api_key() else "offline"
    return cfg.mode


class WandbLogger:
    """A thin shell over wandb: flat metric names (train/…, eval/…, perf/…), CleanRL style."""

    def __init__(
        self,
        cfg: LoggerConfig,
        run_dir: Path,
        name: str,
        config: dict[str, Any],
        group: str | None,
        tags: list[str],
    ):
        self.mode = resolve_mode(cfg)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        drop_inherited_service()
        id_path = run_dir / ".wandb_id"
        try:  # a FIFO or a directory in its place is damage too, read as absent
            run_id = read_record_bytes(id_path).decode(errors="replace").strip()
        except OSError:
            run_id = ""
        if not re.fullmatch(r"[0-9a-z]{1,64}", run_id):  # absent, torn or garbage: a new run
            run_id = secrets.token_hex(4)
        write_atomic(id_path, run_id)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            mode=self.mode,
            name=name,
            group=cfg.group or group,
            tags=tags + list(cfg.tags),
            config=config,
            reinit="finish_previous",
        )
        log.info("wandb: %s run %s (%s)", self.mode, run_id, run_dir / "wandb")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
