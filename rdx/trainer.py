"""The training run: π learns off-policy from β's stored trajectories (paper Eq. 7, Alg. 1).

Reads top to bottom: build π, resume if a checkpoint exists, then per epoch shuffle, step
through batches with reward dropout, evaluate on held-out prefixes, checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from typing import Any

import torch
from tqdm import tqdm

from rdx.artifacts import Prepared
from rdx.config import Config
from rdx.dropout import keep_mask
from rdx.evaluate import attribute_prob, evaluate
from rdx.logger import WandbLogger
from rdx.models import freeze_all_but_last_layer, tiny_gpt2
from rdx.objective import bi_objective_reward, masked_accuracy, reward_dropout_loss
from rdx.records import RunRecords
from rdx.sampling import continuation_mask, sample

log = logging.getLogger("rdx")

# Streams of randomness, each seeded from (run seed, epoch, stream) so that a run resumed
# from an epoch checkpoint replays exactly what an uninterrupted run would have done.
_ORDER, _DROPOUT, _EVAL = 1, 2, 3


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_policy(cfg: Config, prep: Prepared) -> torch.nn.Module:
    if cfg.model.hub is not None:
        from rdx.models import load_hub

        policy = load_hub("causal", cfg.model.hub)
        if cfg.model.init == "random":
            torch.manual_seed(cfg.seed)
            policy = type(policy)(policy.config)
    elif cfg.model.init == "behavior":
        policy = copy.deepcopy(prep.behavior)
    else:
        b = cfg.behavior
        policy = tiny_gpt2(
            len(prep.tokenizer),
            b.n_layer,
            b.n_embd,
            b.n_head,
            seed=cfg.seed,
            eos_id=prep.tokenizer.eos_token_id,
        )
    if cfg.model.trainable == "last_layer":
        freeze_all_but_last_layer(policy)
    return policy


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(cfg: Config, prep: Prepared, records: RunRecords, logger: WandbLogger) -> dict[str, Any]:
    """Run (or resume) training; returns the summary written to summary.json."""
    t = cfg.trainer
    device = resolve_device(t.device)
    policy = build_policy(cfg, prep).to(device)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=t.lr)

    start_epoch, step, history = 0, 0, []
    checkpoint = records.load_checkpoint()
    if checkpoint is not None:
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, step, history = checkpoint["epoch"], checkpoint["step"], checkpoint["history"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log.info(
            "resuming from %s at epoch %d (step %d)", records.checkpoint_path, start_epoch, step
        )
    # Records of a partial epoch after the checkpoint would be logged twice otherwise.
    records.trim_metrics(start_epoch)
    records.trim_metrics(start_epoch, "trace.jsonl")

    # ALGO LOGIC: fixed per-sample quantities of the stored trajectories.
    tokens = prep.tokens
    reward = prep.reward(cfg.reward.output)
    beta = prep.behavior_prob
    n, length = tokens.shape
    batch = t.batch_size
    n_batches = n // batch  # drop the last partial batch: quantiles of a tiny batch are noise
    if n_batches == 0:
        raise ValueError(f"trainer.batch_size={batch}: larger than the {n} trajectories")
    masks = continuation_mask(
        tokens, prep.prefix_len, eos_id=prep.eos_id, score_prefix=t.score_prefix
    )
    probe = torch.arange(batch)  # a fixed batch traced every epoch for the Fig. 6 heatmap
    mode, gamma, delta = cfg.dropout.mode, cfg.gamma, cfg.dropout.delta

    for epoch in range(start_epoch, t.epochs):
        order = torch.randperm(n, generator=_generator(cfg.seed, epoch, _ORDER))
        drop_gen = _generator(cfg.seed, epoch, _DROPOUT)
        sums = {"acc": 0.0, "reward": 0.0}
        bar = tqdm(
            range(n_batches),
            desc=f"epoch {epoch + 1}/{t.epochs}",
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )
        tic, tokens_seen = time.perf_counter(), 0
        for b in bar:
            idx = order[b * batch : (b + 1) * batch]
            x, mask = tokens[idx].to(device), masks[idx].to(device)
            r, bp = reward[idx].to(device), beta[idx].to(device)
            with _autocast(device, t.precision):
                logits = policy(input_ids=x[:, :-1]).logits
            keep = keep_mask(
                mode, bi_objective_reward(r, bp), gamma=gamma, delta=delta, generator=drop_gen
            )
            out = reward_dropout_loss(
                logits, x[:, 1:], mask, r, bp, keep, is_clip=t.is_clip, entropy=t.entropy
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

            # Paper-faithful table metrics, on the training batch before this update's effect:
            # teacher-forced accuracy on all samples (kept or not), and R of π's greedy
            # continuations of the batch's prefixes.
            sums["acc"] += masked_accuracy(logits.detach(), x[:, 1:], mask).mean().item()
            greedy = sample(
                policy,
                x[:, : prep.prefix_len],
                length - prep.prefix_len,
                temperature=0,
                eos_id=prep.eos_id,
            )
            sums["reward"] += attribute_prob(prep, greedy).mean().item()
            step += 1
            tokens_seen += int(mask.sum().item())  # scored tokens, not EOS filler
            bar.set_postfix(loss=f"{out.loss.item():.3f}", keep=f"{keep.float().mean().item():.2f}")
            if step % t.log_every == 0 or b == n_batches - 1:
                rec = {
                    "train/loss": out.loss.item(),
                    "train/r_hat_mean": out.r_hat.mean().item(),
                    "train/keep_frac": keep.float().mean().item(),
                    "train/is_weight_max": out.is_weight.max().item(),
                    "perf/tokens_per_s": tokens_seen / (time.perf_counter() - tic),
                }
                records.append_metrics({"kind": "step", "step": step, "epoch": epoch, **rec})
                logger.log(rec, step=step)
        bar.close()

        eval_metrics, samples = evaluate(
            policy,
            prep,
            total_len=length,
            temperature=cfg.sampling.temperature,
            generator=_generator(cfg.seed, epoch, _EVAL),
        )
        epoch_rec = {
            "train/acc": sums["acc"] / n_batches,
            "train/reward": sums["reward"] / n_batches,
            **eval_metrics,
        }
        history.append(epoch_rec)
        records.append_metrics({"kind": "epoch", "epoch": epoch, "step": step, **epoch_rec})
        logger.log({"epoch": epoch + 1, **epoch_rec}, step=step)
        records.append_jsonl(
            "trace.jsonl",
            {"epoch": epoch, **_trace(policy, prep, probe, cfg, masks[probe].to(device), device)},
        )
        records.write_jsonl("samples.jsonl", samples)
        log.info(
            "epoch %d/%d  acc %.3f  reward %.3f  eval/likelihood %.3f  eval/reward %.3f",
            epoch + 1,
            t.epochs,
            epoch_rec["train/acc"],
            epoch_rec["train/reward"],
            epoch_rec["eval/likelihood"],
            epoch_rec["eval/reward"],
        )
        records.save_checkpoint(
            {
                "model": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "wandb_id": getattr(logger.run, "id", None),
            }
        )

    return _summary(cfg, prep, history)


@torch.no_grad()
def _trace(policy, prep: Prepared, probe, cfg: Config, mask, device) -> dict[str, list]:
    """r̂, π̄ and the keep decision of a fixed batch (Fig. 6 heatmap)."""
    x = prep.tokens[probe].to(device)
    r = prep.reward(cfg.reward.output)[probe].to(device)
    bp = prep.behavior_prob[probe].to(device)
    logits = policy(input_ids=x[:, :-1]).logits
    keep = keep_mask(
        cfg.dropout.mode,
        bi_objective_reward(r, bp),
        gamma=cfg.gamma,
        delta=cfg.dropout.delta,
        generator=_generator(cfg.seed, 0, _DROPOUT),
    )
    out = reward_dropout_loss(logits, x[:, 1:], mask, r, bp, keep, is_clip=cfg.trainer.is_clip)
    return {"r_hat": out.r_hat.tolist(), "pi_mean": out.pi_mean.tolist(), "keep": keep.tolist()}


def _summary(cfg: Config, prep: Prepared, history: list[dict[str, Any]]) -> dict[str, Any]:
    last = history[-1]
    return {
        "acc": last["train/acc"],
        "reward": last["train/reward"],
        "acc_plus_reward": last["train/acc"] + last["train/reward"],
        **{k: v for k, v in last.items() if k.startswith("eval/")},
        "reward_model_accuracy": prep.reward_accuracy,
        "dataset": cfg.dataset.name,
        "attribute": cfg.attribute,
        "model": cfg.model.name,
        "model_hub": cfg.model.hub,
        "trainable": cfg.model.trainable,
        "behavior": cfg.behavior.name,
        "reward_model": cfg.reward.name,
        "init": cfg.model.init,
        "dropout": cfg.dropout.mode,
        "gamma": cfg.gamma,
        "delta": cfg.dropout.delta,
        "seed": cfg.seed,
        "epochs": cfg.trainer.epochs,
        "lr": cfg.trainer.lr,
        "sweep": cfg.sweep,
        "n_trajectories": len(prep.tokens),
    }
