"""The regime map: in which ways of sampling β quantile dropout beats N/A (sweeps=regimes).

    python -m analysis.regimes --runs runs/repro/regimes [--out tables/] [--figures figures/]
    python -m analysis.regimes --csv results/runs.csv [--out tables/] [--figures figures/]
    make tables / make claims       # call it; a CSV without a regime map is skipped in a line

A regime is one (prefix pool, temperature, repetition penalty, top-k) of β's sampling. In
each regime and attribute the effect is quantile γ=0.8 − N/A, paired by replicate (β's
sample set, π's seed), on three metrics: the paper's train-batch Acc+Reward, the held-out
eval/acc + eval/reward, and the held-out eval/acc + eval/judge_reward (eval.judge: a second
R that π never trained against; where it and R disagree in sign, R is being gamed or
noise decides). Clusters are β's sample sets (with both attributes pooled: each attribute's
sets): 95 % CI mean ± t(k − 1) · SE from the clustered bootstrap, p from the sign-flip test
over the clusters (analysis.inference), which decides the verdict: "quantile wins" /
"N/A wins" at p < 0.05, else "cannot tell" — always so below 6 clusters, where no p below
0.05 exists; the signs column still says which way each cluster went.

The factorial contrast of a factor: the quantile − N/A difference at its second level minus
at its first, matched on the other three factors, the attribute and the sample set's index,
averaged over the matches; each match is a unit (independent draws of β's samples).

Runs that differ in anything else (trainer.lr, eval.greedy, ...) are other maps: the one
with the most regimes is the map, the others are rows named by what they moved.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.inference import bootstrap_ci, sign_flip_test, smallest_p
from analysis.outputs import save_figure, write_failed
from analysis.runs import (
    CONTEXT,
    PAPER_GAMMA,
    RunsError,
    config_axes,
    fmt_value,
    read_csv,
    records,
)
from rdx.records import write_atomic

# (summary key, what it is called in words, level labels in words)
FACTORS = [
    ("prefix_pool", "prefix pool", {"attribute": "attribute's pool", "task": "task's pool"}),
    ("temperature", "temperature", {}),
    ("repetition_penalty", "repetition penalty", {1.0: "no penalty", 1.2: "penalty 1.2"}),
    ("top_k", "top-k", {None: "all tokens", 50: "top-50"}),
]
FACTOR_KEYS = [f[0] for f in FACTORS]
METRICS = [
    ("train Acc+Reward", lambda r: r.get("acc_plus_reward")),
    ("held-out Acc+Reward", lambda r: _sum(r, "eval/acc", "eval/reward")),
    ("held-out Acc+Judge", lambda r: _sum(r, "eval/acc", "eval/judge_reward")),
]
WIN, LOSE, UNSURE = "quantile wins", "N/A wins", "cannot tell"
RAISES, LOWERS = "raises the gain", "lowers the gain"
ALPHA = 0.05
OUTPUTS = ("regimes.md",)
FIGURE = "regimes"


def _sum(rec: dict[str, Any], a: str, b: str) -> float | None:
    if rec.get(a) is None or rec.get(b) is None:
        return None
    return float(rec[a]) + float(rec[b])


def _level(rec: dict[str, Any], key: str) -> Any:
    value = rec.get(key)
    if isinstance(value, float) and value.is_integer() and key == "top_k":
        return int(value)  # a CSV reads top_k 50 as 50.0
    return value


def regime_of(rec: dict[str, Any]) -> tuple:
    return tuple(_level(rec, k) for k in FACTOR_KEYS)


def regime_label(regime: tuple) -> str:
    """A regime in words, e.g. "task's pool, T=1.0, penalty 1.2, top-50"."""
    parts = []
    for (key, _, words), value in zip(FACTORS, regime, strict=True):
        parts.append(
            words.get(value, f"T={fmt_value(value)}" if key == "temperature" else str(value))
        )
    return ", ".join(parts)


@dataclass
class Effect:
    """quantile − N/A (or a contrast of it) over its units, with its test."""

    diffs: list[float]
    clusters: list[Any]
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    p: float = math.nan
    positive: int = 0
    k: int = 0

    def __post_init__(self) -> None:
        if not self.diffs:
            return
        self.effect = float(np.mean(self.diffs))
        self.k = len(set(self.clusters))
        if self.k >= 2:
            self.lo, self.hi = bootstrap_ci(self.diffs, self.clusters)
        self.p, self.positive, _ = sign_flip_test(self.diffs, self.clusters)

    @property
    def verdict(self) -> str:
        if not self.diffs or self.k < 2 or self.p >= ALPHA:
            return UNSURE
        return WIN if self.effect > 0 else LOSE

    @property
    def factor_verdict(self) -> str:
        """A factor's contrast: it raises or lowers quantile's gain over N/A."""
        verdict = self.verdict
        return {WIN: RAISES, LOSE: LOWERS}.get(verdict, verdict)

    def cell(self) -> str:
        """ "+0.123 [−0.050, +0.300] p 0.031 6/6+" for a table."""
        if not self.diffs:
            return "—"
        ci = "" if math.isnan(self.lo) else f" [{self.lo:+.3f}, {self.hi:+.3f}]"
        mark = "" if smallest_p(self.k) < ALPHA else "*"
        return f"{self.effect:+.3f}{ci} p {self.p:.2f}{mark} {self.positive}/{self.k}+"


def _context_axes(recs: list[dict[str, Any]]) -> list[str]:
    """Settings besides the regime that make another map (lr, eval.greedy, ...)."""
    extra = [k for k in config_axes(recs) if k not in FACTOR_KEYS]
    return ["dataset", *CONTEXT, *extra]


def arm_of(rec: dict[str, Any]) -> str | None:
    if rec["dropout"] == "none":
        return "none"
    gamma = rec.get("gamma")
    if rec["dropout"] == "quantile" and gamma is not None and math.isclose(gamma, PAPER_GAMMA):
        return "quantile"
    return None


def differences(recs: list[dict[str, Any]], value_of) -> dict[tuple, float]:
    """{(context, regime, attribute, sample set, seed): quantile − N/A} where both ran."""
    axes = _context_axes(recs)
    arms: dict[str, dict[tuple, float]] = {"none": {}, "quantile": {}}
    for rec in recs:
        arm, value = arm_of(rec), value_of(rec)
        if arm is None or value is None or not math.isfinite(value):
            continue
        context = tuple(rec.get(a) for a in axes)
        key = (context, regime_of(rec), rec["attribute"], rec.get("sample_set") or 0, rec["seed"])
        arms[arm][key] = float(value)
    q, na = arms["quantile"], arms["none"]
    return {k: q[k] - na[k] for k in sorted(set(q) & set(na), key=str)}


def effect_of(diffs: dict[tuple, float], keep, cluster) -> Effect:
    items = [(k, v) for k, v in diffs.items() if keep(k)]
    return Effect([v for _, v in items], [cluster(k) for k, _ in items])


def contrast(diffs: dict[tuple, float], context: tuple, index: int | None) -> Effect:
    """A factor's main effect on quantile − N/A in one map, from units matched on the other
    factors and the sample set's index: regime factor `index`, or the attribute (None)."""
    cells: dict[tuple, list[float]] = defaultdict(list)
    for (ctx, regime, attribute, sample_set, _), v in diffs.items():
        if ctx == context:
            cells[(regime, attribute, sample_set)].append(v)

    def level(cell: tuple) -> Any:
        return cell[1] if index is None else cell[0][index]

    def moved_to(cell: tuple, value: Any) -> tuple:
        regime, attribute, sample_set = cell
        if index is None:
            return (regime, value, sample_set)
        return (regime[:index] + (value,) + regime[index + 1 :], attribute, sample_set)

    levels = sorted({level(c) for c in cells}, key=_order)
    if len(levels) != 2:
        return Effect([], [])
    low, high = levels
    units = [
        (float(np.mean(vals)) - float(np.mean(cells[moved_to(cell, low)])), cell)
        for cell, vals in cells.items()
        if level(cell) == high and moved_to(cell, low) in cells
    ]
    return Effect([u for u, _ in units], [c for _, c in units])


def _order(value: Any) -> tuple:
    """Levels in order, None (no top-k) first."""
    return (value is not None, value if value is not None else 0)


def maps(diffs: dict[tuple, float]) -> tuple[tuple, list[tuple]] | None:
    """(the main map's context, the other contexts) of quantile − N/A differences, or None
    when no context holds both arms in two or more regimes."""
    regimes: dict[tuple, set] = defaultdict(set)
    for ctx, regime, *_ in diffs:
        regimes[ctx].add(regime)
    ranked = sorted(regimes, key=lambda c: (-len(regimes[c]), str(c)))
    if not ranked or len(regimes[ranked[0]]) < 2:
        return None
    return ranked[0], ranked[1:]


def moved(context: tuple, main: tuple, axes: list[str]) -> str:
    """What a variant map changed against the main one, e.g. "lr=0.0005"."""
    return ", ".join(
        f"{a}={fmt_value(c)}" for a, c, m in zip(axes, context, main, strict=True) if c != m
    )


def build(recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    per_metric = {name: differences(recs, fn) for name, fn in METRICS}
    base = per_metric[METRICS[0][0]]
    found = maps(base)
    if found is None:
        return None
    main, variants = found
    axes = _context_axes(recs)
    regimes = sorted({r for c, r, *_ in base if c == main}, key=_regime_order)
    attributes = sorted({a for c, _, a, *_ in base if c == main})
    rows = []  # (label, attribute, {metric: Effect})
    for context in [main, *variants]:
        for regime in sorted({r for c, r, *_ in base if c == context}, key=_regime_order):
            label = regime_label(regime)
            if context != main:
                label += f" ({moved(context, main, axes)})"
            for attribute in [None, *attributes]:
                effects = {
                    name: effect_of(
                        d,
                        lambda k, c=context, r=regime, a=attribute: (
                            k[0] == c and k[1] == r and (a is None or k[2] == a)
                        ),
                        lambda k: (k[2], k[3]),  # a cluster: one sample set of one attribute
                    )
                    for name, d in per_metric.items()
                }
                rows.append((label, attribute or "both", regime, context == main, effects))
    factors = [
        (
            words,
            {name: contrast(d, main, i) for name, d in per_metric.items()},
            levels_of(i, regimes),
        )
        for i, (_, words, _) in enumerate(FACTORS)
    ]
    if len(attributes) == 2:  # the attribute as a fifth factor: R's class, β's pool
        factors.append(
            (
                "attribute",
                {name: contrast(d, main, None) for name, d in per_metric.items()},
                " → ".join(attributes),
            )
        )
    overall = {
        name: effect_of(d, lambda k: k[0] == main, lambda k: (k[1], k[2], k[3]))
        for name, d in per_metric.items()
    }
    return {"rows": rows, "factors": factors, "overall": overall, "regimes": regimes,
            "attributes": attributes, "main": dict(zip(axes, main, strict=True))}  # fmt: skip


def _regime_order(regime: tuple) -> tuple:
    return tuple(_order(v) for v in regime)


def levels_of(index: int, regimes: list[tuple]) -> str:
    key, _, words = FACTORS[index]
    levels = sorted({r[index] for r in regimes}, key=_order)
    named = [words.get(v, f"T={fmt_value(v)}" if key == "temperature" else str(v)) for v in levels]
    return " → ".join(named)


def render(result: dict[str, Any], source: str) -> str:
    names = [name for name, _ in METRICS]
    main = ", ".join(f"{k}={fmt_value(v)}" for k, v in result["main"].items() if v is not None)
    lines = [
        "# The regime map: quantile γ=0.8 − N/A by how β samples",
        "",
        f"Runs: {main}. Each cell: effect [95% CI] p (sign-flip over clusters; * where the "
        "clusters are too few for any p < 0.05) and the clusters with a positive difference. "
        "Clusters: β's sample sets (both: of each attribute). Verdict (on the train and the "
        f"held-out metric): {WIN} / {LOSE} at p < 0.05, else {UNSURE}.",
        "",
        "## Overall (every regime of the map, each (regime, attribute, sample set) a cluster)",
        "",
        _table(
            [
                [
                    "all regimes",
                    "both",
                    *[result["overall"][n].cell() for n in names],
                    *[result["overall"][n].verdict for n in names[:2]],
                ]
            ],
            names,
        ),  # fmt: skip
        "",
        "## Per regime",
        "",
        _table(
            [
                [label, attr, *[e[n].cell() for n in names], *[e[n].verdict for n in names[:2]]]
                for label, attr, _, _, e in result["rows"]
            ],  # fmt: skip
            names,
        ),
        "",
        "## Main effect of each factor on quantile − N/A (the map's regimes)",
        "",
        _table(
            [
                [
                    words,
                    levels,
                    *[e[n].cell() for n in names],
                    *[e[n].factor_verdict for n in names[:2]],
                ]
                for words, e, levels in result["factors"]
            ],  # fmt: skip
            names,
            first=("factor", "levels"),
        ),
        "",
        f"Source: {source}",
        "",
    ]
    return "\n".join(lines)


def _table(rows: list[list[str]], names: list[str], first=("regime", "attribute")) -> str:
    cols = [*first, *names, f"verdict ({names[0]})", f"verdict ({names[1]})"]
    return pd.DataFrame(rows, columns=cols).to_markdown(index=False, disable_numparse=True)


def figure(result: dict[str, Any], out: Path, source: str) -> list[Path]:
    """A heatmap per (attribute or both) × metric: rows pool × penalty, columns T × top-k;
    colour the effect, text the effect and its CI, a frame where p < 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _ in METRICS]
    regimes = result["regimes"]
    row_keys = sorted({(r[0], r[2]) for r in regimes}, key=str)
    col_keys = sorted(
        {(r[1], r[3]) for r in regimes}, key=lambda x: (x[0], x[1] is not None, x[1] or 0)
    )
    groups = ["both", *result["attributes"]]
    main_rows = {(attr, regime): e for _, attr, regime, is_main, e in result["rows"] if is_main}
    fig, axes = plt.subplots(
        len(groups), len(names), figsize=(4.6 * len(names), 2.9 * len(groups)), squeeze=False
    )
    span = (
        max(
            (abs(e[n].effect) for e in main_rows.values() for n in names if e[n].diffs), default=1.0
        )
        or 1.0
    )
    for i, group in enumerate(groups):
        for j, name in enumerate(names):
            ax = axes[i][j]
            grid = np.full((len(row_keys), len(col_keys)), np.nan)
            for a, (pool, pen) in enumerate(row_keys):
                for b, (temp, topk) in enumerate(col_keys):
                    e = main_rows.get((group, (pool, temp, pen, topk)))
                    if e is None or not e[name].diffs:
                        continue
                    eff = e[name]
                    grid[a, b] = eff.effect
                    ci = "" if math.isnan(eff.lo) else f"\n[{eff.lo:+.2f}, {eff.hi:+.2f}]"
                    dark = abs(eff.effect) > 0.6 * span  # white on the darkest cells
                    text = f"{eff.effect:+.2f}{ci}\n{eff.positive}/{eff.k}+"
                    colour = "white" if dark else "black"
                    ax.text(b, a, text, ha="center", va="center", fontsize=7, color=colour)
                    if eff.verdict != UNSURE:
                        ax.add_patch(plt.Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, lw=2))
            ax.imshow(grid, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
            ax.set_xticks(range(len(col_keys)))
            ax.set_xticklabels(
                [f"T={fmt_value(t)}\n{FACTORS[3][2].get(k, k)}" for t, k in col_keys], fontsize=7
            )
            ax.set_yticks(range(len(row_keys)))
            ax.set_yticklabels(
                [f"{FACTORS[0][2].get(p, p)}\n{FACTORS[2][2].get(r, r)}" for p, r in row_keys],
                fontsize=7,
            )
            ax.set_title(f"{name}, {group}", fontsize=9)
    fig.suptitle(
        "quantile γ=0.8 − N/A (blue: quantile better; framed: sign-flip p < 0.05)", fontsize=10
    )
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{FIGURE}.png", out / f"{FIGURE}.pdf"]
    save_figure(fig, paths[0], dpi=130, metadata={"Description": source})
    save_figure(fig, paths[1], metadata={"Subject": source})
    plt.close(fig)
    return paths


def load_records(runs: Path | None, csv: Path | None) -> list[dict[str, Any]]:
    if csv is not None:
        df = read_csv(csv)
    else:
        from analysis.collect import collect_local

        df, _ = collect_local(runs)
    if df.empty:
        raise RunsError(f"{csv or runs}: no completed runs")
    if "algo" in df:
        df = df[df["algo"].isna() | (df["algo"] == "offpolicy")]
    return records(df, str(csv or runs), "latest")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="runs root (collected here unless --csv)")
    parser.add_argument("--csv", type=Path, help="a tidy CSV from analysis.collect")
    parser.add_argument("--out", type=Path, help="write regimes.md here")
    parser.add_argument("--figures", type=Path, help="write regimes.png and .pdf here")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.runs is None and args.csv is None:
        parser.error("give --runs or --csv")
    try:
        recs = load_records(args.runs, args.csv)
        result = build(recs)
    except RunsError as err:
        print(f"regimes: error: {err}", file=sys.stderr)
        return 1
    if result is None:  # no map: none of an earlier CSV's outlives it
        for stale in [
            *(() if args.out is None else [args.out / name for name in OUTPUTS]),
            *(
                ()
                if args.figures is None
                else [args.figures / f"{FIGURE}.{x}" for x in ("png", "pdf")]
            ),
        ]:
            stale.unlink(missing_ok=True)
        print("regimes: no regime map in these runs (N/A and quantile 0.8 in ≥ 2 sampling "
              "regimes, sweeps=regimes): skipped")  # fmt: skip
        return 0
    # the root and the count: a map's hundreds of run dirs are in runs.csv
    try:
        return _write(args, result, recs)
    except OSError as err:  # a full or read-only disk: one line, nothing half-written
        print(write_failed("regimes", err), file=sys.stderr)
        return 1


def _write(args: argparse.Namespace, result: dict[str, Any], recs: list[dict[str, Any]]) -> int:
    source = f"{len(recs)} run(s)" + (f" under {args.runs}" if args.runs else f" of {args.csv}")
    text = render(result, source)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out / OUTPUTS[0], text)
        print(f"regimes: wrote {args.out / OUTPUTS[0]}", file=sys.stderr)
    if args.figures is not None:
        for path in figure(result, args.figures, source):
            print(f"regimes: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
