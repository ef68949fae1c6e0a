"""trainer.kernels=onednn against the straightforward path (trainer.kernels=torch): the same
tokens for a seed, logits, log-probs and gradients within float32 rounding of each other."""

import copy

import pytest
import torch
from transformers.activations import NewGELUActivation
from transformers.pytorch_utils import Conv1D

from rdx.lm import kernels
from rdx.lm.kernels import effective, linear, use_kernels
from rdx.lm.models import tiny_bert, tiny_gpt2
from rdx.lm.sampling import sample, sequence_prob
from rdx.lm.sequences import Sequences
from rdx.pipeline.offpolicy.trainer import compute_gradient

pytestmark = pytest.mark.skipif(not kernels.available(), reason="torch built without oneDNN")

# Stated tolerance: fp32 products summed in another order; logits of these sizes move
# by ~1e-6 (measured max 1e-6 on the default tiny β), gradients alike.
ATOL = 2e-5


@pytest.fixture(scope="module")
def pair():
    plain = tiny_gpt2(211, 2, 64, 4, seed=0).eval()
    return plain, use_kernels(copy.deepcopy(plain), "onednn")


def test_linear_and_its_gradients_match_f_linear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True)
    y = linear(x, w, b)
    want = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    up = torch.randn(3, 7, 24, generator=g)
    got = torch.autograd.grad((y * up).sum(), (x, w, b))
    ref = torch.autograd.grad((want * up).sum(), (x, w, b))
    for a, r in zip(got, ref, strict=True):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-5)


def test_swap_keeps_parameters_and_switches_back(pair):
    plain, fast = pair
    assert plain.state_dict().keys() == fast.state_dict().keys()
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), fast.parameters(), strict=True)
    )
    kinds = {type(m) for m in fast.modules()}
    assert kernels._Conv1D in kinds and kernels._TanhGELU in kinds and Conv1D not in kinds
    assert all(isinstance(m, Conv1D) for m in fast.modules() if type(m) is kernels._Conv1D)
    back = use_kernels(copy.deepcopy(fast), "torch")
    assert {type(m) for m in back.modules()} >= {Conv1D, NewGELUActivation}
    assert kernels._Conv1D not in {type(m) for m in back.modules()}
    with pytest.raises(ValueError, match="trainer.kernels='mkl': expected one of onednn, torch"):
        use_kernels(plain, "mkl")


def test_logits_and_beta_scores_within_tolerance(pair):
    plain, fast = pair
    x = torch.randint(1, 211, (16, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = plain(input_ids=x).logits, fast(input_ids=x).logits
    torch.testing.assert_close(b, a, atol=ATOL, rtol=0)
    seqs = Sequences.from_samples(x, 4, None)
    torch.testing.assert_close(
        sequence_prob(fast, seqs), sequence_prob(plain, seqs), atol=1e-6, rtol=0
    )


def test_same_tokens_for_a_seed(pair):
    """Greedy and sampled continuations: identical tokens from one seed (a 1e-6 logit
    move flips a token only at a near tie, which these rows do not have)."""
    plain, fast = pair
    prefixes = torch.randint(1, 211, (32, 4), generator=torch.Generator().manual_seed(2))
    for temperature in (0.0, 1.0):
        a = sample(
            plain, prefixes, 20, temperature=temperature, generator=torch.Generator().manual_seed(3)
        )
        b = sample(
            fast, prefixes, 20, temperature=temperature, generator=torch.Generator().manual_seed(3)
        )
        assert torch.equal(a, b)


def test_training_gradient_within_tolerance(pair):
    plain, fast = (copy.deepcopy(m) for m in pair)
    g = torch.Generator().manual_seed(4)
    x = torch.randint(1, 211, (8, 30), generator=g)
    mask = torch.ones(8, 29, dtype=torch.bool)
    reward, beta = torch.rand(8, generator=g), torch.rand(8, generator=g) * 0.1
    keep = torch.tensor([True, False] * 4)
    cpu = torch.device("cpu")
    out_a, acc_a = compute_gradient(plain, x, mask, reward, beta, keep, device=cpu)
    out_b, acc_b = compute_gradient(fast, x, mask, reward, beta, keep, device=cpu)
    torch.testing.assert_close(out_b.loss, out_a.loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(acc_a, acc_b)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-3, msg=name)


def test_bert_classifier_logits_within_tolerance():
    plain = tiny_bert(97, 2, 32, 2, num_labels=3, seed=0).eval()
    fast = use_kernels(copy.deepcopy(plain), "onednn")
    ids = torch.randint(1, 97, (6, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            fast(input_ids=ids).logits, plain(input_ids=ids).logits, atol=ATOL, rtol=0
        )


def test_only_cpu_float32_outside_autocast_takes_the_route():
    cpu = torch.device("cpu")
    assert effective("onednn", cpu, torch.float32) == "onednn"
    assert effective("onednn", cpu, torch.bfloat16) == "torch"
    assert effective("onednn", torch.device("cuda"), torch.float32) == "torch"
    assert effective("torch", cpu, torch.float32) == "torch"
    x, w = torch.randn(4, 8), torch.randn(5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w, None).dtype == torch.bfloat16  # autocast's own path
