"""rdx.lm.draw.categorical draws from softmax(logits): chi-square tests on many draws, the
edge cases by hand, and the seeded stream's reproducibility."""

import pytest
import torch

from rdx.lm.draw import categorical, keyed_uniforms


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's goodness-of-fit p-value, bins with expected count < 5 pooled into one;
    the chi-square survival function is the regularised upper incomplete gamma Q(k/2, x/2)."""
    n = counts.sum().double()
    expected = probs.double() * n
    small = expected < 5
    obs = torch.cat([counts.double()[~small], counts.double()[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0), stat / 2.0))


def draws(logits_row: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n draws from one distribution: the row repeated n times, one draw per row."""
    g = torch.Generator().manual_seed(seed)
    return categorical(logits_row.expand(n, -1).contiguous(), g)


@pytest.mark.parametrize(
    "logits",
    [
        torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0, -4.0, 0.0]),
        # top-k's cut: −inf logits are never drawn, the rest keep their proportions
        torch.tensor([float("-inf"), 2.0, float("-inf"), 0.0, 1.0, float("-inf")]),
        # a peaked row as at temperature 0.4: the tail's tiny masses still come out right
        torch.randn(2048, generator=torch.Generator().manual_seed(1)) * 3 / 0.4,
    ],
    ids=["8 tokens", "top-k cut", "2048 tokens, T=0.4"],
)
def test_draws_follow_softmax(logits):
    n = 20_000_000 // len(logits)  # ≤ 20M logits in memory: 10k draws of the wide row
    counts = torch.bincount(draws(logits, min(n, 200_000), seed=2), minlength=len(logits))
    probs = torch.softmax(logits.double(), -1)
    assert counts[probs == 0].sum() == 0
    assert chi_square_p(counts, probs) > 1e-3


def test_chi_square_test_detects_a_wrong_distribution():
    """The test above can fail: draws from softmax(l) against softmax(1.05·l) are rejected."""
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0, -4.0, 0.0])
    counts = torch.bincount(draws(logits, 200_000, seed=2), minlength=8)
    assert chi_square_p(counts, torch.softmax(1.05 * logits.double(), -1)) < 1e-6


def test_rows_are_drawn_independently_from_their_own_distributions():
    """Each row its own distribution: a batch of one-hot-ish rows gives each row's token,
    and the joint counts of two rows factorise (their draws are independent)."""
    sure = torch.full((4, 5), float("-inf"))
    sure[torch.arange(4), torch.tensor([3, 0, 4, 1])] = 0.0
    assert categorical(sure, torch.Generator().manual_seed(0)).tolist() == [3, 0, 4, 1]
    n = 100_000
    pair = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).repeat(n, 1)
    out = categorical(pair, torch.Generator().manual_seed(3)).view(n, 2)
    joint = torch.bincount(out[:, 0] * 2 + out[:, 1], minlength=4)
    p0 = torch.tensor([0.5, 0.5], dtype=torch.float64)
    p1 = torch.softmax(torch.tensor([0.0, 1.0], dtype=torch.float64), -1)
    assert chi_square_p(joint, torch.outer(p0, p1).flatten()) > 1e-3


def test_seeded_stream_is_reproducible_and_one_uniform_per_row():
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(4))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(categorical(logits, g1), categorical(logits, g2))
    # one uniform per row: the generator moved by exactly 16 draws
    g3 = torch.Generator().manual_seed(9)
    torch.rand(16, generator=g3)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g3))


def test_extreme_uniforms_take_the_first_and_last_tokens_with_weight():
    """v = 1 (v·Σw at or rounded above Σw) takes the last token of non-zero weight, the
    smallest v the first such token: a zero-weight token at either end is never drawn."""
    logits = torch.tensor([[float("-inf"), 0.0, 1.0, float("-inf")], [0.0, 0.0, 0.0, 0.0]])
    assert categorical(logits, uniforms=torch.ones(2)).tolist() == [2, 3]
    assert categorical(logits, uniforms=torch.full((2,), 2.0**-24)).tolist() == [1, 0]


def test_keyed_uniforms_are_a_function_of_key_and_step():
    """A row's uniform depends on its key and the step only: the same whatever rows share
    its batch; every field of the key and the step change it; values lie in (0, 1]."""
    keys = torch.tensor([[0, 0, p, s] for p in range(50) for s in range(4)])
    u = keyed_uniforms(keys, 3)
    perm = torch.randperm(len(keys), generator=torch.Generator().manual_seed(0))
    assert torch.equal(keyed_uniforms(keys[perm], 3), u[perm])
    assert torch.equal(keyed_uniforms(keys[7:8], 3), u[7:8])
    assert len(set(u.tolist())) == len(keys)
    for col in range(4):
        other = keys.clone()
        other[:, col] += 1
        assert (keyed_uniforms(other, 3) != u).float().mean() > 0.99
    assert (keyed_uniforms(keys, 4) != u).float().mean() > 0.99
    assert float(u.min()) > 0 and float(u.max()) <= 1


def test_keyed_uniforms_are_uniform_and_independent_across_steps():
    """Chi-square on 20 bins for 200k (row, step) pairs, and on the joint bins of a row's
    consecutive steps: uniform, and no correlation between steps or between rows."""
    keys = torch.stack(
        [
            torch.zeros(50_000, dtype=torch.long),
            torch.zeros(50_000, dtype=torch.long),
            torch.arange(50_000) // 10,
            torch.arange(50_000) % 10,
        ],
        1,
    )
    steps = torch.stack([keyed_uniforms(keys, t) for t in range(4)])  # (4, N)
    bins = (steps * 20).ceil().long().clamp(1, 20) - 1
    counts = torch.bincount(bins.flatten(), minlength=20)
    assert chi_square_p(counts, torch.full((20,), 1 / 20)) > 1e-3
    b5 = bins // 4  # 5 bins: joint 25 cells
    for a, b in ((b5[0], b5[1]), (b5[2], b5[3]), (b5[0, :-1], b5[0, 1:])):
        joint = torch.bincount(a * 5 + b, minlength=25)
        assert chi_square_p(joint, torch.full((25,), 1 / 25)) > 1e-3


def test_keyed_draws_follow_softmax():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0, -4.0, 0.0])
    keys = torch.stack(
        [
            torch.full((100_000,), 5),
            torch.zeros(100_000, dtype=torch.long),
            torch.arange(100_000),
            torch.zeros(100_000, dtype=torch.long),
        ],
        1,
    )
    out = categorical(logits.expand(100_000, -1).contiguous(), uniforms=keyed_uniforms(keys, 0))
    counts = torch.bincount(out, minlength=8)
    assert chi_square_p(counts, torch.softmax(logits.double(), -1)) > 1e-3


def test_bad_logits_raise():
    with pytest.raises(ValueError, match="NaN or all"):
        categorical(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="NaN or all"):
        categorical(torch.full((1, 3), float("-inf")))
    with pytest.raises(ValueError, match="must be \\(B, V\\)"):
        categorical(torch.zeros(3))
