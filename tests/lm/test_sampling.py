"""The KV-cache sampler and the scorers agree with straightforward implementations."""

import pytest
import torch

from rdx.lm.codec import Codec
from rdx.lm.draw import categorical
from rdx.lm.models import load_hub, tiny_bert, tiny_gpt2
from rdx.lm.sampling import (
    classifier_logits,
    keep_top_k,
    left_padded,
    penalize_repeats,
    sample,
    sample_sequences,
    sequence_prob,
)
from rdx.lm.sequences import Sequences
from rdx.method.objective import token_logprobs
from rdx.pipeline.offpolicy.decoding import GREEDY_MODES, greedy_decoding


@pytest.fixture(scope="module")
def lm():
    return tiny_gpt2(97, 2, 32, 2, seed=0).eval()


def naive_sample(model, prefixes, new_tokens, temperature, generator):
    """Re-run the whole sequence every step: no cache, same draw and random stream
    (tests/lm/test_draw.py checks the draw's distribution)."""
    x = prefixes.clone()
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(input_ids=x).logits[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = categorical(logits / temperature, generator)[:, None]
            x = torch.cat([x, nxt], dim=1)
    return x


@pytest.mark.parametrize("temperature", [0.0, 0.4, 1.0])
def test_cached_sampler_matches_no_cache_loop(lm, temperature):
    prefixes = torch.randint(0, 97, (6, 4), generator=torch.Generator().manual_seed(1))
    fast = sample(
        lm, prefixes, 12, temperature=temperature, generator=torch.Generator().manual_seed(7)
    )
    slow = naive_sample(lm, prefixes, 12, temperature, torch.Generator().manual_seed(7))
    assert fast.shape == (6, 16)
    assert torch.equal(fast[:, :4], prefixes)
    assert torch.equal(fast, slow)


def test_sampler_batches_do_not_change_greedy_output(lm):
    prefixes = torch.randint(0, 97, (10, 4), generator=torch.Generator().manual_seed(2))
    a = sample(lm, prefixes, 8, temperature=0, batch_size=3)
    b = sample(lm, prefixes, 8, temperature=0, batch_size=10)
    assert torch.equal(a, b)


def test_greedy_matches_transformers_generate(lm):
    prefixes = torch.randint(0, 97, (4, 4), generator=torch.Generator().manual_seed(3))
    ours = sample(lm, prefixes, 10, temperature=0)
    theirs = lm.generate(
        prefixes,
        attention_mask=torch.ones_like(prefixes),
        do_sample=False,
        max_new_tokens=10,
        min_new_tokens=10,
        pad_token_id=0,
    )
    assert torch.equal(ours, theirs)


def test_sequence_prob_matches_naive(lm):
    tokens = torch.randint(1, 97, (5, 12), generator=torch.Generator().manual_seed(4))
    tokens[1, 7:] = 0  # EOS at position 7: positions 8.. are filler
    got = sequence_prob(lm, Sequences.from_samples(tokens, 4, eos_id=0), batch_size=2)
    with torch.no_grad():
        for i in range(5):
            probs = torch.softmax(lm(input_ids=tokens[i : i + 1]).logits[0].double(), -1)
            # positions 3..10 predict tokens 4..11: the continuation only
            last = 6 if i == 1 else 10
            want = torch.stack([probs[t, tokens[i, t + 1]] for t in range(3, last + 1)]).mean()
            assert got[i].item() == pytest.approx(want.item(), abs=1e-5)


def test_sample_rows_mask_the_continuation_up_to_its_eos():
    tokens = torch.tensor([[5, 6, 7, 8, 9, 9], [5, 6, 7, 8, 2, 2]])
    assert Sequences.from_samples(tokens, 4, None).mask().tolist() == [[0, 0, 0, 1, 1]] * 2
    assert Sequences.from_samples(tokens[:1], 4, None).mask(score_prefix=True).tolist() == [
        [1, 1, 1, 1, 1]
    ]
    # row 0: the EOS (id 2) at position 5 is scored, the filler after it is not
    eos = torch.tensor(
        [[5, 6, 7, 8, 3, 2, 2, 2], [5, 2, 7, 8, 2, 2, 2, 2], [5, 6, 7, 8, 3, 4, 1, 2]]
    )
    assert Sequences.from_samples(eos, 4, eos_id=2).mask().tolist() == [
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],  # an EOS inside the prefix ends nothing
        [0, 0, 0, 1, 1, 1, 1],
    ]
    assert Sequences.from_samples(eos, 4, eos_id=2).mask(score_prefix=True)[0].tolist() == [
        1,
        1,
        1,
        1,
        1,
        0,
        0,
    ]


def test_sampler_stops_rows_at_eos(lm):
    prefixes = torch.randint(3, 97, (16, 4), generator=torch.Generator().manual_seed(8))
    free = sample(lm, prefixes, 10, temperature=1.0, generator=torch.Generator().manual_seed(9))
    eos = int(free[0, 6])  # a token row 0 emits at its third step: make it the EOS
    got = sample(
        lm, prefixes, 10, temperature=1.0, generator=torch.Generator().manual_seed(9), eos_id=eos
    )
    assert got.shape == (16, 14)
    for row_free, row in zip(free, got, strict=True):
        hits = (row_free[4:] == eos).nonzero()
        if len(hits) == 0:
            assert torch.equal(row, row_free)
        else:
            end = 4 + hits[0].item()
            assert torch.equal(row[: end + 1], row_free[: end + 1])
            assert (row[end:] == eos).all()


def test_token_logprobs_of_sampled_tokens_are_finite(lm):
    tokens = sample(
        lm,
        torch.zeros(3, 4, dtype=torch.long),
        5,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    logits = lm(input_ids=tokens[:, :-1]).logits
    assert torch.isfinite(token_logprobs(logits, tokens[:, 1:])).all()


def test_classifier_logits_batching_is_invariant():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "good", "bad", "food", "was"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    clf = tiny_bert(6, 1, 16, 2, num_labels=2, seed=0).eval()
    texts = ["food was good", "bad", "food was bad food", "good good"]
    a = classifier_logits(clf, fast, texts, batch_size=1)
    b = classifier_logits(clf, fast, texts, batch_size=4)
    assert a.shape == (4, 2)
    assert torch.allclose(a, b, atol=1e-5)  # padding is masked out


def eos_loving_lm(eos_id: int = 0):
    """A tiny GPT-2 that writes EOS about half the time: with the final layer norm's weight
    zeroed its output is its bias (ones) at every position, so the logit of token v is
    the sum of v's (tied) embedding, 0.3 × 16 = 4.8 for EOS and about 0 for the others."""
    model = tiny_gpt2(97, 1, 16, 2, seed=3).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[eos_id] = 0.3
    return model


def test_without_stop_at_eos_every_continuation_has_the_full_length(lm):
    prefixes = torch.randint(1, 97, (6, 4), generator=torch.Generator().manual_seed(0))
    model = eos_loving_lm()
    g = torch.Generator().manual_seed(1)
    stopped = sample(model, prefixes, 26, temperature=1.0, generator=g, eos_id=0)
    ends = Sequences.from_samples(stopped, 4, eos_id=0)
    assert (ends.lengths - 4 < 26).all()  # the EOS-loving model ends every row early
    g = torch.Generator().manual_seed(1)
    rows = sample(model, prefixes, 26, temperature=1.0, generator=g, eos_id=0, stop_at_eos=False)
    seqs = Sequences.from_samples(rows, 4, eos_id=None)  # EOS is an ordinary token
    assert rows.shape == (6, 30) and (seqs.lengths - seqs.prefix_lens == 26).all()
    assert (rows[:, 4:] == 0).float().mean() > 0.3  # EOS is sampled, and decoding goes on
    assert seqs.mask().sum(1).tolist() == [26.0] * 6


def test_repetition_penalty_and_top_k_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False]])
    got = penalize_repeats(logits, seen, 1.2)
    torch.testing.assert_close(got, torch.tensor([[2.0 / 1.2, -1.2, 0.5, 3.0]]))
    top = keep_top_k(torch.tensor([[2.0, -1.0, 0.5, 3.0], [1.0, 1.0, 0.0, -2.0]]), 2)
    inf = float("-inf")
    assert top.tolist() == [[2.0, inf, inf, 3.0], [1.0, 1.0, inf, inf]]


def test_top_k_1_is_greedy_and_penalty_matches_hf_generate(lm):
    prefixes = torch.randint(1, 97, (4, 5), generator=torch.Generator().manual_seed(2))
    greedy = sample(lm, prefixes, 8, temperature=0)
    one = sample(lm, prefixes, 8, temperature=1.0, generator=torch.Generator(), top_k=1)
    assert torch.equal(greedy, one)
    ours = sample(lm, prefixes, 8, temperature=0, repetition_penalty=1.5)
    theirs = lm.generate(
        prefixes,
        attention_mask=torch.ones_like(prefixes),
        do_sample=False,
        repetition_penalty=1.5,
        max_new_tokens=8,
        min_new_tokens=8,
        pad_token_id=0,
    )
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, greedy)  # the penalty changed what greedy decoding picks


# ------------------------------------------------------------ greedy in one padded batch

TEXTS = [  # prefixes of 1 to 6 words: several token lengths in every tokenizer
    "the",
    "the food was good and",
    "bad",
    "the team won",
    "the food was",
    "good food and the team won",
    "the team",
    "won the",
]


def per_length(model, prefixes, new_tokens, **kw):
    """The straightforward path: each prefix length decoded on its own, no padding."""
    return sample_sequences(model, prefixes, new_tokens, temperature=0, left_pad=False, **kw)


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
@pytest.mark.parametrize("mode", GREEDY_MODES)
@pytest.mark.parametrize("stop_at_eos", [True, False])
def test_greedy_in_one_left_padded_batch_equals_per_length(hub, arch, mode, stop_at_eos):
    """π's metric decode (both eval.greedy modes) in one left-padded batch gives the tokens,
    lengths and masks of decoding each prefix length alone, on each hub architecture (GPT-2,
    OPT and XGLM take positions their own ways), with and without the stop at EOS."""
    model = load_hub("causal", hub[arch]).eval()
    codec = Codec(load_hub("tokenizer", hub[arch]))
    prefixes = codec.prefixes(TEXTS * 2)
    assert len(set(prefixes.prefix_lens.tolist())) >= 4
    beta = {"stop_at_eos": stop_at_eos, "top_k": 50, "repetition_penalty": 1.3}
    kw = dict(eos_id=codec.eos_id, **greedy_decoding(beta, mode))
    got = sample_sequences(model, prefixes, 10, temperature=0, batch_size=5, **kw)
    want = per_length(model, prefixes, 10, **kw)
    assert torch.equal(got.tokens, want.tokens)
    assert torch.equal(got.lengths, want.lengths)
    assert torch.equal(got.prefix_lens, prefixes.prefix_lens)
    assert torch.equal(got.mask(), want.mask())


def test_greedy_batch_stops_rows_at_eos_as_per_length(lm):
    """EOS ends a row (filler after it) in the padded batch as in the per-length path: make
    the EOS a token that some rows emit midway."""
    g = torch.Generator().manual_seed(5)
    lens = torch.randint(1, 7, (20,), generator=g)
    prefixes = Sequences(torch.randint(1, 97, (20, 8), generator=g), lens, lens.clone())
    free = per_length(lm, prefixes, 12, eos_id=None, repetition_penalty=1.2)
    eos = int(free.tokens[0, int(lens[0]) + 2])
    got = sample_sequences(lm, prefixes, 12, temperature=0, eos_id=eos, repetition_penalty=1.2)
    want = per_length(lm, prefixes, 12, eos_id=eos, repetition_penalty=1.2)
    assert (got.lengths < lens + 12).any()  # some rows did stop early
    assert torch.equal(got.tokens, want.tokens) and torch.equal(got.lengths, want.lengths)


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
def test_left_padding_changes_no_logit_beyond_float_rounding(hub, arch):
    """Why the token ids agree exactly: under left padding with the mask and positions
    the real positions' logits are those of each row alone, up to float32 rounding (the
    padded keys get weight 0, so only the summation's blocking differs)."""
    model = load_hub("causal", hub[arch]).eval()
    codec = Codec(load_hub("tokenizer", hub[arch]))
    rows = codec.prefixes(TEXTS)
    left, real = left_padded(rows, codec.eos_id)
    positions = (real.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        padded = model(input_ids=left, attention_mask=real.long(), position_ids=positions).logits
        for i, p in enumerate(rows.prefix_lens.tolist()):
            alone = model(input_ids=rows.tokens[i : i + 1, :p]).logits[0]
            torch.testing.assert_close(padded[i, -p:], alone, atol=1e-5, rtol=1e-5)


def test_sampling_scoring_and_eval_forwards_run_under_inference_mode(lm):
    from rdx.pipeline.offpolicy.evaluate import teacher_forced_accuracy

    modes = []
    hook = lm.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    tokens = torch.randint(1, 97, (5, 12), generator=torch.Generator().manual_seed(4))
    tokens[1, 7:] = 0
    seqs = Sequences.from_samples(tokens, 4, eos_id=0)
    try:
        drawn = sample(lm, tokens[:, :4], 3, temperature=1.0, generator=torch.Generator())
        sequence_prob(lm, seqs, batch_size=2)
        acc = teacher_forced_accuracy(lm, seqs, batch_size=2)
    finally:
        hook.remove()
    assert len(modes) == 3 + 3 + 3 and all(modes)  # 3 decode steps, 3 + 3 batches of ≤ 2
    assert not drawn.is_inference()  # π's samples stay usable by autograd
    # against the straightforward path: argmax accuracy over the continuation, per row
    with torch.no_grad():
        pred = lm(input_ids=tokens[:, :-1]).logits.argmax(-1)
    mask = seqs.mask()
    want = (((pred == tokens[:, 1:]) * mask).sum(1) / mask.sum(1)).mean()
    assert acc == pytest.approx(want.item(), abs=1e-6)
