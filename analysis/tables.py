"""Stage 2 of the analysis: the tidy CSV -> the paper's tables, Markdown and LaTeX.

    python -m analysis.tables --csv results/runs.csv --out tables/ [--allow-missing] [--full-grid]
        [--duplicates fail|latest]

table1: rows dropout x γ, columns attributes, cell Acc + Reward (paper Table 1).
table2: rows target model x {N/A, quantile γ=0.8}, columns attributes (paper Table 2).
table34: rows attribute x reward dropout No/Yes, columns BLEU ROUGE-1/2/L METEOR (Tables 3/4).

Cells are mean ± std (ddof=1) over seeds. A table is only built when its rows exist in
the CSV; a missing cell of a table's grid fails unless --allow-missing (then it shows as
"—" and is listed). Where runs differ in axes that are not a table's rows or columns
(model, init, lr, ..., and any dotted, text or true/false setting in the summary, e.g.
`sampling.stop_at_eos` or `dropout.random_replacement`), the table gets one block per
combination instead of averaging across them.

Duplicates (two runs with the same axes and seed, e.g. one sweep run twice):
`--duplicates fail` (the default here) fails naming the cell; `--duplicates latest` (the
default of `make tables/figures/claims`) keeps the run that ended last (status.json
`ended`, collected as the CSV's `ended` column; without it, the later row of the CSV) and
says on stderr how many it left out.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ATTRIBUTES = ["negative", "positive", "world", "sport", "business", "sci_tech"]
ATTRIBUTE_LABELS = {
    "negative": "Negative",
    "positive": "Positive",
    "world": "World",
    "sport": "Sport",
    "business": "Business",
    "sci_tech": "Sci/Tech",
}
DROPOUTS = ["none", "random", "quantile", "threshold", "prompt_quantile", "global_top"]
INIT_ORDER = ["random", "behavior", "pretrained"]
TEXT_METRICS = {
    "eval/bleu": "BLEU",
    "eval/rouge1": "ROUGE-1",
    "eval/rouge2": "ROUGE-2",
    "eval/rougeL": "ROUGE-L",
    "eval/meteor": "METEOR",
}
# What the target was trained with, besides dropout: runs that differ here are different
# experiments, so they go to different blocks (or, in table2, different rows).
TARGET = ["model", "init", "epochs", "lr"]
CONTEXT = ["behavior", "reward_model", *TARGET]
IDENTITY = ["dataset", *CONTEXT, "attribute", "dropout", "gamma", "delta", "seed"]
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
TABLE2_GAMMA = 0.8
OUTPUTS = ("table1", "table2", "table34")


class TableError(Exception):
    """A table cannot be built as asked; the message names the offending cell."""


# ---------------------------------------------------------------- loading


def _py(value: Any) -> Any:
    """pandas scalar -> plain Python, NaN -> None, so values work as dict keys."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return _py(value.item())
    return value


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _describe(rec: dict[str, Any], keys: Iterable[str]) -> str:
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


def load(
    csv: Path, duplicates: str = "fail", warn: list[str] | None = None
) -> list[dict[str, Any]]:
    """The CSV's runs as dicts (NaN -> None), with γ/δ cleared where the dropout ignores them.

    `duplicates`: "fail" raises on two runs of one cell and seed; "latest" keeps the one
    that ended last and appends a line about the others to `warn`.
    """
    try:
        df = pd.read_csv(csv, dtype={"run_dir": str})  # job dirs 0, 1, ... are names, not ints
    except FileNotFoundError as err:
        raise TableError(f"no such CSV: {csv}") from err
    except pd.errors.EmptyDataError as err:
        raise TableError(f"{csv} is empty") from err
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as err:
        raise TableError(f"{csv} is not a CSV of runs ({type(err).__name__})") from err
    return records(df, str(csv), duplicates, warn)


def records(
    df: pd.DataFrame, source: str, duplicates: str = "fail", warn: list[str] | None = None
) -> list[dict[str, Any]]:
    """`load` for a frame already in memory (collect's output); `source` names it in errors."""
    if duplicates not in DUPLICATE_RULES:
        raise TableError(f"duplicates={duplicates}: expected one of {', '.join(DUPLICATE_RULES)}")
    missing = [c for c in ("attribute", "dropout", "seed") if c not in df]
    if missing:
        raise TableError(f"{source} lacks column(s) {', '.join(missing)}")
    if df.empty:
        raise TableError(f"{source} has no runs")
    df = df.copy()
    for col in [*IDENTITY, "run_dir"]:
        if col not in df:
            df[col] = None
    recs = [{k: _py(v) for k, v in row.items()} for row in df.to_dict("records")]
    recs = _finite_only(recs, source, warn)
    for rec in recs:
        # γ is ignored by none/threshold and δ by the others: a sweep that sets γ on an N/A
        # run has not made a different setting (rdx.config records γ null there too).
        if rec["dropout"] in ("none", "threshold"):
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
        raise TableError(f"{source}: {len(bad)} run(s) hold a non-finite number: {named}")
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
        raise TableError(
            f"duplicated cell: {_describe(dict(zip(axes, key, strict=True)), axes)} "
            f"has {len(dirs)} runs ({', '.join(dirs)}){more}; --duplicates latest keeps "
            "the run that ended last"
        )


# ---------------------------------------------------------------- grids


@dataclass
class Grid:
    """One block of a table: labelled rows x columns of per-seed values (None = missing)."""

    title: str
    caption: str
    context: str
    index_names: list[str]
    row_labels: list[tuple[str, ...]]
    col_labels: list[str]
    cells: list[list[list[float] | None]]
    bold_groups: list[list[int]]  # rows compared with each other, per column
    bold_note: str
    missing: list[str] = field(default_factory=list)


def _setting_key(rec: dict[str, Any]) -> tuple:
    return (rec["dropout"], rec["gamma"], rec["delta"], bool(rec.get("random_replacement")))


def _setting_order(key: tuple) -> tuple:
    dropout, gamma, delta, replacement = key
    rank = DROPOUTS.index(dropout) if dropout in DROPOUTS else len(DROPOUTS)
    return (rank, str(dropout), replacement, gamma if gamma is not None else -1.0, delta or 0.0)


def _setting_label(key: tuple) -> tuple[str, str]:
    dropout, gamma, delta, replacement = key
    if dropout == "none":
        return ("N/A", "–")
    if dropout == "threshold":
        return ("threshold", f"δ={fmt_value(delta)}" if delta is not None else "–")
    name = f"{dropout} (with replacement)" if replacement else str(dropout)
    return (name, fmt_value(gamma) if gamma is not None else "–")


def _attributes(recs: list[dict[str, Any]], full_grid: bool) -> list[str]:
    present = {r["attribute"] for r in recs}
    known = ATTRIBUTES if full_grid else [a for a in ATTRIBUTES if a in present]
    return known + sorted(present - set(ATTRIBUTES))


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


def _fill(
    recs: list[dict[str, Any]],
    row_of: Callable[[dict], Any],
    value_of: Callable[[dict, Any], float | None],
    rows: list[Any],
    cols: list[Any],
    name_cell: Callable[[Any, Any], str],
) -> tuple[list[list[list[float] | None]], list[str]]:
    """Per-seed values of every (row, col) cell; a seed seen twice in one cell fails.

    `value_of(run, col)` is None when the run has no value for that column (another
    attribute, or the metric was not logged).
    """
    values: dict[tuple, dict[Any, float]] = defaultdict(dict)
    runs: dict[tuple, dict[Any, dict]] = defaultdict(dict)
    for rec in recs:
        row = row_of(rec)
        if row not in rows:
            continue
        for col in cols:
            value = value_of(rec, col)
            if value is None:
                continue
            cell = (row, col)
            if rec["seed"] in values[cell]:
                other = runs[cell][rec["seed"]]
                axes = [*identity_axes([rec, other]), "sweep"]
                differ = [k for k in axes if rec.get(k) != other.get(k)]
                raise TableError(
                    f"duplicated cell: {name_cell(row, col)} seed={fmt_value(rec['seed'])} "
                    f"has two runs ({other['run_dir']}, {rec['run_dir']}) differing only in "
                    f"{', '.join(differ[:6]) or 'nothing'}"
                )
            values[cell][rec["seed"]] = value
            runs[cell][rec["seed"]] = rec
    cells, missing = [], []
    for row in rows:
        line = []
        for col in cols:
            got = values.get((row, col))
            line.append(list(got.values()) if got else None)
            if not got:
                missing.append(name_cell(row, col))
        cells.append(line)
    return cells, missing


def table1(recs: list[dict[str, Any]], full_grid: bool = False) -> list[Grid]:
    grids = []
    axes = [*CONTEXT, *config_axes(recs)]
    for block in split_blocks(recs, axes):
        rows = sorted({_setting_key(r) for r in block}, key=_setting_order)
        cols = _attributes(block, full_grid)
        context = context_label(block, axes, recs)

        def name(row: tuple, col: str) -> str:
            dropout, gamma = _setting_label(row)
            return f"table1 dropout={dropout} γ={gamma} attribute={col}"

        cells, missing = _fill(
            block, _setting_key, _col_metric("acc_plus_reward"), rows, cols, name
        )
        grids.append(
            Grid(
                title="Table 1",
                caption="Acc + Reward (last-epoch training batches)",
                context=context,
                index_names=["dropout", "γ"],
                row_labels=[_setting_label(r) for r in rows],
                col_labels=[ATTRIBUTE_LABELS.get(c, c) for c in cols],
                cells=cells,
                bold_groups=[list(range(len(rows)))],
                bold_note="best per column",
                missing=missing,
            )
        )
    return grids


def _col_metric(name: str) -> Callable[[dict, Any], float | None]:
    """Value of `name` for the column the run belongs to (columns are attributes)."""

    def value_of(rec: dict, col: Any) -> float | None:
        if rec["attribute"] != col or rec.get(name) is None:
            return None
        return float(rec[name])

    return value_of


def _target_label(target: tuple, varying: list[str]) -> str:
    extra = [
        f"{axis}={fmt_value(v)}"
        for axis, v in zip(TARGET, target, strict=True)
        if axis in varying and axis != "model" and v is not None
    ]
    return f"{target[0]} ({', '.join(extra)})" if extra else str(target[0])


def table2(recs: list[dict[str, Any]], full_grid: bool = False) -> tuple[list[Grid], str]:
    """(grids, reason skipped or "")."""
    chosen = [
        r
        for r in recs
        if r["dropout"] == "none"
        or (
            r["dropout"] == "quantile"
            and r["gamma"] is not None
            and math.isclose(r["gamma"], TABLE2_GAMMA)
        )
    ]
    models = sorted({str(r["model"]) for r in chosen})
    if len(models) < 2:
        return (
            [],
            f"needs ≥2 target models with N/A or quantile γ={TABLE2_GAMMA} runs "
            f"(found: {', '.join(models) or 'none'})",
        )
    grids = []
    context_axes = ["behavior", "reward_model", *config_axes(recs)]
    for block in split_blocks(chosen, context_axes):
        targets = sorted(
            {tuple(r[a] for a in TARGET) for r in block}, key=lambda t: tuple(str(v) for v in t)
        )
        varying = [a for i, a in enumerate(TARGET) if len({t[i] for t in targets}) > 1]
        rows = [(t, s) for t in targets for s in ("none", "quantile")]
        cols = _attributes(block, full_grid)
        # Target axes shared by every row (e.g. one lr for all models) go to the caption.
        context = context_label(block, context_axes + TARGET[1:], recs)

        def row_of(rec: dict) -> tuple:
            return (tuple(rec[a] for a in TARGET), rec["dropout"])

        def label(row: tuple, varying: list[str] = varying) -> tuple[str, str]:
            return (_target_label(row[0], varying), "N/A" if row[1] == "none" else "quantile")

        def name(row: tuple, col: str, label=label) -> str:
            model, setting = label(row)
            return f"table2 model={model} dropout={setting} attribute={col}"

        cells, missing = _fill(block, row_of, _col_metric("acc_plus_reward"), rows, cols, name)
        grids.append(
            Grid(
                title="Table 2",
                caption=f"Acc + Reward by target model, N/A vs quantile "
                f"γ={fmt_value(TABLE2_GAMMA)}",
                context=context,
                index_names=["target model", "dropout"],
                row_labels=[label(r) for r in rows],
                col_labels=[ATTRIBUTE_LABELS.get(c, c) for c in cols],
                cells=cells,
                bold_groups=[[2 * i, 2 * i + 1] for i in range(len(targets))],
                bold_note="better of N/A and quantile per model",
                missing=missing,
            )
        )
    return grids, ""


def table34(recs: list[dict[str, Any]], full_grid: bool = False) -> tuple[list[Grid], str]:
    """(grids, reason skipped or "")."""
    metrics = [m for m in TEXT_METRICS if any(r.get(m) is not None for r in recs)]
    if not metrics:
        return [], f"no text metrics ({', '.join(TEXT_METRICS)}) in the CSV"
    grids, skipped = [], []
    axes = [*CONTEXT, *config_axes(recs)]
    for block in split_blocks(recs, axes):
        context = context_label(block, axes, recs)
        gammas = [
            r["gamma"] for r in block if r["dropout"] == "quantile" and r["gamma"] is not None
        ]
        if not gammas or not any(r["dropout"] == "none" for r in block):
            skipped.append(context)
            continue
        top = max(gammas)
        chosen = [
            r
            for r in block
            if r["dropout"] == "none"
            or (
                r["dropout"] == "quantile"
                and r["gamma"] is not None
                and math.isclose(r["gamma"], top)
            )
        ]
        attrs = _attributes(chosen, full_grid)
        rows = [(a, rd) for a in attrs for rd in ("No", "Yes")]

        def row_of(rec: dict) -> tuple:
            return (rec["attribute"], "No" if rec["dropout"] == "none" else "Yes")

        def name(row: tuple, col: str) -> str:
            return f"table34 attribute={row[0]} R.D.={row[1]} metric={col}"

        cells, missing = _fill(chosen, row_of, _metric_any, rows, metrics, name)
        grids.append(
            Grid(
                title="Tables 3/4",
                caption=f"Text metrics of held-out generations; R.D. = reward "
                f"dropout, Yes = quantile γ={fmt_value(top)} (the largest γ present), No = N/A",
                context=context,
                index_names=["attribute", "R.D."],
                row_labels=[(ATTRIBUTE_LABELS.get(a, a), rd) for a, rd in rows],
                col_labels=[TEXT_METRICS[m] for m in metrics],
                cells=cells,
                bold_groups=[[2 * i, 2 * i + 1] for i in range(len(attrs))],
                bold_note="better of No and Yes per attribute",
                missing=missing,
            )
        )
    if not grids:
        return [], f"needs N/A and quantile runs in one setting (none in: {'; '.join(skipped)})"
    return grids, ""


def _metric_any(rec: dict, col: str) -> float | None:
    return None if rec.get(col) is None else float(rec[col])


# ---------------------------------------------------------------- rendering


def _stats(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _bold_mask(grid: Grid) -> list[list[bool]]:
    """Cells whose displayed (3-decimal) mean is the best of their group and column."""
    mask = [[False] * len(grid.col_labels) for _ in grid.row_labels]
    for group in grid.bold_groups:
        for j in range(len(grid.col_labels)):
            means = {i: round(_stats(grid.cells[i][j])[0], 3) for i in group if grid.cells[i][j]}
            if means:
                best = max(means.values())
                for i, m in means.items():
                    mask[i][j] = m == best
    return mask


def _modal_n(grid: Grid) -> int:
    counts = Counter(len(c) for line in grid.cells for c in line if c)
    return counts.most_common(1)[0][0] if counts else 0


def _cell_text(values: list[float] | None, modal_n: int, tex: bool) -> str:
    if not values:
        return "---" if tex else "—"
    mean, std = _stats(values)
    pm = " $\\pm$ " if tex else " ± "
    text = f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f}{pm}{std:.3f}"
    return text if len(values) == modal_n else f"{text} (n={len(values)})"


def _tex(text: str) -> str:
    """Escape LaTeX specials, then map the few non-ASCII symbols used in labels."""
    specials = {ch: "\\" + ch for ch in "&%$#_{}"} | {"\\": r"\textbackslash{}"}
    text = "".join(specials.get(ch, ch) for ch in text)  # one pass: no double escaping
    for uni, latex in (
        ("γ", r"$\gamma$"),
        ("δ", r"$\delta$"),
        ("±", r"$\pm$"),
        ("≥", r"$\geq$"),
        ("–", "--"),
        ("—", "---"),
        ("×", r"$\times$"),
    ):
        text = text.replace(uni, latex)
    return text


def _notes(grid: Grid, modal_n: int) -> str:
    return (
        f"{grid.caption}. Mean ± std over seeds where n > 1; n = {modal_n} per cell unless "
        f"marked (n=k); bold: {grid.bold_note}."
    )


def _frame(grid: Grid, tex: bool) -> pd.DataFrame:
    modal_n, bold = _modal_n(grid), _bold_mask(grid)
    rows = []
    for i, labels in enumerate(grid.row_labels):
        line = [_tex(x) if tex else x for x in labels]
        for j, values in enumerate(grid.cells[i]):
            text = _cell_text(values, modal_n, tex)
            if bold[i][j]:
                text = f"\\textbf{{{text}}}" if tex else f"**{text}**"
            line.append(text)
        rows.append(line)
    header = [*grid.index_names, *grid.col_labels]
    return pd.DataFrame(rows, columns=[_tex(h) for h in header] if tex else header)


def render_markdown(grid: Grid) -> str:
    table = _frame(grid, tex=False).to_markdown(
        index=False,
        disable_numparse=True,  # keep "0.800" from becoming "0.8"
        colalign=["left"] * len(grid.index_names) + ["right"] * len(grid.col_labels),
    )
    lines = [
        f"**{grid.title}.** {_notes(grid, _modal_n(grid))}",
        f"Runs: {grid.context}",
        "",
        table,
    ]
    if grid.missing:
        lines += ["", f"Missing cells (—): {'; '.join(grid.missing)}"]
    return "\n".join(lines) + "\n"


def render_latex(grid: Grid, label: str) -> str:
    caption = f"{grid.title}: {_notes(grid, _modal_n(grid))} Runs: {grid.context}."
    if grid.missing:
        caption += f" Missing (---): {'; '.join(grid.missing)}."
    return _frame(grid, tex=True).to_latex(
        index=False,
        escape=False,
        caption=_tex(caption),
        label=label,
        column_format="l" * len(grid.index_names) + "r" * len(grid.col_labels),
    )


# ---------------------------------------------------------------- CLI


def build(
    recs: list[dict[str, Any]], full_grid: bool = False
) -> tuple[dict[str, list[Grid]], dict[str, str]]:
    """({table name: grids} for tables that exist, {table name: why skipped})."""
    built = {"table1": table1(recs, full_grid)}
    skipped = {}
    for name, make in (("table2", table2), ("table34", table34)):
        grids, reason = make(recs, full_grid)
        if grids:
            built[name] = grids
        else:
            skipped[name] = reason
    for grids in built.values():
        if len(grids) > 1:  # name the block too when a table has several
            for g in grids:
                g.missing = [f"{m} [{g.context}]" for m in g.missing]
    return built, skipped


def write_tables(built: dict[str, list[Grid]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in OUTPUTS:
        paths = (out / f"{name}.md", out / f"{name}.tex")
        if name not in built:
            for stale in paths:  # a table from an earlier CSV must not outlive its rows
                stale.unlink(missing_ok=True)
            continue
        grids = built[name]
        paths[0].write_text("\n".join(render_markdown(g) for g in grids))
        paths[1].write_text(
            "\n".join(
                render_latex(g, f"tab:{name}" + (f"-{k}" if k else "")) for k, g in enumerate(grids)
            )
        )
        written += paths
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paper tables from the tidy runs CSV.")
    parser.add_argument("--csv", type=Path, default=Path("results/runs.csv"))
    parser.add_argument("--out", type=Path, default=Path("tables"))
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="render missing cells as — and list them instead of failing",
    )
    parser.add_argument(
        "--full-grid",
        action="store_true",
        help="demand all six attributes, not only those in the CSV",
    )
    parser.add_argument(
        "--duplicates",
        choices=DUPLICATE_RULES,
        default="fail",
        help="two runs of one cell and seed: fail naming them, or keep the one that ended last",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    notes: list[str] = []
    try:
        recs = load(args.csv, args.duplicates, notes)
        for line in notes:
            print(f"tables: {line}", file=sys.stderr)
        built, skipped = build(recs, args.full_grid)
        missing = [m for grids in built.values() for g in grids for m in g.missing]
        if missing and not args.allow_missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise TableError(f"missing cell: {missing[0]}{more}; --allow-missing renders it as —")
    except TableError as err:
        print(f"tables: error: {err}", file=sys.stderr)
        return 1
    for path in write_tables(built, args.out):
        print(f"tables: wrote {path}")
    for name, reason in skipped.items():
        print(f"tables: skipped {name}: {reason}")
    for cell in missing:
        print(f"tables: warning: missing cell shown as —: {cell}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
