"""Content-addressed artifact cache shared by every run and sweep job (docs/design.md §1).

An artifact is a directory keyed by a hash of exactly the settings it depends on. Builders
write into a private temp dir that is renamed into place, so a reader never sees half an
artifact; a file lock makes concurrent jobs wait for one builder instead of all building.
The last file a build writes is a completion marker (COMPLETE) listing every file with its
size and SHA-256; an entry is used only after the marker verifies, and an entry that does
not (a truncated or overwritten file, a missing one, no marker) is rebuilt, with a warning.
Temp dirs left by killed or failed builds are removed by the next build of the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from rdx.records import load_error, open_record, parse_json, read_record_bytes, write_json

log = logging.getLogger("rdx")

MARKER = "COMPLETE"  # written last, so its presence means every listed file was written


def cache_key(settings: dict[str, Any], version: int) -> str:
    """Hash of the settings and the builder's version (bumped when what it writes changes)."""
    blob = json.dumps({"version": version, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    with open_record(path) as f:  # a FIFO in an entry is damage, not a hang
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_marker(artifact: Path) -> None:
    """List every file of `artifact` with its size and SHA-256 in artifact/COMPLETE."""
    files = {
        p.relative_to(artifact).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(artifact.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    (artifact / MARKER).write_text(json.dumps({"files": files}, indent=1, sort_keys=True))


def verify(artifact: Path) -> str | None:
    """None when `artifact` is whole (its marker lists every file with the right content),
    else what is wrong with it."""
    try:
        files = json.loads(read_record_bytes(artifact / MARKER))["files"]
    except FileNotFoundError:
        return "no completion marker"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable completion marker ({type(err).__name__})"
    if not isinstance(files, dict):
        return "unreadable completion marker"
    for name, expected in files.items():
        path = artifact / name
        try:
            if path.stat().st_size != expected["bytes"]:
                return f"{name}: size {path.stat().st_size} != {expected['bytes']}"
            if _sha256(path) != expected["sha256"]:
                return f"{name}: checksum mismatch"
        except FileNotFoundError:
            return f"{name}: missing"
        except (OSError, KeyError, TypeError) as err:
            return f"{name}: unreadable ({type(err).__name__})"
    return None


def _move_aside(final: Path) -> None:
    """One rename (readers see the old entry or none); the next build removes it."""
    os.rename(final, final.with_name(f"{final.name}.tmp-damaged-{os.getpid()}"))


def _clean_stale(final: Path) -> None:
    """Remove temp and damaged dirs of this key; called under its lock, so no live build
    owns them (a build holds the lock from mkdir to rename)."""
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        log.info("cache: removing stale %s", stale.name)
        shutil.rmtree(stale, ignore_errors=True)


LOCK_REPORT_S = 60.0  # a job waiting on another's build says so this often


@contextlib.contextmanager
def _entry_lock(final: Path, kind: str, report_s: float | None = None) -> Iterator[None]:
    """The entry's file lock. A job that has to wait says what for (the entry, the
    builder's pid and host from `<entry>.lock.owner`) and, every LOCK_REPORT_S, how long it
    has waited: a builder that is stopped (SIGSTOP, a suspended job) is never a silent
    hang."""
    report_s = LOCK_REPORT_S if report_s is None else report_s
    lock, owner_path = FileLock(str(final) + ".lock"), Path(str(final) + ".lock.owner")
    start = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = parse_json(read_record_bytes(owner_path))
            holder = f"pid {owner['pid']} on host {owner['host']} (since {owner['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            holder = "a process that names no owner"
        what = f"cache: waiting for {kind}/{final.name}, being built by {holder}"
        log.info("%s", what)
        while True:
            try:
                lock.acquire(timeout=report_s)
                break
            except Timeout:
                log.warning("%s: waited %.0f s so far", what, time.monotonic() - start)
    try:
        with contextlib.suppress(OSError):  # a name for waiters; the lock itself is the flock
            write_json(
                owner_path,
                {"pid": os.getpid(), "host": socket.gethostname(), "since": time.ctime()},
            )
        yield
    finally:
        with contextlib.suppress(OSError):  # removed while held: never names a past builder
            owner_path.unlink()
        lock.release()


def cached(
    cache_dir: str | Path,
    kind: str,
    settings: dict[str, Any],
    build: Callable[[Path], None],
    version: int,
) -> Path:
    """Return the artifact dir for (kind, settings), building it once if absent or damaged."""
    final = Path(cache_dir) / kind / cache_key(settings, version)
    if final.is_dir() and verify(final) is None:
        log.info("cache: reusing %s/%s", kind, final.name)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _entry_lock(final, kind):
        if final.is_dir():
            problem = verify(final)
            if problem is None:
                log.info("cache: reusing %s/%s (built by another job)", kind, final.name)
                return final
            log.warning("cache: %s/%s is damaged (%s); rebuilding it", kind, final.name, problem)
            _move_aside(final)
        _clean_stale(final)
        log.info("cache: building %s/%s", kind, final.name)
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        tmp.mkdir()
        try:
            tic = time.perf_counter()
            build(tmp)
            (tmp / "settings.json").write_text(
                json.dumps(settings, indent=1, sort_keys=True, default=str)
            )
            write_marker(tmp)
            os.rename(tmp, final)
        except BaseException:
            # A full disk or a failed build must not leave a half-written dir behind.
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("cache: built %s/%s in %.1f s", kind, final.name, time.perf_counter() - tic)
    return final


def cached_tensors(
    cache_dir: str | Path,
    kind: str,
    settings: dict[str, Any],
    build: Callable[[Path], None],
    version: int,
    name: str,
) -> tuple[Path, Any]:
    """`cached`, then its file `name` loaded as plain data (torch.load, weights_only).

    An entry whose file does not load so (a crafted pickle under a remade marker: the
    checksums match, yet loading it would run code) is moved aside and rebuilt once, with a
    warning; torch's advice to load it with weights_only=False is never passed on.
    """
    import torch

    for attempt in (1, 2):
        path = cached(cache_dir, kind, settings, build, version)
        try:
            with open_record(path / name) as f:
                return path, torch.load(f, weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError, OSError, ...
            if attempt == 2:
                raise RuntimeError(
                    f"cache: {kind}/{path.name}/{name} does not load after a rebuild "
                    f"({load_error(err)})"
                ) from None
            log.warning(
                "cache: %s/%s: %s does not load (%s); rebuilding it",
                kind,
                path.name,
                name,
                load_error(err),
            )
            with FileLock(str(path) + ".lock"):
                if path.is_dir():
                    _move_aside(path)
    raise AssertionError("unreachable")
