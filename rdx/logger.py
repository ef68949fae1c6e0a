"""Weights & Biases logging, with the run id persisted so a requeued job continues its run."""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rdx.config import ConfigError, LoggerConfig
from rdx.records import read_record_bytes, write_atomic

log = logging.getLogger("rdx")

# How long W&B may take to answer before a run logs offline instead: the TCP probe of its
# server, then wandb.init itself (its own default, 90 s, came after 44 s of retries: 134 s
# with an API key and no network, then a traceback and a failed run).
PROBE_TIMEOUT_S = 3.0
INIT_TIMEOUT_S = 30.0


class WandbUnavailable(ConfigError):
    """Online W&B logging was asked for explicitly and the server cannot be had: one line."""


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not os.path.lexists(netrc):
        return False
    try:  # a FIFO there would block the run forever; bytes: any encoding is no error
        return b"api.wandb.ai" in read_record_bytes(netrc)
    except OSError as err:
        log.warning("wandb: %s: %s; not read for an API key", netrc, err.strerror or err)
        return False


def _unreachable(base_url: str) -> str | None:
    """Why W&B's server (or the HTTPS proxy) takes no TCP connection, or None when it does:
    seconds, where wandb.init would retry for minutes."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or base_url)
    host, port = url.hostname or base_url, url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        return None
    except OSError as err:
        return f"{host}:{port} is unreachable ({err.strerror or type(err).__name__})"


def _online_asked(cfg: LoggerConfig) -> str | None:
    """The setting that asked for online logging in so many words, or None (auto chose it)."""
    if cfg.mode == "online":
        return "logger.mode=online"
    if cfg.mode == "auto" and os.environ.get("WANDB_MODE", "").strip().lower() == "online":
        return "WANDB_MODE=online"
    return None


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
        init = dict(
            project=cfg.project,
            entity=cfg.entity,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            name=name,
            group=cfg.group or group,
            tags=tags + list(cfg.tags),
            config=config,
            reinit="finish_previous",
        )
        if self.mode == "online":
            self.run = self._init_online(wandb, cfg, init, run_dir)
        if self.run is None:
            self.run = wandb.init(**init, mode=self.mode)
        log.info("wandb: %s run %s (%s)", self.mode, run_id, run_dir / "wandb")

    def _init_online(self, wandb: Any, cfg: LoggerConfig, init: dict, run_dir: Path) -> Any:
        """wandb.init online within seconds, or None with self.mode offline (one warning);
        WandbUnavailable (one line) when online was asked for explicitly."""
        asked = _online_asked(cfg)
        base_url = os.environ.get("WANDB_BASE_URL") or getattr(
            wandb.Settings(), "base_url", "https://api.wandb.ai"
        )
        problem = _unreachable(base_url)
        if problem is None:
            try:
                settings = wandb.Settings(init_timeout=INIT_TIMEOUT_S)
                return wandb.init(**init, mode="online", settings=settings)
            except Exception as err:  # wandb's timeout, an auth or netrc error: not a bug of rdx
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                problem = f"wandb.init failed ({type(err).__name__}: {first})"
        if asked:
            raise WandbUnavailable(
                f"wandb: {asked}, but {problem}; unset it to log offline (the default), or "
                "logger=none"
            )
        log.warning(
            "wandb: %s; logging offline to %s (upload it later: wandb sync %s)",
            problem,
            run_dir / "wandb",
            run_dir / "wandb",
        )
        self.mode = "offline"
        return None

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
