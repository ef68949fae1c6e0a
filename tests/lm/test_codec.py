"""Re-tokenisation between β's, π's and R's tokenizers (rdx.lm.codec)."""

import pytest
import torch

from rdx.lm.codec import Codec
from rdx.lm.models import load_hub
from rdx.lm.sampling import Sequences, sample, sample_sequences

# ------------------------------------------------------------------ codec: re-tokenisation


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
def test_encode_scores_exactly_the_continuation(hub, arch):
    codec = Codec(load_hub("tokenizer", hub[arch]))
    prefixes = ["the food", "the team won"]
    continuations = [" was good and the staff", " the final"]
    seqs = codec.encode(prefixes, continuations, [True, False])
    tok = codec.tokenizer
    for i, (p, c) in enumerate(zip(prefixes, continuations, strict=True)):
        want_cont = tok(c, add_special_tokens=False)["input_ids"] + (
            [codec.eos_id] if i == 0 else []
        )
        scored = seqs.tokens[i, 1:][seqs.mask()[i].bool()].tolist()
        assert scored == want_cont
        assert (
            seqs.tokens[i, : seqs.prefix_lens[i]].tolist()
            == codec.bos + tok(p, add_special_tokens=False)["input_ids"]
        )
    assert codec.decode(seqs) == (prefixes, continuations, [True, False])
    assert codec.bos == ([] if arch == "gpt2" else [codec.eos_id])


def test_decode_keeps_the_space_before_a_sentencepiece_continuation(hub):
    codec = Codec(load_hub("tokenizer", hub["xglm"]))
    tok = codec.tokenizer
    pre = tok("the food", add_special_tokens=False)["input_ids"]
    cont = tok(" was good", add_special_tokens=False)["input_ids"]
    assert tok.decode(cont) == "was good"  # decoded alone, the space is gone
    rows = torch.tensor([codec.bos + pre + cont])
    seqs = Sequences.from_samples(rows, len(codec.bos) + len(pre), codec.eos_id)
    assert codec.decode(seqs) == (["the food"], [" was good"], [False])


def test_sample_sequences_groups_prefix_lengths(hub):
    """Ragged prefixes decode per length; with one length it is `sample` itself."""
    model = load_hub("causal", hub["opt"]).eval()
    codec = Codec(load_hub("tokenizer", hub["opt"]))
    prefixes = codec.prefixes(["the food", "the team won the", "a"])
    assert prefixes.prefix_lens.unique().numel() > 1  # really ragged: groups are exercised
    got = sample_sequences(model, prefixes, 6, temperature=0, eos_id=codec.eos_id)
    for i in range(3):
        p = int(prefixes.prefix_lens[i])
        alone = sample(model, prefixes.tokens[i : i + 1, :p], 6, temperature=0)[0]
        end = int(got.lengths[i])
        assert got.tokens[i, :end].tolist() == alone[:end].tolist()
    # Two prefixes of one length whatever the trained tokenizer's merges: one text, twice.
    same = codec.prefixes(["the food", "the food"])
    assert same.prefix_lens.unique().numel() == 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sample_sequences(model, same, 6, temperature=1.0, generator=g1, eos_id=codec.eos_id)
    b = sample(model, same.tokens, 6, temperature=1.0, generator=g2, eos_id=codec.eos_id)
    assert torch.equal(a.tokens, b)
