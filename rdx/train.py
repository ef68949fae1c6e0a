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

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdx.config import ConfigError, validate
from rdx.sweep import SweepRecorder, check_sweep

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
    from rdx.hub import HubUnavailable
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
    cli()
