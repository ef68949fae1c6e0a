"""The one interface between a run's plumbing (rdx.run) and its training algorithm.

An algorithm is two functions: `prepare(cfg)` builds or loads its cached inputs (an object
with `.paths`), and `train(cfg, prepared, records, logger)` runs or resumes training in the
run dir and returns the summary dict (with `acc`, `reward`, `acc_plus_reward`). rdx.run
calls them the same way for every algo, so records, resume, W&B, sweeps and SLURM are
shared; the off-policy path is untouched by PPO's or DPO's needs. Imports are lazy: each
algorithm pulls in only its own modules (DPO's TRL among them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

ALGOS = ("offpolicy", "ppo", "dpo")


class Algo(NamedTuple):
    prepare: Callable[[Any], Any]
    train: Callable[..., dict[str, Any]]


def algo_for(name: str) -> Algo:
    """The prepare/train pair of algo.name (offpolicy: Eq. 7; ppo, dpo: harmlessness)."""
    if name == "offpolicy":
        from rdx.pipeline.offpolicy import artifacts, trainer

        return Algo(artifacts.prepare, trainer.train)
    from rdx.pipeline.harmless import artifacts as harmless

    if name == "ppo":
        from rdx.pipeline.harmless import ppo

        return Algo(harmless.prepare, ppo.train)
    if name == "dpo":
        from rdx.pipeline.harmless import dpo

        return Algo(harmless.prepare, dpo.train)
    raise ValueError(f"algo.name={name!r}: expected one of {', '.join(ALGOS)}")
