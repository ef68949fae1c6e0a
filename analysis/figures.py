"""Stage 3 of the analysis: figures as PNG and PDF (matplotlib, Agg).

    python -m analysis.figures --csv results/runs.csv --runs runs --out figures/ [--heatmap-run DIR]
        [--duplicates fail|latest]      # as in analysis.tables; make figures passes latest

fig3_<dataset>_<attribute>[_<axis>=<value>...]: eval/likelihood and eval/reward by epoch
    (metrics.jsonl), one column per target init, one line per dropout setting (mean over
    seeds, band = min..max); the suffix names model/lr/... when the CSV has several.
pareto_<dataset>: final eval/reward vs eval/likelihood (CSV only), one point per setting
    (mean over seeds), arrows from N/A to each quantile γ of the same attribute.
fig6_<run>: r̂ and π̄ of the fixed probe batch (trace.jsonl), samples x epochs, dropped
    samples dark; default run: the first quantile run with a trace.
Run dirs in the CSV are relative to --runs (what collect writes).
"""

from __future__ import annotations

import argparse
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
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.tables import DUPLICATE_RULES, TableError, config_axes, fmt_value, load  # noqa: E402
from rdx.records import read_jsonl  # noqa: E402

INIT_ORDER = ["random", "behavior", "pretrained"]
FIG3_CONFIG = ("model", "behavior", "reward_model", "epochs", "lr")
PARETO_PANELS = ("model", "init", "behavior", "reward_model", "epochs", "lr")
CURVES = [("eval/likelihood", "likelihood β(τ̂)"), ("eval/reward", "reward R(τ̂)")]
ATTRIBUTE_COLORS = {
    "negative": "tab:red",
    "positive": "tab:green",
    "world": "tab:blue",
    "sport": "tab:orange",
    "business": "tab:purple",
    "sci_tech": "tab:brown",
}
MARKERS = {"none": "X", "random": "s", "quantile": "o", "threshold": "D"}
MASK_COLOR = "0.08"
# YlOrRd without its darkest reds, so that no value looks like a dropped (dark) cell.
HEAT_CMAP = ListedColormap(plt.get_cmap("YlOrRd")(np.linspace(0.0, 0.8, 256)))


def epoch_curves(run_dir: Path) -> dict[int, dict[str, float]]:
    """{epoch: epoch record}; a resumed run may repeat an epoch, the last record wins."""
    return {
        int(r["epoch"]): r
        for r in read_jsonl(run_dir / "metrics.jsonl")
        if r.get("kind") == "epoch"
    }


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


def _style(rec: dict[str, Any]) -> dict[str, Any]:
    """N/A black with x markers (as in the paper's Fig. 3); γ darkens the dropout's colour."""
    if rec["dropout"] == "none":
        return {"color": "black", "marker": "x", "linestyle": "-"}
    cmap = {"random": plt.cm.Greys, "quantile": plt.cm.Blues, "threshold": plt.cm.Oranges}
    shade = 0.45 + 0.5 * (rec["gamma"] if rec["gamma"] is not None else 0.5)
    color = cmap.get(rec["dropout"], plt.cm.Greens)(min(shade, 0.95))
    style = "--" if rec["dropout"] == "random" else "-"
    return {"color": color, "marker": MARKERS.get(rec["dropout"], "."), "linestyle": style}


def _init_rank(init: Any) -> tuple[int, str]:
    """Random init before pretrained (behavior, hub) init, as in the paper's Fig. 3 (a)/(b)."""
    return (INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER), str(init))


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in str(name)).strip("_")


def _run_path(run_dir: str | int, root: Path | None) -> Path:
    path = Path(str(run_dir))  # a CSV read elsewhere may hold job dirs 0, 1, ... as ints
    return path if root is None or path.is_absolute() else root / path


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
    written, no_metrics = [], []
    for (dataset, attribute, config), runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        curves = {}
        for rec in runs:
            path = _run_path(rec["run_dir"], root) / "metrics.jsonl"
            if path.is_file():
                curves[rec["run_dir"]] = epoch_curves(path.parent)
            else:
                no_metrics.append(str(path))
        runs = [r for r in runs if curves.get(r["run_dir"])]
        if not runs:
            continue
        suffix = [f"{config_keys[i]}={fmt_value(config[i])}" for i in varying]
        inits = sorted({str(r["init"]) for r in runs}, key=_init_rank)
        fig, axes = plt.subplots(
            2,
            len(inits),
            figsize=(4.2 * len(inits), 6.0),
            squeeze=False,
            sharex=True,
            sharey="row",  # random vs pretrained init on one scale, as in the paper's Fig. 3
        )
        for col, init in enumerate(inits):
            by_setting: dict[str, list[dict]] = defaultdict(list)
            for rec in sorted((r for r in runs if str(r["init"]) == init), key=_setting_order):
                by_setting[setting_label(rec)].append(rec)
            for label, members in by_setting.items():
                for row, (key, ylabel) in enumerate(CURVES):
                    _plot_mean(
                        axes[row][col],
                        [curves[m["run_dir"]] for m in members],
                        key,
                        label,
                        _style(members[0]),
                    )
                    axes[row][col].set_ylabel(ylabel if col == 0 else "")
            axes[0][col].set_title(f"init = {init}")
            axes[1][col].set_xlabel("epoch")
            axes[1][col].xaxis.set_major_locator(MaxNLocator(integer=True))
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
        written += _save(fig, out, stem)
    if no_metrics:
        warn.append(f"fig3: no metrics.jsonl for {len(no_metrics)} run(s), e.g. {no_metrics[0]}")
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
    ax.plot(epochs, mean, label=label if n < 2 else f"{label} (n={n})", markersize=4, **style)
    if max(len(v) for v in vals) > 1:
        ax.fill_between(
            epochs,
            [min(v) for v in vals],
            [max(v) for v in vals],
            color=style["color"],
            alpha=0.15,
            linewidth=0,
        )


def pareto(recs: list[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    panels = (*PARETO_PANELS, *config_axes(recs))  # a sampling regime is a panel, not a seed
    for dataset in sorted({str(r["dataset"]) for r in recs}):
        # (target config, attribute, setting) -> runs; the point is their mean over seeds.
        points: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for rec in recs:
            if str(rec["dataset"]) != dataset or rec.get("eval/likelihood") is None:
                continue
            if rec.get("eval/reward") is None:
                continue
            target = tuple(rec.get(a) for a in panels)
            setting = (rec["dropout"], rec["gamma"], rec["delta"])
            points[target][(rec["attribute"], *setting)].append(rec)
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
            _pareto_panel(ax, points[target], legend=ax is axes[0][0])
            ax.set_title(_target_title(target, targets, panels), fontsize=9)
        axes[0][0].set_ylabel("eval/reward  R(τ̂), final epoch")
        fig.suptitle(
            f"{dataset}: final reward vs likelihood (mean over seeds)\n"
            "arrows: N/A → quantile γ of the same attribute",
            fontsize=10,
        )
        written += _save(fig, out, f"pareto_{_safe(dataset)}")
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


def _pareto_panel(ax: Any, groups: dict[tuple, list[dict]], legend: bool) -> None:
    xy = {
        key: (
            float(np.mean([r["eval/likelihood"] for r in runs])),
            float(np.mean([r["eval/reward"] for r in runs])),
        )
        for key, runs in groups.items()
    }
    for (attribute, dropout, gamma, _delta), (x, y) in xy.items():
        color = ATTRIBUTE_COLORS.get(attribute, "tab:gray")
        ax.scatter(x, y, color=color, marker=MARKERS.get(dropout, "."), s=40, zorder=3)
        if dropout != "quantile":
            continue
        ax.annotate(
            fmt_value(gamma),
            (x, y),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color=color,
        )
        base = xy.get((attribute, "none", None, None))
        if base is not None:
            ax.annotate(
                "",
                (x, y),
                base,
                arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.7, "lw": 1},
            )
    order = list(ATTRIBUTE_COLORS)
    attrs = sorted({k[0] for k in xy}, key=lambda a: (order + [a]).index(a))
    handles = [Patch(color=ATTRIBUTE_COLORS.get(a, "tab:gray"), label=a) for a in attrs]
    handles += [
        plt.Line2D([], [], color="0.3", marker=m, linestyle="", label="N/A" if d == "none" else d)
        for d, m in MARKERS.items()
        if any(k[1] == d for k in xy)
    ]
    if legend:
        ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("eval/likelihood  β(τ̂), final epoch")
    ax.margins(0.08)  # room for the γ labels of the outermost points
    ax.grid(alpha=0.3)


def fig6(run_dir: Path, out: Path, name: str, title: str = "") -> list[Path]:
    trace = sorted(read_jsonl(run_dir / "trace.jsonl"), key=lambda r: r["epoch"])
    if not trace:
        raise TableError(f"{run_dir / 'trace.jsonl'} has no records")
    epochs = [r["epoch"] for r in trace]
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
    fig.suptitle(title or name)
    return _save(fig, out, f"fig6_{name}")


def _heatmap_run(
    recs: list[dict[str, Any]], root: Path | None, chosen: Path | None
) -> tuple[Path, str, str] | None:
    """(run dir, file-name part, title) for Fig. 6, or None when no run has a trace."""
    if chosen is not None:
        path = chosen if chosen.is_dir() or root is None else root / chosen
        if not (path / "trace.jsonl").is_file():
            raise TableError(f"--heatmap-run {chosen}: no trace.jsonl in {path}")
        rec = next(
            (r for r in recs if _run_path(r["run_dir"], root).resolve() == path.resolve()), None
        )
        return path, _name_of(path, root), _title(rec) if rec else str(chosen)
    for rec in recs:
        path = _run_path(rec["run_dir"], root)
        if rec["dropout"] == "quantile" and (path / "trace.jsonl").is_file():
            return path, _safe(rec["run_dir"]), _title(rec)
    return None


def _name_of(path: Path, root: Path | None) -> str:
    try:
        return _safe(path.resolve().relative_to(root.resolve()).as_posix()) if root else ""
    except ValueError:
        return _safe("_".join(path.resolve().parts[-3:]))


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
        help="run dir for fig6 (default: first quantile run with a trace.jsonl)",
    )
    parser.add_argument(
        "--duplicates",
        choices=DUPLICATE_RULES,
        default="fail",
        help="two runs of one cell and seed: fail naming them, or keep the one that ended last",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    warn: list[str] = []
    try:
        recs = load(args.csv, args.duplicates, warn)
        args.out.mkdir(parents=True, exist_ok=True)
        written = fig3(recs, args.runs, args.out, warn) + pareto(recs, args.out)
        heat = _heatmap_run(recs, args.runs, args.heatmap_run)
        if heat is None:
            warn.append("fig6: no quantile run with a trace.jsonl")
        else:
            written += fig6(heat[0], args.out, heat[1] or "run", heat[2])
    except (TableError, OSError, KeyError, ValueError) as err:
        print(f"figures: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"figures: wrote {path}")
    for line in warn:
        print(f"figures: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
