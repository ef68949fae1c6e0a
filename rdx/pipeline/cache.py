"""Content-addressed artifact cache shared by every run and sweep job (DESIGN §1).

An artifact is a directory keyed by a hash of exactly the settings it depends on. Builders
write into a private temp dir that is renamed into place, so a reader never sees half an
artifact; a file lock makes concurrent jobs wait for one builder instead of all building.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

log = logging.getLogger("rdx")


def cache_key(settings: dict[str, Any], version: int) -> str:
    """Hash of the settings and the builder's version (bumped when what it writes changes)."""
    blob = json.dumps({"version": version, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached(
    cache_dir: str | Path,
    kind: str,
    settings: dict[str, Any],
    build: Callable[[Path], None],
    version: int,
) -> Path:
    """Return the artifact dir for (kind, settings), building it once if absent."""
    final = Path(cache_dir) / kind / cache_key(settings, version)
    if final.is_dir():
        log.info("cache: reusing %s/%s", kind, final.name)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            log.info("cache: reusing %s/%s (built by another job)", kind, final.name)
            return final
        log.info("cache: building %s/%s", kind, final.name)
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tic = time.perf_counter()
        build(tmp)
        (tmp / "settings.json").write_text(
            json.dumps(settings, indent=1, sort_keys=True, default=str)
        )
        os.rename(tmp, final)
        log.info("cache: built %s/%s in %.1f s", kind, final.name, time.perf_counter() - tic)
    return final
