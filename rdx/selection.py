"""The figure a hyperparameter search maximises: a run's held-out Acc+Reward.

`python -m rdx.train`'s task function returns it to Hydra (sweep_value), so a sweeper
such as hydra-optuna-sweeper (sweeps/gamma_search.yaml) optimises it. Held out, not the
train-batch Acc+Reward of the paper's tables: train/acc is π's accuracy on the very
trajectories it fitted and train/reward decodes the training prefixes, so a search on them
selects for fitting the training batches; and train/acc is measured on all trajectories
while quantile dropout fits only the kept ones (DESIGN §3), which would bias the search
against high γ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rdx.finite import divergence


def heldout_acc_plus_reward(summary: dict[str, Any]) -> float:
    """eval/acc + eval/reward of a run's summary.json (held-out prefixes, DESIGN §3)."""
    missing = [k for k in ("eval/acc", "eval/reward") if k not in summary]
    if missing:
        raise KeyError(f"summary.json has no {', '.join(missing)}: not a trained run's summary")
    return float(summary["eval/acc"]) + float(summary["eval/reward"])


def sweep_value(run_dir: str | Path) -> float | None:
    """The held-out Acc+Reward of the run in run_dir, or None where it wrote no summary
    (stage=prepare) or diverged (no figures: a sweeper fails that trial)."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if divergence(summary) is not None:
        return None
    return heldout_acc_plus_reward(summary)
