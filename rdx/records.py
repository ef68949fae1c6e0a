"""A run's directory: the files that say what it did (DESIGN §6).

config.yaml status.json metrics.jsonl summary.json samples.jsonl trace.jsonl checkpoint.pt
Every whole-file write goes through a temp file and a rename, so an interrupted job never
leaves a truncated record; metrics.jsonl is append-only and trimmed back on resume.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """The JSON value in `path`, or None when there is no such file (ValueError if damaged)."""
    return json.loads(path.read_text()) if path.exists() else None


def natural_key(name: str | Path) -> list[int | str]:
    """Sort key that orders Hydra's job dirs 0, 1, ..., 10 (not zero-padded) by number."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def git_sha() -> str | None:
    """The code's commit, with -dirty for uncommitted changes (CleanRL tags runs with it)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


class RunRecords:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_path = self.dir / "status.json"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.checkpoint_path = self.dir / "checkpoint.pt"

    # status ---------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        return read_json(self.status_path)

    def set_status(self, state: str, error: str | None = None) -> None:
        old = self.status() or {}
        record = {
            "state": state,
            "error": error,
            "git_sha": old.get("git_sha") or git_sha(),
            "started": old.get("started") or _now(),
            "ended": _now() if state in ("completed", "failed") else None,
            "attempts": old.get("attempts", 0) + (state == "running"),
        }
        write_json(self.status_path, record)

    # metrics --------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_jsonl(self.metrics_path.name, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [
            json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()
        ]

    def trim_metrics(self, completed_epochs: int, name: str = "metrics.jsonl") -> None:
        """Drop records of epochs after the checkpoint, so a resumed run logs them once."""
        path = self.dir / name
        if not path.exists():
            return
        keep = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("epoch", 0) < completed_epochs
        ]
        write_atomic(path, "".join(line + "\n" for line in keep))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        with (self.dir / name).open("a") as f:
            f.write(json.dumps(record) + "\n")

    def write_jsonl(self, name: str, records: list[dict[str, Any]]) -> None:
        write_atomic(self.dir / name, "".join(json.dumps(r) + "\n" for r in records))

    # checkpoint -----------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch  # here, not at the top: analysis and the sweep summary read records too

        tmp = self.checkpoint_path.with_name(f".checkpoint.pt.tmp-{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        import torch

        return torch.load(self.checkpoint_path, weights_only=False)
