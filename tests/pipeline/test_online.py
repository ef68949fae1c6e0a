"""Online sampling (sampling.online, the authors' Fig. 3) and sweeps=fig3_authors."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from rdx.config import Config, SamplingConfig
from rdx.lm.models import tiny_gpt2
from rdx.lm.processed import processed_sequence_prob
from rdx.lm.sequences import Sequences
from rdx.pipeline.offpolicy import online


class IdCodec:
    def texts(self, seqs):
        return [
            " ".join(map(str, row[: int(n)].tolist()))
            for row, n in zip(seqs.tokens, seqs.lengths, strict=True)
        ]


def fake_prep():
    behavior = tiny_gpt2(16, 1, 16, 2, seed=0, eos_id=15).eval()
    return SimpleNamespace(
        shared_tokens=True, behavior=behavior, new_tokens=5, eos_id=15, label=1,
        behavior_codec=IdCodec(), reward_model=None, reward_tokenizer=None,
    )  # fmt: skip


def fake_logits(model, tokenizer, texts, **_):
    """R's class logits: class 1 = the number of words, class 0 = 0."""
    return torch.tensor([[0.0, float(len(t.split()))] for t in texts])


@pytest.fixture
def cfg():
    s = SamplingConfig(online=True, temperature=0.4, repetition_penalty=3.0, prefix_len=2,
                       total_len=7, stop_at_eos=False, behavior_prob="processed")  # fmt: skip
    return dataclasses.replace(Config(), sampling=s)


def test_online_batch_samples_afresh_from_the_prefixes(cfg, monkeypatch):
    monkeypatch.setattr(online, "classifier_logits", fake_logits)
    prep = fake_prep()
    stored = torch.tensor([[1, 2, 9, 9, 9, 9, 9], [3, 4, 9, 9, 9, 9, 9]])
    rows = Sequences.from_samples(stored, 2, None)
    x, mask, r, beta = online.online_batch(cfg, prep, rows, online.online_generator(0, 3, 1))
    assert x.shape == (2, 7) and (x[:, :2] == stored[:, :2]).all()
    assert not (x[:, 2:] == 9).all()  # new continuations, not the stored ones
    assert mask.tolist() == [[0, 1, 1, 1, 1, 1]] * 2  # the 5 continuation tokens
    assert r.tolist() == [7.0, 7.0]  # R's logit of class 1: 7 words
    seqs = Sequences.from_samples(x, 2, None)
    want = processed_sequence_prob(prep.behavior, seqs, temperature=0.4, top_k=None,
                                   repetition_penalty=3.0)  # fmt: skip
    assert torch.allclose(beta, want)
    # One stream per (seed, epoch, batch): the same batch replays, another differs.
    again = online.online_batch(cfg, prep, rows, online.online_generator(0, 3, 1))[0]
    other = online.online_batch(cfg, prep, rows, online.online_generator(0, 3, 2))[0]
    assert torch.equal(again, x) and not torch.equal(other, x)


def test_online_needs_shared_tokens(cfg):
    prep = SimpleNamespace(shared_tokens=False)
    rows = Sequences.from_samples(torch.zeros(1, 7, dtype=torch.long), 2, None)
    with pytest.raises(ValueError, match="sampling.online=true: π and β must share a tokenizer"):
        online.online_batch(cfg, prep, rows, online.online_generator(0, 0, 0))


def test_fig3_authors_preset_and_its_compositions():
    from tests.cli.test_sweeps import job_config, sweep_jobs

    cfg = job_config("sweeps=fig3_authors", "+sweeps/arm=quantile-0.95")
    s, t = cfg.sampling, cfg.trainer
    assert (s.online, s.temperature, s.repetition_penalty) == (True, 0.4, 3.0)
    assert (s.prefix_len, s.total_len - s.prefix_len) == (2, 15)
    assert (t.epochs, t.lr, t.batch_size, t.epoch_metrics) == (20, 5e-4, 256, "every")
    assert (cfg.dropout.mode, cfg.gamma, cfg.sweep) == ("quantile", 0.95, "fig3_authors")
    assert cfg.eval.greedy == "plain"  # their generate(do_sample=False): no penalty
    assert len(sweep_jobs("fig3_authors")) == 2 * 4 * 6 * 3
    # With experiment=smoke: smoke sizes, the authors' regime.
    small = job_config("sweeps=fig3_authors", "experiment=smoke", "+sweeps/arm=none")
    assert (small.trainer.epochs, small.trainer.batch_size, small.sampling.num_prefixes) == (
        2,
        32,
        64,
    )
    assert (small.sampling.online, small.sampling.prefix_len, small.trainer.lr) == (True, 2, 5e-4)
    assert small.eval.greedy == "plain"
    # With attribute=...: one attribute's grid (2 inits × 4 arms × 3 seeds).
    jobs = sweep_jobs("fig3_authors", "attribute=negative")
    assert len(jobs) == 24 and all("attribute=negative" in job for job in jobs)


def test_online_refuses_set_ranking_dropout():
    from rdx.config import ConfigError
    from tests.cli.test_config import compose_cfg

    with pytest.raises(ConfigError, match="dropout=global_top with sampling.online=true"):
        compose_cfg("sampling.online=true", "dropout=global_top")
