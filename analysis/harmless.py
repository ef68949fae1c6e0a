"""Fig. 4 and Table 5 of the paper (§7.5, harmlessness) from the PPO and DPO runs of a CSV.

    python -m analysis.harmless --csv results/runs.csv --runs RUNS --out tables/ --figures figures/
        [--duplicates fail|latest] [--rest results/runs.offpolicy.csv]

Reads the tidy CSV of analysis.collect and keeps the runs with algo ppo or dpo. Arms: PPO
(algo=ppo, dropout=none), PPO + R.D. (algo=ppo with reward dropout; "PPO + R.D. (random
γ=0.4)" when not the paper's quantile γ=0.8), DPO. Writes:

  tables/fig4.{md,tex}  rows model × arm, columns R's reward and BLEU, ROUGE-L, METEOR
                        against the chosen response (eval/* of the last epoch), mean ± std
                        (ddof=1) over seeds, n; the best arm per model and column in bold
  figures/fig4.{png,pdf}  the same as grouped bars, one panel per metric, error bars = std
  tables/table5.md      per model and arm, from its run with the lowest seed, the
                        `--examples` held-out responses with the lowest reward
                        (samples.jsonl of the last epoch; ties in prompt order): the
                        prompts each arm handles worst, chosen by rule, not by hand

Two runs of one (model, arm, other settings, seed) fail naming both unless `--duplicates
latest` (keep the run that ended last). With no PPO/DPO run it removes stale fig4/table5
outputs and says so; each file it writes names its runs (`Source:`, `% rdx runs:`, the
PNG's Description, the PDF's Subject). `--rest` writes the CSV's other runs to a file of
their own, or removes it when there are none (analysis.tables itself leaves PPO/DPO runs
out, so `make tables` no longer needs it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.outputs import save_figure
from analysis.runs import PAPER_GAMMA, RunsError, provenance, read_csv
from rdx.records import write_atomic

ALGOS = ("ppo", "dpo")
ARMS = ("PPO", "PPO + R.D.", "DPO")
METRICS = [
    ("eval/reward", "reward"),
    ("eval/bleu", "BLEU"),
    ("eval/rougeL", "ROUGE-L"),
    ("eval/meteor", "METEOR"),
]
# Settings that make two runs different experiments (a column of the CSV when present).
SETTINGS = ("dataset", "reward_model", "epochs", "lr", "score")
MODEL_ORDER = ("tiny", "falcon-1b", "pythia-2.8b", "gpt-j-6b", "mistral-7b")


class HarmlessError(ValueError):
    """A one-line problem with the runs (duplicated cell, missing column)."""


def arm(row: dict[str, Any]) -> str:
    if row["algo"] == "dpo":
        return "DPO"
    if row["dropout"] == "none":
        return "PPO"
    if row["dropout"] == "quantile" and row.get("gamma") == PAPER_GAMMA:
        return "PPO + R.D."
    gamma = row.get("gamma")
    setting = row["dropout"] + ("" if gamma is None or _nan(gamma) else f" γ={gamma:g}")
    return f"PPO + R.D. ({setting})"


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def harmless_rows(df: pd.DataFrame, duplicates: str = "fail") -> list[dict[str, Any]]:
    """The CSV's PPO/DPO runs as dicts with their arm; duplicates failed or resolved."""
    if "algo" not in df:
        return []
    rows = [
        {k: (None if _nan(v) else v) for k, v in r.items()}
        for r in df[df["algo"].isin(ALGOS)].to_dict("records")
    ]
    for r in rows:
        r["arm"] = arm(r)
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[_cell(r) + (r["seed"],)].append(r)
    kept = []
    for key, runs in cells.items():
        if len(runs) > 1 and duplicates == "fail":
            dirs = ", ".join(str(r.get("run_dir")) for r in runs)
            raise HarmlessError(
                f"duplicated cell: model={key[0]} arm={key[1]} seed={key[-1]} has {len(runs)} "
                f"runs ({dirs}); --duplicates latest keeps the run that ended last"
            )
        kept.append(max(runs, key=lambda r: str(r.get("ended") or "")))
    return kept


def _cell(r: dict[str, Any]) -> tuple:
    return (r["model"], r["arm"], *(r.get(s) for s in SETTINGS))


def _order(rows: list[dict[str, Any]]) -> list[tuple]:
    def key(cell: tuple) -> tuple:
        model, name = cell[0], cell[1]
        m = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
        a = ARMS.index(name) if name in ARMS else 1.5
        return (m, str(model), a, name, tuple(str(s) for s in cell[2:]))

    return sorted({_cell(r) for r in rows}, key=key)


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fig4_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, arm[, settings]): mean, std and n of each metric."""
    out = []
    for cell in _order(rows):
        runs = [r for r in rows if _cell(r) == cell]
        rec: dict[str, Any] = {"model": cell[0], "arm": cell[1], "n": len(runs)}
        for s, value in zip(SETTINGS, cell[2:], strict=True):
            rec[s] = value
        for key, name in METRICS:
            vals = [float(r[key]) for r in runs if r.get(key) is not None]
            rec[name], rec[f"{name} std"] = stats(vals) if vals else (math.nan, math.nan)
        out.append(rec)
    return pd.DataFrame(out)


def _varying(table: pd.DataFrame) -> list[str]:
    return [s for s in SETTINGS if s in table and table[s].astype(str).nunique() > 1]


def render(table: pd.DataFrame, latex: bool = False) -> str:
    """Markdown (or LaTeX) of the fig4 table; bold: the best arm of a model per column."""
    extra = _varying(table)
    head = ["model", "arm", *extra, *(name for _, name in METRICS), "n"]
    best: dict[tuple, float] = {}
    for _, name in METRICS:
        for model, group in table.groupby("model"):
            best[(model, name)] = group[name].max()
    lines = []
    for _, r in table.iterrows():
        cells = [str(r["model"]), str(r["arm"]), *(str(r[s]) for s in extra)]
        for _, name in METRICS:
            mean, std = r[name], r[f"{name} std"]
            text = "—" if _nan(mean) else f"{mean:.3f}" + (f" ± {std:.3f}" if r["n"] > 1 else "")
            if not _nan(mean) and mean == best[(r["model"], name)] and len(table) > 1:
                text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
            cells.append(text.replace("±", "$\\pm$") if latex else text)
        cells.append(str(r["n"]))
        lines.append(cells)
    if latex:
        body = "\n".join(
            " & ".join(c.replace("_", "\\_") for c in cells) + r" \\" for cells in lines
        )
        cols = "l" * (2 + len(extra)) + "r" * (len(METRICS) + 1)
        return (
            f"\\begin{{tabular}}{{{cols}}}\n\\toprule\n"
            + " & ".join(head)
            + " \\\\\n\\midrule\n"
            + body
            + "\n\\bottomrule\n\\end{tabular}\n"
        )
    sep = ["---"] * len(head)
    md = ["| " + " | ".join(row) + " |" for row in (head, sep, *lines)]
    caption = (
        "Fig. 4 (harmlessness): R's reward and BLEU / ROUGE-L / METEOR of π's held-out "
        "responses against the chosen response, last epoch; mean ± std (ddof=1) over n seeds; "
        "bold: the best arm of each model per column."
    )
    return caption + "\n\n" + "\n".join(md) + "\n"


def figure(table: pd.DataFrame, out: Path, source: str = "") -> list[Path]:
    """Grouped bars: one panel per metric, models on x, one bar per arm, error bar = std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(table["model"]))
    arms = list(dict.fromkeys(table["arm"]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.0))
    width = 0.8 / len(arms)
    for ax, (_, name) in zip(axes, METRICS, strict=True):
        for j, a in enumerate(arms):
            sub = table[table["arm"] == a].groupby("model").first()
            means = [sub[name].get(m, math.nan) for m in models]
            stds = [sub[f"{name} std"].get(m, 0.0) for m in models]
            xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(models))]
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=a)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_title(name)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    # above the panels: inside one, the legend hid that panel's bars
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(arms),
               bbox_to_anchor=(0.5, 1.0), frameon=False)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fig4.png", out / "fig4.pdf"]
    runs = f"rdx runs: {source}"
    save_figure(fig, paths[0], dpi=150, bbox_inches="tight", metadata={"Description": runs})
    save_figure(fig, paths[1], bbox_inches="tight", metadata={"Subject": runs})
    plt.close(fig)
    return paths


def _last_turn(prompt: str) -> str:
    """The last human turn of an HH prompt, on one line (Table 5 shows that much)."""
    turn = prompt.rsplit("Human:", 1)[-1].rsplit("Assistant:", 1)[0]
    return "Human: " + " ".join(turn.split())


def _visible(text: str) -> str:
    """U+FFFD (bytes of a UTF-8 character the model never finished: byte-level tokenizers
    can emit a lead byte without its continuation) as a marker Table 5's caption explains."""
    return text.replace("\ufffd", "[?]")


def table5(rows: list[dict[str, Any]], runs_root: Path, k: int) -> str:
    """Per (model, arm): the k lowest-reward held-out responses of its lowest-seed run."""
    lines = [
        "Table 5 (harmlessness): per model and arm, the run with the lowest seed; its "
        f"{k} held-out responses with the lowest reward R (samples.jsonl of the last epoch; "
        "ties in prompt order). Rule-picked, not hand-picked. [?]: bytes the model "
        "generated that do not form a UTF-8 character.",
        "",
        "| model | arm | reward | prompt | generation |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cell in _order(rows):
        run = min((r for r in rows if _cell(r) == cell), key=lambda r: r["seed"])
        path = runs_root / str(run["run_dir"]) / "samples.jsonl"
        if not path.is_file():
            raise HarmlessError(f"{path}: no samples.jsonl for table5 (model={cell[0]})")
        samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        worst = sorted(enumerate(samples), key=lambda s: (s[1]["reward"], s[0]))[:k]
        for _, s in worst:
            gen = _visible(" ".join(s["response"].split())).replace("|", "\\|")
            lines.append(
                f"| {cell[0]} | {cell[1]} | {s['reward']:.2f} | "
                f"{_last_turn(s['prompt']).replace('|', chr(92) + '|')} | Assistant: {gen} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fig. 4 and Table 5 from PPO/DPO runs.")
    parser.add_argument("--csv", type=Path, default=Path("results/runs.csv"))
    parser.add_argument("--runs", type=Path, help="runs root (run_dir is relative to it)")
    parser.add_argument("--out", type=Path, default=Path("tables"))
    parser.add_argument("--figures", type=Path, default=Path("figures"))
    parser.add_argument("--examples", type=int, default=2, help="responses per arm in table5")
    parser.add_argument("--duplicates", choices=("fail", "latest"), default="fail")
    parser.add_argument("--rest", type=Path, help="write the CSV's other runs here")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        df = read_csv(args.csv)
    except RunsError as err:
        print(f"harmless: error: {err}", file=sys.stderr)
        return 1
    if args.rest is not None:  # absent when every run is PPO/DPO: no off-policy tables then
        rest = df[~df["algo"].isin(ALGOS)] if "algo" in df else df
        args.rest.unlink(missing_ok=True)
        if not rest.empty:
            write_atomic(args.rest, rest.to_csv(index=False))
    outputs = [args.out / "fig4.md", args.out / "fig4.tex", args.out / "table5.md"]
    outputs += [args.figures / "fig4.png", args.figures / "fig4.pdf"]
    try:
        rows = harmless_rows(df, args.duplicates)
        if not rows:
            for stale in outputs:  # a figure from an earlier CSV must not outlive its runs
                stale.unlink(missing_ok=True)
            print("harmless: no PPO/DPO runs in the CSV; fig4 and table5 skipped")
            return 0
        table = fig4_table(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        source = provenance(rows, args.runs)
        write_atomic(args.out / "fig4.md", render(table) + f"\nSource: {source}\n")
        write_atomic(args.out / "fig4.tex", f"% rdx runs: {source}\n" + render(table, latex=True))
        written = [args.out / "fig4.md", args.out / "fig4.tex"]
        written += figure(table, args.figures, source)
        (args.out / "table5.md").unlink(missing_ok=True)  # never one of earlier runs
        if args.runs is not None:
            text = table5(rows, args.runs, args.examples) + f"\nSource: {source}\n"
            write_atomic(args.out / "table5.md", text)
            written.append(args.out / "table5.md")
    except HarmlessError as err:
        print(f"harmless: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"harmless: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
