"""The trainer's data, checked from outside it on one smoke run: each trajectory reaches the
loss with its own R_i and β_i, and the epoch's train/reward recomputed by a separate decoder.

The epoch mean of r̂ and the trace's length would not change if the rows of (tokens, R, β)
were shuffled against each other; these tests look up each row's own scores by its tokens.
"""

import copy
import json
import math

import pytest
import torch

from rdx.method.dropout import quantile_keep
from rdx.pipeline.offpolicy import trainer
from rdx.pipeline.offpolicy.artifacts import prepare
from rdx.records import RunRecords
from rdx.run import execute
from tests.cli.test_config import compose_cfg

pytestmark = pytest.mark.slow

EPS = 1e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One smoke epoch (4 steps of 32 of the 128 rows, quantile γ=0.8), with what reached
    each step's loss and each step's greedy decode recorded on the way."""
    cache, run_dir = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("run")
    cfg = compose_cfg("experiment=smoke", f"cache_dir={cache}", "trainer.epochs=1")
    steps, decodes = [], []
    gradient, greedy_reward = trainer.compute_gradient, trainer.OffPolicy.greedy_reward

    def recording_gradient(policy, x, mask, reward, behavior_prob, keep, **kwargs):
        steps.append([t.detach().clone() for t in (x, reward, behavior_prob, keep)])
        return gradient(policy, x, mask, reward, behavior_prob, keep, **kwargs)

    def recording_greedy_reward(self, prefixes, step):
        # π right after this step's update, and the prefixes it continues
        decodes.append((copy.deepcopy(self.policy.state_dict()), prefixes))
        return greedy_reward(self, prefixes, step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "compute_gradient", recording_gradient)
        mp.setattr(trainer.OffPolicy, "greedy_reward", recording_greedy_reward)
        execute(cfg, run_dir)
    return cfg, prepare(cfg), run_dir, steps, decodes


def own_scores(prep) -> dict[tuple[int, ...], tuple[float, float]]:
    """(R_i, β_i) of each stored trajectory, keyed by its tokens (equal tokens, equal scores)."""
    data = prep.sets[0]
    reward = data.reward("logit", prep.label)
    table: dict[tuple[int, ...], set[tuple[float, float]]] = {}
    for i in range(len(data.seqs)):
        row = tuple(data.seqs.tokens[i].tolist())
        table.setdefault(row, set()).add((reward[i].item(), data.behavior_prob[i].item()))
    assert all(len(v) == 1 for v in table.values())
    return {row: next(iter(v)) for row, v in table.items()}


def test_each_trajectory_reaches_the_loss_with_its_own_reward_and_likelihood(run):
    cfg, prep, run_dir, steps, _ = run
    scores = own_scores(prep)
    seen = []
    for x, reward, beta, keep in steps:
        rows = [tuple(r) for r in x.tolist()]
        seen += rows
        want = torch.tensor([scores[r] for r in rows])
        assert reward.tolist() == pytest.approx(want[:, 0].tolist(), abs=0)
        assert beta.tolist() == pytest.approx(want[:, 1].tolist(), abs=0)
        # d_i from this batch's own r̂: the quantile of the rows that are in it
        r_hat = want[:, 0] + torch.log(want[:, 1] + EPS)
        assert torch.equal(keep, quantile_keep(r_hat, cfg.gamma))
    assert len(steps) == 4 and sorted(seen) == sorted(
        tuple(r) for r in prep.sets[0].seqs.tokens.tolist()
    )  # one epoch: every row once
    logged = [r for r in RunRecords(run_dir).read_metrics() if r["kind"] == "step"]
    for record, (x, *_) in zip(logged, steps, strict=True):
        own = [scores[tuple(r)] for r in x.tolist()]
        r_hat = sum(rw + math.log(b + EPS) for rw, b in own) / len(own)
        assert record["train/r_hat_mean"] == pytest.approx(r_hat, abs=1e-5)
    # the traced batch (Fig. 6): rows 0..B-1 of the first set, with their own r̂, in order
    trace = json.loads((run_dir / "trace.jsonl").read_text().splitlines()[0])
    probe = prep.sets[0].seqs.tokens[: cfg.trainer.batch_size].tolist()
    want = [scores[tuple(r)][0] + math.log(scores[tuple(r)][1] + EPS) for r in probe]
    assert trace["r_hat"] == pytest.approx(want, abs=1e-5)


def greedy_text(policy, codec, prefix: list[int], new_tokens: int, eos_id: int) -> str:
    """π's greedy continuation of one prefix, one token at a time with no padding or cache
    (rdx's sampler decodes a left-padded batch with a KV cache), decoded as text."""
    row = list(prefix)
    with torch.no_grad():
        for _ in range(new_tokens):
            token = int(policy(input_ids=torch.tensor([row])).logits[0, -1].argmax())
            row.append(token)
            if token == eos_id:
                break
    return codec.tokenizer.decode(row, skip_special_tokens=True)


def test_train_reward_is_the_attribute_probability_of_the_updated_policys_greedy_text(run):
    """train/reward (half the paper's Acc+Reward): R's softmax probability of the attribute
    for the greedy continuation, by π after each step's update, of that batch's prefixes,
    averaged over the batch and then over the epoch's steps."""
    cfg, prep, run_dir, _, decodes = run
    assert prep.decoding["repetition_penalty"] == 1.0  # smoke: plain argmax decoding
    policy = trainer.build_policy(cfg, prep, torch.device("cpu"))
    per_step = []
    for state, prefixes in decodes:
        policy.load_state_dict(state)
        probs = []
        for i in range(len(prefixes)):
            prefix = prefixes.tokens[i, : int(prefixes.prefix_lens[i])].tolist()
            text = greedy_text(policy, prep.policy_codec, prefix, prep.new_tokens, prep.eos_id)
            enc = prep.reward_tokenizer(text, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                logits = prep.reward_model(**enc).logits[0].double()
            probs.append(torch.softmax(logits, -1)[prep.label].item())
        per_step.append(sum(probs) / len(probs))
    assert len(per_step) == 4
    epoch = [r for r in RunRecords(run_dir).read_metrics() if r["kind"] == "epoch"][-1]
    assert epoch["train/reward"] == pytest.approx(sum(per_step) / len(per_step), abs=1e-5)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reward"] == pytest.approx(epoch["train/reward"], abs=1e-12)
