"""rdx.lm.draw.multinomial_one is torch.multinomial(probs, 1), draw for draw."""

import pytest
import torch

import rdx.lm.draw as draw
from rdx.lm.draw import multinomial_one


@pytest.mark.parametrize("shape", [(512, 2048), (3, 50257), (1, 7)])
def test_fast_draw_is_torch_multinomial(shape):
    """rdx's draw (multinomial_one) gives torch.multinomial's tokens from the same generator
    and leaves the generator where multinomial leaves it, at β's, GPT-2's and odd sizes."""
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(6)) * 3
    probs = torch.softmax(logits / 0.4, -1)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):
        assert torch.equal(
            multinomial_one(probs, g1), torch.multinomial(probs, 1, generator=g2).squeeze(1)
        )
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    torch.manual_seed(12)  # the global generator (generator=None) alike
    a = multinomial_one(probs)
    torch.manual_seed(12)
    assert torch.equal(a, torch.multinomial(probs, 1).squeeze(1))


def test_fast_draw_libm_fixup_reproduces_exponential(monkeypatch):
    """The float64 → float32 rounding fix-up path (rare in use: ~3 in 10⁸ draws) is forced
    on 1 in 16 elements and must still give exponential_'s exact draws."""
    monkeypatch.setattr(draw, "_NEAR_HALF", 1 << 24)
    g = torch.Generator().manual_seed(13)
    want = torch.empty(8, 512).exponential_(generator=g)
    g.manual_seed(13)
    assert torch.equal(draw._exponential((8, 512), g), want)
    assert draw._exponential_race_matches_torch()


def test_fast_draw_rejects_bad_probabilities_like_multinomial():
    probs = torch.full((2, 5), 0.2)
    probs[1, 3] = float("nan")
    with pytest.raises(RuntimeError, match="probability tensor contains"):
        multinomial_one(probs)
