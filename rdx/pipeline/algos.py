"""The one interface between a run's plumbing (rdx.run) and its training algorithm.

rdx.config.ALGOS lists the algorithms, each with its settings class and its code. An
algorithm is two functions: `prepare(cfg)` builds or loads its cached inputs (an object
with `.paths`), and `train(cfg, prepared, records, logger)` runs or resumes training in the
run dir (through rdx.pipeline.loop) and returns the summary dict (with `acc`, `reward`,
`acc_plus_reward`). rdx.run calls them the same way for every algo, so records, resume,
W&B, sweeps and SLURM are shared. Imports are lazy: each algorithm pulls in only its own
modules (DPO's TRL among them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from rdx.config import ALGOS


class Algo(NamedTuple):
    prepare: Callable[[Any], Any]
    train: Callable[..., dict[str, Any]]


def algo_for(name: str) -> Algo:
    """The prepare/train pair of algo.name (offpolicy: Eq. 7; ppo, dpo: harmlessness)."""
    if name not in ALGOS:
        raise ValueError(f"algo.name={name!r}: expected one of {', '.join(ALGOS)}")
    prepare, train = (importlib.import_module(m) for m in ALGOS[name].code)
    return Algo(prepare.prepare, train.train)
