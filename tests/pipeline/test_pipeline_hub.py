"""The whole pipeline with β, π and R of different tokenizers (hub architectures,
local dirs), end to end."""

import json
import logging
from pathlib import Path

import pytest
import torch

from rdx.lm.sampling import Sequences, sequence_prob
from rdx.pipeline.offpolicy.artifacts import prepare
from rdx.run import execute
from tests.cli.test_config import compose_cfg

# ------------------------------------------------------------------ end to end


def _cfg(cache, *overrides):
    return compose_cfg(
        "experiment=smoke",
        f"cache_dir={cache}",
        "trainer.threads=1",
        "trainer.epochs=1",
        *overrides,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_three_tokenizers_end_to_end(hub, cache, tmp_path, caplog):
    """β tiny (corpus BPE), π an OPT (BOS, own BPE, random init), R a fine-tuned BERT
    (WordPiece): π trains on β's trajectories re-tokenised, and β scores π's samples in
    β's tokens."""
    cfg = _cfg(
        cache,
        f"model.hub={hub['opt']}",
        "model.name=opt",
        f"reward.hub={hub['bert']}",
        "reward.name=bert",
        "reward.train_lr=1e-3",
    )
    prep = prepare(cfg)
    assert not prep.shared_tokens
    # π's rows hold β's trajectories: the same text, in π's tokens, BOS first
    b_pre, b_cont, b_end = prep.behavior_codec.decode(
        Sequences.from_samples(
            torch.load(Path(prep.paths["trajectories"]) / "trajectories.pt")["train"][0]["tokens"],
            4,
            prep.behavior_codec.eos_id,
        )
    )
    assert prep.policy_codec.decode(prep.train) == (b_pre, b_cont, b_end)
    assert (prep.train.tokens[:, 0] == prep.policy_codec.eos_id).all()  # OPT's BOS
    assert prep.mask.shape == (len(prep.train), prep.train.tokens.shape[1] - 1)
    assert prep.mask.sum(1).tolist() == (prep.train.lengths - prep.train.prefix_lens).tolist()
    metrics = json.loads((Path(prep.paths["reward"]) / "metrics.json").read_text())
    assert metrics["heldout_accuracy"] == prep.reward_accuracy and metrics["n_test"] > 0
    with caplog.at_level(logging.INFO, logger="rdx"):
        result = execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result == pytest.approx(summary["acc"] + summary["reward"])
    assert summary["model_hub"] == hub["opt"] and summary["reward_model"] == "bert"
    assert 0 < summary["eval/likelihood"] < 1 and 0 < summary["eval/reward"] < 1
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    samples = [s for s in samples if "source" not in s]  # Table 6's PPLM rows follow
    assert [s["prefix"] for s in samples] == prep.eval_prefix_texts
    # eval/likelihood: β's probability of π's text, re-tokenised for β
    in_behavior = prep.behavior_codec.encode(
        prep.eval_prefix_texts, [s["generation"] for s in samples], [s["ended"] for s in samples]
    )
    want = sequence_prob(prep.behavior, in_behavior)
    assert [s["likelihood"] for s in samples] == pytest.approx(want.tolist(), abs=1e-6)
    assert summary["eval/likelihood"] == pytest.approx(want.mean().item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "behavior, model, init, shared",
    [("gpt2", "xglm", "random", False), ("xglm", "xglm", "behavior", True)],
)
def test_hub_behavior_with_hub_target(hub, cache, tmp_path, behavior, model, init, shared):
    """A hub β (not trained; its own tokenizer) with a hub π: different tokenizers, or π a
    copy of β reading β's own tokens."""
    cfg = _cfg(
        cache,
        f"behavior.hub={hub[behavior]}",
        f"model.hub={hub[model]}",
        f"model.init={init}",
    )
    from rdx.pipeline.offpolicy.trainer import build_policy

    prep = prepare(cfg)
    assert prep.shared_tokens is shared
    assert prep.paths["behavior"] == hub[behavior]  # used as is, not trained and cached
    policy = build_policy(cfg, prep, torch.device("cpu"))
    ours = policy.state_dict()
    if init == "behavior":  # π starts as a copy of β's weights
        theirs = prep.behavior.state_dict()
        assert all(torch.equal(v.float(), theirs[k].float()) for k, v in ours.items())
    else:  # π's architecture from its dir, its weights a fresh random init, not the dir's
        from transformers import AutoModelForCausalLM

        saved = AutoModelForCausalLM.from_pretrained(hub[model]).state_dict()
        common = ours.keys() & saved.keys()
        assert common and not all(torch.equal(ours[k].float(), saved[k].float()) for k in common)
    result = execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["init"] == init and result == pytest.approx(summary["acc"] + summary["reward"])
    assert 0 <= summary["acc"] <= 1 and 0 < summary["eval/reward"] < 1
