import math

import pytest
import torch

from rdx.method.dropout import quantile_keep
from rdx.method.objective import (
    bi_objective_reward,
    clip_by_norm,
    masked_accuracy,
    reward_dropout_loss,
    token_logprobs,
)

EPS = 1e-5


def reference_loss(logits, targets, mask, reward, beta, keep, is_clip, entropy):
    """An independent float64 transcription of docs/design.md §2, loop by loop."""
    logits, reward, beta = logits.double(), reward.double(), beta.double()
    B, L, _ = logits.shape
    coefs, ces, pis, r_hats = [], [], [], []
    for i in range(B):
        lp = []
        for t in range(L):
            if mask[i, t]:
                lp.append(torch.log_softmax(logits[i, t], -1)[targets[i, t]])
        lp = torch.stack(lp)
        pis.append(lp.exp().mean().item())
        ces.append(-lp.mean())
        r_hats.append(reward[i].item() + math.log(beta[i].item() + EPS))
    w = [p / (b.item() + EPS) for p, b in zip(pis, beta, strict=True)]
    if is_clip is not None:
        norm = math.sqrt(sum(x * x for x in w))
        w = [x * is_clip / max(norm, is_clip) for x in w]
    for i in range(B):
        adv = r_hats[i] - math.log(pis[i] + EPS) if entropy else r_hats[i]
        coefs.append(w[i] * adv * float(keep[i]))
    loss = sum(c * ce.item() for c, ce in zip(coefs, ces, strict=True))
    return loss, coefs, r_hats, pis, [c.item() for c in ces]


def make_batch(seed=0, B=6, L=7, V=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g) * 2
    targets = torch.randint(0, V, (B, L), generator=g)
    mask = torch.zeros(B, L)
    mask[:, 3:] = 1  # continuation tokens only
    mask[1, 5:] = 0  # a shorter row (right padding)
    reward = torch.randn(B, generator=g)
    beta = torch.rand(B, generator=g) * 0.5 + 0.01
    keep = torch.tensor([True, False, True, True, False, True])[:B]
    return logits, targets, mask, reward, beta, keep


@pytest.mark.parametrize("is_clip", [1.0, 0.05, None])
@pytest.mark.parametrize("entropy", [True, False])
def test_loss_matches_float64_reference(is_clip, entropy):
    batch = make_batch()
    out = reward_dropout_loss(*batch, is_clip=is_clip, entropy=entropy)
    loss, coefs, r_hats, pis, ces = reference_loss(*batch, is_clip, entropy)
    assert out.loss.item() == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert out.coef.tolist() == pytest.approx(coefs, rel=1e-5, abs=1e-7)
    assert out.r_hat.tolist() == pytest.approx(r_hats, rel=1e-6)
    assert out.pi_mean.tolist() == pytest.approx(pis, rel=1e-5)
    assert out.ce.tolist() == pytest.approx(ces, rel=1e-5)


def test_one_sample_by_hand():
    # V=2, one scored position; logits (0, ln 3) -> π(target=1) = 3/4.
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    targets = torch.tensor([[0, 1]])
    mask = torch.tensor([[0.0, 1.0]])
    reward, beta = torch.tensor([2.0]), torch.tensor([0.5])
    out = reward_dropout_loss(logits, targets, mask, reward, beta, torch.tensor([True]))
    r_hat = 2.0 + math.log(0.5 + EPS)
    w = 0.75 / (0.5 + EPS)  # 1.49997 > 1 -> clipped to norm 1 -> w = 1
    coef = 1.0 * (r_hat - math.log(0.75 + EPS))
    assert out.r_hat.item() == pytest.approx(r_hat)
    assert out.is_weight.item() == pytest.approx(1.0)
    assert w > 1.0
    assert out.coef.item() == pytest.approx(coef, rel=1e-6)
    assert out.loss.item() == pytest.approx(coef * -math.log(0.75), rel=1e-6)


def test_one_batch_by_hand_from_the_authors_formulas():
    """Eq. 7 on one batch, computed by hand from the authors' RLHF_train.py (CHLEE-Leo/
    Reward-Dropout at 4f58682), not from docs/design.md §2: normalisation="authors" and the
    quantile rule must give what their code computes.

    B=2, L=2, V=2. Row 0: targets (1, 1), both scored; logits (0, ln 3) then (0, 0), so
    π(target) = 3/4 then 1/2. Row 1: targets (0, 0), position 1 a pad (mask 0); logits
    (ln 3, 0) then (0, ln 3), so π(target) = 3/4 then 1/4. R = (1, 2) (logits), β = (1/2, 1/4).
      l. 1113  r̂ = R + ln(β + 1e-5):  r̂_0 = 1 + ln 0.50001 = 0.3068728,
               r̂_1 = 2 + ln 0.25001 = 0.6137456
      l. 249   CE_i = reduce_mean(CE · mask) over all L positions (masked sum / L):
               CE_0 = (ln 4/3 + ln 2) / 2 = 0.4904146, CE_1 = (ln 4/3 + 0) / 2 = 0.1438410
      l. 383   π̄_i = get_likelihood: mean p(target) over all L positions, the pad included:
               π̄_0 = (3/4 + 1/2) / 2 = 0.625, π̄_1 = (3/4 + 1/4) / 2 = 0.5
      l. 390-3 w = (π̄ + ε) / (β + ε), then tf.clip_by_norm(w, 1): w = (1.249995, 1.999960),
               ‖w‖ = 2.358459, w = (0.5300050, 0.8479945)
      l. 415   a_i = w_i (r̂_i − ln(π̄_i + ε)) d_i, with d = 1 (dropout None):
               a_0 = 0.5300050 · (0.3068728 + 0.4700196) = 0.4117399,
               a_1 = 0.8479945 · (0.6137456 + 0.6931272) = 1.1082208
      l. 423   the gradient of the vector total_losses = CE_i · a_i is that of its sum:
               J = 0.4117399 · 0.4904146 + 1.1082208 · 0.1438410 = 0.3613309
      l. 340   quantile γ=0.5: q = np.quantile(r̂, 0.5) = 0.4603092; r̂ < q dropped: d = (0, 1)
    rdx's w is π̄ / (β + ε) and its log ln(π̄ + ε), where the authors add ε (and get_likelihood's
    1e-7) to π̄ first: a difference of ~2e-5 in w, ~1e-6 relative in J, inside rel=1e-5.
    The authors cast the product to float16 (l. 406-410): precision, not the formula."""
    t = math.log(3.0)
    logits = torch.tensor([[[0.0, t], [0.0, 0.0]], [[t, 0.0], [0.0, t]]])
    targets = torch.tensor([[1, 1], [0, 0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    reward, beta = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25])
    out = reward_dropout_loss(
        logits, targets, mask, reward, beta, torch.tensor([True, True]), normalisation="authors"
    )
    assert out.r_hat.tolist() == pytest.approx([0.3068728, 0.6137456], rel=1e-6)
    assert out.ce.tolist() == pytest.approx([0.4904146, 0.1438410], rel=1e-6)
    assert out.pi_mean.tolist() == pytest.approx([0.625, 0.5], rel=1e-6)
    assert out.is_weight.tolist() == pytest.approx([0.5300050, 0.8479945], rel=1e-5)
    assert out.coef.tolist() == pytest.approx([0.4117399, 1.1082208], rel=1e-5)
    assert out.loss.item() == pytest.approx(0.3613309, rel=1e-5)
    assert quantile_keep(out.r_hat, 0.5).tolist() == [False, True]


def test_masked_positions_do_not_matter():
    logits, targets, mask, reward, beta, keep = make_batch()
    out = reward_dropout_loss(logits, targets, mask, reward, beta, keep)
    scrambled = logits.clone()
    scrambled[mask == 0] = torch.randn_like(scrambled[mask == 0]) * 10
    other_targets = targets.clone()
    other_targets[mask == 0] = 0
    out2 = reward_dropout_loss(scrambled, other_targets, mask, reward, beta, keep)
    assert out2.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_dropped_samples_get_zero_coefficient_and_no_gradient():
    logits, targets, mask, reward, beta, keep = make_batch()
    logits.requires_grad_(True)
    out = reward_dropout_loss(logits, targets, mask, reward, beta, keep)
    out.loss.backward()
    assert (out.coef[~keep] == 0).all()
    assert (logits.grad[~keep] == 0).all()
    assert (logits.grad[keep].abs().sum(dim=(1, 2)) > 0).all()


def test_gradient_flows_only_through_ce():
    # d loss / d logit = coef_i * d CE_i / d logit, with coef held constant.
    logits, targets, mask, reward, beta, keep = make_batch(seed=2)
    logits.requires_grad_(True)
    out = reward_dropout_loss(logits, targets, mask, reward, beta, keep)
    assert not out.coef.requires_grad
    (grad,) = torch.autograd.grad(out.loss, logits)
    ce = reward_dropout_loss(logits, targets, mask, reward, beta, keep).ce
    (expected,) = torch.autograd.grad((out.coef.detach() * ce).sum(), logits)
    assert torch.allclose(grad, expected, atol=1e-7)


def test_gradient_of_one_logit_by_hand():
    # One sample, one scored position, V=3. d CE / d z_j = softmax_j - 1[j = target].
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]]], requires_grad=True)
    targets = torch.tensor([[0, 1]])
    mask = torch.tensor([[0.0, 1.0]])
    out = reward_dropout_loss(
        logits, targets, mask, torch.tensor([1.0]), torch.tensor([0.2]), torch.tensor([True])
    )
    out.loss.backward()
    z = torch.tensor([1.0, 2.0, 0.5]).double()
    p = torch.softmax(z, -1)
    coef = out.coef.item()
    assert logits.grad[0, 1, 1].item() == pytest.approx(coef * (p[1].item() - 1.0), rel=1e-5)
    assert logits.grad[0, 1, 0].item() == pytest.approx(coef * p[0].item(), rel=1e-5)
    assert logits.grad[0, 0].abs().sum().item() == 0.0


@pytest.mark.parametrize("fused", [True, False], ids=["log_softmax", "logsumexp"])
def test_token_logprobs_matches_naive(fused, monkeypatch):
    """Both routes (fused log_softmax for small logits, logsumexp for large) against a
    float64 log-softmax, values and gradients."""
    if not fused:
        monkeypatch.setattr("rdx.method.objective.LOG_SOFTMAX_MAX", 0)
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 50, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (3, 4), generator=g)
    d = logits.detach().double().requires_grad_()
    naive = torch.log_softmax(d, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, targets)
    assert torch.allclose(got.double(), naive, atol=1e-6)
    up = torch.randn(3, 4, generator=g)
    (got * up).sum().backward()
    (naive * up.double()).sum().backward()
    assert torch.allclose(logits.grad.double(), d.grad, atol=1e-6)
    assert token_logprobs(logits.bfloat16(), targets).dtype == torch.float32


def test_clip_by_norm():
    w = torch.tensor([3.0, 4.0])
    assert clip_by_norm(w, 1.0).tolist() == pytest.approx([0.6, 0.8])
    assert clip_by_norm(w, 10.0).tolist() == pytest.approx([3.0, 4.0])
    assert clip_by_norm(w, None).tolist() == [3.0, 4.0]


def test_bi_objective_reward_and_accuracy():
    assert bi_objective_reward(torch.tensor([1.0]), torch.tensor([1.0])).item() == pytest.approx(
        1.0 + math.log(1 + EPS)
    )
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    targets = torch.tensor([[1, 1, 1]])
    assert masked_accuracy(logits, targets, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.5)


@pytest.mark.parametrize("limit", [1, 200, 1 << 24])  # one row per block, 1 row (200/200), all
def test_half_precision_logits_in_row_blocks_equal_row_by_row(monkeypatch, limit):
    """bf16 logits go through float32 in blocks of rows (bounded by LOG_SOFTMAX_MAX): the
    same values and gradients as converting one row at a time."""
    monkeypatch.setattr("rdx.method.objective.LOG_SOFTMAX_MAX", limit)
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 4, 50, generator=g).bfloat16().requires_grad_()
    targets = torch.randint(0, 50, (5, 4), generator=g)
    got = token_logprobs(logits, targets)
    rows = [
        torch.log_softmax(r.float(), -1).gather(-1, t[:, None])[:, 0]
        for r, t in zip(logits, targets, strict=True)
    ]
    want = torch.stack(rows)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
    got.sum().backward()
    grad = logits.grad.clone()
    logits.grad = None
    want.sum().backward()
    assert torch.equal(grad, logits.grad)
