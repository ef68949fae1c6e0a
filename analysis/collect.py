"""Stage 1 of the analysis: runs -> one tidy CSV, one row per completed run.

    python -m analysis.collect --runs runs --out results/runs.csv
    python -m analysis.collect --source wandb --project entity/project [--filters JSON]

Completed runs go to `--out`, diverged ones too (`diverged_epoch` and `diverged_step` set,
no figures: rdx.pipeline.loop.diverged); failed, running, preempted or unreadable runs go to
`<out stem>.incomplete.csv` and are listed on stderr, so no average ever mixes them in.
`status.json` is the truth: Hydra and submitit report failed jobs as completed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.outputs import write_failed
from rdx.records import natural_key, read_json, write_atomic

# The run's identity; `seed` separates repeats, `sweep` is bookkeeping only.
AXES = [
    "dataset",
    "attribute",
    "model",
    "behavior",
    "reward_model",
    "init",
    "dropout",
    "gamma",
    "delta",
    "seed",
    "epochs",
    "lr",
    "sweep",
]
INCOMPLETE_COLUMNS = ["run_dir", "state", "reason", "overrides", *AXES]


def incomplete_path(out: Path) -> Path:
    """results/runs.csv -> results/runs.incomplete.csv"""
    return out.with_name(f"{out.stem}.incomplete.csv")


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _overrides(run_dir: Path) -> str:
    """Hydra's overrides of the job, the quickest way to tell which sweep job failed."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    import yaml

    try:
        items = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError:
        return ""
    return " ".join(str(x) for x in items)


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` holding a summary.json or status.json, sorted."""
    found = {p.parent for name in ("summary.json", "status.json") for p in root.rglob(name)}
    # Natural order: Hydra's multirun job dirs 0, 1, ..., 10 are not zero-padded.
    return sorted(found, key=lambda p: natural_key(p.as_posix()))


def _stage(run_dir: Path) -> str | None:
    """The run's `stage` from its config.yaml (train or prepare), None if unreadable."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config.get("stage") if isinstance(config, dict) else None


def read_run(run_dir: Path, root: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(row, None) for a completed run, (None, incomplete-record) for a run that did not
    complete, (None, None) for a completed `stage=prepare` dir (artifacts only, no run)."""
    rel = run_dir.relative_to(root).as_posix() if run_dir != root else "."
    record: dict[str, Any] = {"run_dir": rel, "overrides": _overrides(run_dir)}
    summary: dict[str, Any] = {}
    try:
        status = _read_json(run_dir / "status.json") if (run_dir / "status.json").is_file() else {}
        if (run_dir / "summary.json").is_file():
            summary = _read_json(run_dir / "summary.json")
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        return None, {**record, "state": "unreadable", "reason": str(err)}
    problem = _type_problem(status, summary)
    if problem is not None:  # a damaged or foreign record: never a row of a table
        return None, {**record, "state": "unreadable", "reason": problem}
    state = status.get("state", "unknown")
    if state == "completed" and summary:
        # `ended` lets analysis.tables --duplicates latest keep the run that ended last.
        return {**summary, "ended": status.get("ended"), "run_dir": rel}, None
    if state == "completed" and _stage(run_dir) == "prepare":
        return None, None  # `stage=prepare` built artifacts: not a training run at all
    if not status:
        reason = "no status.json"
    elif state == "completed":
        reason = "completed but no summary.json"
    else:
        reason = status.get("error") or ""
    axes = {k: summary.get(k) for k in AXES}
    return None, {**record, "state": state, "reason": reason, **axes}


# What each summary field must hold for the tables: a wrong type marks the run unreadable
# here instead of failing analysis.tables later on a string where a number was expected.
_NUMBERS = ("acc", "reward", "acc_plus_reward")  # required numbers, null if diverged
_OPTIONAL_NUMBERS = ("gamma", "delta", "lr", "reward_model_accuracy")
_INTEGERS = ("seed", "epochs")
_OPTIONAL_INTEGERS = ("diverged_epoch", "diverged_step")  # rdx.finite.divergence
_STRINGS = ("dataset", "attribute", "dropout", "model", "behavior", "reward_model", "init")


def _is_number(value: Any) -> bool:
    """A finite int or float: NaN and inf are no result (rdx.finite)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_problem(status: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """What is wrong with the types of a run's status and summary, or None."""
    if status and not isinstance(status.get("state", ""), str):
        return f"status.json: state={status.get('state')!r} is not a string"
    if not summary:
        return None
    # A diverged run is a row with no figures (its numbers ended non-finite), never dropped.
    diverged = summary.get("diverged_epoch") is not None
    for key, value in summary.items():
        if key in _NUMBERS or key in _OPTIONAL_NUMBERS or key.startswith(("eval/", "train/")):
            ok = _is_number(value) or (value is None and (key not in _NUMBERS or diverged))
        elif key in _INTEGERS or key in _OPTIONAL_INTEGERS:
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok or (value is None and key in _OPTIONAL_INTEGERS)
        elif key in _STRINGS:
            ok = isinstance(value, str) or value is None
        else:
            continue
        if not ok:
            kind = "finite number" if isinstance(value, float) else _kind(key)
            return f"summary.json: {key}={value!r} is not a {kind}"
    missing = [k for k in _NUMBERS if k not in summary]
    if missing and status.get("state") == "completed":
        return f"summary.json: no {', '.join(missing)}"
    return None


def _kind(key: str) -> str:
    if key in _INTEGERS or key in _OPTIONAL_INTEGERS:
        return "integer"
    return "string" if key in _STRINGS else "number"


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Axes first, then metrics in a stable order, then run_dir."""
    df = pd.DataFrame(rows)
    for col in [*AXES, "run_dir"]:
        if col not in df:
            df[col] = None
    metrics = sorted(c for c in df.columns if c not in AXES and c != "run_dir")
    return df[[*AXES, *metrics, "run_dir"]]


def collect_local(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(completed runs, incomplete runs) under `root`; run_dir is relative to `root`."""
    done, incomplete = [], []
    for run_dir in find_run_dirs(root):
        row, bad = read_run(run_dir, root)
        if row is not None:
            done.append(row)
        elif bad is not None:
            incomplete.append(bad)
    return _tidy(done), pd.DataFrame(incomplete, columns=INCOMPLETE_COLUMNS)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        # Older W&B payloads wrap each config entry as {"value": ..., "desc": ...}.
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _axis_from(flat: Mapping[str, Any], summary: Mapping[str, Any], axis: str) -> Any:
    """An axis from the run config: the flat key, else one unique nested `*.axis`, else summary."""
    if axis in flat:
        return flat[axis]
    nested = [k for k in flat if k.endswith(f".{axis}")]
    if len(nested) == 1:
        return flat[nested[0]]
    return summary.get(axis)


def collect_wandb(
    project: str, filters: dict[str, Any] | None = None, api: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finished runs, the rest) of a W&B project, oldest first."""
    if api is None:
        import wandb

        api = wandb.Api()
    done, incomplete = [], []
    for run in api.runs(project, filters=filters or {}, order="+created_at"):
        summary = {k: run.summary.get(k) for k in run.summary.keys()}
        flat = _flatten(run.config)
        axes = {axis: _axis_from(flat, summary, axis) for axis in AXES}
        if axes["sweep"] is None:
            axes["sweep"] = getattr(run, "group", None)
        run_dir = "wandb:" + "/".join(run.path)
        bad = next(
            (k for k, v in summary.items() if isinstance(v, float) and not _is_number(v)), None
        )
        if run.state == "finished" and bad is not None:  # W&B stores NaN and inf as given
            reason = f"summary: {bad}={summary[bad]!r} is not a finite number"
            incomplete.append(
                {
                    **axes,
                    "run_dir": run_dir,
                    "state": "unreadable",
                    "reason": reason,
                    "overrides": "",
                }
            )
        elif run.state == "finished":
            metrics = {
                k: v
                for k, v in summary.items()
                if not k.startswith("_") and isinstance(v, int | float) and k not in AXES
            }
            done.append({**axes, **metrics, "run_dir": run_dir})
        else:
            incomplete.append(
                {**axes, "run_dir": run_dir, "state": run.state, "reason": "", "overrides": ""}
            )
    return _tidy(done), pd.DataFrame(incomplete, columns=INCOMPLETE_COLUMNS)


def write(done: pd.DataFrame, incomplete: pd.DataFrame, out: Path) -> None:
    """Write both CSVs (the incomplete one even when empty, so no stale list survives)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, done.to_csv(index=False))  # whole or not at all (a full disk)
    write_atomic(incomplete_path(out), incomplete.to_csv(index=False))


def warn_incomplete(incomplete: pd.DataFrame, out: Path, stream: Any = None) -> None:
    if incomplete.empty:
        return
    stream = stream or sys.stderr  # looked up per call, so redirection (and capsys) applies
    print(
        f"collect: warning: {len(incomplete)} incomplete run(s) left out of {out.name} "
        f"(listed in {incomplete_path(out)}):",
        file=stream,
    )
    for rec in incomplete.itertuples(index=False):
        detail = "; ".join(str(x) for x in (rec.reason, rec.overrides) if pd.notna(x) and x)
        print(f"  {rec.state:<11} {rec.run_dir}  {detail}".rstrip(), file=stream)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Collect runs into one tidy CSV.")
    parser.add_argument("--source", choices=["local", "wandb"], default="local")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="runs root (local)")
    parser.add_argument("--project", help="entity/project (wandb)")
    parser.add_argument("--filters", help='Mongo-style JSON, e.g. \'{"config.dataset": "yelp"}\'')
    parser.add_argument("--out", type=Path, default=Path("results/runs.csv"))
    args = parser.parse_args(None if argv is None else list(argv))
    if args.source == "local":
        if not args.runs.is_dir():
            print(f"collect: error: runs root {args.runs} is not a directory", file=sys.stderr)
            return 2
        done, incomplete = collect_local(args.runs)
    else:
        if not args.project:
            print("collect: error: --source wandb needs --project entity/project", file=sys.stderr)
            return 2
        try:
            filters = json.loads(args.filters) if args.filters else None
        except json.JSONDecodeError as err:
            print(f"collect: error: --filters is not JSON: {err}", file=sys.stderr)
            return 2
        try:
            done, incomplete = collect_wandb(args.project, filters)
        except Exception as err:  # wandb's own errors: no key, no network, no such project
            if not type(err).__module__.startswith(("wandb", "requests", "urllib3")):
                raise
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(
                f"collect: error: W&B project {args.project}: {first} (an API key comes from "
                "WANDB_API_KEY or `wandb login`; without SOURCE=wandb, make reads local run dirs)",
                file=sys.stderr,
            )
            return 2
    try:
        write(done, incomplete, args.out)
    except OSError as err:
        print(write_failed("collect", err), file=sys.stderr)
        return 2
    print(f"collect: {len(done)} completed run(s) -> {args.out}")
    warn_incomplete(incomplete, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
