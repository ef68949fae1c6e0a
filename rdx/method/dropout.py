"""Reward dropout: which samples of a batch keep their bi-objective reward (DESIGN §2).

Each function maps the batch's bi-objective rewards r̂ (B,) to a boolean keep mask (B,).
They are pure and work on any device; the caller zeroes the coefficients of dropped samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rdx.method import DROPOUT_MODES as MODES


def quantile_keep(r_hat: Tensor, gamma: float) -> Tensor:
    """Keep r̂_i ≥ q_γ(r̂), the linear-interpolation γ-quantile (numpy's default).

    `>=` keeps ties at the threshold, so γ=0 keeps everything and an all-equal batch is
    kept whole rather than dropped whole.
    """
    # float64 so the threshold matches numpy.quantile exactly and ties are decided the same way.
    q = torch.quantile(r_hat.double(), gamma)
    return r_hat.double() >= q


def random_keep(r_hat: Tensor, gamma: float, generator: torch.Generator) -> Tensor:
    """Drop a uniformly random subset of exactly ⌊γB⌋ samples (without replacement).

    The authors' code draws the dropped indices with replacement, so it drops fewer than
    γB on average; this control arm drops exactly the stated fraction.
    """
    batch = r_hat.shape[0]
    # The epsilon guards against float products like 0.29 * 100 = 28.999999999999996.
    n_drop = math.floor(gamma * batch + 1e-9)
    perm = torch.randperm(batch, generator=generator, device=generator.device)
    keep = torch.ones(batch, dtype=torch.bool, device=generator.device)
    keep[perm[:n_drop]] = False
    return keep.to(r_hat.device)


def threshold_keep(r_hat: Tensor, delta: float) -> Tensor:
    """Algorithm 1's literal form: keep r̂_i > δ."""
    return r_hat > delta


def keep_mask(
    mode: str,
    r_hat: Tensor,
    *,
    gamma: float | None = None,
    delta: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Dispatch on the configured dropout mode (one of MODES)."""
    if mode == "none":
        return torch.ones_like(r_hat, dtype=torch.bool)
    if mode == "quantile":
        return quantile_keep(r_hat, gamma)
    if mode == "random":
        return random_keep(r_hat, gamma, generator)
    if mode == "threshold":
        return threshold_keep(r_hat, delta)
    raise ValueError(f"dropout.mode={mode!r}: expected one of {', '.join(MODES)}")
