"""Fault injection: waits that never end (issue 33). W&B with an API key and no network
logs offline within seconds (one warning), or fails in one line when online was asked for;
a NETRC that is a FIFO or holds a Latin-1 byte is no hang and no error
(docs/reliability.md)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from rdx.config import LoggerConfig

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 40


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_DISABLED", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")


def _fake_wandb(monkeypatch, fail_online: bool = False) -> list[str]:
    modes: list[str] = []

    def init(**kw):
        modes.append(kw["mode"])
        if fail_online and kw["mode"] == "online":
            raise RuntimeError("Run initialization has timed out after 30.0 sec.\nPlease ...")
        return types.SimpleNamespace(finish=lambda **_: None)

    fake = types.SimpleNamespace(init=init, Settings=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return modes


def test_no_network_with_an_api_key_logs_offline_with_one_warning(
    no_network, monkeypatch, tmp_path, caplog
):
    """Before: wandb.init online, 134 s of retries, then a traceback and a failed run."""
    from rdx.logger import WandbLogger

    modes = _fake_wandb(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        logger = WandbLogger(LoggerConfig(mode="auto"), tmp_path, "n", {}, None, [])
    assert modes == ["offline"] and logger.mode == "offline"
    assert len(caplog.messages) == 1
    said = caplog.messages[0]
    assert said.startswith("wandb: 127.0.0.1:") and "is unreachable (" in said
    assert f"logging offline to {tmp_path / 'wandb'} (upload it later: wandb sync" in said


@pytest.mark.parametrize("how", ["env", "config"])
def test_no_network_when_online_was_asked_is_one_line(no_network, monkeypatch, tmp_path, how):
    from rdx.logger import WandbLogger, WandbUnavailable

    modes = _fake_wandb(monkeypatch)
    if how == "env":
        monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(WandbUnavailable) as err:
        WandbLogger(
            LoggerConfig(mode="online" if how == "config" else "auto"), tmp_path, "n", {}, None, []
        )
    said = str(err.value)
    asked = "WANDB_MODE=online" if how == "env" else "logger.mode=online"
    assert said.startswith(f"wandb: {asked}, but 127.0.0.1:") and "\n" not in said
    assert said.endswith("unset it to log offline (the default), or logger=none")
    assert modes == []  # never a wait in wandb.init


def test_a_wandb_init_that_times_out_falls_back_to_offline(no_network, monkeypatch, tmp_path):
    from rdx import logger as rdx_logger

    monkeypatch.setattr(rdx_logger, "_unreachable", lambda url: None)  # the probe passes
    modes = _fake_wandb(monkeypatch, fail_online=True)
    logger = rdx_logger.WandbLogger(LoggerConfig(mode="auto"), tmp_path, "n", {}, None, [])
    assert modes == ["online", "offline"] and logger.mode == "offline"


def test_no_network_with_the_real_wandb_is_seconds(tmp_path):
    """The measured case: the real wandb, an API key, no server. Before: 134 s, failed."""
    code = (
        "import sys, time; from pathlib import Path\n"
        "from rdx.config import LoggerConfig; from rdx.logger import WandbLogger\n"
        "t = time.monotonic()\n"
        "lg = WandbLogger(LoggerConfig(mode='auto'), Path(sys.argv[1]), 'n', {}, None, [])\n"
        "lg.finish(); print(lg.mode, round(time.monotonic() - t, 1))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HTTPS_PROXY"))}
    env.update(
        WANDB_API_KEY=KEY,
        WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
        NETRC=str(tmp_path / "none"),
        PYTHONPATH=str(ROOT),
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "offline"
    assert wall < 60, wall  # wandb's offline start-up included, on a loaded 2-core machine
    assert (tmp_path / "wandb").is_dir()


def test_a_netrc_that_is_a_fifo_is_no_hang(tmp_path):
    """Before: resolve_mode read the FIFO and blocked forever."""
    fifo = tmp_path / "netrc"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(NETRC=str(fifo), PYTHONPATH=str(ROOT))
    code = (
        "from rdx.config import LoggerConfig; from rdx.logger import resolve_mode\n"
        "print(resolve_mode(LoggerConfig(mode='auto')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "offline", proc.stderr[-2000:]
    assert f"wandb: {fifo}: not a regular file (a FIFO)" in proc.stderr


def test_a_netrc_with_a_latin1_byte_is_read(tmp_path, monkeypatch):
    """Before: UnicodeDecodeError at every logger.mode=auto run."""
    from rdx.logger import resolve_mode

    for key in ("WANDB_MODE", "WANDB_DISABLED", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_bytes(
        b"# Jos\xe9's machines\nmachine api.wandb.ai login user password " + KEY.encode()
    )
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode(LoggerConfig(mode="auto")) == "online"
    netrc.write_bytes(b"machine example.org login Jos\xe9 password x\n")
    assert resolve_mode(LoggerConfig(mode="auto")) == "offline"
