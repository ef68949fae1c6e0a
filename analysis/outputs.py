"""Analysis outputs are written whole or not at all: a temp file, fsync, rename
(rdx.records.write_atomic), so a full disk leaves the previous file or none, never a
truncated runs.csv that a later step reads as fewer runs, or a 0-byte table."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rdx.records import write_atomic


def save_figure(fig: Any, path: Path, **kwargs: Any) -> None:
    """`fig.savefig` into memory, then one atomic write of `path` (format from its suffix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), **kwargs)
    write_atomic(path, buf.getvalue())


def write_failed(tool: str, err: OSError) -> str:
    """The one line for an output that could not be written (a full or read-only disk)."""
    where = f": {err.filename}" if err.filename else ""
    return (
        f"{tool}: error: {err.strerror or err}{where}; nothing half-written is left there: "
        "free space (or pick another --out) and rerun"
    )
