"""Stage 4 of the analysis: the paper's claims as rows of effect, 95 % CI and verdict.

    python -m analysis.claims --runs runs/multirun/2026-11-30/14-00-00 [--out tables/claims.md]
    python -m analysis.claims --csv results/runs.csv [--runs ROOT] [--duplicates fail|latest]
        [--cluster cell|unit] [--margin 0.02] [--seed 0]
    make claims RUNS=<dir>         # no RUNS: the latest sweep under runs/ (analysis.latest)

Each claim compares two arms A and B run with the same (dataset, attribute, β's sample set,
seed), the unit of pairing; the effect is the mean over those pairs of A − B; units without
a partner are left out and the row's n counts the pairs. The 95 % CI is mean ± t(k − 1) ·
SE, SE from a bootstrap (10 000 resamples, seeded by `--seed`, so the output is
reproducible) that resamples k *clusters*: by default one cluster per (dataset, attribute,
sample set), since the seeds of one sample set share its rows, β and R. `--cluster task`:
one per (dataset, task, sample set), for runs whose attributes share β's samples too
(sampling.prefix_pool=task); `--cluster unit` resamples the pairs, as if independent.

Verdict, for a claim with a sign (A − B > 0, or < 0): the sign-flip randomization test over
the k clusters' mean differences (analysis.inference.sign_flip_test, exact) gives p < 0.05
with the effect on the claimed side -> holds; on the other side -> does not hold; else (or
n < 2, or fewer than 2 clusters) inconclusive. Below 6 clusters no p < 0.05 exists, so such
rows are always inconclusive (marked * in the p column). A non-superiority row (a margin,
not a sign) is decided by the CI. A claim whose arms have no runs prints "no runs".

The claims, per init; γ-rule: the largest γ present stands for an arm, and "higher γ helps"
compares the largest with the smallest quantile γ:
  quantile beats N/A; quantile beats random; higher γ helps            Acc+Reward
  higher γ helps as a trend: each unit's least-squares slope of its quantile runs' value on
      γ > 0, over every γ present (units with ≥ 3 γ; fewer in the runs: "no runs")
  random does not help: non-superiority, the CI's upper bound of random − N/A below
      `--margin` (0.02: the largest random − N/A gain in the paper's Table 1 is +0.022, sci/tech
      γ=0.8, and the paper reads it as no help); at or above it, does not hold
  quantile raises both objectives vs N/A (acc and reward; eval/likelihood and eval/reward)
  Fig. 3a (DESIGN §9): N/A degenerates: a run's last epoch is below the best epoch of the
      first half of training (inference.falls: fall = best − last > 0, the best epoch picked
      on the other runs of the arm); and quantile falls less than N/A, the paired contrast
      N/A's fall − quantile's > 0; each on both objectives. A diverged run (training went
      non-finite: no last epoch) is not in these falls; it counts as a collapse in
      "N/A collapses more often than quantile" (share of runs whose two objectives both
      fall or that diverged, N/A − quantile) and in Fig. 3b's joint degeneration, and in
      its own count row, "runs that diverged" (share, N/A − quantile; the note names them)
  Fig. 3a: quantile increases both objectives: its last − first epoch > 0, on each
  Fig. 3a: both objectives decline together under N/A, not under quantile: the share of runs
      whose two objectives both fell (fall > 0 on each), share(N/A) − share(quantile) > 0,
      paired by unit; the note counts the runs that fell jointly in each arm (finished runs
      only: the paper's wording; the collapse row above counts diverged runs too)
  Fig. 3b: under a pretrained init (behavior, pretrained) the joint degeneration of N/A
      (both objectives fall) is less frequent than under init=random: share(random) −
      share(pretrained) > 0, paired by unit; the note names the attributes where it still
      occurs under the pretrained init (seeds k/n)
  §7.4: reward dropout is most effective with non-pretrained targets: the contrast of
      contrasts (quantile − N/A at init=random) − (quantile − N/A at init=behavior or
      pretrained) > 0, paired by unit, at the largest quantile γ both inits ran; in blocks
      that hold both inits (else "no runs")                                Acc+Reward
  Tables 3/4: quantile − N/A: BLEU > 0, METEOR > 0, ROUGE-1, ROUGE-2, ROUGE-L < 0, one row
      each                                                                held-out only
  Table 2 (runs of ≥ 2 target models): quantile γ=0.8 beats N/A at each model size
  Appendix D (runs with trace.jsonl): π̄ of the probe batch's drop-out samples rises, last
      − first traced epoch > 0 (and the drop-in samples' for comparison); and against N/A
      as the control: on the probe samples the quantile run dropped (its trace's keep mask),
      quantile's π̄ rise − the paired N/A run's π̄ rise on those samples > 0 (one unit is one
      sample set, so both traces hold the same probe rows)
Each is tested on the paper's train-batch metrics (`acc_plus_reward`; per epoch `train/acc`,
`train/reward`) and on the held-out ones (`eval/acc` + `eval/reward`; per epoch
`eval/likelihood`, `eval/reward`). Per-epoch values come from each run's metrics.jsonl
epoch records, so those claims need --runs and runs made with `trainer.epoch_metrics=every`
(sweeps=fig3, fig3_authors and scripts/reproduce-cpu set it; the default measures the last
epoch only, and such runs count as "no runs" here); the first record is taken after one
epoch of training (the untrained state is not logged).

Runs that differ in any axis besides attribute, seed, init and the compared arms (model,
lr, epochs, behavior, reward model, a dotted config key such as `sampling.stop_at_eos`) are
never pooled: each combination gets its own block of rows, headed by what it holds. Two
datasets share a block, as in Table 1, unless they share an attribute.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from analysis.collect import collect_local
from analysis.inference import (
    FAILS,
    HOLDS,
    N_BOOT,
    NO_RUNS,
    UNSURE,
    bootstrap_ci,
    falls,
    flip_verdict,
    non_superiority,
    sign_flip_test,
    smallest_p,
    verdict,
)
from analysis.runs import (
    CONTEXT,
    DUPLICATE_RULES,
    INIT_ORDER,
    RANDOM_INITS,
    TABLE2_GAMMA,
    RunsError,
    config_axes,
    context_label,
    diverged,
    epoch_curves,
    fmt_value,
    load,
    provenance,
    records,
    split_blocks,
)
from rdx.data.corpus import TASKS
from rdx.records import read_jsonl, write_atomic

__all__ = ["FAILS", "HOLDS", "NO_RUNS", "UNSURE", "bootstrap_ci", "verdict", "evaluate", "main"]

MARGIN = 0.02  # see the module docstring: the paper's largest "no help" gain of random
CLUSTERINGS = ("cell", "task", "unit")
TASK_OF = {a: task for task, attrs in TASKS.items() for a in attrs}
TRAIN, HELD_OUT, PROBE = "train batches", "held-out", "probe batch"


def _sum_of(a: str, b: str) -> Callable[[dict], float | None]:
    """A run's a + b, None where either is missing."""
    return lambda r: None if r.get(a) is None or r.get(b) is None else r[a] + r[b]


# Final metrics: (label, data, value of a run's summary or None).
ACC_REWARD = [
    ("acc_plus_reward", TRAIN, lambda r: r.get("acc_plus_reward")),
    ("eval/acc + eval/reward", HELD_OUT, _sum_of("eval/acc", "eval/reward")),
]
JUDGE = "held-out, judged"  # eval/judge_reward: a second R that π never trained against
JUDGED = [("eval/acc + eval/judge_reward", JUDGE, _sum_of("eval/acc", "eval/judge_reward"))]
# The two objectives by epoch, per data source: (data, (likelihood key, reward key)).
OBJECTIVE_PAIRS = [(TRAIN, ("train/acc", "train/reward")),
                   (HELD_OUT, ("eval/likelihood", "eval/reward"))]  # fmt: skip
OBJECTIVES = [(key, data) for data, keys in OBJECTIVE_PAIRS for key in keys]
# The two objectives at the end of training: (summary key, data).
FINAL_OBJECTIVES = [("acc", TRAIN), ("reward", TRAIN), ("eval/likelihood", HELD_OUT),
                    ("eval/reward", HELD_OUT)]  # fmt: skip
# Tables 3/4: (key, claimed sign of quantile − N/A, what).
TEXT_CLAIMS = [("eval/bleu", 1, "BLEU up"), ("eval/meteor", 1, "METEOR up"),
               ("eval/rouge1", -1, "ROUGE-1 down"), ("eval/rouge2", -1, "ROUGE-2 down"),
               ("eval/rougeL", -1, "ROUGE-L down")]  # fmt: skip

Unit = tuple[Any, Any, Any, Any]  # (dataset, attribute, β's sample set, π's seed)
Values = dict[Unit, float]


@dataclass
class Row:
    """One claim on one metric: the paired differences, their units and what they say."""

    claim: str
    metric: str
    data: str
    sign: int  # the claimed sign of the effect
    diffs: list[float]
    units: list[Unit] | None = None  # one per diff; None: each diff its own cluster
    margin: float | None = None  # set: a non-superiority claim (A − B below the margin)
    note: str = ""
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    verdict: str = NO_RUNS
    n_clusters: int = 0
    p: float = math.nan  # the sign-flip test's two-sided p over the clusters
    n_positive: int = 0  # clusters whose mean difference is > 0


def cluster_of(u: Unit, how: str) -> Any:
    """A unit's cluster: one of β's sample sets, (dataset, attribute, sample set): π's
    seeds nest in it, as they share its rows, β and R; with `task`, (dataset, task, sample
    set), for runs whose attributes share β's samples (sampling.prefix_pool=task); with
    `unit`, itself."""
    if how == "cell":
        return (u[0], u[1], u[2])
    if how == "task":
        return (u[0], TASK_OF.get(u[1], u[1]), u[2])
    return u


def judge(row: Row, seed: int = 0, cluster: str = "cell") -> Row:
    """Fill in the row's effect, CI and verdict from its paired differences."""
    n = len(row.diffs)
    clusters = None
    if row.units is not None and cluster != "unit":
        clusters = [cluster_of(u, cluster) for u in row.units]
    row.n_clusters = len(set(clusters)) if clusters is not None else n
    if n:
        row.effect = float(np.mean(row.diffs))
    if n >= 2 and row.n_clusters >= 2:
        row.lo, row.hi = bootstrap_ci(row.diffs, clusters, seed)
    if n:
        row.p, row.n_positive, _ = sign_flip_test(row.diffs, clusters, seed)
    if row.margin is not None:  # a margin, not a sign: decided by the CI (module docstring)
        row.verdict = non_superiority(row.lo, row.hi, row.margin, n, row.n_clusters)
    else:
        row.verdict = flip_verdict(row.effect, row.p, row.sign, n, row.n_clusters)
    return row


# ---------------------------------------------------------------- arms and pairs


def unit(rec: dict[str, Any]) -> Unit:
    return (rec["dataset"], rec["attribute"], rec.get("sample_set") or 0, rec["seed"])


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
                f"two runs of one arm and unit (dataset, attribute, sample set, seed)={key}: "
                f"{seen[key]}, {rec.get('run_dir')}"
            )
        seen[key] = str(rec.get("run_dir"))
        value = value_of(rec)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[key] = float(value)
    return out


def _ordered(units: Iterable[Unit]) -> list[Unit]:
    return sorted(units, key=str)  # a fixed order, so the bootstrap is stable


def paired(a: Values, b: Values) -> list[float]:
    """A − B on the units both arms ran, in a fixed order."""
    return [a[u] - b[u] for u in _ordered(set(a) & set(b))]


def paired_row(claim: str, metric: str, data: str, sign: int, a: Values, b: Values) -> Row:
    units = _ordered(set(a) & set(b))
    return Row(claim, metric, data, sign, [a[u] - b[u] for u in units], units)


def single_row(claim: str, metric: str, data: str, sign: int, a: Values) -> Row:
    units = _ordered(a)
    return Row(claim, metric, data, sign, [a[u] for u in units], units)


class Curves:
    """Per-epoch records of runs, read once from <root>/<run_dir>/metrics.jsonl (and the
    probe batch's trace.jsonl)."""

    def __init__(self, root: Path | None):
        self.root = root
        self.cache: dict[str, dict[int, dict[str, Any]]] = {}
        self.traces: dict[str, list[dict[str, Any]]] = {}
        self.missing: list[str] = []

    def _path(self, rec: dict[str, Any]) -> Path | None:
        path = Path(str(rec.get("run_dir")))
        if self.root is not None and not path.is_absolute():
            path = self.root / path
        return None if self.root is None else path

    def of(self, rec: dict[str, Any]) -> dict[int, dict[str, Any]]:
        run_dir = str(rec.get("run_dir"))
        if run_dir not in self.cache:
            path = self._path(rec)
            if path is None or not (path / "metrics.jsonl").is_file():
                self.missing.append(str(Path(run_dir) / "metrics.jsonl"))
                self.cache[run_dir] = {}
            else:
                self.cache[run_dir] = epoch_curves(path)
        return self.cache[run_dir]

    def curve(self, rec: dict[str, Any], key: str) -> dict[int, float]:
        return {e: float(r[key]) for e, r in self.of(rec).items() if r.get(key) is not None}

    def trace(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        run_dir = str(rec.get("run_dir"))
        if run_dir not in self.traces:
            path = self._path(rec)
            file = None if path is None else path / "trace.jsonl"
            got = read_jsonl(file) if file is not None and file.is_file() else []
            self.traces[run_dir] = sorted(got, key=lambda r: r["epoch"])
        return self.traces[run_dir]

    def change(self, key: str) -> Callable[[dict], float | None]:
        """A run's last − first epoch value of `key`; None with fewer than two epochs."""

        def value_of(rec: dict[str, Any]) -> float | None:
            curve = self.curve(rec, key)
            if len(curve) < 2:
                return None
            return curve[max(curve)] - curve[min(curve)]

        return value_of

    def falls(self, runs: list[dict[str, Any]], key: str) -> Values:
        """{unit: best first-half epoch − last epoch} of one arm's runs (inference.falls);
        a diverged run has no last epoch: collapse_claims counts it instead."""
        values(runs, lambda r: 0.0)  # refuses two runs of one unit
        return falls({unit(r): self.curve(r, key) for r in runs if not diverged(r)})

    def probe_change(self, kept: bool) -> Callable[[dict], float | None]:
        """Mean π̄ of the probe batch's drop-in (kept) or drop-out samples: last − first
        traced epoch; None without a trace of two epochs or without such samples."""

        def value_of(rec: dict[str, Any]) -> float | None:
            trace = self.trace(rec)
            if len(trace) < 2:
                return None
            chosen = [i for i, k in enumerate(trace[0]["keep"]) if bool(k) == kept]
            if not chosen:
                return None
            pis = [np.mean([t["pi_mean"][i] for i in chosen]) for t in (trace[0], trace[-1])]
            return float(pis[1] - pis[0])

        return value_of


# ---------------------------------------------------------------- the claims


def _g(gamma: float | None) -> str:
    return "" if gamma is None else f" γ={fmt_value(gamma)}"


def _get(key: str) -> Callable[[dict], Any]:
    return lambda rec: rec.get(key)


def final_claims(runs: list[dict[str, Any]], suffix: str, margin: float = MARGIN) -> list[Row]:
    """Acc+Reward claims and Tables 3/4 on the runs of one init."""
    na = arm(runs, "none")
    q, r = gammas(runs, "quantile"), gammas(runs, "random")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    q_lo = arm(runs, "quantile", q[0]) if len(q) > 1 else []
    qg = _g(q[-1] if q else None)
    # (claim, A, B, sign, margin or None)
    comparisons: list[tuple[str, list, list, int, float | None]] = [
        (f"quantile{qg} beats N/A", q_hi, na, 1, None)
    ]
    # The authors' with-replacement draw and the exact one are two random arms, never pooled.
    r_all = arm(runs, "random", r[-1]) if r else []
    for replacement in sorted({bool(x.get("random_replacement")) for x in r_all}) or [False]:
        name = "random" + (" (with replacement)" if replacement else "") + _g(r[-1] if r else None)
        r_hi = [x for x in r_all if bool(x.get("random_replacement")) == replacement]
        comparisons += [
            (f"quantile{qg} beats {name}", q_hi, r_hi, 1, None),
            (
                f"{name} does not help: random − N/A < {fmt_value(margin)} (non-superiority)",
                r_hi,
                na,
                -1,
                margin,
            ),
        ]
    comparisons.append(
        (
            "higher γ helps: quantile "
            + (f"γ={fmt_value(q[-1])} − γ={fmt_value(q[0])}" if len(q) > 1 else "γmax − γmin")
            + " > 0",
            q_hi,
            q_lo,
            1,
            None,
        )
    )
    rows = []
    # eval.judge's runs: the held-out rows again with the judge's reward, not R's
    judged = any(x.get("eval/judge_reward") is not None for x in runs)
    for claim, a, b, sign, m in comparisons:
        for metric, data, value_of in ACC_REWARD + (JUDGED if judged else []):
            row = paired_row(
                claim + suffix, metric, data, sign, values(a, value_of), values(b, value_of)
            )
            row.margin = m
            rows.append(row)
        if b is na and a is q_hi:  # where the Acc+Reward gain comes from: both objectives
            for key, data in FINAL_OBJECTIVES:
                rows.append(
                    paired_row(
                        f"quantile{qg} raises both, vs N/A{suffix}",
                        key,
                        data,
                        1,
                        values(a, _get(key)),
                        values(b, _get(key)),
                    )
                )
    for key, sign, what in TEXT_CLAIMS:
        rows.append(
            paired_row(
                f"Tables 3/4: {what}, quantile{qg} − N/A{suffix}",
                key,
                HELD_OUT,
                sign,
                values(q_hi, _get(key)),
                values(na, _get(key)),
            )
        )
    return rows


def degeneration_claims(runs: list[dict[str, Any]], curves: Curves, init: Any) -> list[Row]:
    """Fig. 3a on the runs of one init: N/A falls, and falls more than quantile."""
    q = gammas(runs, "quantile")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    na = arm(runs, "none")
    at = f" (init={fmt_value(init)})"
    rows = []
    for key, data in OBJECTIVES:
        metric = f"{key}: best of first half − last epoch"
        na_falls = curves.falls(na, key)
        rows.append(
            single_row(
                f"Fig. 3a: N/A degenerates: last epoch below the first half's best{at}",
                metric,
                data,
                1,
                na_falls,
            )
        )
    for key, data in OBJECTIVES:
        metric = f"{key}: best of first half − last epoch"
        rows.append(
            paired_row(
                f"Fig. 3a: quantile{_g(q[-1] if q else None)} falls less than N/A: "
                f"N/A's fall − quantile's{at}",
                metric,
                data,
                1,
                curves.falls(na, key),
                curves.falls(q_hi, key),
            )
        )
    return rows


def collapse_claims(runs: list[dict[str, Any]], curves: Curves, init: Any) -> list[Row]:
    """Fig. 3a on the runs of one init, counting diverged runs (training went non-finite,
    rdx.pipeline.loop.diverged) as collapses: the share of N/A's runs whose two objectives
    both fall or that diverged, against quantile's; and the diverged runs' own count row.
    The authors' AG News N/A runs ended in NaN: left out, they would hide the collapse."""
    q = gammas(runs, "quantile")
    q_hi, na = (arm(runs, "quantile", q[-1]) if q else []), arm(runs, "none")
    at, qg = f" (init={fmt_value(init)})", _g(q[-1] if q else None)
    rows = []
    for data, keys in OBJECTIVE_PAIRS:
        j_na, j_q = joint_degeneration(na, curves, keys), joint_degeneration(q_hi, curves, keys)
        row = paired_row(
            f"Fig. 3a: N/A collapses more often than quantile{qg}, a diverged run a collapse: "
            f"share(N/A) − share(quantile){at}",
            f"{keys[0]} and {keys[1]} both fall, or diverged",
            data,
            1,
            j_na,
            j_q,
        )
        arms = ((j_na, na, "N/A"), (j_q, q_hi, "quantile"))
        row.note = "; ".join(_collapsed(j, a, name) for j, a, name in arms if a)
        rows.append(row)
    went = [{unit(r): float(diverged(r)) for r in a} for a in (na, q_hi)]
    row = paired_row(
        f"Fig. 3a: runs that diverged (a non-finite loss or gradient): share(N/A) − "
        f"share(quantile{qg}){at}",
        "diverged",
        TRAIN,
        1,
        *went,
    )
    arms = ((na, "N/A"), (q_hi, "quantile"))
    row.note = "; ".join(_diverged_where(a, name) for a, name in arms if a)
    return [*rows, row]


def _collapsed(joint: Values, runs: list[dict[str, Any]], name: str) -> str:
    """'N/A 5/6 (2 diverged)': the arm's collapsed runs, of those measured."""
    n_div = sum(diverged(r) for r in runs)
    return f"{name} {int(sum(joint.values()))}/{len(joint)} ({n_div} diverged)"


def _diverged_where(runs: list[dict[str, Any]], name: str) -> str:
    """'N/A 2/6: negative seed 0 at epoch 3 step 27, ...' (the first three named)."""
    hits = sorted((r for r in runs if diverged(r)), key=lambda r: str(unit(r)))
    where = [
        f"{r['attribute']} seed {fmt_value(r['seed'])} at epoch {fmt_value(r['diverged_epoch'])}"
        f" step {fmt_value(r.get('diverged_step'))}"
        for r in hits[:3]
    ]
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    return f"{name} {len(hits)}/{len(runs)}" + (f": {', '.join(where)}{more}" if hits else "")


def joint_degeneration(runs: list[dict[str, Any]], curves: Curves, keys: tuple[str, str]) -> Values:
    """{unit: 1.0 if both objectives fell (fall > 0) or the run diverged, else 0.0}."""
    a, b = (curves.falls(runs, k) for k in keys)
    fell = {u: float(a[u] > 0 and b[u] > 0) for u in set(a) & set(b)}
    return fell | {unit(r): 1.0 for r in runs if diverged(r)}  # ended non-finite: a collapse


def pretrained_claims(block: list[dict[str, Any]], curves: Curves) -> list[Row]:
    """Fig. 3b: N/A's joint degeneration is rarer under each pretrained init than under each
    random one (random, uniform) present."""
    present = {r["init"] for r in block}
    bases = [i for i in RANDOM_INITS if i in present] or ["random"]
    inits = sorted(present - {*RANDOM_INITS, None}, key=_init_rank) or ["pretrained"]
    rows = []
    for base, init in ((b, i) for b in bases for i in inits):
        rand = arm([r for r in block if r["init"] == base], "none")
        pre = arm([r for r in block if r["init"] == init], "none")
        for data, keys in OBJECTIVE_PAIRS:
            j_rand, j_pre = (joint_degeneration(x, curves, keys) for x in (rand, pre))
            row = paired_row(
                f"Fig. 3b: N/A's joint degeneration is less frequent at init={init} than at "
                f"init={base}: share(random) − share(pretrained)",
                f"{keys[0]} and {keys[1]} both fall",
                data,
                1,
                j_rand,
                j_pre,
            )
            row.note = _where(j_pre, f"init={init}")
            rows.append(row)
    return rows


def _where(joint: Values, init: str) -> str:
    """The attributes whose seeds still degenerate jointly, e.g. "negative 2/3"."""
    if not joint:
        return ""
    per: dict[Any, list[float]] = defaultdict(list)
    for (_, attribute, *_), v in joint.items():
        per[attribute].append(v)
    hits = [f"{a} {int(sum(v))}/{len(v)}" for a, v in sorted(per.items(), key=str) if sum(v)]
    return f"still at {init}: " + ", ".join(hits) if hits else f"none at {init}"


def appendix_d_claims(runs: list[dict[str, Any]], curves: Curves, suffix: str) -> list[Row]:
    """Appendix D: drop-out samples improve as well (π̄ on the traced probe batch)."""
    q = gammas(runs, "quantile")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    metric = "π̄ of the probe batch: last − first traced epoch"
    rows = []
    for kept, what in ((False, "drop-out"), (True, "drop-in")):
        rows.append(
            single_row(
                f"Appendix D: π̄ of {what} samples rises, quantile{_g(q[-1] if q else None)}"
                f"{suffix}",
                metric,
                PROBE,
                1,
                values(q_hi, curves.probe_change(kept)),
            )
        )
    return rows


# ---------------------------------------------------------------- the claims of issue 30 §3

MIN_GAMMAS = 3  # a slope through two γ is the 0.8-vs-0.2 row again


def _judged(runs: list[dict[str, Any]]) -> list:
    """The final Acc+Reward metrics, with the judge's where eval.judge ran."""
    judged = any(x.get("eval/judge_reward") is not None for x in runs)
    return ACC_REWARD + (JUDGED if judged else [])


def gamma_slopes(runs: list[dict[str, Any]], value_of: Callable[[dict], Any]) -> Values:
    """{unit: least-squares slope of its quantile runs' value on γ}, for units that ran at
    least MIN_GAMMAS values of γ."""
    points: dict[Unit, list[tuple[float, float]]] = defaultdict(list)
    for gamma in gammas(runs, "quantile"):
        for u, v in values(arm(runs, "quantile", gamma), value_of).items():
            points[u].append((gamma, v))
    out = {}
    for u, pts in points.items():
        if len(pts) >= MIN_GAMMAS:
            x, y = (np.array(v) for v in zip(*pts, strict=True))
            out[u] = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return out


def gamma_trend_claims(runs: list[dict[str, Any]], suffix: str) -> list[Row]:
    """Higher γ helps, as a trend over every quantile γ present: each unit's slope > 0."""
    q = gammas(runs, "quantile")
    over = "γ=" + ", ".join(fmt_value(g) for g in q) if len(q) >= MIN_GAMMAS else "≥ 3 γ"
    return [
        single_row(
            f"higher γ helps: slope of quantile's value on γ ({over}) > 0{suffix}",
            f"{metric}: slope on γ",
            data,
            1,
            gamma_slopes(runs, value_of) if len(q) >= MIN_GAMMAS else {},
        )
        for metric, data, value_of in _judged(runs)
    ]


def probe_rise(trace: list[dict[str, Any]], rows: list[int]) -> float | None:
    """Mean π̄ of the probe batch's `rows`: last − first traced epoch; None without a trace
    of two epochs or without the rows."""
    if len(trace) < 2 or not rows or max(rows) >= len(trace[0]["pi_mean"]):
        return None
    first, last = (float(np.mean([t["pi_mean"][i] for i in rows])) for t in (trace[0], trace[-1]))
    return last - first


def appendix_d_control_claims(runs: list[dict[str, Any]], curves: Curves, suffix: str) -> list[Row]:
    """Appendix D with N/A as the control: on the probe samples that quantile dropped (its
    trace's keep mask), quantile's π̄ rise − N/A's on the same samples of the paired N/A
    run (one unit: the same sample set, so the same probe rows)."""
    q = gammas(runs, "quantile")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    na = arm(runs, "none")
    for runs_of_arm in (q_hi, na):
        values(runs_of_arm, lambda r: 0.0)  # refuses two runs of one unit
    partner = {unit(r): r for r in na}
    rise_q: Values = {}
    rise_na: Values = {}
    for rec in q_hi:
        trace = curves.trace(rec)
        control = curves.trace(partner[unit(rec)]) if unit(rec) in partner else []
        if len(trace) < 2 or len(control) < 2:
            continue
        same = [(t[0]["epoch"], t[-1]["epoch"], len(t[0]["keep"])) for t in (trace, control)]
        if same[0] != same[1]:  # other epochs or another probe batch: not the same samples
            continue
        dropped = [i for i, k in enumerate(trace[0]["keep"]) if not k]
        a, b = probe_rise(trace, dropped), probe_rise(control, dropped)
        if a is not None and b is not None:
            rise_q[unit(rec)], rise_na[unit(rec)] = a, b
    return [
        paired_row(
            f"Appendix D: π̄ of quantile{_g(q[-1] if q else None)}'s drop-out samples rises "
            f"more than N/A's on the same samples{suffix}",
            "π̄ of the drop-out samples: last − first traced epoch, quantile − N/A",
            PROBE,
            1,
            rise_q,
            rise_na,
        )
    ]


def rise_claims(runs: list[dict[str, Any]], curves: Curves, init: Any) -> list[Row]:
    """Fig. 3a: quantile increases both objectives over training, last − first epoch > 0."""
    q = gammas(runs, "quantile")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    return [
        single_row(
            f"Fig. 3a: quantile{_g(q[-1] if q else None)} raises both objectives: last − "
            f"first epoch (init={fmt_value(init)})",
            f"{key}: last − first epoch",
            data,
            1,
            values(q_hi, curves.change(key)),
        )
        for key, data in OBJECTIVES
    ]


def _both_fell(joint: Values) -> str:
    return f"{int(sum(joint.values()))}/{len(joint)}"


def joint_decline_claims(runs: list[dict[str, Any]], curves: Curves, init: Any) -> list[Row]:
    """Fig. 3a as the paper words it: both objectives decline together under N/A, not under
    quantile: share(N/A) − share(quantile) of runs whose two objectives both fell."""
    q = gammas(runs, "quantile")
    q_hi = arm(runs, "quantile", q[-1]) if q else []
    na = arm(runs, "none")
    rows = []
    for data, keys in OBJECTIVE_PAIRS:
        j_na, j_q = (joint_degeneration(x, curves, keys) for x in (na, q_hi))
        row = paired_row(
            f"Fig. 3a: both objectives fall together more often under N/A than under "
            f"quantile{_g(q[-1] if q else None)}: share(N/A) − share(quantile) "
            f"(init={fmt_value(init)})",
            f"{keys[0]} and {keys[1]} both fall",
            data,
            1,
            j_na,
            j_q,
        )
        if j_na or j_q:
            row.note = f"both fell: N/A {_both_fell(j_na)}, quantile {_both_fell(j_q)}"
        rows.append(row)
    return rows


def _gain(runs: list[dict[str, Any]], gamma: float | None, value_of: Callable) -> Values:
    """{unit: quantile γ − N/A} of one init's runs."""
    q = values(arm(runs, "quantile", gamma), value_of) if gamma is not None else {}
    na = values(arm(runs, "none"), value_of)
    return {u: q[u] - na[u] for u in set(q) & set(na)}


def non_pretrained_claims(block: list[dict[str, Any]]) -> list[Row]:
    """§7.4: reward dropout is most effective with non-pretrained targets, the contrast of
    contrasts (quantile − N/A at init=random) − (quantile − N/A at a pretrained init), paired
    by unit, at the largest quantile γ that both inits ran."""
    rand = [r for r in block if r["init"] == "random"]
    inits = sorted({r["init"] for r in block} - {"random", None}, key=_init_rank) or ["pretrained"]
    rows = []
    for init in inits:
        pre = [r for r in block if r["init"] == init]
        both = sorted(set(gammas(rand, "quantile")) & set(gammas(pre, "quantile")))
        gamma = both[-1] if both else None
        for metric, data, value_of in _judged(block):
            rows.append(
                paired_row(
                    f"§7.4: quantile{_g(gamma)} − N/A is larger at init=random than at "
                    f"init={init}: gain(random) − gain(pretrained)",
                    metric,
                    data,
                    1,
                    _gain(rand, gamma, value_of),
                    _gain(pre, gamma, value_of),
                )
            )
    return rows


def table2_claims(recs: list[dict[str, Any]]) -> list[Block]:
    """Table 2: quantile γ=0.8 beats N/A at each target model, where ≥ 2 models ran."""
    if len({r["model"] for r in recs}) < 2:
        return []
    axes = [a for a in CONTEXT if a != "model"] + config_axes(recs)
    out = []
    for block in split_blocks(recs, axes):
        models = sorted({r["model"] for r in block}, key=str)
        if len(models) < 2:
            continue
        rows = []
        for model in models:
            runs = [r for r in block if r["model"] == model]
            for metric, data, value_of in ACC_REWARD:
                rows.append(
                    paired_row(
                        f"Table 2: quantile γ={fmt_value(TABLE2_GAMMA)} beats N/A at model={model}",
                        metric,
                        data,
                        1,
                        values(arm(runs, "quantile", TABLE2_GAMMA), value_of),
                        values(arm(runs, "none"), value_of),
                    )
                )
        out.append(Block("Table 2, by target model: " + context_label(block, axes, recs), rows))
    return out


def _init_rank(init: Any) -> tuple[int, str]:
    return (INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER), str(init))


@dataclass
class Block:
    context: str
    rows: list[Row]


def evaluate(
    recs: list[dict[str, Any]],
    curves: Curves,
    seed: int = 0,
    cluster: str = "cell",
    margin: float = MARGIN,
) -> list[Block]:
    """Every claim's row, one block per combination of the runs' other axes."""
    if cluster not in CLUSTERINGS:
        raise RunsError(f"cluster={cluster!r}: allowed {', '.join(CLUSTERINGS)}")
    axes = [a for a in CONTEXT if a != "init"] + config_axes(recs)
    blocks = split_blocks(recs, axes) if recs else [[]]
    out = []
    for block in blocks:
        inits = sorted({r["init"] for r in block}, key=_init_rank) or ["random"]
        rows = []
        for init in inits:
            suffix = f" (init={init})" if len(inits) > 1 else ""
            runs = [r for r in block if r["init"] == init]
            rows += final_claims(runs, suffix, margin)
            rows += gamma_trend_claims(runs, suffix)
            rows += appendix_d_claims(runs, curves, suffix)
            rows += appendix_d_control_claims(runs, curves, suffix)
        for init in inits:
            rows += degeneration_claims([r for r in block if r["init"] == init], curves, init)
            rows += rise_claims([r for r in block if r["init"] == init], curves, init)
            rows += joint_decline_claims([r for r in block if r["init"] == init], curves, init)
            rows += collapse_claims([r for r in block if r["init"] == init], curves, init)
        rows += pretrained_claims(block, curves)
        rows += non_pretrained_claims(block)
        context = context_label(block, axes, recs) if block else "no completed runs"
        if len(inits) == 1 and block:
            context += f", init={fmt_value(inits[0])}"
        out.append(Block(context, rows))
    out += table2_claims(recs)
    for block in out:
        block.rows = [judge(row, seed, cluster) for row in block.rows]
    return out


# ---------------------------------------------------------------- rendering


def _num(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:+.3f}"


def fmt_p(p: float, k: int) -> str:
    """The sign-flip p, with a mark where k clusters cannot reach 0.05 at all."""
    if math.isnan(p):
        return "—"
    return f"{p:.3f}" + ("" if smallest_p(k) < 0.05 else "*")


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
                "clusters": row.n_clusters,
                "p (sign-flip)": fmt_p(row.p, row.n_clusters),
                "signs": f"{row.n_positive}/{row.n_clusters} +" if row.diffs else "—",
                "verdict": row.verdict,
                "note": row.note,
            }
            for row in block.rows
        ]
    )


def render(blocks: list[Block], seed: int, cluster: str = "cell", margin: float = MARGIN) -> str:
    """Markdown: a note on the method, then one table per block."""
    by = {"cell": "(dataset, attribute, sample set) clusters",
          "task": "(dataset, task, sample set) clusters",
          "unit": "the pairs (unclustered)"}[cluster]  # fmt: skip
    lines = [
        "**Claims.** Effect: mean over (dataset, attribute, sample set, seed) pairs of A − B; "
        f"95% CI: mean ± t(k − 1) · SE, SE from a bootstrap resampling {by} ({N_BOOT} "
        f"resamples, seed {seed}; k clusters, one per sample set of β); n: pairs; clusters: "
        "how many were resampled. p: the sign-flip randomization test over the k clusters' "
        "mean differences (exact; * marks k < 6, where no p below 0.05 exists); signs: the "
        "clusters with a positive mean. Verdict: holds / does not hold when p < 0.05 and the "
        "effect is on the claimed / other side, else inconclusive (also when n < 2 or "
        "clusters < 2); a non-superiority row holds when the CI's upper bound is below the "
        f"margin ({fmt_value(margin)}), does not hold when its lower bound is at or above it. "
        "Degeneration (Fig. 3a): fall = a run's value at the best epoch of the first half of "
        "training (picked on the arm's other runs) − its last epoch's; > 0 fell.",
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
                colalign=(
                    "left",
                    "left",
                    "left",
                    "right",
                    "right",
                    "right",
                    "right",
                    "right",
                    "right",
                    "left",
                    "left",
                ),
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
    parser.add_argument(
        "--cluster",
        choices=CLUSTERINGS,
        default="cell",
        help="resample (dataset, attribute) clusters (cell), (dataset, task) ones (task: for "
        "sampling.prefix_pool=task, whose attributes share β's samples) or the pairs (unit)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=MARGIN,
        help="non-superiority margin of 'random does not help' (Acc+Reward units)",
    )
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
        blocks = evaluate(recs, curves, args.seed, args.cluster, args.margin)
    except RunsError as err:
        print(f"claims: error: {err}", file=sys.stderr)
        return 1
    text = render(blocks, args.seed, args.cluster, args.margin)
    text += f"\nSource: {provenance(recs, args.runs)}\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, text)
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
