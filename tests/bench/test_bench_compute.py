"""The compute benchmarks measure what they say: their references compute the same tokens and
scores as rdx, their figures check goals correctly, and every benchmark runs at tiny sizes.

tests/lm/test_sampling.py already checks the cached sampler against a no-cache loop (greedy and
sampled, one generator), greedy decoding against generate(), and sequence_prob against a
naive float64 scorer; tests/method/test_objective.py checks token_logprobs against log_softmax().
What is added here: the benchmarks' own baselines are the same computation as rdx's
(tests/lm/test_draw.py checks rdx's draw against softmax with chi-square tests).
"""

import copy
import math

import pytest
import torch

from benchmarks import compute
from benchmarks.common import Figure, Goal, format_table, timeit, timeit_many
from benchmarks.peak import bf16_support, measure_peak
from rdx.lm.kernels import use_kernels
from rdx.lm.sampling import classifier_logits, sample, sequence_prob
from rdx.lm.sequences import Sequences
from tests.lm.test_draw import chi_square_p

# A model of the default tiny β's depth and width, but 64 tokens of vocabulary: fast.
SMALL = {"vocab_size": 64, "n_layer": 2, "n_embd": 32, "n_head": 2}
FAST = {"warmup": 0, "min_time": 0.0, "min_reps": 1}


@pytest.fixture(scope="module")
def beta():
    return compute.tiny_behavior(**SMALL)


@pytest.fixture(scope="module")
def reward():
    return compute.tiny_reward(**SMALL)


# (a) the benchmarks' references compute what rdx computes


def test_default_tiny_sizes_come_from_rdx_config():
    assert compute.tiny_sizes("behavior") == {
        "vocab_size": 2048,
        "n_layer": 4,
        "n_embd": 128,
        "n_head": 4,
    }
    assert compute.tiny_sizes("reward") == {
        "vocab_size": 2048,
        "n_layer": 2,
        "n_embd": 128,
        "n_head": 4,
    }


def test_generate_baseline_samples_rdx_distribution():
    """generate() as benchmarked (temperature only, top_k=0, EOS masked until the last
    token) and rdx's sampler draw their first token from one distribution, softmax(l/0.4)
    of the same logits (EOS aside, which generate() masks and which holds < 1e-3 of the
    mass here): the speed comparison is like for like. Chi-square on 3000 rows each."""
    model = compute.tiny_behavior()  # the benchmarked size: vocabulary 2048
    prefix = torch.randint(1, 2048, (1, 4), generator=torch.Generator().manual_seed(0))
    rows = prefix.expand(3000, -1).contiguous()
    with torch.no_grad():
        logits = model(input_ids=prefix).logits[0, -1].double() / 0.4
    torch.manual_seed(5)
    ours = sample(model, rows, 1, temperature=0.4, eos_id=None)[:, -1]
    theirs = compute.hf_generate(model, rows, 2, temperature=0.4)[:, 4]
    eos = model.config.eos_token_id
    want = torch.softmax(logits, -1)
    assert want[eos] < 1e-3
    no_eos = torch.softmax(logits.index_fill(0, torch.tensor([eos]), float("-inf")), -1)
    for got, probs in ((ours, want), (theirs, no_eos)):
        assert chi_square_p(torch.bincount(got, minlength=2048), probs) > 1e-3
    assert (theirs == eos).sum() == 0


@pytest.mark.parametrize("temperature", [0.0, 0.4])
def test_nocache_baseline_samples_exactly_rdx_tokens(beta, temperature):
    prefixes = torch.randint(1, 64, (8, 4), generator=torch.Generator().manual_seed(1))
    fast = sample(
        beta,
        prefixes,
        26,
        temperature=temperature,
        generator=torch.Generator().manual_seed(3),
        eos_id=None,
    )
    slow = compute.nocache_sample(
        beta, prefixes, 26, temperature=temperature, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(fast, slow)


def test_sequence_prob_log_probs_match_log_softmax_gather(beta):
    """β's score at the benchmark's shapes (T=30, p=4, no EOS): the mean of exp of the
    straightforward log_softmax().gather() over the continuation, to 1e-5."""
    tokens = torch.randint(1, 64, (7, 30), generator=torch.Generator().manual_seed(4))
    got = sequence_prob(beta, Sequences.from_samples(tokens, 4, None), batch_size=3)
    with torch.no_grad():
        logits = beta(input_ids=tokens[:, :-1]).logits.double()
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    want = logp[:, 3:].exp().mean(-1)  # positions 3..28 predict the continuation 4..29
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_pretokenized_batches_give_rs_plain_forward(reward):
    ids = torch.randint(1, 64, (5, 30), generator=torch.Generator().manual_seed(5))
    got = classifier_logits(
        reward, compute.PretokenizedBatches(ids), list(range(5)), batch_size=2, max_length=30
    )
    with torch.no_grad():
        want = reward(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_matmul_params_and_flops_by_hand(beta, reward):
    V, L, d = 64, 2, 32
    # per block: two LayerNorms (4d), qkv (3d² + 3d), out proj (d² + d), MLP (8d² + 5d);
    # plus the tied token embedding / head (V·d) and the final LayerNorm (2d); no wpe.
    n = L * (12 * d * d + 13 * d) + V * d + 2 * d
    assert compute.matmul_params(beta) == n
    assert compute.flops_per_token(beta, 29, training=False) == 2 * n + 4 * L * 29 * d
    assert compute.flops_per_token(beta, 29, training=True) == 3 * (2 * n + 4 * L * 29 * d)
    # BERT: the encoder only (L blocks of 12d² + 13d, with a 4d-wide MLP).
    assert compute.matmul_params(reward) == L * (12 * d * d + 13 * d)


# (b) figures, goals, timing


def test_ratio_and_goals_by_hand():
    f = Figure("speed", 300.0, "tok/s", 120.0, "ref", ">= 2.0x")
    assert f.ratio == pytest.approx(2.5) and f.met is True
    assert Figure("speed", 200.0, "tok/s", 120.0, "ref", ">= 2x").met is False
    mfu = Figure("mfu", 61.0, "GFLOP/s", 100.0, "peak", ">= 60% MFU")
    assert mfu.ratio == pytest.approx(0.61) and mfu.met is True
    assert Figure("mfu", 59.9, "GFLOP/s", 100.0, "peak", ">= 60% MFU").met is False
    assert Figure("wall", 5.5, "s", goal="<= 6 s").met is True
    assert Figure("wall", 6.5, "s", goal="<= 6 s").met is False
    assert Figure("wall", 6.0, "s", goal="< 6 s").met is False
    assert Figure("plain", 1.0, "s").met is None and Figure("plain", 1.0, "s").ratio is None


def test_goal_parsing():
    assert Goal.parse(">= 2.0x") == Goal(">=", 2.0, "ratio", "")
    assert Goal.parse(">= 60% MFU") == Goal(">=", 60.0, "percent", "")
    assert Goal.parse("<= 6 s") == Goal("<=", 6.0, "value", "s")
    assert Goal.parse("≥1.6x") == Goal("≥", 1.6, "ratio", "")
    for bad in ("2x", ">= x", ">= 2", "about 2x"):
        with pytest.raises(ValueError):
            Goal.parse(bad)


def test_met_is_computed_not_typed():
    with pytest.raises(ValueError):
        Figure("speed", 1.0, "tok/s", 2.0, "ref", ">= 2x", met=True)
    with pytest.raises(ValueError):
        Figure("speed", 1.0, "tok/s", met=True)  # no goal: nothing to be met
    assert Figure("speed", 5.0, "tok/s", 2.0, "ref", ">= 2x", met=True).met is True
    with pytest.raises(ValueError):  # a goal in another unit than the figure's
        Figure("wall", 5.0, "ms", goal="<= 6 s")


def test_unmeasured_figure_has_no_verdict():
    f = Figure("bf16", math.nan, "tok/s", 100.0, "fp32", ">= 1.6x", note="no bf16")
    assert f.ratio is None and f.met is None
    assert Figure("mfu", 1.0, "GFLOP/s", None, goal=">= 60% MFU").met is None


def test_to_dict_and_table():
    figs = [
        Figure("mfu", 61.0, "GFLOP/s", 100.0, "peak", ">= 60% MFU", note="N=1M"),
        Figure("speed", 300.0, "tok/s", 120.0, "ref", ">= 2x"),
        Figure("bf16", math.nan, "tok/s", 100.0, "fp32", ">= 1.6x"),
    ]
    d = figs[1].to_dict()
    assert d["ratio"] == pytest.approx(2.5) and d["met"] is True and d["name"] == "speed"
    lines = format_table(figs).splitlines()
    assert lines[0].split(" | ")[0].strip() == "name"
    bars = [i for i, ch in enumerate(lines[0]) if ch == "|"]
    assert [i for i, ch in enumerate(lines[1]) if ch == "+"] == bars  # aligned columns
    assert all([i for i, ch in enumerate(line) if ch == "|"] == bars for line in lines[2:5])
    assert "61.0%" in lines[2] and lines[2].rstrip().endswith("yes")
    assert "2.50x" in lines[3]
    assert "n/a" in lines[4] and lines[4].rstrip().endswith("-")
    assert lines[-1] == "[1] N=1M"


def test_timeit_counts_reps_and_returns_median():
    calls = []
    t = timeit(lambda: calls.append(1), warmup=2, min_time=0.0, min_reps=5)
    assert len(calls) == 7 and t >= 0
    seen = {"a": 0, "b": 0}
    out = timeit_many(
        {k: (lambda k=k: seen.__setitem__(k, seen[k] + 1)) for k in seen},
        warmup=1,
        min_time=0.0,
        min_reps=3,
    )
    assert seen == {"a": 4, "b": 4} and set(out) == {"a", "b"}


# (c) every benchmark runs at tiny sizes and gives finite positive figures


def _finite_positive(figs, expect_nan=()):
    for f in figs:
        if f.name in expect_nan:
            assert math.isnan(f.value)
            continue
        assert math.isfinite(f.value) and f.value > 0, f
        assert f.baseline is None or (math.isfinite(f.baseline) and f.baseline > 0), f


@pytest.fixture(scope="module")
def peak():
    return measure_peak(quick=True, n=128, min_time=0.05)


def test_peak_smoke(peak):
    assert peak["fp32_gflops"] > 0 and peak["fp32_matmul_gflops"] > 0
    assert peak["threads"] >= 1 and peak["cpu"]
    assert peak["bf16_supported"] == bf16_support()[0]
    assert (peak["bf16_gflops"] or 0) > 0 or not peak["bf16_supported"]


def test_train_smoke(beta, peak):
    figs = compute.train_figures(
        "small", beta, peak, batch=4, seq_len=8, mfu_goal=">= 60% MFU", **FAST
    )
    assert len(figs) == 2 and figs[0].unit == "GFLOP/s" and figs[0].met is not None
    _finite_positive(figs, expect_nan=() if peak["bf16_supported"] else (figs[1].name,))


def test_greedy_decode_smoke(beta):
    """The padded batch against the per-length path, at mixed prefix lengths (the figure
    itself checks that both give the same tokens)."""
    figs = compute.greedy_figures(beta, rows=6, lengths=range(2, 5), new_tokens=3, **FAST)
    assert [f.baseline_name for f in figs] == ["per length"]
    assert "groups" in figs[0].note
    _finite_positive(figs)


def test_train_without_bf16_gives_a_row_saying_why(beta, peak):
    no_bf16 = {**peak, "bf16_supported": False, "bf16_reason": "CPU has neither"}
    figs = compute.train_figures("small", beta, no_bf16, batch=2, seq_len=5, **FAST)
    assert math.isnan(figs[1].value) and figs[1].met is None
    assert figs[1].note == "no bf16: CPU has neither"
    if peak["bf16_supported"]:
        skipped = compute.train_figures(
            "small", beta, peak, batch=2, seq_len=5, bf16_skipped="not now", **FAST
        )
        assert math.isnan(skipped[1].value) and skipped[1].note == "not now"


def test_sampling_smoke(beta):
    figs = compute.sampling_figures("small", beta, batch=4, new_tokens=3, **FAST)
    assert [f.baseline_name for f in figs] == ["generate", "no cache"]
    assert figs[0].goal is None and "on rdx's kernels" in figs[0].name  # the sampler's share
    stock = compute.sampling_figures(
        "small", beta, batch=4, new_tokens=3, reference=copy.deepcopy(beta), **FAST
    )
    assert stock[0].goal == ">= 2x" and "stock model" in stock[0].note
    _finite_positive(figs + stock)


def test_kernel_figures_compare_the_two_routes(beta, reward):
    fast = [use_kernels(copy.deepcopy(m), "onednn") for m in (beta, reward)]
    figs = compute.kernel_figures(fast[0], beta, fast[1], reward, rows=8, **FAST)
    assert [f.baseline_name for f in figs] == ["torch kernels"] * 3
    _finite_positive(figs)


def test_scoring_smoke(beta, reward, peak):
    figs = compute.scoring_figures(beta, reward, peak, rows=6, seq_len=10, batch_size=4, **FAST)
    assert len(figs) == 2 and all(f.goal == ">= 60% MFU" for f in figs)
    _finite_positive(figs)
