"""Non-finite numbers (NaN, ±inf) are never results (docs/reliability.md).

Where numbers are produced: training stops at the first step whose loss or gradient is not
finite (`check_step`), before the weights take it; rdx.pipeline.loop records that run as
diverged (its epoch and step in summary.json and status.json, `divergence`): a result,
since an objective that drives π to NaN is what some of the paper's arms do, with no
figures. No record is written holding a non-finite number (`first_non_finite`, used by
rdx.records.write_json). Where they are read: rdx.records refuses them in JSON records, and
analysis leaves out the runs that hold them. This module imports no torch at the top, so
the records and analysis that use it stay light.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any


class NonFinite(ArithmeticError):
    """A loss, gradient or recorded number that is NaN or infinite; the message is one line
    naming where (the step, or the file and key). `step`: the 1-based optimisation step
    whose loss or gradient it was, where known (check_step, in_step)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


def first_non_finite(value: Any, prefix: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN or ±inf float in a JSON-like value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (prefix or "<value>", value)
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = first_non_finite(item, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def check_step(step: int | str, loss: Any, parameters: Iterable[Any] | None = None) -> None:
    """Raise NonFinite when `loss` (a tensor or float), or the gradient of any of
    `parameters`, is not finite at optimisation step `step` (1-based, or a label).

    Called after backward and before the optimizer's step, so the weights are never
    updated with a NaN. Pass parameters=None where NaN gradients are expected and handled
    (fp16's GradScaler skips such a step and lowers its scale).
    """
    import torch

    grads = [] if parameters is None else [p.grad for p in parameters if p.grad is not None]
    if torch.is_tensor(loss):
        # One host sync for the loss and every gradient together (this runs every step).
        # isfinite per element, not a norm: a huge finite gradient would overflow a norm.
        flags = [torch.isfinite(loss.detach()).all(), *(torch.isfinite(g).all() for g in grads)]
        if bool(torch.stack(flags).all()):
            return
        value = float(loss.detach().float().item())
    else:
        value = float(loss)
    where = f"step {step}" if isinstance(step, int) else step
    at = step if isinstance(step, int) else None
    if not math.isfinite(value):
        raise NonFinite(
            f"training diverged at {where}: the loss is {value}; lower trainer.lr "
            "(or check the rewards and the data)",
            at,
        )
    if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
        raise NonFinite(
            f"training diverged at {where}: a gradient is not finite (loss {value:.4g}); "
            "lower trainer.lr (or check the rewards and the data)",
            at,
        )


@contextlib.contextmanager
def in_step(step: int) -> Iterator[None]:
    """Name the run's step in a NonFinite raised by an update inside it (PPO's minibatch
    updates of one rollout batch do not know the run's step)."""
    try:
        yield
    except NonFinite as err:
        message = str(err).replace("diverged at ", f"diverged at step {step}, ", 1)
        raise NonFinite(message, step) from None


def divergence(summary: dict[str, Any]) -> dict[str, Any] | None:
    """{"epoch": ..., "step": ...} of a diverged run's summary.json (its `diverged_epoch`
    and `diverged_step`, rdx.pipeline.loop.diverged), None for any other run's."""
    if summary.get("diverged_epoch") is None:
        return None
    return {"epoch": summary["diverged_epoch"], "step": summary.get("diverged_step")}
