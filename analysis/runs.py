"""The analysis's runs: the tidy CSV read into records, duplicates resolved, runs grouped.

analysis.tables, analysis.figures and analysis.claims all read runs through here, so that
they agree on what a run is (its identity axes), on which of two runs of one cell and seed
counts (`--duplicates`), and on which runs share a block.

Duplicates (two runs with the same axes and seed, e.g. one sweep run twice):
`--duplicates fail` fails naming the cell; `--duplicates latest` (the default of `make
tables/figures/claims`) keeps the run that ended last (status.json `ended`, collected as
the CSV's `ended` column; without it, the later row of the CSV) and says how many it left
out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from rdx.data.corpus import ATTRIBUTES as DATASET_ATTRIBUTES
from rdx.method import DROPOUT_MODES, GAMMA_MODES
from rdx.records import natural_key, open_record, read_jsonl

# The paper's column order: Yelp's sentiment attributes, then AG News' topics (the
# synthetic corpus holds both tasks, in that order).
ATTRIBUTES = [a for attrs in DATASET_ATTRIBUTES["synthetic"].values() for a in attrs]
# Rows as in the paper's Table 1: N/A, random (the plain dropout baseline), then rdx's order.
DROPOUTS = sorted(DROPOUT_MODES, key=lambda m: (m != "none", m != "random", DROPOUT_MODES.index(m)))
NO_GAMMA = [m for m in DROPOUT_MODES if m not in GAMMA_MODES]  # none, threshold
INIT_ORDER = ["random", "uniform", "behavior", "pretrained"]
# Not pretrained: fresh weights (uniform: the authors' U(±0.05) draw, rdx.lm.models)
RANDOM_INITS = ("random", "uniform")
# What the target was trained with, besides dropout: runs that differ here are different
# experiments, so they go to different blocks (or, in table2, different rows).
TARGET = ["model", "init", "epochs", "lr"]
CONTEXT = ["behavior", "reward_model", *TARGET]
# sample_set (sampling.seed): β's draw; with seed (π's) it names one replicate of a cell
IDENTITY = ["dataset", *CONTEXT, "attribute", "dropout", "gamma", "delta", "sample_set", "seed"]
# Summary keys that are settings, not metrics, though named without a dot (rdx's summary
# writes sampling.* and the target's hub and trainable part flat).
EXTRA_CONFIG = [
    "model_hub",
    "trainable",
    "temperature",
    "stop_at_eos",
    "top_k",
    "repetition_penalty",
    "prefix_pool",
    "fresh_per_epoch",
]
# An option of one dropout mode is part of that arm (a row), not a block: it is cleared on
# the other modes' runs, where it means nothing.
DROPOUT_OPTIONS = {"random_replacement": "random"}
NOT_AXES = {"run_dir", "sweep", "ended"}  # bookkeeping: where and when, not what
DUPLICATE_RULES = ("fail", "latest")
# The paper's γ, the one place it is written: Table 2 and its claim compare N/A with quantile
# dropout at it, Fig. 6 shows a quantile run at it, Fig. 4's PPO + R.D. arm is PPO at it.
PAPER_GAMMA = 0.8
TABLE2_GAMMA = PAPER_GAMMA  # the name analysis.tables and analysis.claims import


class RunsError(Exception):
    """The runs cannot be read or analysed as asked; the message names the offending cell."""


def _py(value: Any) -> Any:
    """pandas scalar -> plain Python, NaN -> None, so values work as dict keys."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return _py(value.item())
    return value


def diverged(rec: dict[str, Any]) -> bool:
    """A run whose training went non-finite (rdx.finite.divergence): kept, with no figures;
    the tables show it in its cell and the degeneration claims count it as a collapse."""
    return rec.get("diverged_epoch") is not None


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def describe(rec: dict[str, Any], keys: Iterable[str]) -> str:
    return " ".join(f"{k}={fmt_value(rec[k])}" for k in keys if rec.get(k) is not None)


def config_axes(recs: list[dict[str, Any]]) -> list[str]:
    """Setting keys beyond IDENTITY that some run records: dotted config keys such as
    `sampling.stop_at_eos` (metrics are named with "/"), `model_hub`, `trainable`, and any
    other key with a text or true/false value (metrics are numbers). A plain numeric key
    without a dot reads as a metric: a summary should name its settings with dots."""
    keys = set()
    for rec in recs:
        for key, value in rec.items():
            if value is None or key in IDENTITY or key in NOT_AXES or key in DROPOUT_OPTIONS:
                continue
            if "." in key or key in EXTRA_CONFIG or isinstance(value, str | bool):
                keys.add(key)
    return sorted(keys)


def identity_axes(recs: list[dict[str, Any]]) -> list[str]:
    """What makes two runs the same cell and seed: IDENTITY plus the runs' config axes."""
    options = [k for k in DROPOUT_OPTIONS if any(rec.get(k) is not None for rec in recs)]
    return [*IDENTITY, *options, *config_axes(recs)]


def read_csv(csv: Path) -> pd.DataFrame:
    """The tidy CSV of analysis.collect; a missing, empty, foreign or incomplete file is a
    RunsError."""
    try:
        _check_complete(csv)
        return pd.read_csv(csv, dtype={"run_dir": str})  # job dirs 0, 1, ... are names
    except FileNotFoundError as err:
        raise RunsError(f"no such CSV: {csv}") from err
    except OSError as err:  # a FIFO, a directory, no permission
        raise RunsError(f"{csv}: cannot read it ({err.strerror or err})") from err
    except pd.errors.EmptyDataError as err:
        raise RunsError(f"{csv} is empty") from err
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as err:
        raise RunsError(f"{csv} is not a CSV of runs ({type(err).__name__})") from err


def _check_complete(csv: Path) -> None:
    """RunsError when the CSV ends mid-row: a copy or a write cut short (a full disk) whose
    rows pandas would read as fewer runs, without a word. analysis.collect writes it in one
    rename, so its own output is whole; a cut exactly at a row's end is not detectable."""
    with open_record(csv) as f:  # a FIFO in its place: an error, not a hang
        size = f.seek(0, 2)
        if size == 0:
            return  # read_csv says "empty"
        f.seek(size - 1)
        if f.read(1) != b"\n":
            f.seek(0)
            rows = f.read().count(b"\n")
            raise RunsError(
                f"{csv} is not complete: it ends mid-row, after {rows} line(s) (a write cut "
                "short, e.g. by a full disk); rerun analysis.collect (make tables does)"
            )


def load(
    csv: Path, duplicates: str = "fail", warn: list[str] | None = None
) -> list[dict[str, Any]]:
    """The CSV's runs as dicts (NaN -> None), with γ/δ cleared where the dropout ignores them.

    `duplicates`: "fail" raises on two runs of one cell and seed; "latest" keeps the one
    that ended last and appends a line about the others to `warn`.
    """
    return records(read_csv(csv), str(csv), duplicates, warn)


def records(
    df: pd.DataFrame, source: str, duplicates: str = "fail", warn: list[str] | None = None
) -> list[dict[str, Any]]:
    """`load` for a frame already in memory (collect's output); `source` names it in errors."""
    if duplicates not in DUPLICATE_RULES:
        raise RunsError(f"duplicates={duplicates}: expected one of {', '.join(DUPLICATE_RULES)}")
    missing = [c for c in ("attribute", "dropout", "seed") if c not in df]
    if missing:
        raise RunsError(f"{source} lacks column(s) {', '.join(missing)}")
    if df.empty:
        raise RunsError(f"{source} has no runs")
    df = df.copy()
    for col in [*IDENTITY, "run_dir"]:
        if col not in df:
            df[col] = None
    recs = [{k: _py(v) for k, v in row.items()} for row in df.to_dict("records")]
    recs = _finite_only(recs, source, warn)
    for rec in recs:
        if rec["sample_set"] is None:  # runs recorded before sampling.seed drew set 0
            rec["sample_set"] = 0
        # γ is ignored by none/threshold and δ by the others: a sweep that sets γ on an N/A
        # run has not made a different setting (rdx.config records γ null there too).
        if rec["dropout"] in NO_GAMMA:
            rec["gamma"] = None
        if rec["dropout"] != "threshold":
            rec["delta"] = None
        for option, mode in DROPOUT_OPTIONS.items():
            if rec["dropout"] != mode and option in rec:
                rec[option] = None
    if duplicates == "latest":
        recs, dropped = keep_latest(recs)
        if dropped and warn is not None:
            kept, old = dropped[0]
            more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
            warn.append(
                f"--duplicates latest: left out {len(dropped)} older duplicate run(s), e.g. "
                f"{old.get('run_dir')} (kept {kept.get('run_dir')}){more}"
            )
    check_duplicates(recs)
    return recs


def replicate(rec: dict[str, Any]) -> tuple[Any, Any]:
    """One replicate of a cell: (β's sample set, π's seed)."""
    return (rec.get("sample_set") or 0, rec["seed"])


def fmt_replicate(rec: dict[str, Any]) -> str:
    sample_set = rec.get("sample_set") or 0
    return (f"sample_set={fmt_value(sample_set)} " if sample_set else "") + (
        f"seed={fmt_value(rec['seed'])}"
    )


def _finite_only(
    recs: list[dict[str, Any]], source: str, warn: list[str] | None
) -> list[dict[str, Any]]:
    """The runs whose numbers are all finite; an inf (a NaN reads as a missing value) is no
    result: the run is left out and named in `warn`, never shown as a cell."""
    kept, bad = [], []
    for rec in recs:
        key = next(
            (k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)), None
        )
        if key is None:
            kept.append(rec)
        else:
            bad.append(f"{rec.get('run_dir')} ({key}={rec[key]})")
    if not bad:
        return kept
    named = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    if not kept or warn is None:
        raise RunsError(f"{source}: {len(bad)} run(s) hold a non-finite number: {named}")
    warn.append(f"left out {len(bad)} run(s) of {source} holding a non-finite number: {named}")
    return kept


def _end_time(rec: dict[str, Any]) -> float:
    """status.json's `ended` as a POSIX time; -inf when unknown (older than any known)."""
    ended = rec.get("ended")
    if ended is None:
        return -math.inf
    try:
        return pd.Timestamp(ended).timestamp()
    except (ValueError, TypeError):
        return -math.inf


def keep_latest(
    recs: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(one run per cell and seed, [(kept, left out), ...]): the run that ended last wins.

    Ties (or no `ended`) go to the later record, i.e. the later row of the CSV.
    """
    axes = identity_axes(recs)
    best: dict[tuple, tuple[tuple, dict[str, Any]]] = {}
    dropped = []
    for i, rec in enumerate(recs):
        key = tuple(rec.get(k) for k in axes)
        rank = (_end_time(rec), i)
        if key in best:
            old_rank, old = best[key]
            winner, loser = (rec, old) if rank > old_rank else (old, rec)
            dropped.append((winner, loser))
            rank = max(rank, old_rank)
            rec = winner
        best[key] = (rank, rec)
    kept = [rec for _, rec in sorted(best.values(), key=lambda item: item[0][1])]
    return kept, dropped


def check_duplicates(recs: list[dict[str, Any]]) -> None:
    """Fail on two runs with identical axes (seed included), naming the first such cell."""
    axes = identity_axes(recs)
    seen: dict[tuple, list[str]] = defaultdict(list)
    for rec in recs:
        seen[tuple(rec.get(k) for k in axes)].append(str(rec.get("run_dir")))
    dups = [(key, dirs) for key, dirs in seen.items() if len(dirs) > 1]
    if dups:
        key, dirs = dups[0]
        more = f"; and {len(dups) - 1} more duplicated cell(s)" if len(dups) > 1 else ""
        raise RunsError(
            f"duplicated cell: {describe(dict(zip(axes, key, strict=True)), axes)} "
            f"has {len(dirs)} runs ({', '.join(dirs)}){more}; --duplicates latest keeps "
            "the run that ended last"
        )


# ---------------------------------------------------------------- grouping


def split_blocks(recs: list[dict[str, Any]], axes: list[str]) -> list[list[dict[str, Any]]]:
    """Split runs by the context `axes`; datasets share a block unless they share attributes.

    The paper's Tables 1/2 put Yelp's sentiment and AG News' topic attributes side by
    side, so two datasets merge into one block as long as no attribute comes from both.
    """
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for rec in recs:
        groups[tuple(rec.get(a) for a in axes)].append(rec)
    blocks = []

    def order(key: tuple) -> tuple:  # random init before pretrained, as in the paper
        return tuple(
            (INIT_ORDER.index(v) if a == "init" and v in INIT_ORDER else 9, str(v))
            for a, v in zip(axes, key, strict=True)
        )

    for key in sorted(groups, key=order):
        group = groups[key]
        datasets_of: dict[str, set] = defaultdict(set)
        for rec in group:
            datasets_of[rec["attribute"]].add(rec["dataset"])
        if any(len(ds) > 1 for ds in datasets_of.values()):
            by_ds: dict[Any, list] = defaultdict(list)
            for rec in group:
                by_ds[rec["dataset"]].append(rec)
            blocks += [by_ds[d] for d in sorted(by_ds, key=str)]
        else:
            blocks.append(group)
    return blocks


def context_label(
    recs: list[dict[str, Any]], axes: list[str], every: list[dict[str, Any]] | None = None
) -> str:
    """The block's shared settings, e.g. "dataset=yelp, model=tiny, init=random".

    A config axis (`sampling.top_k`, ...) is named only where it varies across `every`,
    the whole CSV, so that a single-regime table keeps a short caption.
    """
    parts = []
    datasets = sorted({str(r["dataset"]) for r in recs if r["dataset"] is not None})
    if datasets:
        parts.append(f"dataset={'+'.join(datasets)}")
    extra = set(config_axes(recs))
    for axis in axes:
        if axis in extra and len({r.get(axis) for r in every or recs}) < 2:
            continue
        values = {r.get(axis) for r in recs} - {None}
        if len(values) == 1:
            parts.append(f"{axis}={fmt_value(values.pop())}")
    return ", ".join(parts)


# ---------------------------------------------------------------- a run's own files


def run_path(run_dir: str | int, root: Path | None) -> Path:
    """A CSV's run_dir (relative to the runs root collect read) as a path."""
    path = Path(str(run_dir))  # a CSV read elsewhere may hold job dirs 0, 1, ... as ints
    return path if root is None or path.is_absolute() else root / path


def epoch_curves(run_dir: Path) -> dict[int, dict[str, float]]:
    """{epoch: epoch record} of metrics.jsonl; a resumed run may repeat an epoch, the last
    record wins."""
    return {
        int(r["epoch"]): r
        for r in read_jsonl(run_dir / "metrics.jsonl")
        if r.get("kind") == "epoch"
    }


def provenance(recs: list[dict[str, Any]], root: Path | str | None) -> str:
    """One line naming the runs an output was made from: the root and every run dir."""
    dirs = sorted({str(r.get("run_dir")) for r in recs}, key=natural_key)
    where = f" under {root}" if root is not None and str(root) else ""
    return f"{len(dirs)} run(s){where}: {', '.join(dirs)}"
