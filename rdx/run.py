"""One run, from a validated Config to its records: the plumbing around an algorithm's train."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from rdx.config import Config, to_dict
from rdx.finite import divergence
from rdx.records import (
    RunDirError,
    RunRecords,
    config_hash,
    config_identity,
    differing_keys,
    git_sha,
    read_json,
    read_record_bytes,
    write_atomic,
    write_json,
)

log = logging.getLogger("rdx")


def default_threads(requested: int | None) -> int:
    """Cores ÷ parallel jobs: two 2-thread jobs on 2 cores decode ~10× slower (docs/design.md §7).

    In order: trainer.threads, SLURM's CPUs per task, OMP_NUM_THREADS (what the joblib
    launcher's loky workers get: cores ÷ n_jobs), else cores ÷ RDX_PARALLEL_JOBS (rdx's
    local launcher) but no more than the cores other processes leave free (rdx.threads)."""
    if requested:
        return requested
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    from rdx import threads

    jobs = int(os.environ.get("RDX_PARALLEL_JOBS", "1"))
    return threads.free_threads(threads.cores(), jobs, threads.runnable_others())


def preflight(cfg: Config) -> None:
    """Checks that need torch or the environment, run before any work (ConfigError: one line).

    rdx.config.validate checks the values themselves without torch; these check what the
    values ask of this machine: the device, vLLM where it is the engine, the tiny models'
    positions, METEOR's WordNet.
    """
    from rdx.config import ConfigError
    from rdx.lm import check_positions

    device = cfg.trainer.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={device!r}: CUDA is not available on this machine")
    if device.startswith("cuda:") and torch.cuda.is_available():
        index = device.partition(":")[2]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer.device={device!r}: this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device='mps': MPS is not available on this machine")
    if cfg.sampling.engine == "vllm":
        from rdx.lm.vllm_mapping import vllm_problem

        problem = vllm_problem()
        if problem is not None:
            raise ConfigError(problem)
        if not torch.cuda.is_available():
            raise ConfigError(
                "sampling.engine=vllm: vLLM needs a CUDA device and this machine has none; "
                "use sampling.engine=hf"
            )
    problem = check_positions(cfg)  # also checked at launch, before torch loads
    if problem is not None:
        raise ConfigError(problem)
    from rdx.pipeline.wordnet import wordnet_found

    if not wordnet_found():
        raise ConfigError(
            "eval/meteor needs nltk's WordNet, which nltk cannot find; install it offline "
            "with `python -m rdx.pipeline.wordnet`"
        )


def execute(cfg: Config, run_dir: str | Path) -> float | None:
    """Run or resume the job in run_dir; returns Acc+Reward (Hydra sweepers may optimise it).

    The run dir is held for the whole run (a second process gets RunDirError). A dir that
    holds a run (a checkpoint or a summary) is resumed, or answered from, only when that run
    had the same settings (config_identity); resume=never refuses any such dir and
    resume=force takes it whatever its settings.
    """
    threads = default_threads(cfg.trainer.threads)
    torch.set_num_threads(threads)
    records = RunRecords(run_dir)
    with records.lock():
        return _execute(cfg, records, threads)


def execute_worker(cfg: Config, run_dir: str | Path) -> None:
    """A rank > 0 of a trainer.strategy=ddp run: the same prepare and train as
    rank 0, which owns the run; this rank writes no records, status or W&B."""
    from rdx.pipeline.algos import algo_for
    from rdx.pipeline.ddp import NullLogger, WorkerRecords

    prepare, train = algo_for(cfg.algo.name)  # offpolicy: the only algo with ddp

    torch.set_num_threads(default_threads(cfg.trainer.threads))
    records = WorkerRecords(run_dir)
    records.identity = config_identity(to_dict(cfg))
    records.config_hash = config_hash(records.identity)  # rank 0's checkpoint must match
    train(cfg, prepare(cfg), records, NullLogger())


def _check_prior(cfg: Config, records: RunRecords) -> bool:
    """Apply cfg.resume to what the run dir holds; True when it holds this run, completed."""
    identity = records.identity or {}
    summary_path = records.dir / "summary.json"
    checkpoint = records.checkpoint_info()  # a damaged one is moved aside: a clean restart
    status = records.status() or {}
    try:
        summary = read_json(summary_path)
    except (OSError, ValueError):
        log.warning("%s is damaged; the run is redone", summary_path)
        summary = None
    if checkpoint is None and summary is None:
        return False
    what = f"a run checkpointed at epoch {checkpoint['epoch']}" if checkpoint else "a run's summary"
    if cfg.resume == "never":
        raise RunDirError(
            f"run dir {records.dir} holds {what} and resume=never; pick another "
            "hydra.run.dir, or resume=auto to continue it"
        )
    old_hash = (checkpoint or {}).get("config_hash") or status.get("config_hash")
    old_identity = (checkpoint or {}).get("config") or _saved_identity(records)
    if old_hash is None and old_identity is not None:  # records written before hashes
        old_hash = config_hash(old_identity)
    if old_hash != records.config_hash:
        diff = differing_keys(old_identity or {}, identity) if old_identity else []
        said = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        if not said and old_hash is None:  # an old checkpoint and no readable config.yaml
            said = (
                f"its settings are unknown: {records.dir / 'config.yaml'} is missing or "
                "damaged and the checkpoint predates config hashes"
            )
        said = said or f"config hash {old_hash} != {records.config_hash}"
        if cfg.resume != "force":
            raise RunDirError(
                f"run dir {records.dir} holds {what} made with other settings ({said}); "
                "pick another hydra.run.dir, or resume=force to continue it anyway"
            )
        log.warning("resume=force: continuing %s made with other settings (%s)", what, said)
        records.force_resume = True
    epochs = cfg.trainer.epochs
    if checkpoint and checkpoint["epoch"] > epochs:
        raise RunDirError(
            f"run dir {records.dir} holds a run of {checkpoint['epoch']} epochs and "
            f"trainer.epochs={epochs} asks for fewer; pick another hydra.run.dir"
        )
    # Same settings: a completed run answers for its own number of epochs; asked for more,
    # it resumes from its checkpoint and trains on.
    if not isinstance(summary, dict) or status.get("state") != "completed":
        return False
    held = summary["epochs"] if "epochs" in summary else (checkpoint or {}).get("epoch")
    return held in (None, epochs) and not records.force_resume


# Top-level keys every config.yaml that rdx writes holds (rdx.config.Config's groups).
_RDX_KEYS = {"seed", "dropout", "trainer", "sampling"}


def _refuse_foreign_config(records: RunRecords) -> None:
    """RunDirError when the run dir holds a config.yaml that rdx did not write (no
    status.json or checkpoint beside it, and not an rdx config): a user's own file, never
    written over. A damaged config.yaml beside rdx's own records is rdx's, and resume
    decides on it (its settings are unknown)."""
    path = records.dir / "config.yaml"
    rdx_records = (records.status_path, records.checkpoint_path)
    if not os.path.lexists(path) or any(os.path.lexists(r) for r in rdx_records):
        return
    try:
        saved = yaml.safe_load(read_record_bytes(path))
    except (OSError, yaml.YAMLError):
        saved = None
    if isinstance(saved, dict) and _RDX_KEYS <= set(saved):
        return  # rdx's own, from a run killed before its first status.json
    raise RunDirError(
        f"run dir {records.dir} holds a config.yaml that rdx did not write (no status.json, "
        "not an rdx config); rdx would write over it: pick another hydra.run.dir, or move "
        "the file"
    )


def _saved_identity(records: RunRecords) -> dict | None:
    try:
        saved = yaml.safe_load(read_record_bytes(records.dir / "config.yaml"))
    except (OSError, yaml.YAMLError):
        return None
    return config_identity(saved) if isinstance(saved, dict) else None


def _execute(cfg: Config, records: RunRecords, threads: int) -> float | None:
    summary_path = records.dir / "summary.json"
    records.identity = config_identity(to_dict(cfg))
    records.config_hash = config_hash(records.identity)
    _refuse_foreign_config(records)
    if _check_prior(cfg, records):
        log.info("%s already completed with these settings; nothing to do", records.dir)
        return read_json(summary_path)["acc_plus_reward"]

    write_atomic(records.dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    records.set_status("running", config_hash=records.config_hash)
    log.info(
        "run dir %s (attempt %d), torch threads %d, pid %d",
        records.dir,
        (records.status() or {}).get("attempts", 1),
        threads,
        os.getpid(),
    )
    from rdx.logger import WandbLogger

    sha = git_sha()
    with _marks_preemption(records) as interrupted:
        logger = None
        try:
            logger = WandbLogger(
                cfg.logger,
                records.dir,
                name=_run_name(cfg),
                config=to_dict(cfg),
                group=cfg.sweep,
                tags=[sha] if sha else [],
            )
            from rdx.pipeline.algos import algo_for

            prepare, train = algo_for(cfg.algo.name)
            prep = prepare(cfg)
            if cfg.stage == "prepare":
                log.info("artifacts ready: %s", prep.paths)
                records.set_status("completed")
                logger.finish()
                return None
            summary = train(cfg, prep, records, logger)
            write_json(summary_path, summary)
            logger.summary(summary)
            records.set_status("completed", diverged=divergence(summary))
        except BaseException as err:
            if interrupted.signal and isinstance(err, SystemExit):
                # submitit exits this way once it has requeued the job: status.json keeps
                # "preempted" and the next attempt resumes from checkpoint.pt.
                log.warning(
                    "exiting after %s; the requeued job resumes from %s",
                    interrupted.signal,
                    records.checkpoint_path,
                )
                _set_preempted(records, interrupted.signal)  # if the handler was cut short
                # SLURM's SIGTERM may have ended W&B's service already: its error must not
                # replace the exit, or the job would end as a failed result.
                with contextlib.suppress(Exception):
                    logger.run.mark_preempting()  # W&B shows the run as preempted
                with contextlib.suppress(Exception):
                    logger.finish(exit_code=1)
                raise
            if isinstance(err, KeyboardInterrupt):
                # Ctrl-C: resumable, like a preemption; the same command continues the run.
                records.set_status(
                    "interrupted",
                    error="KeyboardInterrupt: stopped by the user; the same command resumes "
                    "from checkpoint.pt",
                )
            else:  # other exits too: an interrupted run must not stay "running"
                records.set_status("failed", error=f"{type(err).__name__}: {one_line(err)}")
            with contextlib.suppress(Exception):  # the run's own error is the one to raise
                logger.finish(exit_code=1)
            raise
    logger.finish()
    where = divergence(summary)
    if where is not None:
        log.info("done: diverged at epoch %d, step %s -> %s", where["epoch"], where["step"],
                 summary_path)  # fmt: skip
        return None
    log.info(
        "done: acc %.3f reward %.3f acc+reward %.3f -> %s",
        summary["acc"],
        summary["reward"],
        summary["acc_plus_reward"],
        summary_path,
    )
    return summary["acc_plus_reward"]


def one_line(err: BaseException) -> str:
    """An error's message as one line (the first non-empty one), for status.json and stderr."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


# PREEMPTION ----------------------------------------------------------------------------
# How long a job SIGTERMed by SLURM waits for the SIGKILL that follows (KillWait, or the
# partition's GraceTime on preemption; 30 s and 0 by default) before it gives up and fails.
AWAIT_KILL_S = 600.0


class _Interrupted:
    signal: str | None = None  # name of the scheduler's first signal, once one arrived
    requeueing: bool = False  # a USR2 handler (submitit's requeue, then exit) is running
    busy: bool = False  # a handler is running: signals often come in twos (SIGTERM, SIGCONT)


def _set_preempted(records: RunRecords, name: str) -> None:
    # A run that ended just before the signal keeps its final state.
    if (records.status() or {}).get("state") not in ("completed", "failed"):
        records.set_status(
            "preempted",
            error=f"{name} from the scheduler (preemption, time limit or scancel); "
            "a requeued job resumes from checkpoint.pt",
        )


def _scheduler_signals() -> list[signal.Signals]:
    """What a scheduler sends before it stops this job.

    SLURM sends SIGTERM to every process of a job on preemption, at the time limit and on
    scancel, then SIGKILL. submitit asks SLURM for USR2 (SUBMITIT_PREEMPT_SIGNAL) before the
    time limit, and on preemption where the cluster sets preempt_send_user_signal; its
    handler then requeues the job and exits. submitit's local executor sends USR2 too.
    """
    signals = [signal.SIGTERM] if os.environ.get("SLURM_JOB_ID") else []
    user = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return signals + ([user] if user is not None else [])


def _await_kill(name: str) -> None:
    """Do nothing more until SLURM's SIGKILL, or a USR2 that requeues the job.

    The SIGTERM went to every process of the job (W&B's service, data workers): training on
    would hit them dead and end the job `failed`, with a result submitit's launcher takes as
    final while SLURM requeues the job. The epoch in flight is lost either way; the job
    resumes from the last epoch's checkpoint.pt.
    """
    deadline = time.monotonic() + AWAIT_KILL_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise RuntimeError(f"{name} from SLURM and no SIGKILL within {AWAIT_KILL_S:.0f} s")


@contextlib.contextmanager
def _marks_preemption(records: RunRecords) -> Iterator[_Interrupted]:
    """While a SLURM or submitit job runs, a scheduler's signal sets status.json `preempted`.

    Then the previous handler does its part: submitit's logs SIGTERM (SLURM kills and
    requeues the job itself; rdx waits for that), or calls the launcher's checkpoint(),
    requeues and exits on USR2; without submitit the default action ends the process. The
    requeued job reruns the same command in the same run dir, so execute() resumes from
    checkpoint.pt and sets `running` again. Elsewhere SIGTERM keeps its usual meaning.
    """
    interrupted = _Interrupted()
    scheduled = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_EXECUTOR")
    if not scheduled or threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def mark(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        # A signal landing while another handler runs (SLURM sends SIGTERM twice, with a
        # SIGCONT) must not wait for the kill in there: the outer one has work to finish.
        nested, interrupted.busy = interrupted.busy, True
        try:
            if interrupted.signal is None:
                interrupted.signal = name
                _set_preempted(records, name)
                log.warning("%s: marked %s preempted", name, records.dir)
            if signum != signal.SIGTERM:
                interrupted.requeueing = True
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        finally:
            interrupted.busy = nested
        # `scontrol requeue` in submitit's USR2 handler makes SLURM send SIGTERM too: let
        # that handler go on to its exit rather than wait here for the kill.
        if signum == signal.SIGTERM and not nested and not interrupted.requeueing:
            _await_kill(name)

    previous = {sig: signal.signal(sig, mark) for sig in _scheduler_signals()}
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _run_name(cfg: Config) -> str:
    gamma = "" if cfg.gamma is None else f"-g{cfg.gamma:g}"
    return f"{cfg.dataset.name}-{cfg.attribute}-{cfg.dropout.mode}{gamma}-s{cfg.seed}"
