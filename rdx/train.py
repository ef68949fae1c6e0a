"""Train a target LM with reward dropout: the one entrypoint of rdx.

    python -m rdx.train                                   # embedded default: quantile γ=0.8
    python -m rdx.train dropout=none                      # the paper's N/A baseline
    python -m rdx.train dropout=random gamma=0.4 attribute=sport seed=3
    python -m rdx.train experiment=smoke                  # whole pipeline in < 60 s
    python -m rdx.train -m dropout=quantile gamma=0.2,0.4,0.8
    python -m rdx.train -m sweeps=table1 seed=0,1,2       # a paper grid (sweeps/), 162 runs
    python -m rdx.train -m sweeps=table1 launcher=local launcher.max_parallel=2
    python -m rdx.train -m sweeps=table1 launcher=slurm launcher.partition=gpu
    python -m rdx.train stage=prepare                     # build the cached artifacts only

Hydra composes conf/; the config is validated here, at the edge, before torch is imported,
so a bad value fails in about a second with one line and exit status 2. After a sweep (-m),
every job's status.json is read into <sweep dir>/sweep.json, and the exit status is 1 if
any run did not complete: Hydra and submitit report failed jobs as completed (DESIGN §6).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdx.config import ConfigError, validate

CONF = Path(__file__).resolve().parents[1] / "conf"
SEARCH = (CONF, CONF.parent)  # conf/ groups, and sweeps/ at the top level


def check_group_choices(argv: list[str]) -> None:
    """One-line errors for a mistyped group option (`dropout=quantil`), sweep lists included.

    Hydra reports these itself, but over a dozen lines with its search path; a researcher
    launching a grid wants the key, the value and the choices.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith(("-", "+", "~", "hydra")) or "." in key:
            continue
        dirs = [root / key for root in SEARCH if (root / key).is_dir()]
        if not dirs:
            continue
        options = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
        for choice in value.split(","):
            if choice not in options and choice != "null":
                print(
                    f"rdx: config error: {key}={choice!r}: expected one of {', '.join(options)}",
                    file=sys.stderr,
                )
                sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        config = validate(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # One bad job of a sweep: say so in its status.json and let the others run. An
            # exit here would end a basic-launcher sweep and leave a submitit job resultless.
            from rdx.records import RunRecords

            RunRecords(hydra_cfg.runtime.output_dir).set_status("failed", f"ConfigError: {err}")
            raise
        print(f"rdx: config error: {err}", file=sys.stderr)
        sys.exit(2)
    from rdx.models import HubUnavailable
    from rdx.run import execute

    try:
        return execute(config, hydra_cfg.runtime.output_dir)
    except HubUnavailable as err:
        # A model that passed the config check but cannot be loaded (an empty dir, a broken
        # HF cache entry) is still a user error: one line, not a traceback. execute() has
        # already recorded it in status.json; a sweep job re-raises so the sweep sees it.
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        print(f"rdx: hub error: {err}", file=sys.stderr)
        sys.exit(2)


# SWEEP CHECK ---------------------------------------------------------------------------
class SweepRecorder(Callback):
    """Remembers the sweep dir of a multirun (conf/train.yaml hydra.callbacks).

    Runs in the launching process before any job; resolving `hydra.sweep.dir` here caches
    its `${now:}` on the same config object the launcher reads, so both see one directory.
    """

    sweep_dir: ClassVar[Path | None] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepRecorder.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Every job dir's status into <sweep_dir>/sweep.json: job -> run dir, state, result."""
    job_dirs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and ((p / "status.json").exists() or (p / ".hydra").is_dir())
    ]
    # Hydra's job dirs 0, 1, ..., 10 are not zero-padded: natural order.
    job_dirs.sort(key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    jobs = []
    for job_dir in job_dirs:
        status = _read_json(job_dir / "status.json") or {}
        summary = _read_json(job_dir / "summary.json") or {}
        overrides = job_dir / ".hydra" / "overrides.yaml"
        state = status.get("state", "unknown")
        error = status.get("error") if status else "no status.json: the job ended before rdx ran"
        jobs.append(
            {
                "job": job_dir.name,
                "run_dir": str(job_dir),
                "state": state,
                "error": error,
                "acc_plus_reward": summary.get("acc_plus_reward") if state == "completed" else None,
                "attempts": status.get("attempts"),
                "overrides": list(OmegaConf.load(overrides)) if overrides.exists() else None,
            }
        )
    record = {
        "sweep_dir": str(sweep_dir),
        "counts": dict(Counter(job["state"] for job in jobs)),
        "jobs": jobs,
    }
    tmp = sweep_dir / f".sweep.json.tmp-{id(record)}"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(sweep_dir / "sweep.json")
    return record


def check_sweep(sweep_dir: Path) -> bool:
    """Write sweep.json and say which runs did not complete; True if every run completed."""
    record = summarize_sweep(sweep_dir)
    jobs = record["jobs"]
    bad = [job for job in jobs if job["state"] != "completed"]
    if not jobs:
        print(f"rdx: sweep {sweep_dir}: no job dirs found", file=sys.stderr)
        return False
    if not bad:
        print(
            f"rdx: sweep {sweep_dir}: {len(jobs)}/{len(jobs)} runs completed "
            f"(summary: {sweep_dir / 'sweep.json'})",
            file=sys.stderr,
        )
        return True
    print(
        f"rdx: sweep {sweep_dir}: {len(bad)} of {len(jobs)} runs did not complete "
        f"(summary: {sweep_dir / 'sweep.json'}):",
        file=sys.stderr,
    )
    for job in bad:
        print(
            f"  job {job['job']} {job['state']}: {job['error']}  [{job['run_dir']}]",
            file=sys.stderr,
        )
    return False


def cli() -> None:
    check_group_choices(sys.argv[1:])
    code: Any = 0
    try:
        main()
    except SystemExit as err:  # Hydra exits 1 after printing a failed job's traceback
        code = err.code
    finally:
        # On Ctrl-C too: the summary then shows what ran and what was interrupted.
        if SweepRecorder.sweep_dir is not None and SweepRecorder.sweep_dir.is_dir():
            if not check_sweep(SweepRecorder.sweep_dir):
                code = 1
    sys.exit(code)


if __name__ == "__main__":
    # Hydra instantiates the callback by its import path, rdx.train.SweepRecorder: make that
    # name this very module, so the sweep dir it records is the one `cli` reads.
    sys.modules.setdefault("rdx.train", sys.modules[__name__])
    cli()
