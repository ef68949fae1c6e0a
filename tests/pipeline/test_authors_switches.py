"""The authors' settings as switches (issue 20), each on a hand-computed case."""

import math

import pytest
import torch

from rdx.lm.length import at_least_tokens
from rdx.lm.processed import behavior_prob_of, processed_logprobs, processed_sequence_prob
from rdx.lm.sampling import sequence_prob
from rdx.lm.sequences import Sequences
from rdx.method.objective import authors_means, reward_dropout_loss

# ---------------------------------------------------------------- a. β_i processed


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits are [2, 1, −1] at every position."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        logits = torch.tensor([2.0, 1.0, -1.0]).expand(*input_ids.shape, 3)
        return type("Out", (), {"logits": logits + self.w})()


def test_processed_behavior_prob_by_hand():
    # Row: prefix token 0, then 1, 0. Penalty 2, temperature 0.5, top-k 2.
    seqs = Sequences.from_samples(torch.tensor([[0, 1, 0]]), prefix_len=1, eos_id=None)
    # t=0 predicts 1, seen {0}: [2/2, 1, −1] / 0.5 = [2, 2, −2], top-2 -> p(1) = 1/2.
    # t=1 predicts 0, seen {0, 1}: [1, 0.5, −1] / 0.5 = [2, 1, −2], top-2 -> e²/(e² + e).
    second = math.e**2 / (math.e**2 + math.e)
    got = processed_sequence_prob(
        FixedLogits(), seqs, temperature=0.5, top_k=2, repetition_penalty=2.0
    )
    assert got.item() == pytest.approx((0.5 + second) / 2)
    # raw: softmax([2, 1, −1]) at 1 and at 0.
    z = math.e**2 + math.e + math.e**-1
    assert sequence_prob(FixedLogits(), seqs).item() == pytest.approx(
        (math.e / z + math.e**2 / z) / 2
    )
    # With no processing the two agree.
    plain = processed_sequence_prob(FixedLogits(), seqs, temperature=1.0, top_k=None,
                                    repetition_penalty=1.0)  # fmt: skip
    assert plain.item() == pytest.approx(sequence_prob(FixedLogits(), seqs).item())


def test_processed_logprobs_rejects_greedy():
    with pytest.raises(ValueError, match="temperature=0"):
        processed_logprobs(torch.zeros(1, 1, 3), torch.zeros(1, 2, dtype=torch.long),
                           temperature=0, top_k=None, repetition_penalty=1.0)  # fmt: skip


def test_behavior_prob_switch_picks_the_function():
    from rdx.config import SamplingConfig

    assert behavior_prob_of(SamplingConfig()) is sequence_prob
    fn = behavior_prob_of(SamplingConfig(behavior_prob="processed", temperature=0.5, top_k=2,
                                         repetition_penalty=2.0))  # fmt: skip
    seqs = Sequences.from_samples(torch.tensor([[0, 1, 0]]), prefix_len=1, eos_id=None)
    second = math.e**2 / (math.e**2 + math.e)
    assert fn(FixedLogits(), seqs, batch_size=8).item() == pytest.approx((0.5 + second) / 2)


# ---------------------------------------------------------------- d. loss normalisation


def test_authors_normalisation_by_hand():
    # One row, two positions; position 0 scored with p(target) = 1/2, position 1 a pad
    # with p(target) = 3/4 (logits [ln 3, 0], target 0).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    targets = torch.tensor([[0, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    ce, pi = authors_means(
        torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0], mask
    )
    assert ce.item() == pytest.approx(math.log(2) / 2)  # ln 2 summed, / width 2
    assert pi.item() == pytest.approx((0.5 + 0.75) / 2)  # the pad's 3/4 included
    args = (logits, targets, mask, torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([True]))
    paper = reward_dropout_loss(*args)
    authors = reward_dropout_loss(*args, normalisation="authors")
    assert paper.ce.item() == pytest.approx(math.log(2)) and paper.pi_mean.item() == pytest.approx(
        0.5
    )
    assert authors.ce.item() == pytest.approx(math.log(2) / 2)
    assert authors.pi_mean.item() == pytest.approx(0.625)
    # a = w · (r̂ − ln π̄) with w = π̄ / (β + ε) (one row: ‖w‖ = w, clipped to 1 when > 1).
    eps = 1e-5
    w = min(0.625 / (0.5 + eps), 1.0)
    r_hat = 1.0 + math.log(0.5 + eps)
    coef = w * (r_hat - math.log(0.625 + eps))
    assert authors.coef.item() == pytest.approx(coef, rel=1e-5)
    assert authors.loss.item() == pytest.approx(coef * math.log(2) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="normalisation='mean': expected one of paper, authors"):
        reward_dropout_loss(*args, normalisation="mean")


# ---------------------------------------------------------------- e. the sentence filter


class SpaceTokenizer:
    """Tokens = whitespace words, with a special token the filter must not count."""

    def __call__(self, texts, add_special_tokens=True):
        extra = ["<s>"] if add_special_tokens else []
        return {"input_ids": [extra + t.split() for t in texts]}


def test_sentence_filter_counts_tokens_and_keeps_long_ones():
    texts = ["one two three", "a b", "w x y z", "p q r"]
    assert at_least_tokens(texts, SpaceTokenizer(), 3) == ["one two three", "w x y z", "p q r"]
    assert at_least_tokens(texts, SpaceTokenizer(), 4) == ["w x y z"]
    assert at_least_tokens([], SpaceTokenizer(), 4) == []
    with pytest.raises(ValueError, match="sampling.min_tokens=0"):
        at_least_tokens(texts, SpaceTokenizer(), 0)


# ---------------------------------------------------------------- paper_table1 defaults


def test_paper_table1_takes_each_switch_at_the_authors_choice(monkeypatch):
    from tests.cli.test_config import compose_cfg

    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)
    cfg = compose_cfg("experiment=paper_table1")
    assert cfg.sampling.behavior_prob == "processed"
    assert cfg.sampling.min_tokens == 30 and cfg.dataset.max_words == 1000
    assert cfg.trainer.normalisation == "authors"
    assert (cfg.eval.metrics, cfg.eval.greedy) == ("authors", "plain")
    # b. one continuation per prefix per epoch, a fresh set each epoch: epoch e trains on
    # set e mod 5 of 50 000 rows, 50 000 // 64 = 781 steps (rdx's earlier 50k × 10: 7 812).
    s, t = cfg.sampling, cfg.trainer
    assert (s.samples_per_prefix, s.fresh_per_epoch, t.epochs) == (1, 5, 5)
    assert s.num_prefixes * s.samples_per_prefix // t.batch_size == 781
    # The defaults stay DESIGN §2's.
    default = compose_cfg()
    assert (default.sampling.behavior_prob, default.trainer.normalisation) == ("raw", "paper")
    assert default.sampling.min_tokens is None and default.eval.greedy == "sampling"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.metrics=bleu", "eval.metrics='bleu': expected one of authors, rdx"),
        ("eval.greedy=beam", "eval.greedy='beam': expected one of sampling, plain"),
        ("sampling.behavior_prob=tempered",
         "sampling.behavior_prob='tempered': expected one of raw, processed"),
        ("trainer.normalisation=mean",
         "trainer.normalisation='mean': expected one of paper, authors"),
        ("sampling.min_tokens=0", "sampling.min_tokens=0: expected a number > 0"),
    ],
)  # fmt: skip
def test_bad_switch_values_name_key_value_and_allowed(override, message):
    from rdx.config import ConfigError
    from tests.cli.test_config import compose_cfg

    with pytest.raises(ConfigError) as err:
        compose_cfg(override)
    assert str(err.value) == message


# ---------------------------------------------------------------- g. model.init=uniform


def _uniform_policy(init: str = "uniform", seed: int = 0):
    from types import SimpleNamespace

    from rdx.pipeline.offpolicy.trainer import build_policy
    from tests.cli.test_config import compose_cfg

    cfg = compose_cfg(f"model.init={init}", f"seed={seed}", "behavior.n_layer=1",
                      "behavior.n_embd=16", "behavior.n_head=2")  # fmt: skip
    codec = SimpleNamespace(tokenizer=range(40), eos_id=0)  # a 40-token vocabulary
    prep = SimpleNamespace(policy_codec=codec, behavior=None, kernels="torch")
    return build_policy(cfg, prep, torch.device("cpu"))


def test_uniform_init_redraws_every_weight_in_range_and_is_seeded():
    pi, default = _uniform_policy(), _uniform_policy("random")
    names = [n for n, _ in pi.named_parameters()]
    assert any("ln_" in n for n in names) and any(n.endswith("bias") for n in names)
    for (name, p), q in zip(pi.named_parameters(), default.parameters(), strict=True):
        assert p.abs().max() <= 0.05, name  # the authors' U(−0.05, 0.05)
        # touched: no value left as GPT-2's init had it (LayerNorm 1 and 0, zero biases)
        assert (p != q).all(), name
    emb = pi.transformer.wte.weight  # 640 draws: a uniform's sd is 0.1 / √12 = 0.0289
    assert emb.std().item() == pytest.approx(0.1 / math.sqrt(12), rel=0.1)
    assert emb.mean().abs().item() < 0.005
    assert pi.lm_head.weight.data_ptr() == emb.data_ptr()  # still tied: drawn once
    again, other = _uniform_policy(), _uniform_policy(seed=1)
    pairs = list(zip(pi.parameters(), again.parameters(), other.parameters(), strict=True))
    assert all(torch.equal(p, a) for p, a, _ in pairs)  # one seed, one π
    assert not any(torch.equal(p, o) for p, _, o in pairs)  # another seed, every weight new
