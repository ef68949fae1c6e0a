"""One categorical draw per row, by inversion of the row's cumulative weights, and the
keyed uniforms that make a row's draws its own.

A decoding step draws B tokens from B distributions over V tokens. torch.multinomial (and
so generate()) runs an exponential race: V exponential variates per row, made one element
at a time on CPU, which was half of a tiny β's decoding step at 512 rows × 2048 tokens.
Inversion needs one uniform per row: with v in (0, 1], token j is drawn when v · Σw falls
in (W_{j−1}, W_j], W the row's cumulative weights, which happens with probability w_j / Σw,
the softmax probability. It works from the logits (no normalisation pass).
benchmarks/compute.py measures it; tests/lm/test_draw.py checks the distribution with
chi-square tests.

Keyed uniforms (`keyed_uniforms`): β's trajectories must not depend on how they are
computed (batch size, shards, chunks). A stream from one generator hands row r of a batch
the r-th number of the step, so the same trajectory gets other numbers in another batch.
Instead each row carries a key (seed, sample set, prefix index, sample index) and its
uniform at step t is a hash of (key, t), computed on the rows' device: a counter-based
draw in the manner of Philox, with no state to carry between batches and no host copy.

Precision: the weights are float32; each W_j is within one float32 rounding (2⁻²⁴
relative) of its exact value, and the uniforms have 24 bits, as torch.rand's float32 ones:
a token's probability is resolved to ~6e-8 of the row's mass, as fine as the float32
probabilities that multinomial reads. It is a different stream from multinomial's.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
KEY_FIELDS = ("seed", "set", "prefix", "sample")  # the columns of a row key


def _mul32(x: Tensor, c: int) -> Tensor:
    """x · c mod 2³² for int64 x in [0, 2³²): split c in 16-bit halves so that no product
    leaves int64 (a plain x · c would reach 2⁶⁴)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _mix(x: Tensor) -> Tensor:
    """A bijective 32-bit avalanche (MurmurHash3's finaliser): every output bit depends on
    every input bit. Values stay in [0, 2³²), so >> is the logical shift."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def keyed_uniforms(keys: Tensor, step: int) -> Tensor:
    """One uniform in (0, 1] per row of `keys` ((B, 4) int64 in [0, 2³²), KEY_FIELDS) at
    decoding step `step`, a function of (key, step) alone, computed on keys' device.

    The step is hashed first and each key field folded in after it, so two rows whose keys
    collide at one step (chance 2⁻³²) do not collide at the next: no two rows share a stream.
    """
    if keys.dim() != 2 or keys.shape[1] != len(KEY_FIELDS):
        raise ValueError(f"keys must be (B, {len(KEY_FIELDS)}), got shape {tuple(keys.shape)}")
    h = _mix(torch.full((len(keys),), (step * 0x9E3779B9 + 0x6A09E667) & _M32, device=keys.device))
    for col in range(keys.shape[1] - 1, -1, -1):  # sample, prefix, set, seed
        h = _mix(h ^ keys[:, col])
    # The top 24 bits, shifted by one: (0, 1] exactly representable in float32.
    return ((h >> 8) + 1).float() * 2.0**-24


def invert(logits: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Tokens drawn by inversion with uniforms `v` in (0, 1] (one per row), and a (B,) bool
    that is False for a row with a NaN or no finite logit. Makes no host sync: the caller
    checks the flags when it suits it (`categorical` at once, the sampler per batch)."""
    weights = (logits.float() - logits.amax(-1, keepdim=True).float()).exp_()
    cdf = weights.cumsum(-1)
    total = cdf[:, -1:]
    ok = torch.isfinite(total[:, 0]) & (total[:, 0] > 0)
    # v·Σw > 0, so a zero-weight first token is never hit; rounding above Σw is clamped
    # onto it, which the row's last token of non-zero weight holds.
    target = torch.minimum(v.to(logits.device)[:, None] * total, total)
    idx = torch.searchsorted(cdf, target.contiguous(), right=False).squeeze(1)
    return idx.clamp_(max=logits.shape[1] - 1), ok


def categorical(
    logits: Tensor, generator: torch.Generator | None = None, *, uniforms: Tensor | None = None
) -> Tensor:
    """One token per row of `logits` (B, V), drawn with probability softmax(logits)[j].

    −inf logits (top-k's cut) have weight 0 and are never drawn. A row with no finite
    logit, or a NaN, raises. The uniforms are `uniforms` ((B,) in (0, 1], e.g.
    keyed_uniforms) or come from `generator` on its own device (one per row), so a CPU
    generator gives one seeded stream whatever device the logits are on.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    if uniforms is None:
        uniforms = 1.0 - draw_uniforms(len(logits), generator, logits.device)
    idx, ok = invert(logits, uniforms)
    if not bool(ok.all()):
        raise ValueError("categorical: a row's logits are NaN or all −inf")
    return idx


def draw_uniforms(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """n uniforms in [0, 1) from `generator` on its own device (the default one's if None)."""
    where = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=where)
