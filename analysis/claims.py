"""Stage 4 of the analysis: the paper's claims as rows of effect, 95 % CI and verdict.

    python -m analysis.claims --runs runs/multirun/2026-11-30/14-00-00 [--out tables/claims.md]
    python -m analysis.claims --csv results/runs.csv [--runs ROOT] [--duplicates fail|latest]
    make claims RUNS=<dir>         # no RUNS: the latest sweep under runs/ (analysis.latest)

Each claim compares two arms A and B run with the same (dataset, attribute, seed), the unit
of pairing; the effect is the mean over those pairs of A − B (the difference of the arms'
means over the paired seeds and attributes); units without a partner are left out and the
row's n counts the pairs. The 95 % CI is a percentile bootstrap over the pairs (10 000
resamples; each row draws from `--seed`, so the output is reproducible and a row does not
depend on the others). With few pairs a percentile bootstrap is narrow: read n.

Verdict, for a claim with a sign (A − B > 0, or < 0): the CI excludes 0 on the claimed side
-> holds; on the other side -> does not hold; else (or n < 2) inconclusive. A claim whose
arms have no runs prints "no runs". "Does not help" is claimed as A − B < 0, so a true null
effect reads inconclusive: these runs cannot tell no effect from a small one.

The claims (docs/design.md §9, issue 11), per init unless marked; γ-rule: the largest γ present
stands for an arm, and "higher γ helps" compares the largest with the smallest quantile γ:
  quantile beats N/A; quantile beats random; random does not help (random − N/A < 0);
  higher γ helps (quantile γmax − γmin > 0)                                  Acc+Reward
  quantile raises both objectives vs N/A (acc and reward; eval/likelihood and eval/reward)
  Fig. 3a (init=random): N/A declines (last − first epoch < 0), quantile rises (> 0)
  Fig. 3b: a pretrained init (behavior, pretrained) avoids the decline: N/A's last − first
           epoch under that init minus the same under init=random > 0
  Tables 3/4: quantile − N/A: BLEU > 0, METEOR > 0, ROUGE-L < 0             held-out only
Each is tested on the paper's train-batch metrics (`acc_plus_reward`; per epoch `train/acc`,
`train/reward`) and on the held-out ones (`eval/acc` + `eval/reward`; per epoch
`eval/likelihood`, `eval/reward`). Per-epoch values come from each run's metrics.jsonl
epoch records, so those claims need --runs and runs made with `trainer.epoch_metrics=every`
(sweeps=fig3 and scripts/reproduce-cpu set it; the default measures the last epoch only, and
such runs count as "no runs" here); the first record is taken after one epoch of training
(the untrained state is not logged).

Runs that differ in any axis besides attribute, seed, init and the compared arms (model,
lr, epochs, behavior, reward model, a dotted config key such as `sampling.stop_at_eos`) are
never pooled: each combination gets its own block of rows, headed by what it holds. Two
datasets share a block, as in Table 1, unless they share an attribute.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from analysis.collect import collect_local
from analysis.runs import (
    CONTEXT,
    DUPLICATE_RULES,
    INIT_ORDER,
    RunsError,
    config_axes,
    context_label,
    epoch_curves,
    fmt_value,
    load,
    provenance,
    records,
    split_blocks,
)

N_BOOT = 10_000
HOLDS, FAILS, UNSURE, NO_RUNS = "holds", "does not hold", "inconclusive", "no runs"
TRAIN, HELD_OUT = "train batches", "held-out"
# Final metrics: (label, data, value of a run's summary or None).
ACC_REWARD = [
    ("acc_plus_reward", TRAIN, lambda r: r.get("acc_plus_reward")),
    (
        "eval/acc + eval/reward",
        HELD_OUT,
        lambda r: (
            None
            if r.get("eval/acc") is None or r.get("eval/reward") is None
            else r["eval/acc"] + r["eval/reward"]
        ),
    ),
]
# The two objectives by epoch: (metrics.jsonl key, data).
OBJECTIVES = [
    ("train/acc", TRAIN),
    ("train/reward", TRAIN),
    ("eval/likelihood", HELD_OUT),
    ("eval/reward", HELD_OUT),
]
# The two objectives at the end of training: (summary key, data).
FINAL_OBJECTIVES = [("acc", TRAIN), ("reward", TRAIN), ("eval/likelihood", HELD_OUT),
                    ("eval/reward", HELD_OUT)]  # fmt: skip
# Tables 3/4: (key, claimed sign of quantile − N/A).
TEXT_CLAIMS = [("eval/bleu", 1, "BLEU up"), ("eval/meteor", 1, "METEOR up"),
               ("eval/rougeL", -1, "ROUGE-L down")]  # fmt: skip

Unit = tuple[Any, Any, Any]  # (dataset, attribute, seed)
Values = dict[Unit, float]


@dataclass
class Row:
    """One claim on one metric: the paired differences and what they say."""

    claim: str
    metric: str
    data: str
    sign: int  # the claimed sign of the effect
    diffs: list[float]
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    verdict: str = NO_RUNS


# ---------------------------------------------------------------- statistics


def bootstrap_ci(
    diffs: list[float], seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `diffs` (resampling the pairs)."""
    data = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, sign: int, n: int) -> str:
    """holds / does not hold / inconclusive from the CI and the claimed sign."""
    if n == 0:
        return NO_RUNS
    if n < 2:
        return UNSURE
    if lo > 0:
        return HOLDS if sign > 0 else FAILS
    if hi < 0:
        return HOLDS if sign < 0 else FAILS
    return UNSURE


def judge(row: Row, seed: int = 0) -> Row:
    """Fill in the row's effect, CI and verdict from its paired differences."""
    n = len(row.diffs)
    if n:
        row.effect = float(np.mean(row.diffs))
    if n >= 2:
        row.lo, row.hi = bootstrap_ci(row.diffs, seed)
    row.verdict = verdict(row.lo, row.hi, row.sign, n)
    return row


# ---------------------------------------------------------------- arms and pairs


def unit(rec: dict[str, Any]) -> Unit:
    return (rec["dataset"], rec["attribute"], rec["seed"])


def arm(
    runs: list[dict[str, Any]], dropout: str, gamma: float | None = None
) -> list[dict[str, Any]]:
    return [
        r
        for r in runs
        if r["dropout"] == dropout
        and (gamma is None or (r["gamma"] is not None and math.isclose(r["gamma"], gamma)))
    ]


def gammas(runs: list[dict[str, Any]], dropout: str) -> list[float]:
    return sorted({r["gamma"] for r in runs if r["dropout"] == dropout and r["gamma"] is not None})


def values(runs: list[dict[str, Any]], value_of: Callable[[dict], Any]) -> Values:
    """{unit: value} of one arm's runs; two runs of one unit would be pooled, so they fail."""
    out: Values = {}
    seen: dict[Unit, str] = {}
    for rec in runs:
        key = unit(rec)
        if key in seen:
            raise RunsError(
                f"two runs of one arm and unit (dataset, attribute, seed)={key}: "
                f"{seen[key]}, {rec.get('run_dir')}"
            )
        seen[key] = str(rec.get("run_dir"))
        value = value_of(rec)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[key] = float(value)
    return out


def paired(a: Values, b: Values) -> list[float]:
    """A − B on the units both arms ran, in a fixed order (so the bootstrap is stable)."""
    return [a[u] - b[u] for u in sorted(set(a) & set(b), key=str)]


class Curves:
    """Per-epoch records of runs, read once from <root>/<run_dir>/metrics.jsonl."""

    def __init__(self, root: Path | None):
        self.root = root
        self.cache: dict[str, dict[int, dict[str, Any]]] = {}
        self.missing: list[str] = []

    def of(self, rec: dict[str, Any]) -> dict[int, dict[str, Any]]:
        run_dir = str(rec.get("run_dir"))
        if run_dir not in self.cache:
            path = Path(run_dir)
            if self.root is not None and not path.is_absolute():
                path = self.root / path
            if self.root is None or not (path / "metrics.jsonl").is_file():
                self.missing.append(str(path / "metrics.jsonl"))
                self.cache[run_dir] = {}
            else:
                self.cache[run_dir] = epoch_curves(path)
        return self.cache[run_dir]

    def change(self, key: str) -> Callable[[dict], float | None]:
        """A run's last − first epoch value of `key`; None with fewer than two epochs."""

        def value_of(rec: dict[str, Any]) -> float | None:
            curve = self.of(rec)
            epochs = sorted(e for e, r in curve.items() if r.get(key) is not None)
            if len(epochs) < 2:
                return None
            return float(curve[epochs[-1]][key]) - float(curve[epochs[0]][key])

        return value_of


# ---------------------------------------------------------------- the claims


def _g(gamma: float | None) -> str:
    return "" if gamma is None else f" γ={fmt_value(gamma)}"


def _get(key: str) -> Callable[[dict], Any]:
    return lambda rec: rec.get(key)


def final_claims(runs: list[dict[str, Any]], suffix: str) -> list[Row]:
    """Acc+Reward claims and Tables 3/4 on the runs of one init."""
    na = arm(runs, "none")
    q, r = gammas(runs, "quantile"), gammas(runs, "random")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    q_lo = arm(runs, "quantile", q[0]) if len(q) > 1 else []
    qg = _g(q[-1] if q else None)
    comparisons = [(f"quantile{qg} beats N/A", q_hi, na, 1)]
    # The authors' with-replacement draw and the exact one are two random arms, never pooled.
    r_all = arm(runs, "random", r[-1]) if r else []
    for replacement in sorted({bool(x.get("random_replacement")) for x in r_all}) or [False]:
        name = "random" + (" (with replacement)" if replacement else "") + _g(r[-1] if r else None)
        r_hi = [x for x in r_all if bool(x.get("random_replacement")) == replacement]
        comparisons += [
            (f"quantile{qg} beats {name}", q_hi, r_hi, 1),
            (f"{name} does not help: random − N/A < 0", r_hi, na, -1),
        ]
    comparisons.append(
        (
            "higher γ helps: quantile "
            + (f"γ={fmt_value(q[-1])} − γ={fmt_value(q[0])}" if len(q) > 1 else "γmax − γmin")
            + " > 0",
            q_hi,
            q_lo,
            1,
        )
    )
    rows = []
    for claim, a, b, sign in comparisons:
        for metric, data, value_of in ACC_REWARD:
            diffs = paired(values(a, value_of), values(b, value_of))
            rows.append(Row(claim + suffix, metric, data, sign, diffs))
        if b is na and a is q_hi:  # where the Acc+Reward gain comes from: both objectives
            for key, data in FINAL_OBJECTIVES:
                diffs = paired(values(a, _get(key)), values(b, _get(key)))
                rows.append(Row(f"quantile{qg} raises both, vs N/A{suffix}", key, data, 1, diffs))
    for key, sign, what in TEXT_CLAIMS:
        diffs = paired(values(q_hi, _get(key)), values(na, _get(key)))
        rows.append(
            Row(f"Tables 3/4: {what}, quantile{qg} − N/A{suffix}", key, HELD_OUT, sign, diffs)
        )
    return rows


def epoch_claims(block: list[dict[str, Any]], curves: Curves) -> list[Row]:
    """Fig. 3a on init=random runs; Fig. 3b: each pretrained init against init=random."""
    rand = [r for r in block if r["init"] == "random"]
    q = gammas(rand, "quantile")
    q_hi = arm(rand, "quantile", q[-1]) if q else []
    rows = []
    for claim, runs, sign in (
        ("Fig. 3a: without dropout both objectives decline (init=random)", arm(rand, "none"), -1),
        (f"Fig. 3a: quantile{_g(q[-1] if q else None)} raises both (init=random)", q_hi, 1),
    ):
        for key, data in OBJECTIVES:
            diffs = [v for v in values(runs, curves.change(key)).values()]
            rows.append(Row(claim, f"{key}: last − first epoch", data, sign, diffs))
    inits = sorted({r["init"] for r in block} - {"random", None}, key=_init_rank) or ["pretrained"]
    for init in inits:
        pre = arm([r for r in block if r["init"] == init], "none")
        for key, data in OBJECTIVES:
            change = curves.change(key)
            diffs = paired(values(pre, change), values(arm(rand, "none"), change))
            rows.append(
                Row(
                    f"Fig. 3b: init={init} avoids the decline: N/A's change − init=random's",
                    f"{key}: last − first epoch",
                    data,
                    1,
                    diffs,
                )
            )
    return rows


def _init_rank(init: Any) -> tuple[int, str]:
    return (INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER), str(init))


@dataclass
class Block:
    context: str
    rows: list[Row]


def evaluate(recs: list[dict[str, Any]], curves: Curves, seed: int = 0) -> list[Block]:
    """Every claim's row, one block per combination of the runs' other axes."""
    axes = [a for a in CONTEXT if a != "init"] + config_axes(recs)
    blocks = split_blocks(recs, axes) if recs else [[]]
    out = []
    for block in blocks:
        inits = sorted({r["init"] for r in block}, key=_init_rank) or ["random"]
        rows = []
        for init in inits:
            suffix = f" (init={init})" if len(inits) > 1 else ""
            rows += final_claims([r for r in block if r["init"] == init], suffix)
        rows += epoch_claims(block, curves)
        context = context_label(block, axes, recs) if block else "no completed runs"
        if len(inits) == 1 and block:
            context += f", init={fmt_value(inits[0])}"
        out.append(Block(context, [judge(row, seed) for row in rows]))
    return out


# ---------------------------------------------------------------- rendering


def _num(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:+.3f}"


def frame(block: Block) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": row.claim,
                "metric": row.metric,
                "data": row.data,
                "effect": _num(row.effect),
                "95% CI": "—" if math.isnan(row.lo) else f"[{_num(row.lo)}, {_num(row.hi)}]",
                "n": len(row.diffs),
                "verdict": row.verdict,
            }
            for row in block.rows
        ]
    )


def render(blocks: list[Block], seed: int) -> str:
    """Markdown: a note on the method, then one table per block."""
    lines = [
        "**Claims.** Effect: mean over (dataset, attribute, seed) pairs of A − B; 95% CI: "
        f"percentile bootstrap over the pairs ({N_BOOT} resamples, seed {seed}); n: pairs. "
        "Verdict: holds / does not hold when the CI excludes 0 on the claimed / other side, "
        "else inconclusive (also when n < 2).",
        "",
    ]
    for block in blocks:
        lines += [f"Runs: {block.context}", ""]
        lines.append(
            tabulate(
                frame(block),
                headers="keys",
                tablefmt="github",
                showindex=False,
                disable_numparse=True,
                colalign=("left", "left", "left", "right", "right", "right", "left"),
            )
        )
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The paper's claims, tested on runs.")
    parser.add_argument("--runs", type=Path, help="runs root: collected here unless --csv")
    parser.add_argument("--csv", type=Path, help="a tidy CSV from analysis.collect")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--duplicates",
        choices=DUPLICATE_RULES,
        default="fail",
        help="two runs of one cell and seed: fail naming them, or keep the one that ended last",
    )
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.runs is None and args.csv is None:
        print("claims: error: give --runs DIR and/or --csv FILE", file=sys.stderr)
        return 2
    if args.runs is not None and not args.runs.is_dir():
        print(f"claims: error: runs root {args.runs} is not a directory", file=sys.stderr)
        return 2
    notes: list[str] = []
    if args.out is not None:  # no claims.md of earlier runs may stand in for these
        args.out.unlink(missing_ok=True)
    try:
        if args.csv is not None:
            recs = load(args.csv, args.duplicates, notes)
        else:
            done, incomplete = collect_local(args.runs)
            if len(incomplete):  # never averaged in; analysis.collect lists them
                notes.append(f"warning: {len(incomplete)} incomplete run(s) left out")
            recs = records(done, str(args.runs), args.duplicates, notes) if len(done) else []
    except RunsError as err:
        print(f"claims: error: {err}", file=sys.stderr)
        return 1
    curves = Curves(args.runs)
    try:
        blocks = evaluate(recs, curves, args.seed)
    except RunsError as err:
        print(f"claims: error: {err}", file=sys.stderr)
        return 1
    text = render(blocks, args.seed) + f"\nSource: {provenance(recs, args.runs)}\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"claims: wrote {args.out}", file=sys.stderr)
    for line in notes:
        print(f"claims: {line}", file=sys.stderr)
    if curves.missing:
        print(
            f"claims: warning: no metrics.jsonl for {len(curves.missing)} run(s), e.g. "
            f"{curves.missing[0]}" + ("" if args.runs else " (per-epoch claims need --runs)"),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
