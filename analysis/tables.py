"""Stage 2 of the analysis: the tidy CSV -> the paper's tables, Markdown and LaTeX.

    python -m analysis.tables --csv results/runs.csv --out tables/ [--runs ROOT]
        [--allow-missing] [--full-grid] [--duplicates fail|latest]

table1: rows dropout x γ, columns attributes, cell Acc + Reward (paper Table 1).
table2: rows target model x {N/A, quantile γ=0.8}, columns attributes (paper Table 2).
table34: rows attribute x reward dropout No/Yes, columns BLEU ROUGE-1/2/L METEOR (Tables 3/4).

Cells are mean ± std (ddof=1) over replicates (π's seeds × β's sample sets). A table is
only built when its rows exist in the CSV; a missing cell of a table's grid fails unless
--allow-missing (then it shows as "—" and is listed). Where runs differ in axes that are
not a table's rows or columns (model, init, lr, ..., and any dotted, text or true/false
setting in the summary, e.g. `sampling.stop_at_eos` or `dropout.random_replacement`), the
table gets one block per combination instead of averaging across them.

A diverged run (its training went non-finite, rdx.pipeline.loop.diverged: no figures)
counts in its cell, not in the mean: "0.512 ± 0.020 (1/3 diverged)", or "diverged (3/3)"
when every seed did; each table lists those cells and counts their runs.

The PPO/DPO runs of the CSV are left to analysis.harmless (Fig. 4, Table 5). Each run of
this module first removes the table1/2/34 files an earlier one left in --out, then writes
only the tables its runs support, each naming those runs (a `Source:` line in Markdown, a
`% rdx runs:` comment in LaTeX). A CSV with no runs at all is an error.

Runs are read by analysis.runs: `--duplicates fail` (the default here) fails on two runs
of one cell and seed, `--duplicates latest` (what `make tables` passes) keeps the one that
ended last.
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

from analysis.harmless import ALGOS as HARMLESS_ALGOS
from analysis.outputs import write_failed
from analysis.runs import (
    ATTRIBUTES,
    CONTEXT,
    DROPOUTS,
    DUPLICATE_RULES,
    TABLE2_GAMMA,
    TARGET,
    RunsError,
    config_axes,
    context_label,
    diverged,
    fmt_replicate,
    fmt_value,
    identity_axes,
    provenance,
    read_csv,
    records,
    replicate,
    split_blocks,
)
from rdx.records import write_atomic

ATTRIBUTE_LABELS = {
    "negative": "Negative",
    "positive": "Positive",
    "world": "World",
    "sport": "Sport",
    "business": "Business",
    "sci_tech": "Sci/Tech",
}
TEXT_METRICS = {
    "eval/bleu": "BLEU",
    "eval/rouge1": "ROUGE-1",
    "eval/rouge2": "ROUGE-2",
    "eval/rougeL": "ROUGE-L",
    "eval/meteor": "METEOR",
}
OUTPUTS = ("table1", "table2", "table34")


class TableError(RunsError):
    """A table cannot be built as asked; the message names the offending cell."""


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
            rep = replicate(rec)
            if rep in values[cell]:
                other = runs[cell][rep]
                axes = [*identity_axes([rec, other]), "sweep"]
                differ = [k for k in axes if rec.get(k) != other.get(k)]
                raise TableError(
                    f"duplicated cell: {name_cell(row, col)} {fmt_replicate(rec)} "
                    f"has two runs ({other['run_dir']}, {rec['run_dir']}) differing only in "
                    f"{', '.join(differ[:6]) or 'nothing'}"
                )
            values[cell][rep] = value
            runs[cell][rep] = rec
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
        if rec["attribute"] != col:
            return None
        if diverged(rec):
            return math.nan  # DIVERGED: in the cell, never in its mean
        return None if rec.get(name) is None else float(rec[name])

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
    if diverged(rec):
        return math.nan  # DIVERGED
    return None if rec.get(col) is None else float(rec[col])


# ---------------------------------------------------------------- rendering


def _stats(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _finite(values: list[float] | None) -> list[float]:
    """A cell's values without its diverged runs (NaN in the cell: DIVERGED)."""
    return [v for v in values or [] if not math.isnan(v)]


def _bold_mask(grid: Grid) -> list[list[bool]]:
    """Cells whose displayed (3-decimal) mean is the best of their group and column."""
    mask = [[False] * len(grid.col_labels) for _ in grid.row_labels]
    for group in grid.bold_groups:
        for j in range(len(grid.col_labels)):
            finite = {i: _finite(grid.cells[i][j]) for i in group}
            means = {i: round(_stats(v)[0], 3) for i, v in finite.items() if v}
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
    finite = _finite(values)
    marks = [] if len(values) == modal_n else [f"n={len(values)}"]
    if not finite:  # every run of the cell diverged
        return f"diverged ({', '.join([*marks, f'{len(values)}/{len(values)}'])})"
    mean, std = _stats(finite)
    pm = " $\\pm$ " if tex else " ± "
    text = f"{mean:.3f}" if len(finite) < 2 else f"{mean:.3f}{pm}{std:.3f}"
    if len(finite) < len(values):
        marks.append(f"{len(values) - len(finite)}/{len(values)} diverged")
    return f"{text} ({', '.join(marks)})" if marks else text


def _diverged_cells(grid: Grid) -> list[tuple[str, int, int]]:
    """("N/A – Negative", diverged runs, runs) for each cell holding a diverged run."""
    out = []
    for labels, line in zip(grid.row_labels, grid.cells, strict=True):
        for col, values in zip(grid.col_labels, line, strict=True):
            n = len(values or []) - len(_finite(values))
            if n:
                out.append((f"{' '.join(labels)} {col}", n, len(values)))
    return out


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


def _diverged_line(grid: Grid) -> str:
    cells = _diverged_cells(grid)
    where = "; ".join(f"{name}: {n}/{total}" for name, n, total in cells)
    return f"Diverged runs: {sum(n for _, n, _ in cells)}, in {where}"


def _notes(grid: Grid, modal_n: int) -> str:
    diverged = (
        "; k/n diverged: runs whose training went non-finite, counted in n, not in the mean"
        if _diverged_cells(grid)
        else ""
    )
    return (
        f"{grid.caption}. Mean ± std over replicates (seeds × sample sets) where n > 1; "
        f"n = {modal_n} per cell unless marked (n=k){diverged}; bold: {grid.bold_note}."
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
    if _diverged_cells(grid):
        lines += ["", _diverged_line(grid)]
    return "\n".join(lines) + "\n"


def render_latex(grid: Grid, label: str) -> str:
    caption = f"{grid.title}: {_notes(grid, _modal_n(grid))} Runs: {grid.context}."
    if grid.missing:
        caption += f" Missing (---): {'; '.join(grid.missing)}."
    if _diverged_cells(grid):
        caption += f" {_diverged_line(grid)}."
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


def clear_outputs(out: Path) -> list[Path]:
    """Remove the tables an earlier run left in `out`; the paths removed."""
    removed = []
    for name in OUTPUTS:
        for path in (out / f"{name}.md", out / f"{name}.tex"):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def write_tables(built: dict[str, list[Grid]], out: Path, source: str = "") -> list[Path]:
    """Each built table as Markdown and LaTeX, naming its runs (`source`) in both; the
    tables not built are removed, so none from an earlier CSV outlives its rows."""
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out)
    written = []
    for name in OUTPUTS:
        if name not in built:
            continue
        paths = (out / f"{name}.md", out / f"{name}.tex")
        grids = built[name]
        md = "\n".join(render_markdown(g) for g in grids)
        tex = "\n".join(
            render_latex(g, f"tab:{name}" + (f"-{k}" if k else "")) for k, g in enumerate(grids)
        )
        if source:
            md += f"\nSource: {source}\n"
            tex = f"% rdx runs: {source}\n{tex}"
        write_atomic(paths[0], md)  # whole or not at all (a full disk)
        write_atomic(paths[1], tex)
        written += paths
    return written


def off_policy(df: pd.DataFrame) -> pd.DataFrame:
    """The CSV's runs that the off-policy tables are about (PPO/DPO have fig4 and table5)."""
    if "algo" not in df:
        return df
    return df[~df["algo"].isin(HARMLESS_ALGOS)]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paper tables from the tidy runs CSV.")
    parser.add_argument("--csv", type=Path, default=Path("results/runs.csv"))
    parser.add_argument("--out", type=Path, default=Path("tables"))
    parser.add_argument("--runs", type=Path, help="the runs root collect read (named in files)")
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
    # Before reading: a CSV that fails to load leaves no table of earlier runs behind.
    removed = clear_outputs(args.out) if args.out.is_dir() else []
    gone = f" (removed {len(removed)} older table file(s))" if removed else ""
    try:
        df = read_csv(args.csv)
        if df.empty:
            raise TableError(f"{args.csv} has no completed runs{gone}")
        rest = off_policy(df)
        if rest.empty:
            print(
                f"tables: no off-policy runs in {args.csv}: table1, table2, table34 skipped{gone}"
            )
            return 0
        recs = records(rest, str(args.csv), args.duplicates, notes)
        for line in notes:
            print(f"tables: {line}", file=sys.stderr)
        built, skipped = build(recs, args.full_grid)
        missing = [m for grids in built.values() for g in grids for m in g.missing]
        if missing and not args.allow_missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise TableError(
                f"missing cell: {missing[0]}{more}; --allow-missing (make: ALLOW_MISSING=1) "
                "renders it as —"
            )
    except RunsError as err:
        print(f"tables: error: {err}", file=sys.stderr)
        return 1
    try:
        written = write_tables(built, args.out, provenance(recs, args.runs))
    except OSError as err:
        print(write_failed("tables", err), file=sys.stderr)
        return 1
    for path in written:
        print(f"tables: wrote {path}")
    for name, reason in skipped.items():
        print(f"tables: skipped {name}: {reason}")
    for cell in missing:
        print(f"tables: warning: missing cell shown as —: {cell}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
