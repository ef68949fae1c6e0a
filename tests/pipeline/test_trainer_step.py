"""π's training step (rdx.pipeline.offpolicy.trainer.compute_gradient): micro-batches, precision,
CUDA OOM retry."""

import functools
import json
import logging
import time

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
)

from rdx.lm.sampling import Sequences
from rdx.pipeline.offpolicy.trainer import compute_gradient
from rdx.records import RunRecords
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


# ------------------------------------------------------------------ memory: OOM and precision


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=50,
            n_positions=16,
            n_embd=16,
            n_layer=1,
            n_head=2,
            resid_pdrop=0,
            embd_pdrop=0,
            attn_pdrop=0,
        )
    )
    x = torch.randint(0, 50, (16, 10), generator=g)
    seqs = Sequences(x, torch.full((16,), 3), torch.randint(5, 11, (16,), generator=g))
    r = torch.randn(16, generator=g)
    bp = torch.rand(16, generator=g) * 0.5
    keep = torch.rand(16, generator=g) > 0.3
    return policy, x, seqs.mask(), r, bp, keep


def test_micro_batches_give_the_same_gradient():
    grads = {}
    for micro in (16, 5):
        policy, x, mask, r, bp, keep = _batch()
        cpu = torch.device("cpu")
        out, acc = compute_gradient(policy, x, mask, r, bp, keep, device=cpu, micro_batch=micro)
        grads[micro] = (torch.cat([p.grad.flatten() for p in policy.parameters()]), out, acc)
    (g16, o16, a16), (g5, o5, a5) = grads[16], grads[5]
    assert torch.allclose(g16, g5, atol=1e-6, rtol=1e-4) and g16.abs().max() > 0
    assert torch.allclose(o16.coef, o5.coef, atol=1e-6) and torch.allclose(a16, a5)


def test_bf16_autocast_keeps_coefficients_float32():
    policy, x, mask, r, bp, keep = _batch()
    cpu = torch.device("cpu")
    out, _ = compute_gradient(policy, x, mask, r, bp, keep, device=cpu, precision="bf16")
    assert out.coef.dtype == torch.float32 and out.r_hat.dtype == torch.float32
    assert torch.isfinite(out.loss) and all(p.grad is not None for p in policy.parameters())


@pytest.mark.slow
def test_cuda_oom_halves_the_micro_batch_and_retries(cache, tmp_path, monkeypatch, caplog):
    """An injected CUDA OOM for more than 8 rows: the step is retried in micro-batches of 8
    (32 → 16 → 8), logged, and the run ends as an unconstrained one does."""
    full = tmp_path / "full"
    execute(_cfg(cache), full)
    original = GPT2LMHeadModel.forward

    @functools.wraps(original)  # the sampler reads forward's signature
    def forward(self, input_ids=None, **kwargs):
        if torch.is_grad_enabled() and input_ids is not None and len(input_ids) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "forward", forward)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        execute(_cfg(cache), tmp_path / "oom")
    assert "retrying with micro-batches of 16" in caplog.text
    assert "retrying with micro-batches of 8" in caplog.text
    steps = [r for r in RunRecords(tmp_path / "oom").read_metrics() if r["kind"] == "step"]
    assert {r["perf/micro_batch"] for r in steps} == {8}
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((tmp_path / "oom" / "summary.json").read_text())
    losses = [
        [r["train/loss"] for r in RunRecords(d).read_metrics() if r["kind"] == "step"]
        for d in (full, tmp_path / "oom")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-6)
    assert b["acc_plus_reward"] == pytest.approx(a["acc_plus_reward"], abs=1e-3)


def test_loss_scale_multiplies_the_gradient_and_nothing_else():
    """fp16 runs back-propagate GradScaler.scale(J): the gradient is scale × the plain one,
    in both the whole-batch and the micro-batch path, and J itself is unscaled."""
    cpu = torch.device("cpu")
    grads = {}
    for name, kwargs in {
        "plain": {},
        "scaled": {"scale": lambda loss: loss * 1024.0},
        "scaled_micro": {"scale": lambda loss: loss * 1024.0, "micro_batch": 5},
    }.items():
        policy, x, mask, r, bp, keep = _batch()
        out, _ = compute_gradient(policy, x, mask, r, bp, keep, device=cpu, **kwargs)
        grads[name] = (torch.cat([p.grad.flatten() for p in policy.parameters()]), out.loss)
    plain, plain_loss = grads["plain"]
    for name in ("scaled", "scaled_micro"):
        scaled, loss = grads[name]
        torch.testing.assert_close(scaled, plain * 1024.0, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loss, plain_loss)


def test_token_logprobs_of_bf16_logits_match_the_float32_ones():
    """Half-precision logits go row by row through float32: the same values as converting
    the whole batch, which the docstring promises not to do."""
    from rdx.method.objective import token_logprobs

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 40, generator=g).bfloat16()
    targets = torch.randint(0, 40, (3, 5), generator=g)
    want = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    got = token_logprobs(logits, targets)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------ host syncs


def test_logged_metrics_equal_the_per_step_reads(cache, tmp_path, monkeypatch):
    """The scalars kept on the device and read at log points give the records that reading
    each step's values with .item() gave: step records at every log point (here every 3rd
    step and the last), train/acc and train/reward of the epoch, tokens/s's token count."""
    from types import SimpleNamespace

    from rdx.pipeline.offpolicy import trainer

    seen, rewards = [], []
    step, greedy = trainer.OffPolicy.step, trainer.OffPolicy.greedy_reward

    def per_step(self, x, mask, *args):
        out, acc = step(self, x, mask, *args)
        keep = args[2]
        seen.append(
            {
                "train/loss": out.loss.item(),
                "train/r_hat_mean": out.r_hat.mean().item(),
                "train/keep_frac": keep.float().mean().item(),
                "train/is_weight_max": out.is_weight.max().item(),
                "acc": acc.mean().item(),
                "tokens": int(mask.sum().item()),
            }
        )
        return out, acc

    def greedy_reward(self, *args):
        value = greedy(self, *args)
        rewards.append(value.item())
        return value

    monkeypatch.setattr(trainer.OffPolicy, "step", per_step)
    monkeypatch.setattr(trainer.OffPolicy, "greedy_reward", greedy_reward)
    # one second from tic to every log point: perf/tokens_per_s is the token count itself
    clock = iter([0.0] + [1.0] * 100)
    monkeypatch.setattr(
        trainer, "time", SimpleNamespace(perf_counter=lambda: next(clock), time=time.time)
    )
    cfg = _cfg(cache, "trainer.batch_size=8", "trainer.log_every=3", "dropout=random")
    execute(cfg, tmp_path)
    records = RunRecords(tmp_path).read_metrics()
    steps = {r["step"]: r for r in records if r["kind"] == "step"}
    assert sorted(steps) == [3, 6, 9, 12, 15, 16]
    for s, rec in steps.items():
        want = seen[s - 1]
        for key in ("train/loss", "train/r_hat_mean", "train/keep_frac", "train/is_weight_max"):
            assert rec[key] == want[key], (s, key)
        assert rec["perf/tokens_per_s"] == sum(v["tokens"] for v in seen[:s])
    (epoch,) = [r for r in records if r["kind"] == "epoch"]
    assert epoch["train/acc"] == sum(v["acc"] for v in seen) / 16
    assert epoch["train/reward"] == sum(rewards) / 16


def test_a_training_step_reads_the_device_once(cache, tmp_path, monkeypatch):
    """Between log points a step reads no value to the host but check_step's one flag (the
    loss and every gradient finite, so no NaN reaches the weights); a log point reads its
    scalars in one transfer per dtype. Counted over an epoch without the greedy metric."""
    import collections
    import traceback

    from rdx.pipeline.offpolicy import trainer

    reads, counting = collections.Counter(), [False]
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, name)

        def read(self, *a, _original=original, _name=name, **k):
            if counting[0]:
                rdx = [f for f in traceback.extract_stack()[:-1] if "/rdx/" in f.filename]
                reads[(_name, rdx[-1].name if rdx else "?")] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, read)
    train_epoch = trainer.OffPolicy.train_epoch

    def counted(self, epoch, *args):
        counting[0] = epoch == 0  # epoch_metrics=last: epoch 0 decodes no greedy metric
        try:
            return train_epoch(self, epoch, *args)
        finally:
            counting[0] = False

    monkeypatch.setattr(trainer.OffPolicy, "train_epoch", counted)
    execute(
        _cfg(cache, "trainer.epochs=2", "trainer.batch_size=8", "trainer.log_every=8"), tmp_path
    )
    # 16 steps, log points at steps 8 and 16: float32 scalars and the long token count
    assert reads == {("__bool__", "check_step"): 16, ("tolist", "_read"): 2 * 2}
