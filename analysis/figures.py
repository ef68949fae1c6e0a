"""Stage 3 of the analysis: figures as PNG and PDF (matplotlib, Agg).

    python -m analysis.figures --csv results/runs.csv --runs runs --out figures/ [--heatmap-run DIR]
        [--duplicates fail|latest]      # as in analysis.tables; make figures passes latest

fig3_<dataset>_<attribute>[_<axis>=<value>...]: train/acc, train/reward (the paper's axes),
    eval/likelihood and eval/reward by epoch, the rows the runs logged
    (metrics.jsonl, epochs from 1), one column per target init, one line per dropout setting
    (mean over seeds, band = min..max); the suffix names model/lr/... when the CSV has
    several. Drawn only from runs with per-epoch metrics (trainer.epoch_metrics=every, as in
    sweeps=fig3): a run that measured its last epoch only is one dot, not a curve, and is
    left out with a warning that says so.
pareto_<dataset>: final eval/reward vs eval/likelihood (CSV only), one point per setting
    (mean over seeds), marker size = γ, lines from N/A through quantile γ in order.
fig6: r̂ and π̄ of the fixed probe batch (trace.jsonl), samples x epochs, dropped samples
    dark; default run: a quantile run with the γ nearest the paper's 0.8 (lowest seed).
Run dirs in the CSV are relative to --runs (what collect writes).

Each run writes only what its runs support: it first removes the fig3_*, pareto_* and fig6*
files an earlier run left in --out, and names its runs in every file it writes (PNG text
chunk and PDF Subject: `rdx runs: ...`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, ScalarFormatter  # noqa: E402

from analysis.outputs import save_figure  # noqa: E402
from analysis.runs import (  # noqa: E402
    DUPLICATE_RULES,
    INIT_ORDER,
    PAPER_GAMMA,
    RunsError,
    config_axes,
    epoch_curves,
    fmt_value,
    load,
    provenance,
    run_path,
)

FIG3_CONFIG = ("model", "behavior", "reward_model", "epochs", "lr")
PARETO_PANELS = ("model", "init", "behavior", "reward_model", "epochs", "lr")
# The paper's Fig. 3 axes first (the accuracy and reward of π's greedy text on the train
# prefixes), then the held-out objectives; a figure has the rows its runs logged.
CURVES = [
    ("train/acc", "accuracy (train)"),
    ("train/reward", "reward (train)"),
    ("eval/likelihood", "likelihood β(τ̂)"),
    ("eval/reward", "reward R(τ̂)"),
]
ATTRIBUTE_COLORS = {
    "negative": "tab:red",
    "positive": "tab:green",
    "world": "tab:blue",
    "sport": "tab:orange",
    "business": "tab:purple",
    "sci_tech": "tab:brown",
}
MARKERS = {"none": "X", "random": "s", "quantile": "o", "threshold": "D"}
# One colour map per dropout, walked by the rank of γ among the γs present: 0.8, 0.9 and
# 0.95 are as far apart as 0.2, 0.4 and 0.6 (a map read by γ's value made them one blue).
GAMMA_CMAPS = {"quantile": "viridis", "random": "Greys", "threshold": "Oranges"}
GAMMA_SPAN = {"quantile": (0.05, 0.75), "random": (0.45, 0.8), "threshold": (0.45, 0.9)}
OWN_OUTPUTS = ("fig3_*", "pareto_*", "fig6.*", "fig6_*")
MASK_COLOR = "0.08"
# YlOrRd without its darkest reds, so that no value looks like a dropped (dark) cell.
HEAT_CMAP = ListedColormap(plt.get_cmap("YlOrRd")(np.linspace(0.0, 0.8, 256)))


def setting_label(rec: dict[str, Any]) -> str:
    if rec["dropout"] == "none":
        return "N/A"
    if rec["dropout"] == "threshold":
        return f"threshold δ={fmt_value(rec['delta'])}"
    replacement = " (with replacement)" if rec.get("random_replacement") else ""
    return f"{rec['dropout']}{replacement} γ={fmt_value(rec['gamma'])}"


def _setting_order(rec: dict[str, Any]) -> tuple:
    order = ["none", "random", "quantile", "threshold"]
    rank = order.index(rec["dropout"]) if rec["dropout"] in order else len(order)
    return (rank, rec["gamma"] or 0.0, rec["delta"] or 0.0)


def gamma_levels(recs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """{dropout: its γ (δ for threshold) values present, sorted}: what a colour rank counts."""
    levels: dict[str, set] = defaultdict(set)
    for rec in recs:
        value = rec["delta"] if rec["dropout"] == "threshold" else rec["gamma"]
        if rec["dropout"] != "none" and value is not None:
            levels[rec["dropout"]].add(float(value))
    return {k: sorted(v) for k, v in levels.items()}


def style(rec: dict[str, Any], levels: dict[str, list[float]]) -> dict[str, Any]:
    """N/A black with x markers (as in the paper's Fig. 3); each γ of a dropout its own
    colour, spread over the dropout's map by rank so that neighbouring γs stay apart."""
    if rec["dropout"] == "none":
        return {"color": "black", "marker": "x", "linestyle": "-"}
    value = rec["delta"] if rec["dropout"] == "threshold" else rec["gamma"]
    values = levels.get(rec["dropout"], [])
    rank = values.index(float(value)) if value is not None and float(value) in values else 0
    lo, hi = GAMMA_SPAN.get(rec["dropout"], (0.45, 0.9))
    shade = lo + (hi - lo) * (rank / (len(values) - 1) if len(values) > 1 else 0.5)
    color = plt.get_cmap(GAMMA_CMAPS.get(rec["dropout"], "Greens"))(shade)
    line = "--" if rec["dropout"] == "random" else "-"
    return {"color": color, "marker": MARKERS.get(rec["dropout"], "."), "linestyle": line}


def _init_rank(init: Any) -> tuple[int, str]:
    """Random init before pretrained (behavior, hub) init, as in the paper's Fig. 3 (a)/(b)."""
    return (INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER), str(init))


def _plain(ax: Any, axis: str = "both") -> None:
    """Tick labels as the values themselves: no `1e−5+2.396e−1` offset above the axis."""
    for which in ("x", "y") if axis == "both" else (axis,):
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        getattr(ax, f"{which}axis").set_major_formatter(formatter)


def _save(fig: plt.Figure, out: Path, stem: str, runs: str) -> list[Path]:
    """PNG and PDF, each naming the runs it was drawn from in its metadata."""
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    save_figure(fig, paths[0], dpi=150, bbox_inches="tight", metadata={"Description": runs})
    save_figure(fig, paths[1], bbox_inches="tight", metadata={"Subject": runs})
    plt.close(fig)
    return paths


def clear_outputs(out: Path) -> list[Path]:
    """Remove the figures an earlier run of this module left in `out`; the removed paths."""
    removed = []
    for pattern in OWN_OUTPUTS:
        for path in sorted(out.glob(pattern)):
            if path.suffix in (".png", ".pdf") and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in str(name)).strip("_")


def _runs_line(recs: list[dict[str, Any]], root: Path | None) -> str:
    return f"rdx runs: {provenance(recs, root)}"


def per_epoch(curves: dict[int, dict[str, float]]) -> bool:
    """Whether a run's epoch records hold a curve: a Fig. 3 metric at two epochs or more."""
    return any(sum(r.get(key) is not None for r in curves.values()) >= 2 for key, _ in CURVES)


def fig3(recs: list[dict[str, Any]], root: Path, out: Path, warn: list[str]) -> list[Path]:
    # One figure per (dataset, attribute, target config); init is the panel axis. Runs that
    # differ in model, lr, ... get separate figures rather than being averaged as seeds.
    # Dotted config keys (sampling.stop_at_eos, ...) split figures too, never seeds.
    config_keys = [*FIG3_CONFIG, *config_axes(recs)]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in recs:
        groups[(rec["dataset"], rec["attribute"], tuple(rec.get(a) for a in config_keys))].append(
            rec
        )
    configs = sorted({k[2] for k in groups}, key=str)
    varying = [i for i, _ in enumerate(config_keys) if len({c[i] for c in configs}) > 1]
    levels = gamma_levels(recs)
    written, no_metrics, last_only = [], [], []
    for (dataset, attribute, config), runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        curves = {}
        for rec in runs:
            path = run_path(rec["run_dir"], root) / "metrics.jsonl"
            if not path.is_file():
                no_metrics.append(str(path))
                continue
            run_curves = epoch_curves(path.parent)
            if per_epoch(run_curves):
                curves[rec["run_dir"]] = run_curves
            else:
                last_only.append(str(path.parent))
        runs = [r for r in runs if r["run_dir"] in curves]
        if not runs:
            continue
        suffix = [f"{config_keys[i]}={fmt_value(config[i])}" for i in varying]
        inits = sorted({str(r["init"]) for r in runs}, key=_init_rank)
        logged = {k for run in curves.values() for e in run.values() for k in e}
        rows = [c for c in CURVES if c[0] in logged]
        fig, axes = plt.subplots(
            len(rows),
            len(inits),
            figsize=(4.2 * len(inits), 3.0 * len(rows)),
            squeeze=False,
            sharex=True,
            sharey="row",  # random vs pretrained init on one scale, as in the paper's Fig. 3
        )
        for col, init in enumerate(inits):
            by_setting: dict[str, list[dict]] = defaultdict(list)
            for rec in sorted((r for r in runs if str(r["init"]) == init), key=_setting_order):
                by_setting[setting_label(rec)].append(rec)
            for label, members in by_setting.items():
                for row, (key, ylabel) in enumerate(rows):
                    _plot_mean(
                        axes[row][col],
                        [curves[m["run_dir"]] for m in members],
                        key,
                        label,
                        style(members[0], levels),
                    )
                    axes[row][col].set_ylabel(ylabel if col == 0 else "")
                    _plain(axes[row][col], "y")
            axes[0][col].set_title(f"init = {init}")
            axes[-1][col].set_xlabel("epoch")
            axes[-1][col].xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0][1:]:  # settings that only exist for another init
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(
            handles,
            labels,
            fontsize=8,
            loc="lower center",
            ncol=min(len(labels), 4),
            bbox_to_anchor=(0.5, -0.02 - 0.03 * ((len(labels) - 1) // 4)),
        )
        fig.suptitle(" / ".join([str(dataset), str(attribute), *suffix]))
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        stem = "_".join(_safe(x) for x in ["fig3", dataset, attribute, *suffix])
        written += _save(fig, out, stem, _runs_line(runs, root))
    if no_metrics:
        warn.append(f"fig3: no metrics.jsonl for {len(no_metrics)} run(s), e.g. {no_metrics[0]}")
    if last_only:
        warn.append(
            f"fig3: {len(last_only)} run(s) measured their last epoch only (one dot, not a "
            f"curve), left out, e.g. {last_only[0]}; curves need trainer.epoch_metrics=every "
            "(python -m rdx.train -m sweeps=fig3)"
        )
    return written


def _plot_mean(ax: Any, runs: list[dict[int, dict]], key: str, label: str, style: dict) -> None:
    epochs = sorted({e for run in runs for e in run if run[e].get(key) is not None})
    if not epochs:
        return
    vals = [
        [run[e][key] for run in runs if e in run and run[e].get(key) is not None] for e in epochs
    ]
    mean = [float(np.mean(v)) for v in vals]
    n = min(len(v) for v in vals)
    # metrics.jsonl counts epochs from 0; the log and the paper count them from 1
    xs = [e + 1 for e in epochs]
    ax.plot(xs, mean, label=label if n < 2 else f"{label} (n={n})", markersize=4, **style)
    if max(len(v) for v in vals) > 1:
        ax.fill_between(
            xs,
            [min(v) for v in vals],
            [max(v) for v in vals],
            color=style["color"],
            alpha=0.15,
            linewidth=0,
        )


def pareto(recs: list[dict[str, Any]], out: Path, root: Path | None = None) -> list[Path]:
    written = []
    panels = (*PARETO_PANELS, *config_axes(recs))  # a sampling regime is a panel, not a seed
    levels = gamma_levels(recs)
    for dataset in sorted({str(r["dataset"]) for r in recs}):
        # (target config, attribute, setting) -> runs; the point is their mean over seeds.
        points: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
        used = []
        for rec in recs:
            if str(rec["dataset"]) != dataset or rec.get("eval/likelihood") is None:
                continue
            if rec.get("eval/reward") is None:
                continue
            target = tuple(rec.get(a) for a in panels)
            setting = (rec["dropout"], rec["gamma"], rec["delta"])
            points[target][(rec["attribute"], *setting)].append(rec)
            used.append(rec)
        if not points:
            continue
        targets = sorted(points, key=lambda t: (str(t[0]), _init_rank(t[1]), str(t[2:])))
        fig, axes = plt.subplots(
            1,
            len(targets),
            figsize=(5.6 * len(targets), 4.8),
            squeeze=False,
            sharex=True,
            sharey=True,
        )
        for ax, target in zip(axes[0], targets, strict=True):
            _pareto_panel(ax, points[target], levels)
            ax.set_title(_target_title(target, targets, panels), fontsize=9)
        axes[0][0].set_ylabel("eval/reward  R(τ̂), final epoch")
        handles = _pareto_legend(points, levels)
        fig.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(
            f"{dataset}: final reward vs likelihood (mean over seeds)\n"
            "lines: N/A → quantile γ in increasing order, same attribute",
            fontsize=10,
        )
        fig.tight_layout()
        written += _save(fig, out, f"pareto_{_safe(dataset)}", _runs_line(used, root))
    return written


def _target_title(
    target: tuple, targets: list[tuple], panels: tuple[str, ...] = PARETO_PANELS
) -> str:
    """The target-config axes that differ between panels, e.g. "init=behavior"."""
    return ", ".join(
        f"{a}={fmt_value(v)}"
        for i, (a, v) in enumerate(zip(panels, target, strict=True))
        if len({t[i] for t in targets}) > 1
    )


def _size(gamma: float | None, gammas: list[float]) -> float:
    """Marker area by the rank of γ among the γs of the plot (quantile and random share
    one scale): γ read off the size, no text labels to collide where points crowd."""
    if gamma is None or float(gamma) not in gammas or len(gammas) < 2:
        return 45.0
    return 18.0 + 90.0 * gammas.index(float(gamma)) / (len(gammas) - 1)


def size_levels(levels: dict[str, list[float]]) -> list[float]:
    return sorted(set(levels.get("quantile", [])) | set(levels.get("random", [])))


def _pareto_panel(ax: Any, groups: dict[tuple, list[dict]], levels: dict) -> None:
    xy = {
        key: (
            float(np.mean([r["eval/likelihood"] for r in runs])),
            float(np.mean([r["eval/reward"] for r in runs])),
        )
        for key, runs in groups.items()
    }
    for (attribute, dropout, gamma, _delta), (x, y) in xy.items():
        color = ATTRIBUTE_COLORS.get(attribute, "tab:gray")
        ax.scatter(
            x,
            y,
            color=color,
            marker=MARKERS.get(dropout, "."),
            s=_size(gamma, size_levels(levels)),
            zorder=3,
            edgecolors="white",
            linewidths=0.5,
        )
    for attribute in {k[0] for k in xy}:
        base = xy.get((attribute, "none", None, None))
        for dropout in ("quantile",):  # random's own lines would bury the quantile path
            path = sorted((k[2], p) for k, p in xy.items() if k[0] == attribute and k[1] == dropout)
            if not path:
                continue
            line = ([base] if base else []) + [p for _, p in path]
            ax.plot(
                [p[0] for p in line],
                [p[1] for p in line],
                color=ATTRIBUTE_COLORS.get(attribute, "tab:gray"),
                alpha=0.6,
                lw=1,
                zorder=2,
            )
    ax.set_xlabel("eval/likelihood  β(τ̂), final epoch")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    _plain(ax)
    ax.margins(0.08)
    ax.grid(alpha=0.3)


def _pareto_legend(points: dict[tuple, dict[tuple, list]], levels: dict) -> list[Any]:
    keys = {k for groups in points.values() for k in groups}
    order = list(ATTRIBUTE_COLORS)
    attrs = sorted({k[0] for k in keys}, key=lambda a: (order + [a]).index(a))
    handles: list[Any] = [Patch(color=ATTRIBUTE_COLORS.get(a, "tab:gray"), label=a) for a in attrs]
    for d, m in MARKERS.items():
        if any(k[1] == d for k in keys):
            name = "N/A" if d == "none" else d
            handles.append(plt.Line2D([], [], color="0.3", marker=m, linestyle="", label=name))
    gammas = size_levels(levels)
    shown = sorted({float(k[2]) for k in keys if k[1] in ("quantile", "random") and k[2]})
    for g in shown if len(gammas) > 1 else []:  # one γ: no size scale to explain
        size = math.sqrt(_size(g, gammas))
        handles.append(
            plt.Line2D([], [], color="0.5", marker="o", linestyle="", markersize=size,
                       label=f"γ={fmt_value(g)}")
        )  # fmt: skip
    return handles


def fig6(
    run_dir: Path, out: Path, title: str = "", runs: str = "", stem: str = "fig6"
) -> list[Path]:
    trace = sorted(read_trace(run_dir), key=lambda r: r["epoch"])
    if not trace:
        raise RunsError(f"{run_dir / 'trace.jsonl'} has no records")
    epochs = [r["epoch"] + 1 for r in trace]  # counted from 1, as in the training log
    keep = np.array([r["keep"] for r in trace], dtype=bool)
    height = max(3.4, 0.3 * len(epochs) + 2.4)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, height), sharey=True, layout="constrained")
    titles = ("r̂ = R + ln β  (bi-objective reward)", "π̄  (mean token probability under π)")
    for ax, key, label in zip(axes, ("r_hat", "pi_mean"), titles, strict=True):
        data = np.ma.masked_array(np.array([r[key] for r in trace], dtype=float), mask=~keep)
        cmap = HEAT_CMAP.with_extremes(bad=MASK_COLOR)
        image = ax.imshow(
            data,
            aspect="auto",
            cmap=cmap,
            interpolation="nearest",
            origin="lower",
            extent=(-0.5, data.shape[1] - 0.5, epochs[0] - 0.5, epochs[-1] + 0.5),
        )
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        ax.set_title(label)
        ax.set_xlabel("sample of the probe batch")
    axes[0].set_ylabel("epoch")
    axes[0].set_yticks(epochs)
    fig.legend(
        handles=[Patch(color=MASK_COLOR, label="dropped (keep = false)")],
        loc="outside lower right",
        fontsize=8,
    )
    fig.suptitle(title or str(run_dir))
    return _save(fig, out, stem, runs or f"rdx runs: 1 run(s): {run_dir}")


def read_trace(run_dir: Path) -> list[dict[str, Any]]:
    from rdx.records import read_jsonl

    return read_jsonl(run_dir / "trace.jsonl")


def heatmap_run(
    recs: list[dict[str, Any]], root: Path | None, chosen: Path | None
) -> tuple[Path, str, dict[str, Any] | None] | None:
    """(run dir, title, its record) for Fig. 6, or None when no quantile run has a trace.

    By default the paper's run: quantile dropout with the γ nearest PAPER_GAMMA, lowest seed, first
    attribute in the CSV's order."""
    if chosen is not None:
        path = chosen if chosen.is_dir() or root is None else root / chosen
        if not (path / "trace.jsonl").is_file():
            raise RunsError(f"--heatmap-run {chosen}: no trace.jsonl in {path}")
        rec = next(
            (r for r in recs if run_path(r["run_dir"], root).resolve() == path.resolve()), None
        )
        return path, _title(rec) if rec else str(chosen), rec
    candidates = [
        (abs(float(rec["gamma"]) - PAPER_GAMMA), rec["seed"] or 0, i, rec)
        for i, rec in enumerate(recs)
        if rec["dropout"] == "quantile"
        and rec["gamma"] is not None
        and (run_path(rec["run_dir"], root) / "trace.jsonl").is_file()
    ]
    if not candidates:
        return None
    *_, rec = min(candidates, key=lambda c: c[:3])
    return run_path(rec["run_dir"], root), _title(rec), rec


def _title(rec: dict[str, Any]) -> str:
    return (
        f"{rec['dataset']} / {rec['attribute']} / {rec['model']} / {setting_label(rec)} / "
        f"seed {fmt_value(rec['seed'])}"
    )


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Figures from the tidy CSV and run dirs.")
    parser.add_argument("--csv", type=Path, default=Path("results/runs.csv"))
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="root of run_dir paths")
    parser.add_argument("--out", type=Path, default=Path("figures"))
    parser.add_argument(
        "--heatmap-run",
        type=Path,
        help=f"run dir for fig6 (default: a quantile run with γ nearest {PAPER_GAMMA})",
    )
    parser.add_argument(
        "--duplicates",
        choices=DUPLICATE_RULES,
        default="fail",
        help="two runs of one cell and seed: fail naming them, or keep the one that ended last",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    warn: list[str] = []
    args.out.mkdir(parents=True, exist_ok=True)
    removed = clear_outputs(args.out)  # before reading: a failure leaves no stale figure
    try:
        recs = load(args.csv, args.duplicates, warn)
        written = fig3(recs, args.runs, args.out, warn) + pareto(recs, args.out, args.runs)
        heat = heatmap_run(recs, args.runs, args.heatmap_run)
        if heat is None:
            warn.append("fig6: no quantile run with a trace.jsonl")
        else:
            path, title, rec = heat
            runs = _runs_line([rec], args.runs) if rec else f"rdx runs: 1 run(s): {path}"
            written += fig6(path, args.out, title, runs)
    except (RunsError, OSError, KeyError, ValueError) as err:
        print(f"figures: error: {err}", file=sys.stderr)
        return 1
    kept = set(written)
    gone = [p for p in removed if p not in kept]
    for path in written:
        print(f"figures: wrote {path}")
    if gone:
        print(f"figures: removed {len(gone)} older figure(s) these runs do not support")
    for line in warn:
        print(f"figures: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
