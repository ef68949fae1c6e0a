"""The reward model's loss (Bradley & Terry 1952), as RLHF trains R on preference pairs.

P(chosen ≻ rejected) = σ(R(chosen) − R(rejected)); the loss is its negative log-likelihood,
L = −ln σ(R_w − R_l), averaged over pairs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """−ln σ(R(chosen) − R(rejected)), mean over pairs; chosen and rejected are (B,)."""
    return -F.logsigmoid(chosen - rejected).mean()
