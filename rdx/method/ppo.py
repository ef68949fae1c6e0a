"""PPO with reward dropout, as pure tensor functions (docs/design.md §10, paper §7.5).

On-policy: π samples a response to each prompt of a rollout batch; a frozen reference
π_ref (the SFT policy) plays β's role. Per response i (tokens t = 1..n_i, `mask` (B, T)
marks them in right-padded rows):

  r̂_i   = R_i + ln(π_ref(τ_i) + ε)       π_ref(τ_i): mean per-token probability (as β_i, §2);
                                          score="reward" uses R_i alone
  d_i   = keep_mask(mode, r̂)            the same dropout modes as the off-policy trainer
  r_i,t = −c_kl · (ln π_old − ln π_ref)_t  + R_i · [t = n_i]   (KL penalty, score at the end)
  A, G  = GAE(r, V_old; γ, λ)            advantages and returns per token
  A    ← whiten(A) over the batch's response tokens, then A_i,t = 0 for dropped i
  L_π   = mean over kept tokens of max(−A ρ, −A clip(ρ, 1 ± ε_clip)),  ρ = π_θ / π_old
  L_V   = ½ · mean over kept tokens of max((V − G)², (clip(V, V_old ± ε_v) − G)²)

Dropped responses contribute nothing to L_π and L_V: their tokens are outside the means,
so their gradient is exactly zero. Nothing here imports the rest of rdx.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rdx.method import PPO_SCORES
from rdx.method.dropout import keep_mask
from rdx.method.objective import EPS, bi_objective_reward, masked_mean


def dropout_score(
    reward: Tensor, ref_prob: Tensor, score: str = "r_hat", eps: float = EPS
) -> Tensor:
    """The per-response score reward dropout thresholds: r̂ = R + ln(π_ref + ε), or R."""
    if score == "r_hat":
        return bi_objective_reward(reward, ref_prob, eps)
    if score == "reward":
        return reward.float()
    raise ValueError(f"algo.score={score!r}: expected one of {', '.join(PPO_SCORES)}")


def rollout_keep(
    mode: str,
    reward: Tensor,
    ref_prob: Tensor,
    *,
    score: str = "r_hat",
    gamma: float | None = None,
    delta: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """d_i of a rollout batch: the off-policy trainer's dropout rule on PPO's score."""
    s = dropout_score(reward, ref_prob, score)
    return keep_mask(mode, s, gamma=gamma, delta=delta, generator=generator)


def token_rewards(
    score: Tensor, logp_old: Tensor, logp_ref: Tensor, mask: Tensor, kl_coef: float
) -> Tensor:
    """r_t = −c_kl (ln π_old − ln π_ref)_t on response tokens, plus R_i on the last one.

    score (B,), logp_* and mask (B, T); a row with no response token gets no score.
    """
    m = mask.float()
    rewards = -kl_coef * (logp_old - logp_ref) * m
    n = m.sum(-1).long()
    last = (n - 1).clamp_min(0)
    rows = torch.arange(len(score), device=score.device)
    rewards[rows, last] += score.float() * (n > 0).float()
    return rewards


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, *, discount: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation per token (Schulman et al. 2016), as in CleanRL.

    The value after a response's last token is 0 (the episode ends). Returns (advantages,
    returns = advantages + values), both zero outside the mask.
    """
    m = mask.float()
    values = values * m
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + discount * nxt - values[:, t]
        last = (delta + discount * lam * last) * m[:, t]
        adv[:, t] = last
    return adv, (adv + values) * m


def whiten(values: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over the masked entries (population std); zero outside the mask.

    With fewer than two masked entries there is no spread to scale by: centred only.
    """
    m = mask.float()
    n = m.sum()
    if n == 0:
        return torch.zeros_like(values)
    mean = (values * m).sum() / n
    centred = (values - mean) * m
    if n < 2:
        return centred
    var = (centred**2).sum() / n
    return centred * torch.rsqrt(var + eps)


def kept_advantages(advantages: Tensor, mask: Tensor, keep: Tensor) -> Tensor:
    """Whiten over the whole rollout batch's response tokens, then 0 for a dropped response.

    The batch's statistics, not the kept responses' own: the kept few are the high-r̂ ones,
    and centring them on their own mean would push half of them down, undoing the selection
    (measured: whitening over the kept tokens only left PPO + R.D. below PPO on every metric).
    """
    return whiten(advantages, mask) * keep.float()[:, None]


@dataclass
class PPOLoss:
    loss: Tensor  # scalar: L_π + vf_coef · L_V
    policy: Tensor  # L_π
    value: Tensor  # L_V
    clipfrac: Tensor  # share of kept tokens where the ratio was clipped
    approx_kl: Tensor  # mean over kept tokens of ½ (ln ρ)²


def _kept_mean(x: Tensor, kept: Tensor) -> Tensor:
    # A batch with nothing kept must still give a graph-connected zero, not 0/0.
    return (x * kept).sum() / kept.sum().clamp_min(1.0)


def ppo_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    values: Tensor,
    values_old: Tensor,
    returns: Tensor,
    mask: Tensor,
    keep: Tensor,
    *,
    clip: float = 0.2,
    vf_clip: float | None = 0.2,
    vf_coef: float = 0.1,
) -> PPOLoss:
    """Clipped policy loss and clipped value loss, means over the kept responses' tokens."""
    kept = mask.float() * keep.float()[:, None]
    log_ratio = logp - logp_old
    ratio = torch.exp(log_ratio)
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
    policy = _kept_mean(pg, kept)
    v_err = (values - returns) ** 2
    if vf_clip is not None:
        v_clipped = values_old + torch.clamp(values - values_old, -vf_clip, vf_clip)
        v_err = torch.max(v_err, (v_clipped - returns) ** 2)
    value = 0.5 * _kept_mean(v_err, kept)
    with torch.no_grad():
        clipfrac = _kept_mean(((ratio - 1).abs() > clip).float(), kept)
        approx_kl = _kept_mean(0.5 * log_ratio**2, kept)
    return PPOLoss(policy + vf_coef * value, policy, value, clipfrac, approx_kl)


def sequence_prob(logp: Tensor, mask: Tensor) -> Tensor:
    """Mean per-token probability of each response (B,), as β_i in docs/design.md §2."""
    return masked_mean(logp.exp(), mask)
