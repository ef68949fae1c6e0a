"""Table 6 (paper Appendix C): generated examples for each attribute, from samples.jsonl.

    python -m analysis.table6 --csv results/runs.csv --runs ROOT [--out tables/] [--duplicates ...]
    make tables                   # writes tables/table6.md beside the other tables

One run per (dataset, attribute) speaks for it, as the paper's did: quantile dropout at
the largest γ present (the paper: 0.95), a pretrained init (behavior, pretrained) before a
random one, then the lowest seed. Its samples.jsonl rows with "source": "pplm" (π's greedy
continuations of the PPLM prefixes, rdx.pipeline.offpolicy.examples) are shown, up to
--per-attribute
of them; a run without them (made before they existed) shows its held-out samples of
highest reward instead, without highlights. The prefix is underlined (<u>…</u>, as the
paper); the attribute-bearing words are in bold: the (at most three) words whose removal
lowers R's probability of the attribute the most, by more than --min-drop.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from analysis.runs import ATTRIBUTES, DUPLICATE_RULES, RunsError, load
from analysis.tables import ATTRIBUTE_LABELS
from rdx.records import read_jsonl, write_atomic

INIT_PREFERENCE = ["pretrained", "behavior", "random"]
HIGHLIGHTS = 3


def chosen_runs(recs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(dataset, attribute): the run that speaks for it} among the quantile runs."""
    best: dict[tuple[str, str], dict[str, Any]] = {}

    def rank(rec: dict[str, Any]) -> tuple:
        init = rec.get("init")
        pref = INIT_PREFERENCE.index(init) if init in INIT_PREFERENCE else len(INIT_PREFERENCE)
        return (-(rec.get("gamma") or 0.0), pref, rec.get("seed") or 0, str(rec.get("run_dir")))

    for rec in recs:
        if rec.get("dropout") != "quantile":
            continue
        key = (str(rec["dataset"]), str(rec["attribute"]))
        if key not in best or rank(rec) < rank(best[key]):
            best[key] = rec
    return best


def highlighted(attribution: list[list[Any]], min_drop: float) -> set[int]:
    """Indices of the words to highlight: the top HIGHLIGHTS by drop in R, each > min_drop."""
    order = sorted(range(len(attribution)), key=lambda i: -float(attribution[i][1]))
    return {i for i in order[:HIGHLIGHTS] if float(attribution[i][1]) > min_drop}


def render_text(row: dict[str, Any], min_drop: float) -> str:
    """<u>prefix</u> then the generation, attribute-bearing words in bold."""
    prefix = str(row.get("prefix", "")).strip()
    attribution = row.get("attribution")
    if attribution:
        marks = highlighted(attribution, min_drop)
        words = [f"**{w}**" if i in marks else str(w) for i, (w, _) in enumerate(attribution)]
    else:
        words = str(row.get("generation", "")).split()
    body = " ".join(words).replace("|", "\\|")
    return f"<u>{prefix.replace('|', chr(92) + '|')}</u> {body}".strip()


def examples_of(run: Path, per_attribute: int) -> list[dict[str, Any]]:
    rows = read_jsonl(run / "samples.jsonl") if (run / "samples.jsonl").is_file() else []
    pplm = [r for r in rows if r.get("source") == "pplm"]
    if pplm:
        return pplm[:per_attribute]
    held_out = sorted(
        (r for r in rows if r.get("source") is None),
        key=lambda r: -float(r.get("reward") or -math.inf),
    )
    return held_out[:per_attribute]


def table6(
    recs: list[dict[str, Any]], root: Path, per_attribute: int = 2, min_drop: float = 0.01
) -> tuple[str, list[str]]:
    """(Markdown, warnings): one block of rows per attribute in the paper's order."""
    runs = chosen_runs(recs)
    if not runs:
        raise RunsError("no quantile runs: Table 6 shows quantile dropout's text")
    order = {a: i for i, a in enumerate(ATTRIBUTES)}
    rows, warn, sources = [], [], []
    for (dataset, attribute), rec in sorted(
        runs.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1])
    ):
        run = Path(str(rec["run_dir"]))
        run = run if run.is_absolute() else root / run
        shown = examples_of(run, per_attribute)
        if not shown:
            warn.append(f"no samples.jsonl rows in {run}")
            continue
        if all(r.get("source") != "pplm" for r in shown):
            warn.append(f"{run}: no PPLM-prefix rows; showing its highest-reward samples")
        label = ATTRIBUTE_LABELS.get(attribute, attribute)
        for i, row in enumerate(shown):
            rows.append(
                {
                    "dataset": dataset if i == 0 else "",
                    "attribute": label if i == 0 else "",
                    "generated text": render_text(row, min_drop),
                    "R": f"{float(row['reward']):.3f}" if row.get("reward") is not None else "—",
                }
            )
        gamma = rec.get("gamma")
        sources.append(f"{label}: {rec.get('run_dir')} (γ={gamma}, init={rec.get('init')}, "
                       f"seed={rec.get('seed')})")  # fmt: skip
    text = [
        "**Table 6.** π's text after the prefix (underlined); in bold the words whose removal "
        f"lowers R's attribute probability the most (top {HIGHLIGHTS}, by > {min_drop}); R: "
        "that probability for the whole text. Runs: " + "; ".join(sources) + ".",
        "",
        tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True),
        "",
    ]
    return "\n".join(text), warn


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Table 6: generated examples per attribute.")
    parser.add_argument("--csv", type=Path, default=Path("results/runs.csv"))
    parser.add_argument("--runs", type=Path, required=True, help="the runs root of the CSV")
    parser.add_argument("--out", type=Path, default=Path("tables"))
    parser.add_argument("--per-attribute", type=int, default=2)
    parser.add_argument("--min-drop", type=float, default=0.01)
    parser.add_argument("--duplicates", choices=DUPLICATE_RULES, default="fail")
    args = parser.parse_args(None if argv is None else list(argv))
    notes: list[str] = []
    (args.out / "table6.md").unlink(missing_ok=True)  # never an earlier sweep's examples
    try:
        recs = load(args.csv, args.duplicates, notes)
        text, warn = table6(recs, args.runs, args.per_attribute, args.min_drop)
    except RunsError as err:
        print(f"table6: error: {err}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "table6.md"
    write_atomic(path, text)
    print(f"table6: wrote {path}")
    for line in notes + warn:
        print(f"table6: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
