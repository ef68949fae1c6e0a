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
any run did not complete: Hydra and submitit report failed jobs as completed (docs/design.md §6).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rdx import launch_checks
from rdx.config import Config, ConfigError, validate
from rdx.lm import check_positions
from rdx.sweep import SweepRecorder, check_sweep, record_refusal

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
        options = sorted({p.stem for d in dirs for p in d.glob("*.yaml")} | stored_options(key))
        if not options:
            continue
        for choice in value.split(","):
            if choice not in options and choice != "null":
                print(
                    f"rdx: config error: {key}={choice!r}: expected one of {', '.join(options)}",
                    file=sys.stderr,
                )
                sys.exit(2)


def stored_options(group: str) -> set[str]:
    """A group's options registered in Hydra's ConfigStore (rdx.config.register: algo)."""
    from hydra.core.config_store import ConfigStore

    return {k.removesuffix(".yaml") for k in ConfigStore.instance().repo.get(group, {})}


def _parse(overrides: list[str]) -> list[Any]:
    """Hydra's parsed overrides; one that does not parse is a ConfigError naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for i, arg in enumerate(overrides):
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as err:
            hint = ""
            if i and "=" not in arg and "=" in overrides[i - 1]:  # `hydra.run.dir=/my runs`
                hint = (
                    f"; if it is the rest of a value with a space, quote the whole override: "
                    f"'{overrides[i - 1]} {arg}'"
                )
            raise ConfigError(
                f"{arg!r}: not a valid override ({_hydra_message(err)}){hint}"
            ) from None
    return parsed


def _is_group(key: str) -> bool:
    """A config group (dropout, sweeps, experiment, ...): its value picks files to compose."""
    return "." not in key and any((root / key).is_dir() for root in SEARCH)


def _job_overrides(overrides: list[Any]) -> Iterator[tuple[list[str], str | None, str | None]]:
    """The jobs to check, as (override list, key, value): the first value of every sweep
    list (key None), then each other distinct value of each list in turn (every value is
    checked once; combinations are not multiplied out). `key` is set where the value is a
    plain one that can be set on the first job's config without composing again."""
    choices: dict[str, list[str]] = {}  # later overrides of a key win, as in Hydra's sweeper
    plain: dict[str, bool] = {}
    for o in overrides:
        key = o.get_key_element()
        if o.is_sweep_override():
            values = [f"{key}={v}" for v in sweep_values(o)]
            choices[key] = list(dict.fromkeys(values))  # 200 values of 5 distinct: 5 checks
        else:
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        plain[key] = (
            o.is_sweep_override()
            and not _is_group(key)
            and not key.startswith(("+", "~", "hydra"))
            and o.input_line is not None
            and not o.input_line.startswith(("+", "~"))
        )
    base = [values[0] for values in choices.values()]
    yield base, None, None
    for i, (key, values) in enumerate(choices.items()):
        for value in values[1:]:
            job = base[:i] + [value] + base[i + 1 :]
            yield job, (key if plain[key] else None), value.partition("=")[2]


def _split_argv(argv: list[str]) -> tuple[bool, str, list[str]] | None:
    """(multirun, config name, overrides) of a command that runs jobs; None when Hydra is
    asked for something else (--help, --cfg, --info, another config path), left to it."""
    multirun, name, overrides = False, "train", []
    args = iter(argv)
    for arg in args:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("-cn", "--config-name"):
            name = next(args, "")
        elif arg.startswith("--config-name="):
            name = arg.partition("=")[2]
        elif arg.startswith("-"):
            return None
        else:
            overrides.append(arg)
    if not name or not (CONF / f"{name.removesuffix('.yaml')}.yaml").is_file():
        return None  # Hydra names the missing config itself
    return multirun, name.removesuffix(".yaml"), overrides


def sweep_values(override: Any) -> list[str]:
    """The values of one sweep override that the pre-launch check validates: every value of
    a list, range or choice, and both ends of an interval (optuna's `interval(0.1,0.9)`,
    `tag(log,interval(...))`), which is the most a sampler can propose."""
    if override.is_interval_sweep():
        sweep = override.value()
        return [str(sweep.start), str(sweep.end)]
    return list(override.sweep_string_iterator())


def _hydra_message(err: Exception) -> str:
    """Hydra's composition errors run over several lines; the first says it, with the hint
    of the second when there is one (`To append to your config use +foo=1`)."""
    mark = getattr(err, "problem_mark", None)
    if mark is not None:  # a YAML file of conf/ or sweeps/ that does not parse, e.g. a tag
        problem = getattr(err, "problem", None) or type(err).__name__
        tag = " (configs are plain YAML: no !!python tags)" if "python/" in problem else ""
        return f"{mark.name}:{mark.line + 1}: {problem}{tag}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].startswith("Could not override") and len(lines) > 1:
        return f"{lines[0].removesuffix('.')}: unknown key; {lines[1][0].lower()}{lines[1][1:]}"
    return lines[0]


def check_overrides(argv: list[str]) -> None:
    """Compose and validate, before Hydra starts any job, every config the command runs.

    For a sweep (-m) that is each value of each sweep list, from the command line and from
    a sweeps/ preset, so a typo in the 40th value fails the launch in one line (exit 2)
    instead of job 40 hours later. A key that is not in the config, or an override Hydra
    cannot parse, fails here in one line too, as does a size the tiny models cannot hold
    (no torch needed). -m and -cn are understood; commands with other Hydra flags (--cfg,
    --help, -cp, ...) are left to Hydra.
    """
    split = _split_argv(argv)
    if split is None:
        return
    multirun, name, overrides = split
    import copy

    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    def fail(message: str) -> None:
        print(f"rdx: config error: {message}", file=sys.stderr)
        sys.exit(2)

    def check(cfg: DictConfig) -> Config:
        with open_dict(cfg):
            cfg.pop("hydra", None)
        config = validate(OmegaConf.to_container(cfg, resolve=True))
        problem = check_positions(config)  # a size that needs no torch: checked before it
        if problem is not None:
            raise ConfigError(problem)
        return config

    GlobalHydra.instance().clear()
    try:
        parsed = _parse(overrides)
        fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
        for arg, o in zip(overrides, parsed, strict=True):
            if o.is_sweep_override() and o.get_key_element().lstrip("+~").startswith("hydra."):
                fail(  # Hydra's own refusal is two lines and a hint about HYDRA_FULL_ERROR
                    f"{arg}: Hydra's own settings (hydra.*) cannot be swept; run one sweep "
                    "per value, e.g. one command per hydra.sweep.dir"
                )
        if not multirun and len(fixed) < len(overrides):
            sweep = next(a for a, o in zip(overrides, parsed, strict=True) if o.is_sweep_override())
            fail(f"{sweep}: a list of values sweeps only with -m; for a list value use key=[a,b]")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            try:
                base = compose(name, overrides=fixed, return_hydra_config=True)
                out = base.hydra.sweep.dir if multirun else base.hydra.run.dir
                params = base.hydra.sweeper.get("params") if multirun else None
                params = OmegaConf.to_container(params) if params is not None else {}
                preset = _parse([f"{k}={v}" for k, v in params.items()])
            except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
                fail(_hydra_message(err))
            if multirun and "BasicSweeper" in str(base.hydra.sweeper.get("_target_", "")):
                for arg, o in zip(overrides, parsed, strict=True):
                    if o.is_interval_sweep():  # the basic sweeper enumerates; it cannot sample
                        fail(
                            f"{arg}: an interval is sampled by a sweeper such as Optuna's: "
                            "add sweeps=gamma_search, or give a list (gamma=0.2,0.4,0.8)"
                        )
            if not multirun:
                alone = base.hydra.sweeper.get("params")
                alone = OmegaConf.to_container(alone) if alone is not None else {}
                keys = [o.get_key_element() for o in parsed]
                chosen = next((a.partition("=")[2] for a in fixed if a.startswith("sweeps=")), "")
                problem = launch_checks.preset_needs_multirun(
                    chosen or str(base.get("sweep")), alone, keys
                )
                if problem is not None:
                    fail(problem)
            modes, first = [], None
            for job, key, value in _job_overrides(preset + parsed):
                shown = " ".join(a for a in job if not a.startswith("hydra."))
                where = f" (sweep job {shown})" if multirun else ""
                try:
                    if key is not None and first is not None:
                        # A plain value: set on the first job's config, not composed again
                        # (composing takes ~0.4 s; a 200-value list took over a minute).
                        cfg = copy.deepcopy(first)
                        OmegaConf.update(cfg, key, _parse([f"{key}={value}"])[0].value())
                    else:
                        cfg = compose(name, overrides=job)
                        if first is None:
                            first = copy.deepcopy(cfg)
                    modes.append(check(cfg).dropout.mode)
                except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
                    fail(_hydra_message(err) + where)
                except ConfigError as err:
                    fail(f"{err}{where}")
            gamma_given = any(o.get_key_element().lstrip("+") == "gamma" for o in parsed)
            warning = launch_checks.ignored_gamma(gamma_given, modes)
            if warning is not None:
                print(f"rdx: warning: {warning}", file=sys.stderr)
            if multirun and "Slurm" in str(base.hydra.launcher.get("_target_", "")):
                problem = launch_checks.slurm_problem()
                if problem is not None:
                    print(f"rdx: launcher error: {problem}", file=sys.stderr)
                    sys.exit(2)
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        if not str(out).strip():  # `hydra.run.dir=$UNSET`: the records would land in the cwd
            print(
                f"rdx: run dir error: {key} is empty (an unset shell variable?); the run's "
                f"records would be written into the current directory: give {key} a "
                "directory, or leave it out for runs/<date>/<time>",
                file=sys.stderr,
            )
            sys.exit(2)
        problem = _unwritable(Path(str(out)))
        if problem is not None:
            print(f"rdx: run dir error: {problem}", file=sys.stderr)
            sys.exit(2)
    except ConfigError as err:
        fail(str(err))
    finally:
        GlobalHydra.instance().clear()


def _unwritable(path: Path) -> str | None:
    """Why Hydra could not create the output dir `path` (a read-only disk, a file in the
    way), or None; checked before Hydra tries and fails with a traceback."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            return None
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is a file, not a directory"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{path}: {existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path}: {existing} is not writable"
    return None


def _user_error(err: BaseException) -> str | None:
    """The one line for an error that is the user's to fix (exit 2), or None for a bug."""
    from rdx.data.corpus import DataError
    from rdx.finite import NonFinite
    from rdx.hub import HubUnavailable
    from rdx.records import RunDirError
    from rdx.run import one_line

    for kinds, label in (
        (ConfigError, "config error"),
        (DataError, "data error"),
        (HubUnavailable, "hub error"),
        (RunDirError, "run dir error"),
        (NonFinite, "training error"),
    ):
        if isinstance(err, kinds):
            return f"{label}: {one_line(err)}"
    if isinstance(err, OSError):  # a full, read-only or missing disk under the run dir
        where = f": {err.filename}" if err.filename else ""
        return f"error: {err.strerror or one_line(err)}{where}"
    return None


# An absolute path: relative ones resolve against the importing module, which breaks
# `python -m rdx.prepare` (it calls this same entry point).
@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # A log line that cannot be written (train.log on a full disk) is dropped, not printed
    # to stderr as a traceback of its own.
    logging.raiseExceptions = False
    run_dir = hydra_cfg.runtime.output_dir
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
        config = validate(raw)
        from rdx.devices import pin_worker_gpu
        from rdx.pipeline.ddp import process_rank

        pin_worker_gpu(raw.get("launcher"))  # before CUDA starts: local/joblib, a GPU per worker
        if process_rank(config.trainer.strategy) > 0:  # a ddp rank > 0 writes no records
            from rdx.run import execute_worker

            return execute_worker(config, run_dir)
        from rdx.records import RunRecords

        # Held before torch loads: a second launch in this run dir is refused in a second.
        with RunRecords(run_dir).lock():
            from rdx.run import execute, preflight

            preflight(config)
            execute(config, run_dir)
            from rdx.selection import sweep_value

            return sweep_value(run_dir)  # held-out Acc+Reward: what sweepers maximise
    except Exception as err:
        line = _user_error(err)
        if line is None:
            raise  # a bug: its traceback is what a developer needs (status.json says failed)
        if isinstance(err, ConfigError) and multirun:  # the others are recorded by execute()
            from rdx.records import RunRecords

            with contextlib.suppress(OSError):
                RunRecords(run_dir).set_status("failed", f"ConfigError: {err}")
        if multirun:
            record_refusal(run_dir, err)  # a held run dir: never counted as this job's result
            # One bad job of a sweep: one line, its status.json says failed, the others
            # run; the sweep's summary names it and exits 1. Raising would print Hydra's
            # traceback and end a basic-launcher sweep early.
            print(f"rdx: job {hydra_cfg.job.num}: {line}", file=sys.stderr)
            return None
        print(f"rdx: {line}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    argv = sys.argv[1:]
    conflict = launch_checks.flag_conflict(argv)
    if conflict is not None:
        print(f"rdx: error: {conflict}", file=sys.stderr)
        sys.exit(2)
    check_group_choices(argv)
    check_overrides(argv)
    code: Any = 0
    try:
        main()
    except SystemExit as err:  # Hydra exits 1 after printing a failed job's traceback
        code = err.code
    except KeyboardInterrupt:
        print(
            "rdx: interrupted (Ctrl-C): status.json says interrupted; the same command resumes",
            file=sys.stderr,
        )
        code = 130
    finally:
        # On Ctrl-C too: the summary then shows what ran and what was interrupted.
        if SweepRecorder.sweep_dir is not None and SweepRecorder.sweep_dir.is_dir():
            if not check_sweep(SweepRecorder.sweep_dir) and code == 0:
                code = 1
        SweepRecorder.release()
    sys.exit(code)


if __name__ == "__main__":
    cli()
