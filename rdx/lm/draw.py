"""One categorical draw per row, by inversion of the row's cumulative weights.

A decoding step draws B tokens from B distributions over V tokens. torch.multinomial (and
so generate()) runs an exponential race: V exponential variates per row, made one element
at a time on CPU, which was half of a tiny β's decoding step at 512 rows × 2048 tokens.
Inversion needs one uniform per row: token j is drawn when u · Σw falls in
[W_{j−1}, W_j), W the row's cumulative weights, which happens with probability w_j / Σw,
the softmax probability. It works from the logits (no normalisation pass), and a CPU
generator draws B numbers, not B × V, so a GPU run moves B uniforms instead of B × V
probabilities. benchmarks/compute.py measures it; tests/test_draw.py checks the
distribution with chi-square tests.

Precision: the weights are float32 and CPU cumsum accumulates in float64, so each W_j is
within one float32 rounding (2⁻²⁴ relative) of its exact value: a token's probability is
resolved to ~6e-8 of the row's mass, as fine as the float32 probabilities that multinomial
reads. It is a different stream from multinomial's: the same seed draws other tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor


def categorical(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of `logits` (B, V), drawn with probability softmax(logits)[j].

    −inf logits (top-k's cut) have weight 0 and are never drawn. A row with no finite
    logit, or a NaN, raises. The uniforms come from `generator` on its own device (one per
    row), so a CPU generator gives one seeded stream whatever device the logits are on.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    weights = (logits.float() - logits.amax(-1, keepdim=True).float()).exp_()
    cdf = weights.cumsum(-1)
    total = cdf[:, -1]
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError("categorical: a row's logits are NaN or all −inf")
    device = generator.device if generator is not None else logits.device
    u = torch.rand(len(logits), generator=generator, device=device).to(logits.device)
    idx = torch.searchsorted(cdf, (u * total)[:, None], right=True).squeeze(1)
    # u·Σw can round up to Σw itself: the row's last token of non-zero weight then.
    over = idx >= logits.shape[1]
    if bool(over.any()):
        last = logits.shape[1] - 1 - (weights[over] > 0).flip(-1).int().argmax(-1)
        idx[over] = last
    return idx
