"""A run's directory: the files that say what it did (docs/design.md §6, docs/reliability.md).

config.yaml status.json metrics.jsonl summary.json samples.jsonl trace.jsonl checkpoint.pt
Every whole-file write goes through a temp file and a rename, so an interrupted job never
leaves a truncated record, and a failed write removes its temp file; metrics.jsonl is
append-only, trimmed back on resume, and read past a torn last line. One process at a time
holds a run dir (`lock`). A checkpoint is plain data (torch.load with weights_only=True) and
carries the hash of the settings that made it, so a run dir is never resumed, or reported
as done, under other settings by accident.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

from rdx.finite import NonFinite, first_non_finite

log = logging.getLogger("rdx")

# Keys of the validated config that do not change a run's numbers: a run dir resumes, and a
# completed one answers, across changes of these. Everything else is part of the hash.
# logger.*: where the numbers are sent; trainer.threads: CPU threads (same arithmetic);
# trainer.log_every: how often step records are written; stage: prepare is a prefix of
# train; cache_dir: artifacts are content-addressed; sweep: a label; resume: this policy;
# trainer.epochs: epoch k is the same in a run of any length (every random stream is seeded
# by epoch, the learning rate is constant), so a run extends from its checkpoint; rdx.run
# refuses fewer epochs than a checkpoint holds and answers a completed run only for its own.
UNHASHED = (
    "logger",
    "trainer.threads",
    "trainer.log_every",
    "trainer.epochs",
    "stage",
    "cache_dir",
    "sweep",
    "resume",
    "sampling.vllm_memory",  # where vLLM's memory goes, not what it draws
)
# Keys added after runs were recorded without them, left out of the identity at the value
# those runs had: a run dir from before resumes and answers as it did. Away from it, a key
# is part of the identity like any other.
SINCE_ADDED = {
    "sampling.engine": "hf",
    "sampling.likelihood": "rescore",
    "sampling.seed": 0,
    "eval.judge": False,
    "reward.train_max_sentences": None,
    "reward.stop_accuracy": None,
    "reward.stop_check_steps": 200,
    "reward.train_precision": "fp32",
}
RESUME_POLICIES = ("never", "auto", "force")
STATUS_RESERVE_BYTES = 16384  # freed to write the final status.json on a full disk


class RunDirError(Exception):
    """A run dir that cannot be used as asked (held by another process, or holding another
    run); the message is one line, shown without a traceback."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` in one rename; on failure (a full disk) no temp file stays,
    and the OSError names `path`, not the temp file (`No space left on device: <path>`)."""
    tmp = _tmp_name(path)
    try:
        with tmp.open("wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename in (None, str(tmp)):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


class NotRegularFile(OSError):
    """A record path that holds a FIFO, a device, a socket or a directory: damaged."""


def open_record(path: Path, mode: str = "rb") -> IO[Any]:
    """Open a record, cache or checkpoint file only if it is a regular file.

    Opened with O_NONBLOCK, so a FIFO (or a device) put in place of a record raises
    NotRegularFile at once instead of hanging the run until someone kills it. Modes: "rb",
    "r" (UTF-8 text), "a+b" (append, created if absent).
    """
    flags = {"rb": os.O_RDONLY, "r": os.O_RDONLY, "a+b": os.O_RDWR | os.O_APPEND | os.O_CREAT}
    fd = os.open(path, flags[mode] | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotRegularFile(
                errno.EINVAL, f"not a regular file ({_file_kind(kind)}): damaged", str(path)
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, encoding="utf-8" if mode == "r" else None)
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a file"


def read_record_bytes(path: Path) -> bytes:
    with open_record(path) as f:
        return f.read()


def write_json(path: Path, obj: Any) -> None:
    """Replace `path` with `obj` as JSON; NonFinite (nothing written) if it holds a NaN or
    an infinity, which JSON cannot hold and no result may be."""
    bad = first_non_finite(obj)
    if bad is not None:
        raise NonFinite(f"{path}: {bad[0]}={bad[1]} is not a finite number; not written")
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"non-finite number {text}")
    return value


def parse_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and ±Infinity (ValueError): Python's json reads them."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def read_json(path: Path) -> Any:
    """The JSON value in `path`, or None when there is no such file (ValueError if damaged:
    not JSON, a non-finite number; NotRegularFile if not a regular file)."""
    try:
        data = read_record_bytes(path)
    except FileNotFoundError:
        return None
    return parse_json(data)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; lines that are not a JSON object (a torn last line of a
    killed run, garbage) are skipped with a warning rather than failing every later reader."""
    try:
        data = read_record_bytes(path)
    except FileNotFoundError:
        return []
    except NotRegularFile as err:
        log.warning("%s: %s; read as empty", path, err.strerror)
        return []
    records, bad = [], 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = parse_json(line)  # a NaN loss is not a record
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    if bad:
        log.warning("%s: skipped %d unreadable line(s) (torn or damaged)", path, bad)
    return records


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


# CONFIG IDENTITY -----------------------------------------------------------------------


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix.rstrip("."): list(node) if isinstance(node, tuple) else node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def config_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's numbers: the config flattened to dotted keys, less
    UNHASHED ones and SINCE_ADDED ones at their old value."""
    flat = _flatten(config)
    return {
        k: v
        for k, v in sorted(flat.items())
        if not any(k == u or k.startswith(u + ".") for u in UNHASHED)
        and not (k in SINCE_ADDED and v == SINCE_ADDED[k])
    }


def config_hash(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key=old->new` for every key whose value differs (absent keys read as <absent>)."""
    absent = "<absent>"
    return [
        f"{k}={old.get(k, absent)!r}->{new.get(k, absent)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k, absent) != new.get(k, absent)
    ]


def _write_error(path: Path, err: RuntimeError) -> OSError:
    """The OSError behind a RuntimeError of torch.save: a full disk, else an I/O error."""
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, os.strerror(code) + ("" if full else f" ({err})"), str(path))


# THE RUN DIR ---------------------------------------------------------------------------


class RunRecords:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_path = self.dir / "status.json"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.lock_path = self.dir / ".rdx.lock"
        self.owner_path = self.dir / ".rdx.lock.owner"
        self.reserve_path = self.dir / ".status-reserve"
        # Set by rdx.run once the settings are checked: saved into every checkpoint, and a
        # checkpoint of another hash is refused unless resume=force.
        self.config_hash: str | None = None
        self.identity: dict[str, Any] | None = None
        self.force_resume = False

    # lock -----------------------------------------------------------------
    _held: ClassVar[set[Path]] = set()  # run dirs this process holds (lock() nests)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run dir for this process (a flock, released by the kernel even on kill -9);
        a second process gets RunDirError naming the holder's pid and host. Nested calls in
        the holding process (rdx.train, then rdx.run.execute) hold it once."""
        key = self.dir.resolve()
        if key in RunRecords._held:
            yield
            return
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path), timeout=0, is_singleton=False)
        try:
            lock.acquire()
        except Timeout:
            owner = {}
            with contextlib.suppress(OSError, ValueError):
                owner = parse_json(read_record_bytes(self.owner_path))
            if not isinstance(owner, dict):
                owner = {}
            if "pid" in owner and "host" in owner:
                holder = (
                    f"pid {owner['pid']} on host {owner['host']} (since {owner.get('since', '?')})"
                )
            else:  # a flock taken by hand or by another tool, or an rdx run just starting
                holder = (
                    f"another process (its lock {self.lock_path.name} is held, but no "
                    f"{self.owner_path.name} names the holder)"
                )
            raise RunDirError(
                f"run dir {self.dir} is in use by {holder}; wait for it to end or pick "
                "another hydra.run.dir"
            ) from None
        RunRecords._held.add(key)
        try:
            write_json(
                self.owner_path,
                {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()},
            )
            self._clean_stale()
            self._reserve()
            yield
        finally:
            RunRecords._held.discard(key)
            with contextlib.suppress(OSError):
                self.owner_path.unlink()
            lock.release()

    def _clean_stale(self) -> None:
        """Remove temp files of writes cut short (kill -9, a full disk): with the lock held,
        no live writer owns them."""
        for stale in self.dir.glob(".*.tmp-*"):
            log.info("removing stale %s", stale)
            with contextlib.suppress(OSError):
                stale.unlink()

    def _reserve(self) -> None:
        """Keep a few KiB of disk for the final status.json (set_status frees it on ENOSPC)."""
        if not self.reserve_path.exists():
            try:
                with self.reserve_path.open("wb") as f:
                    f.write(b"\0" * STATUS_RESERVE_BYTES)
            except OSError:
                with contextlib.suppress(OSError):
                    self.reserve_path.unlink()

    # status ---------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """status.json, or None when absent; a damaged one reads as absent (logged)."""
        try:
            record = read_json(self.status_path)
        except (OSError, ValueError) as err:
            log.warning("%s is damaged (%s); treating it as absent", self.status_path, err)
            return None
        return record if isinstance(record, dict) or record is None else None

    def set_status(
        self,
        state: str,
        error: str | None = None,
        config_hash: str | None = None,
        diverged: dict[str, Any] | None = None,
    ) -> None:
        """Record the run's state. A final state (failed, interrupted, preempted) is written
        even on a full disk (the reserve is freed for it); when it cannot be written at all
        (read-only disk) it goes to stderr and this returns. `diverged` ({"epoch", "step"}):
        a completed run whose training went non-finite (rdx.pipeline.loop.diverged)."""
        old = self.status() or {}
        # Each attempt's commit (a run resumed under new code): git_sha is the latest's.
        shas = old.get("git_shas") if isinstance(old.get("git_shas"), list) else []
        shas = shas or ([old["git_sha"]] if old.get("git_sha") else [])
        if state == "running" or not shas:
            shas = [*shas, git_sha()]
        record = {
            "state": state,
            "error": error,
            "git_sha": shas[-1],
            "git_shas": shas,
            "started": old.get("started") or _now(),
            "ended": _now() if state in ("completed", "failed", "interrupted") else None,
            "attempts": old.get("attempts", 0) + (state == "running"),
            "config_hash": config_hash or old.get("config_hash"),
            **({"diverged": diverged} if diverged else {}),
        }
        try:
            write_json(self.status_path, record)
        except OSError as err:
            if state in ("running", "completed"):
                raise  # the run's own error path records `failed` next
            try:
                if err.errno != errno.ENOSPC or not self.reserve_path.exists():
                    raise
                self.reserve_path.unlink()
                write_json(self.status_path, record)
            except OSError as err2:
                print(
                    f"rdx: cannot write {self.status_path} ({err2.strerror or err2}); "
                    f"the run ended {state}: {error}",
                    file=sys.stderr,
                )

    # metrics --------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_jsonl(self.metrics_path.name, record)

    def read_metrics(self, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
        return read_jsonl(self.dir / name)

    def trim_metrics(self, completed_epochs: int, name: str = "metrics.jsonl") -> None:
        """Drop records of epochs after the checkpoint, so a resumed run logs them once. A
        line that is no record of an epoch (torn, not JSON, NaN, `"epoch": null`) is moved
        to <name>.damaged with a warning, as damaged records are. Streamed line by line: a
        287 MB log is never held in memory (read whole, it peaked at 7x its size)."""
        path = self.dir / name
        aside = path.with_name(path.name + ".damaged")
        try:
            src = open_record(path)
        except FileNotFoundError:
            return
        except NotRegularFile as err:  # a FIFO in its place: moved aside, a new log begun
            log.warning("%s: %s; moved to %s", path, err.strerror, aside.name)
            os.replace(path, aside)
            return
        tmp, bad, damaged = _tmp_name(path), 0, None
        try:
            with src, tmp.open("wb") as out:
                for raw in src:
                    if not raw.strip():
                        continue
                    line = raw if raw.endswith(b"\n") else raw + b"\n"  # a torn last line
                    try:
                        record = parse_json(raw)
                    except ValueError:
                        record = None
                    epoch = record.get("epoch", 0) if isinstance(record, dict) else None
                    if type(epoch) is not int or epoch < 0:  # bool is no epoch either
                        bad += 1
                        damaged = damaged or aside.open("ab")
                        damaged.write(line)
                    elif epoch < completed_epochs:
                        out.write(line)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            if damaged is not None:
                damaged.close()
        if bad:
            log.warning(
                "%s: %d damaged line(s) (torn, not JSON, or an epoch that is not a count) "
                "moved to %s",
                path,
                bad,
                aside.name,
            )

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        path = self.dir / name
        try:
            f = open_record(path, "a+b")
        except NotRegularFile as err:  # a FIFO in its place: moved aside, a new log begun
            aside = path.with_name(path.name + ".damaged")
            log.warning("%s: %s; moved to %s", path, err.strerror, aside.name)
            os.replace(path, aside)
            f = open_record(path, "a+b")
        with f:
            f.seek(0, os.SEEK_END)
            torn = False
            if f.tell():  # a line torn by a kill gets its own line end, not our record
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            f.write(b"\n" * torn + (json.dumps(record) + "\n").encode())

    def write_jsonl(self, name: str, records: list[dict[str, Any]]) -> None:
        write_atomic(self.dir / name, "".join(json.dumps(r) + "\n" for r in records))

    # checkpoint -----------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write checkpoint.pt in one rename, with the run's config hash and identity."""
        import torch  # here, not at the top: analysis and the sweep summary read records too

        state = {**state, "config_hash": self.config_hash, "config": self.identity}
        tmp = _tmp_name(self.checkpoint_path)
        try:
            with tmp.open("wb") as f:
                try:
                    torch.save(state, f)
                except RuntimeError as err:  # torch's zip writer reports ENOSPC this way
                    raise _write_error(tmp, err) from err
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _load(self, mmap: bool, model: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """checkpoint.pt as plain data (weights_only: a crafted pickle runs no code); a file
        that does not load, or holds fields of the wrong type, or (given the `model`'s state
        dict) tensors of other names or shapes, is moved to checkpoint.pt.damaged and reads
        as absent (logged): a clean restart, never a traceback at every rerun."""
        if not self.checkpoint_path.exists() and not self.checkpoint_path.is_symlink():
            return None
        import torch

        try:
            with open_record(self.checkpoint_path) as f:
                # mmap needs a path; a regular file checked above is what it maps
                state = torch.load(
                    self.checkpoint_path if mmap else f,
                    weights_only=True,
                    mmap=mmap,
                    map_location="cpu",
                )
            _check_fields(state)
            if model is not None:
                _check_model(state.get("model"), model)
        except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
            aside = self.checkpoint_path.with_name("checkpoint.pt.damaged")
            reason = load_error(err)
            log.warning(
                "%s cannot be loaded safely (%s): moved to %s; training restarts from epoch 0",
                self.checkpoint_path,
                reason[:200],
                aside.name,
            )
            with contextlib.suppress(OSError):
                os.replace(self.checkpoint_path, aside)
            return None
        return state

    def checkpoint_info(self) -> dict[str, Any] | None:
        """The checkpoint's epoch, config hash and identity, without reading its tensors."""
        state = self._load(mmap=True)
        if state is None:
            return None
        return {k: state.get(k) for k in ("epoch", "config_hash", "config")}

    def load_checkpoint(self, model: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The checkpoint, checked against the settings' hash and (given) the model's state
        dict: its names, shapes and dtypes."""
        state = self._load(mmap=False, model=model)
        if state is None:
            return None
        saved = state.get("config_hash")
        if self.config_hash is not None and saved != self.config_hash and not self.force_resume:
            diff = differing_keys(state.get("config") or {}, self.identity or {})
            raise RunDirError(
                f"{self.checkpoint_path} was made with other settings "
                f"({'; '.join(diff) or f'hash {saved}'}); pick another hydra.run.dir or "
                "pass resume=force"
            )
        return state


# What every rdx trainer's checkpoint holds, and of what type; a file of the right hash
# with, say, `epoch` a string is as damaged as a truncated one.
_FIELDS: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "step": (int,),
    "history": (list,),
    "model": (dict,),
    "optimizer": (dict,),
}


def _check_fields(state: Any) -> None:
    import torch

    if not isinstance(state, dict) or "epoch" not in state:
        raise ValueError("not an rdx checkpoint")
    for key, kinds in _FIELDS.items():
        value = state.get(key)
        if key in state and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise ValueError(f"{key}={str(value)[:40]!r} is not a {kinds[0].__name__}")
    if isinstance(state.get("epoch"), int) and state["epoch"] < 0:
        raise ValueError(f"epoch={state['epoch']} is negative")
    rng = state.get("torch_rng")
    if "torch_rng" in state and not (torch.is_tensor(rng) and rng.dtype == torch.uint8):
        raise ValueError("torch_rng is not a uint8 tensor")


def _check_model(saved: Any, expected: dict[str, Any]) -> None:
    """The saved weights have the names, shapes and dtypes of the model being resumed."""
    import torch

    if not isinstance(saved, dict):
        raise ValueError("no model weights")
    if set(saved) != set(expected):
        extra, missing = sorted(set(saved) - set(expected)), sorted(set(expected) - set(saved))
        raise ValueError(f"model weights differ: extra {extra[:3]}, missing {missing[:3]}")
    for name, tensor in expected.items():
        value = saved[name]
        if not torch.is_tensor(value) or value.shape != tensor.shape or value.dtype != tensor.dtype:
            got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ValueError(f"model weight {name}: {got} where {tuple(tensor.shape)} is expected")


def load_error(err: BaseException) -> str:
    """One line for why a file did not load; never torch's advice to load it unsafely."""
    import pickle

    if isinstance(err, pickle.UnpicklingError) or "weights_only" in str(err):
        return "not plain data: it holds objects that loading would have to run code for"
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
