"""DPO's loss (Rafailov et al. 2023), the paper's comparison arm in §7.5, as a pure function.

L = −ln σ(β · Δ),  Δ = [ln π(y_w|x) − ln π_ref(y_w|x)] − [ln π(y_l|x) − ln π_ref(y_l|x)]

with ln π(y|x) the *sum* of the response's token log-probabilities (as in the paper and
TRL's sigmoid loss). There is no per-sample reward to threshold, so reward dropout does not
apply to DPO (paper footnote 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass
class DPOLoss:
    loss: Tensor  # scalar: mean over pairs of −ln σ(β Δ)
    chosen_reward: Tensor  # (B,) β (ln π − ln π_ref) of the chosen response, detached
    rejected_reward: Tensor  # (B,) the same for the rejected response
    accuracy: Tensor  # share of pairs whose implicit reward ranks chosen above rejected


def dpo_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor,
    ref_rejected_logp: Tensor,
    beta: float = 0.1,
) -> DPOLoss:
    """All inputs (B,) summed response log-probabilities; the reference ones are constants."""
    chosen = chosen_logp - ref_chosen_logp
    rejected = rejected_logp - ref_rejected_logp
    loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
    c, r = (beta * chosen).detach(), (beta * rejected).detach()
    return DPOLoss(loss, c, r, (c > r).float().mean())
