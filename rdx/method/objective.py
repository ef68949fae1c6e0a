"""The off-policy reward-dropout objective, exactly as docs/design.md §2 defines it (paper Eq. 7).

Everything here is a pure function on tensors: no config, no model. The coefficient of each
sample is computed in float32 under no_grad, so the gradient flows only through CE_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-5


@dataclass
class LossOutput:
    loss: Tensor  # scalar: Σ_i a_i · CE_i
    coef: Tensor  # (B,) a_i, detached
    r_hat: Tensor  # (B,) R_i + ln(β_i + ε)
    pi_mean: Tensor  # (B,) mean per-token probability of π over masked positions
    ce: Tensor  # (B,) mean per-token cross-entropy of π over masked positions
    is_weight: Tensor  # (B,) clipped importance weight w_i


LOG_SOFTMAX_MAX = 1 << 24  # elements: a 64 MB float32 log-softmax (a tiny batch is 3.8M)


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[targets] in float32.

    logits (B, L, V) are already aligned with targets (B, L): logits[:, t] scores targets[:, t].
    float32 logits up to LOG_SOFTMAX_MAX elements: torch's fused log_softmax, then gather
    (forward and backward 2-3x faster than logsumexp's on CPU: one pass each). Larger ones
    (a 50k vocabulary on a big batch): gather minus logsumexp, which never stores a (B, L, V)
    log-softmax. Half-precision logits (bf16/fp16 autocast) are converted to float32 in
    blocks of rows whose float32 copy has at most LOG_SOFTMAX_MAX elements (at least one
    row): a bounded copy, as TRL's row-by-row selective_log_softmax, in a few kernels
    instead of one Python step per row.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        per_row = logits[0].numel() if len(logits) else 1
        block = max(1, LOG_SOFTMAX_MAX // per_row)
        parts = [
            token_logprobs(logits[i : i + block].float(), targets[i : i + block])
            for i in range(0, len(logits), block)
        ]
        return torch.cat(parts) if parts else logits.new_zeros(targets.shape, dtype=torch.float32)
    if logits.numel() <= LOG_SOFTMAX_MAX:
        return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-row mean of values (B, L) over positions where mask is 1; empty rows give 0."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def masked_accuracy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Per-row teacher-forced argmax accuracy over masked positions (B,)."""
    hits = (logits.argmax(-1) == targets).float()
    return masked_mean(hits, mask)


def bi_objective_reward(reward: Tensor, behavior_prob: Tensor, eps: float = EPS) -> Tensor:
    """r̂_i = R_i + ln(β_i + ε), the quantity reward dropout thresholds."""
    return reward.float() + torch.log(behavior_prob.float() + eps)


def clip_by_norm(w: Tensor, clip: float | None) -> Tensor:
    """TensorFlow's clip_by_norm over the whole vector: w · c / max(‖w‖₂, c)."""
    if clip is None:
        return w
    return w * clip / torch.clamp(torch.linalg.vector_norm(w), min=clip)


NORMALISATIONS = ("paper", "authors")


def authors_means(logp: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(CE_i, π̄_i) as the authors' code normalised them (RLHF_train.py:249, 383 at 4f58682):
    CE summed over the masked positions but divided by the padded width L, and π̄ the mean
    probability over all L positions, pads included. Not DESIGN §2's (the masked means): with
    ragged rows a short row's CE is scaled down by its length / L."""
    width = logp.shape[-1]
    ce = -(logp * mask.to(logp.dtype)).sum(-1) / width
    return ce, logp.detach().exp().mean(-1)


def reward_dropout_loss(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor,
    reward: Tensor,
    behavior_prob: Tensor,
    keep: Tensor,
    *,
    is_clip: float | None = 1.0,
    entropy: bool = True,
    eps: float = EPS,
    normalisation: str = "paper",
) -> LossOutput:
    """J = Σ_i a_i · CE_i with a_i = stopgrad(w_i · (r̂_i − ln(π̄_i + ε)) · d_i).

    Minimising J ascends Σ_i a_i ln π_i, the off-policy policy gradient of Eq. 7 restricted
    to the kept samples. `entropy=False` drops the −ln π̄ term (Algorithm 1's plain r̂ form).
    `normalisation="authors"` takes CE_i and π̄_i as the authors' code did (authors_means).
    """
    logp = token_logprobs(logits, targets)
    if normalisation == "paper":
        ce = -masked_mean(logp, mask)
    elif normalisation == "authors":
        ce, _ = authors_means(logp, mask)
    else:
        raise ValueError(
            f"normalisation={normalisation!r}: expected one of {', '.join(NORMALISATIONS)}"
        )
    r_hat = bi_objective_reward(reward, behavior_prob, eps)
    with torch.no_grad():
        if normalisation == "paper":
            pi_mean = masked_mean(logp.exp(), mask)
        else:
            _, pi_mean = authors_means(logp, mask)
        w = clip_by_norm(pi_mean / (behavior_prob.float() + eps), is_clip)
        advantage = r_hat - torch.log(pi_mean + eps) if entropy else r_hat
        coef = w * advantage * keep.float()
    return LossOutput(
        loss=(coef * ce).sum(), coef=coef, r_hat=r_hat, pi_mean=pi_mean, ce=ce, is_weight=w
    )
