"""Reward dropout: which samples of a batch keep their bi-objective reward (docs/design.md §2).

Each function maps bi-objective rewards r̂ (B,) to a boolean keep mask (B,). The paper's
rules (none, quantile, random, threshold) see one training batch; the set rules
(prompt_quantile, global_top) rank a whole sample set once, as ReST/RFT and RAFT do, so
that the selection rules can be compared side by side. They are pure and work on any
device; the caller zeroes the coefficients of dropped samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rdx.method import BATCH_MODES, SET_MODES


def quantile_keep(r_hat: Tensor, gamma: float) -> Tensor:
    """Keep r̂_i ≥ q_γ(r̂), the linear-interpolation γ-quantile (numpy's default).

    `>=` keeps ties at the threshold, so γ=0 keeps everything and an all-equal batch is
    kept whole rather than dropped whole.
    """
    # float64 so the threshold matches numpy.quantile exactly and ties are decided the same way.
    q = torch.quantile(r_hat.double(), gamma)
    return r_hat.double() >= q


def random_keep(
    r_hat: Tensor, gamma: float, generator: torch.Generator, *, replacement: bool = False
) -> Tensor:
    """Drop a uniformly random subset of exactly ⌊γB⌋ samples (without replacement).

    `replacement=True` is the authors' draw: ⌊γB⌋ indices drawn with replacement, so
    repeats drop fewer, about B·(1 − e^(−γ)) of them: it keeps ~45% at γ=0.8, not 20%.
    """
    batch = r_hat.shape[0]
    # The epsilon guards against float products like 0.29 * 100 = 28.999999999999996.
    n_drop = math.floor(gamma * batch + 1e-9)
    if replacement:
        dropped = torch.randint(batch, (n_drop,), generator=generator, device=generator.device)
    else:
        dropped = torch.randperm(batch, generator=generator, device=generator.device)[:n_drop]
    keep = torch.ones(batch, dtype=torch.bool, device=generator.device)
    keep[dropped] = False
    return keep.to(r_hat.device)


def threshold_keep(r_hat: Tensor, delta: float) -> Tensor:
    """Algorithm 1's literal form: keep r̂_i > δ."""
    return r_hat > delta


def prompt_quantile_keep(r_hat: Tensor, groups: Tensor, gamma: float) -> Tensor:
    """Keep r̂_i ≥ the γ-quantile of the r̂ of its own prefix's samples (ReST / RFT's
    per-prompt selection); `groups[i]` names the prefix of sample i. Same tie rule as
    quantile_keep, so a prefix whose samples all score alike keeps them all."""
    keep = torch.zeros_like(r_hat, dtype=torch.bool)
    for g in torch.unique(groups):
        rows = groups == g
        keep[rows] = quantile_keep(r_hat[rows], gamma)
    return keep


def global_top_keep(r_hat: Tensor, gamma: float) -> Tensor:
    """Keep the top (1 − γ) of a whole sample set, ranked once before training (RAFT).

    The γ-quantile of the set rather than of each batch; a threshold δ chosen to keep the
    same fraction is this rule (up to ties at δ)."""
    return quantile_keep(r_hat, gamma)


def keep_mask(
    mode: str,
    r_hat: Tensor,
    *,
    gamma: float | None = None,
    delta: float | None = None,
    generator: torch.Generator | None = None,
    replacement: bool = False,
) -> Tensor:
    """d_i of one batch for a batch rule (one of BATCH_MODES)."""
    if mode == "none":
        return torch.ones_like(r_hat, dtype=torch.bool)
    if mode == "quantile":
        return quantile_keep(r_hat, gamma)
    if mode == "random":
        return random_keep(r_hat, gamma, generator, replacement=replacement)
    if mode == "threshold":
        return threshold_keep(r_hat, delta)
    raise ValueError(f"dropout.mode={mode!r}: expected one of {', '.join(BATCH_MODES)}")


def set_keep_mask(mode: str, r_hat: Tensor, *, gamma: float, groups: Tensor) -> Tensor:
    """d_i of every sample of a set for a set rule (one of SET_MODES), decided once."""
    if mode == "prompt_quantile":
        return prompt_quantile_keep(r_hat, groups, gamma)
    if mode == "global_top":
        return global_top_keep(r_hat, gamma)
    raise ValueError(f"dropout.mode={mode!r}: expected one of {', '.join(SET_MODES)}")
