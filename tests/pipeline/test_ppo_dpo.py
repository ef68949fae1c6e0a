"""PPO + reward dropout and DPO's loss on hand-computed cases (rdx.method.ppo, rdx.method.dpo)."""

import math

import pytest
import torch

from rdx.method.bradley_terry import bradley_terry_loss
from rdx.method.dpo import dpo_loss
from rdx.method.objective import token_logprobs
from rdx.method.ppo import (
    dropout_score,
    gae,
    kept_advantages,
    ppo_loss,
    rollout_keep,
    token_rewards,
)

REWARD = torch.tensor([1.0, 0.0, 2.0, -1.0])
REF_PROB = torch.tensor([0.5, 0.5, 0.01, 0.9])


def test_keep_mask_thresholds_r_hat_or_the_reward_alone():
    # r̂ = R + ln(π_ref + 1e-5) = [0.3069, -0.6931, -2.6042, -1.1053]; its median (linear
    # interpolation of the middle two) is -0.8992: keep samples 0 and 1. Sample 2 has the
    # highest reward but π_ref finds it unlikely, so r̂ drops it.
    r_hat = dropout_score(REWARD, REF_PROB)
    assert r_hat.tolist() == pytest.approx([0.30687, -0.69313, -2.60417, -1.10535], abs=1e-4)
    keep = rollout_keep("quantile", REWARD, REF_PROB, gamma=0.5)
    assert keep.tolist() == [True, True, False, False]
    # score=reward: R alone, median 0.5, keeps samples 0 and 2.
    keep = rollout_keep("quantile", REWARD, REF_PROB, score="reward", gamma=0.5)
    assert keep.tolist() == [True, False, True, False]
    assert rollout_keep("none", REWARD, REF_PROB).all()
    assert rollout_keep("threshold", REWARD, REF_PROB, delta=0.0).tolist() == [
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="algo.score='ref'"):
        dropout_score(REWARD, REF_PROB, "ref")


def test_token_rewards_kl_penalty_on_every_token_and_the_score_on_the_last():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    logp_ref = torch.zeros(2, 3)
    logp_old = torch.tensor([[0.1, 0.2, 0.5], [0.0, -0.1, 0.3]])
    r = token_rewards(torch.tensor([1.0, 2.0]), logp_old, logp_ref, mask, kl_coef=0.5)
    # row 0: [-0.05, -0.1 + 1, 0 (padding)]; row 1: [0, 0.05, -0.15 + 2]
    assert r.tolist() == [
        pytest.approx([-0.05, 0.9, 0.0]),
        pytest.approx([0.0, 0.05, 1.85]),
    ]


def test_gae_by_hand():
    rewards = torch.tensor([[-0.05, 0.9, 0.0]])
    values = torch.tensor([[0.2, 0.4, 9.0]])  # 9.0 sits on padding: must be ignored
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = gae(rewards, values, mask, discount=1.0, lam=0.5)
    # t=1: δ = 0.9 + 0 − 0.4 = 0.5 → A = 0.5; t=0: δ = −0.05 + 0.4 − 0.2 = 0.15 → A = 0.15 + 0.5·0.5
    assert adv.tolist() == [pytest.approx([0.4, 0.5, 0.0])]
    assert ret.tolist() == [pytest.approx([0.6, 0.9, 0.0])]


def test_a_dropped_sample_has_zero_advantage_after_whitening_over_the_batch():
    adv = torch.tensor([[1.0, 3.0, 7.0], [-1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])  # the 7.0 sits on padding
    out = kept_advantages(adv, mask, torch.tensor([True, False]))
    # the batch's 4 response tokens: mean 1, centred [0, 2, −2, 0], population std √2
    assert out[0].tolist() == pytest.approx([0.0, 2**0.5, 0.0], abs=1e-5)
    assert out[1].tolist() == [0.0, 0.0, 0.0]  # dropped: no advantage at all


def test_ppo_loss_by_hand_and_dropped_samples_give_zero_gradient():
    # Row 0 kept: ratio 1, A = [1, −2] → L_π = mean(−A) = 0.5; V = 0.5 vs G = [1, 0] →
    # L_V = ½ · mean(0.25, 0.25) = 0.125; loss = 0.5 + 0.1 · 0.125. Row 1 is dropped and
    # carries huge numbers that must not show up anywhere.
    logp_old = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])
    logp = logp_old.clone().requires_grad_(True)
    values = torch.tensor([[0.5, 0.5], [50.0, -50.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -2.0], [1e3, -1e3]])
    returns = torch.tensor([[1.0, 0.0], [1e3, 1e3]])
    keep = torch.tensor([True, False])
    out = ppo_loss(logp, logp_old, adv, values, values.detach(), returns, torch.ones(2, 2), keep)
    assert out.policy.item() == pytest.approx(0.5)
    assert out.value.item() == pytest.approx(0.125)
    assert out.loss.item() == pytest.approx(0.5125)
    out.loss.backward()
    # d(−A ρ)/d ln π = −A ρ = −A, averaged over the 2 kept tokens
    assert logp.grad[0].tolist() == pytest.approx([-0.5, 1.0])
    assert logp.grad[1].tolist() == [0.0, 0.0]
    assert values.grad[1].tolist() == [0.0, 0.0]


def test_ppo_clipping_and_nothing_kept():
    logp_old = torch.log(torch.tensor([[0.4]]))
    logp = torch.log(torch.tensor([[0.6]])).requires_grad_(True)  # ratio 1.5
    adv, v = torch.tensor([[1.0]]), torch.zeros(1, 1)
    out = ppo_loss(logp, logp_old, adv, v, v, v, torch.ones(1, 1), torch.tensor([True]))
    assert out.policy.item() == pytest.approx(-1.2)  # max(−1.5, −1.2): clipped at 1 + 0.2
    assert out.clipfrac.item() == 1.0
    out.loss.backward()
    assert logp.grad.item() == 0.0  # a clipped ratio passes no gradient
    none = ppo_loss(logp, logp_old, adv, v, v, v, torch.ones(1, 1), torch.tensor([False]))
    assert none.loss.item() == 0.0


def test_dropped_rows_get_exactly_zero_gradient_through_the_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 7, generator=g, requires_grad=True)
    targets = torch.randint(0, 7, (4, 5), generator=g)
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0
    logp = token_logprobs(logits, targets)
    old = logp.detach() + 0.05 * torch.randn(4, 5, generator=g)
    adv = torch.randn(4, 5, generator=g)
    values = torch.randn(4, 5, generator=g)
    keep = rollout_keep("quantile", REWARD, REF_PROB, gamma=0.5)  # [T, T, F, F]
    out = ppo_loss(logp, old, adv, values, values, values + 1, mask, keep)
    out.loss.backward()
    assert torch.equal(logits.grad[2:], torch.zeros_like(logits.grad[2:]))
    assert logits.grad[:2].abs().sum() > 0


def test_dpo_loss_against_the_closed_form():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    ref_c, ref_r = torch.tensor([-3.5, -4.0]), torch.tensor([-3.5, -4.5])
    out = dpo_loss(chosen, rejected, ref_c, ref_r, beta=0.1)
    # Δ = [(−3 + 3.5) − (−4 + 3.5), (−5 + 4) − (−4 + 4.5)] = [1.0, −1.5]
    # −ln σ(x) = ln(1 + e^−x): ln(1 + e^−0.1) = 0.644397, ln(1 + e^0.15) = 0.770957
    expected = (math.log1p(math.exp(-0.1)) + math.log1p(math.exp(0.15))) / 2
    assert out.loss.item() == pytest.approx(expected)
    assert out.loss.item() == pytest.approx((0.6443967 + 0.7709570) / 2)
    assert out.chosen_reward.tolist() == pytest.approx([0.05, -0.1])
    assert out.rejected_reward.tolist() == pytest.approx([-0.05, 0.05])
    assert out.accuracy.item() == 0.5


def test_bradley_terry_loss_by_hand():
    # −ln σ(2) = ln(1 + e^−2) = 0.126928, −ln σ(0) = ln 2 = 0.693147; mean 0.410038
    chosen = torch.tensor([2.0, 0.0], requires_grad=True)
    rejected = torch.tensor([0.0, 0.0])
    loss = bradley_terry_loss(chosen, rejected)
    assert loss.item() == pytest.approx(0.410038, abs=1e-6)
    loss.backward()
    # ∂/∂R_w of the mean: −(1 − σ(Δ)) / B = −0.119203 / 2 and −0.5 / 2
    assert chosen.grad.tolist() == pytest.approx([-0.0596015, -0.25], abs=1e-6)
    swapped = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([2.0]))
    assert swapped.item() == pytest.approx(2.126928, abs=1e-6)  # ln(1 + e^2)
