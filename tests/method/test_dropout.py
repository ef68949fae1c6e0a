import math

import numpy as np
import pytest
import torch

from rdx.method.dropout import (
    global_top_keep,
    keep_mask,
    prompt_quantile_keep,
    quantile_keep,
    random_keep,
    set_keep_mask,
    threshold_keep,
)


def test_quantile_keep_by_hand():
    # sorted: 1 2 3 4 5; q_0.5 = 3 (index 2) -> keep 3, 4, 5
    r = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    assert quantile_keep(r, 0.5).tolist() == [True, False, True, False, True]
    # q_0.8, linear interpolation: position 0.8 * 4 = 3.2 -> 4 + 0.2 * (5 - 4) = 4.2 -> keep 5
    assert quantile_keep(r, 0.8).tolist() == [True, False, False, False, False]


def test_quantile_keep_ties_at_threshold_are_kept():
    r = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.0])
    # q_0.5 = 2 exactly; all three 2s are kept along with 3
    assert quantile_keep(r, 0.5).tolist() == [False, True, True, True, True]


def test_quantile_keep_gamma_zero_and_all_equal():
    r = torch.tensor([0.3, -1.0, 2.0])
    assert quantile_keep(r, 0.0).all()
    same = torch.full((7,), -0.25)
    assert quantile_keep(same, 0.8).all()


@pytest.mark.parametrize("gamma", [0.2, 0.4, 0.6, 0.8, 0.9, 0.95])
def test_quantile_keep_matches_numpy(gamma):
    r = torch.randn(64, generator=torch.Generator().manual_seed(1))
    q = np.quantile(r.double().numpy(), gamma)
    expected = r.double().numpy() >= q
    assert quantile_keep(r, gamma).numpy().tolist() == expected.tolist()
    # values strictly below position γ(n−1) of the sorted batch are dropped
    assert quantile_keep(r, gamma).sum().item() == 64 - math.ceil(gamma * 63 - 1e-9)


@pytest.mark.parametrize(
    "gamma,batch,dropped", [(0.2, 64, 12), (0.8, 64, 51), (0.29, 100, 29), (0.0, 5, 0)]
)
def test_random_keep_drops_exactly_floor_gamma_b(gamma, batch, dropped):
    g = torch.Generator().manual_seed(0)
    keep = random_keep(torch.zeros(batch), gamma, g)
    assert keep.dtype == torch.bool
    assert (~keep).sum().item() == dropped


def test_random_keep_is_seeded_and_ignores_values():
    a = random_keep(torch.arange(10.0), 0.5, torch.Generator().manual_seed(3))
    b = random_keep(-torch.arange(10.0), 0.5, torch.Generator().manual_seed(3))
    c = random_keep(torch.arange(10.0), 0.5, torch.Generator().manual_seed(4))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_random_keep_is_uniform():
    g = torch.Generator().manual_seed(0)
    counts = sum(random_keep(torch.zeros(8), 0.5, g).float() for _ in range(4000))
    assert torch.allclose(counts / 4000, torch.full((8,), 0.5), atol=0.04)


def test_threshold_keep_is_strict():
    r = torch.tensor([-1.0, 0.0, 0.5])
    assert threshold_keep(r, 0.0).tolist() == [False, False, True]


def test_keep_mask_dispatch_and_error():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert keep_mask("none", r).all()
    assert keep_mask("quantile", r, gamma=0.5).tolist() == [False, False, True, True]
    assert keep_mask("threshold", r, delta=2.5).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="dropout.mode='quantil'"):
        keep_mask("quantil", r)


def test_random_with_replacement_keeps_about_e_to_the_minus_gamma():
    """The authors' draw: ⌊γB⌋ indices with replacement. A sample survives all n draws with
    probability (1 − 1/B)^n: at B=64, γ=0.8 (n=51) that is 0.4480, not 0.2."""
    r = torch.zeros(64)
    g = torch.Generator().manual_seed(0)
    fracs = torch.tensor(
        [random_keep(r, 0.8, g, replacement=True).float().mean().item() for _ in range(2000)]
    )
    expected = (1 - 1 / 64) ** 51
    assert expected == pytest.approx(0.4480, abs=1e-4)
    assert fracs.mean().item() == pytest.approx(expected, abs=0.005)
    exact = random_keep(r, 0.8, g)  # without replacement: exactly 64 − 51 kept
    assert int(exact.sum()) == 13


def test_prompt_quantile_keeps_the_top_of_each_prefix():
    # two prefixes, 4 samples each; γ=0.5 keeps r̂ ≥ each group's median (linear interp.)
    r = torch.tensor([1.0, 4.0, 2.0, 3.0, 10.0, -1.0, 10.0, 0.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    keep = prompt_quantile_keep(r, groups, 0.5)
    # group 0: median 2.5 → keep 4, 3; group 1: median 5.0 → keep the two 10s
    assert keep.tolist() == [False, True, False, True, True, False, True, False]
    # γ=0.8: position 2.4 of 4 sorted values → only each group's best survives
    assert prompt_quantile_keep(r, groups, 0.8).tolist() == [
        False, True, False, False, True, False, True, False  # a tie at the top keeps both
    ]  # fmt: skip
    # the batch rule at γ=0.75 (q = 4 + 0.25·6 = 5.5) keeps group 1's samples only
    assert quantile_keep(r, 0.75).tolist() == [False] * 4 + [True, False, True, False]


def test_global_top_ranks_the_whole_set_once():
    r = torch.arange(10.0)
    assert global_top_keep(r, 0.7).tolist() == [False] * 7 + [True] * 3  # q = 6.3
    groups = torch.zeros(10, dtype=torch.long)
    assert set_keep_mask("global_top", r, gamma=0.7, groups=groups).tolist() == (
        global_top_keep(r, 0.7).tolist()
    )
    with pytest.raises(ValueError, match="expected one of prompt_quantile, global_top"):
        set_keep_mask("quantile", r, gamma=0.5, groups=groups)
