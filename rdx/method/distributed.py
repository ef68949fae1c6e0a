"""The objective of DESIGN §2 when a batch is split over k processes (DESIGN §11).

Pure functions on tensors: the cross-process sum is passed in (`sum_across`), so this
module knows nothing of torch.distributed (rdx.pipeline.ddp supplies it). What needs the
whole batch of B rows:
- the keep mask d comes from the global r̂: r̂ is fixed per trajectory, so every rank
  computes it for the whole batch (rdx.pipeline.offpolicy.trainer.keep_of_batch) and takes its rows;
- the importance-weight clip w ← w·c / max(‖w‖₂, c) uses the global ‖w‖₂, from one
  all-reduce of each rank's Σw²;
- J is a sum over the batch while DDP averages gradients over the k ranks, so each rank's
  loss is multiplied by k (rdx.pipeline.ddp); a naive DDP run is off by the factor k.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rdx.method.objective import EPS, LossOutput, reward_dropout_loss


def shard_rows(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s contiguous rows of a batch of n = world × (n // world) rows."""
    if n % world:
        raise ValueError(f"a batch of {n} rows does not split over {world} processes")
    size = n // world
    return slice(rank * size, (rank + 1) * size)


def global_reward_dropout_loss(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor,
    reward: Tensor,
    behavior_prob: Tensor,
    keep: Tensor,
    *,
    sum_across: Callable[[Tensor], Tensor],
    is_clip: float | None = 1.0,
    entropy: bool = True,
    eps: float = EPS,
    normalisation: str = "paper",
) -> LossOutput:
    """reward_dropout_loss of this rank's rows, with the importance weights clipped by the
    norm of the whole batch's weight vector: ‖w‖₂² = sum_across(Σ_local w_i²).

    The clip is one scalar factor on every w_i, and a_i is linear in w_i, so the unclipped
    loss is scaled by that factor. `keep` holds this rank's rows of the global decision.
    The loss is this rank's part of J; multiply it by the world size before DDP's backward.
    """
    out = reward_dropout_loss(
        logits,
        targets,
        mask,
        reward,
        behavior_prob,
        keep,
        is_clip=None,
        entropy=entropy,
        eps=eps,
        normalisation=normalisation,
    )
    if is_clip is None:
        return out
    with torch.no_grad():
        norm = torch.sqrt(sum_across(out.is_weight.double().square().sum())).float()
        factor = is_clip / torch.clamp(norm, min=is_clip)
        coef = out.coef * factor
    return LossOutput(
        loss=(coef * out.ce).sum(),
        coef=coef,
        r_hat=out.r_hat,
        pi_mean=out.pi_mean,
        ce=out.ce,
        is_weight=out.is_weight * factor,
    )
