"""Fault injection: a job waiting on a cache entry whose builder is stopped (issue 33,
"Waits that never end"): it says what it waits for (the entry, the builder's pid and host)
and how long it has waited (docs/reliability.md)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from rdx.pipeline import cache

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from rdx.pipeline.cache import cached
def build(out):
    print("held", flush=True)
    time.sleep(600)
    (out / "x.txt").write_text("x")
cached(sys.argv[1], "toy", {"a": 1}, build, 1)
"""


def test_a_wait_on_a_stopped_builder_is_said(tmp_path, monkeypatch, caplog):
    """Before: the waiting job said nothing while the builder was stopped."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)  # a suspended job: holds the lock, does nothing
        threading.Timer(3.0, holder.kill).start()  # then it dies; the kernel frees the lock
        monkeypatch.setattr(cache, "LOCK_REPORT_S", 1.0, raising=False)
        built = []
        with caplog.at_level(logging.INFO, logger="rdx"):
            entry = cache.cached(
                tmp_path,
                "toy",
                {"a": 1},
                lambda out: built.append((out / "x.txt").write_text("y")),
                1,
            )
    finally:
        holder.kill()
        holder.wait()
    assert (entry / "x.txt").read_text() == "y" and len(built) == 1
    waits = [m for m in caplog.messages if m.startswith("cache: waiting for")]
    assert waits[0].startswith(
        f"cache: waiting for toy/{entry.name}, being built by pid {holder.pid} on host "
        f"{socket.gethostname()} (since "
    ), waits
    assert len(waits) >= 2 and waits[1].endswith(" s so far") and ": waited " in waits[1]
