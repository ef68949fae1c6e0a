"""The training run: π learns off-policy from β's stored trajectories (paper Eq. 7, Alg. 1).

Reads top to bottom: build π, resume if a checkpoint exists, then per epoch take that
epoch's sample set (sampling.fresh_per_epoch), shuffle, step through batches with reward
dropout, evaluate on held-out prefixes, checkpoint. The data are π-token `Sequences` and a
precomputed mask (rdx.pipeline.artifacts), whether or not π shares β's tokenizer. On CUDA
out-of-memory a step is retried in micro-batches of half the size.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tqdm import tqdm

from rdx.config import Config, DropoutConfig
from rdx.lm.kernels import use_kernels
from rdx.lm.models import (
    cast_frozen,
    fixed_dtype,
    freeze_all_but_last_layer,
    hub_causal_lm,
    resolve_device,
    tiny_gpt2,
)
from rdx.lm.sampling import sample_sequences
from rdx.logger import WandbLogger
from rdx.method import SET_MODES
from rdx.method.dropout import keep_mask, set_keep_mask
from rdx.method.objective import (
    LossOutput,
    bi_objective_reward,
    masked_accuracy,
    masked_mean,
    reward_dropout_loss,
    token_logprobs,
)
from rdx.pipeline.artifacts import Prepared
from rdx.pipeline.evaluate import attribute_prob, evaluate
from rdx.records import RunRecords

log = logging.getLogger("rdx")

# Streams of randomness, each seeded from (run seed, epoch, stream) so that a run resumed
# from an epoch checkpoint replays exactly what an uninterrupted run would have done.
_ORDER, _DROPOUT, _EVAL = 1, 2, 3


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def build_policy(cfg: Config, prep: Prepared, device: torch.device) -> torch.nn.Module:
    """π on `device`: a hub architecture (pretrained or random init), a copy of β, or rdx's
    tiny GPT-2 in the corpus tokenizer; float32 weights, dropout off (eval mode): π's
    probabilities feed the importance ratio π/β, which dropout noise would bias."""
    if cfg.model.hub is not None:
        policy = hub_causal_lm(cfg.model.hub, cfg.model.init, cfg.seed)
    elif cfg.model.init == "behavior":
        policy = copy.deepcopy(prep.behavior)
    else:
        b = cfg.behavior
        policy = tiny_gpt2(
            len(prep.policy_codec.tokenizer),
            b.n_layer,
            b.n_embd,
            b.n_head,
            seed=cfg.seed,
            eos_id=prep.policy_codec.eos_id,
        )
    if cfg.model.trainable == "last_layer":
        freeze_all_but_last_layer(policy)
        cast_frozen(policy, fixed_dtype(device, cfg.trainer.precision))  # never made fp32
    for p in policy.parameters():  # trained weights in float32 (hub weights may be float16)
        if p.requires_grad:
            p.data = p.data.float()
    policy = use_kernels(policy.eval(), prep.kernels)
    return policy.to(device)


def autocast(device: torch.device, precision: str):
    """Mixed precision for π's forward passes (fp32: none); the loss coefficients are
    computed in float32 whatever the autocast (rdx.method.objective)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _retry_on_oom(fn, arg: str, micro: list[int], what: str, on_retry=None):
    """fn(**{arg: micro[0]}) with micro[0] halved (and kept halved) after each CUDA OOM.

    The paper had to shrink its batch from 256 to 64, 60, 58 to fit; here the algorithm's
    batch stays the same and only how much of it is on the GPU at once shrinks.
    """
    while True:
        try:
            return fn(**{arg: micro[0]})
        except torch.cuda.OutOfMemoryError:
            if on_retry is not None:
                on_retry()
            if micro[0] == 1:
                raise
            micro[0] = max(1, micro[0] // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning(
                "CUDA out of memory in %s: retrying with micro-batches of %d", what, micro[0]
            )


def keep_of_set(
    dropout: DropoutConfig,
    gamma: float | None,
    reward: torch.Tensor,
    behavior_prob: torch.Tensor,
    groups: torch.Tensor,
) -> torch.Tensor | None:
    """d_i of every sample of a set under a set rule (prompt_quantile, global_top), decided
    once before training on r̂_i = R_i + ln(β_i + ε); None for the paper's batch rules."""
    if dropout.mode not in SET_MODES:
        return None
    r_hat = bi_objective_reward(reward, behavior_prob)
    return set_keep_mask(dropout.mode, r_hat, gamma=gamma, groups=groups)


def keep_of_batch(
    dropout: DropoutConfig,
    gamma: float | None,
    reward: torch.Tensor,
    behavior_prob: torch.Tensor,
    generator: torch.Generator,
    chosen: torch.Tensor | None = None,
) -> torch.Tensor:
    """d_i of a batch: a set rule's decision for its rows (`chosen`, from keep_of_set), or
    the run's batch rule applied to r̂_i = R_i + ln(β_i + ε)."""
    if chosen is not None:
        return chosen
    r_hat = bi_objective_reward(reward, behavior_prob)
    return keep_mask(
        dropout.mode,
        r_hat,
        gamma=gamma,
        delta=dropout.delta,
        generator=generator,
        replacement=dropout.random_replacement,
    )


def compute_gradient(
    policy: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    reward: torch.Tensor,
    behavior_prob: torch.Tensor,
    keep: torch.Tensor,
    *,
    device: torch.device,
    precision: str = "fp32",
    is_clip: float | None = 1.0,
    entropy: bool = True,
    micro_batch: int | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[LossOutput, torch.Tensor]:
    """Backpropagate J = Σ_i a_i · CE_i of one batch into π's .grad; returns the LossOutput
    and π's teacher-forced accuracy per row (from the same forward pass, before the update).

    x (B, L) token rows, mask (B, L−1) scored positions, reward/behavior_prob/keep (B,).
    With `micro_batch` < B, a_i still depends on the whole batch (the quantile is taken
    before; the importance weights are clipped by their norm over the batch), so a no-grad
    pass first computes every a_i from the whole batch's logits, then the gradient of
    Σ a_i · CE_i is accumulated micro-batch by micro-batch: the same gradient, in less
    memory. `scale` multiplies the loss before backward (fp16's GradScaler.scale).
    """
    scale = scale or (lambda loss: loss)
    targets = x[:, 1:]
    loss_args = dict(is_clip=is_clip, entropy=entropy)
    if micro_batch is None or micro_batch >= len(x):
        with autocast(device, precision):
            logits = policy(input_ids=x[:, :-1]).logits
        out = reward_dropout_loss(logits, targets, mask, reward, behavior_prob, keep, **loss_args)
        scale(out.loss).backward()
        return out, masked_accuracy(logits.detach(), targets, mask)
    parts = range(0, len(x), micro_batch)
    with torch.no_grad(), autocast(device, precision):
        logits = torch.cat([policy(input_ids=x[i : i + micro_batch, :-1]).logits for i in parts])
    out = reward_dropout_loss(logits, targets, mask, reward, behavior_prob, keep, **loss_args)
    acc = masked_accuracy(logits, targets, mask)
    del logits
    for i in parts:
        rows = slice(i, i + micro_batch)
        with autocast(device, precision):
            part = policy(input_ids=x[rows, :-1]).logits
        ce = -masked_mean(token_logprobs(part, targets[rows]), mask[rows])  # CE_i, as J's
        scale((out.coef[rows] * ce).sum()).backward()
    return out, acc


def train(cfg: Config, prep: Prepared, records: RunRecords, logger: WandbLogger) -> dict[str, Any]:
    """Run (or resume) training; returns the summary written to summary.json."""
    t = cfg.trainer
    device = resolve_device(t.device)
    policy = build_policy(cfg, prep, device)
    params = [p for p in policy.parameters() if p.requires_grad]
    # fused: one kernel for all parameters, ~3x faster than the per-tensor loop on CPU.
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in params)
    optimizer = torch.optim.Adam(params, lr=t.lr, fused=fused or None)
    # fp16 gradients underflow without loss scaling (nanoGPT does the same); a no-op else.
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")

    start_epoch, step, history = 0, 0, []
    checkpoint = records.load_checkpoint()
    if checkpoint is not None:
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, step, history = checkpoint["epoch"], checkpoint["step"], checkpoint["history"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log.info(
            "resuming from %s at epoch %d (step %d)", records.checkpoint_path, start_epoch, step
        )
    # Records of a partial epoch after the checkpoint would be logged twice otherwise.
    records.trim_metrics(start_epoch)
    records.trim_metrics(start_epoch, "trace.jsonl")

    n = len(prep.train)
    batch = t.batch_size
    n_batches = n // batch  # drop the last partial batch: quantiles of a tiny batch are noise
    if n_batches == 0:
        raise ValueError(f"trainer.batch_size={batch}: larger than the {n} trajectories")
    micro = [min(t.micro_batch or batch, batch)]  # rows per forward pass; halves on CUDA OOM
    probe = torch.arange(batch)  # a fixed batch traced every epoch for the Fig. 6 heatmap
    probe_keep = _probe_keep(prep, probe, cfg).to(device)  # its keep decision never changes

    for epoch in range(start_epoch, t.epochs):
        # ALGO LOGIC: fixed per-sample quantities of this epoch's sample set (π's tokens).
        data = prep.sets[epoch % len(prep.sets)]
        tokens, masks = data.seqs.tokens, data.mask
        reward, beta = data.reward(cfg.reward.output, prep.label), data.behavior_prob
        chosen = keep_of_set(cfg.dropout, cfg.gamma, reward, beta, prep.groups)
        order = torch.randperm(n, generator=_generator(cfg.seed, epoch, _ORDER))
        drop_gen = _generator(cfg.seed, epoch, _DROPOUT)
        # train/reward's greedy decoding and the held-out evaluation cost a third of an
        # epoch; tables read the last epoch's, Fig. 3's curves every epoch's.
        measured = t.epoch_metrics == "every" or epoch == t.epochs - 1
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
            rows = None if chosen is None else chosen[idx].to(device)
            keep = keep_of_batch(cfg.dropout, cfg.gamma, r, bp, drop_gen, rows)
            optimizer.zero_grad(set_to_none=True)
            gradient = partial(
                compute_gradient,
                policy,
                x,
                mask,
                r,
                bp,
                keep,
                device=device,
                precision=t.precision,
                is_clip=t.is_clip,
                entropy=t.entropy,
                scale=scaler.scale,
            )
            out, acc = _retry_on_oom(
                gradient,
                "micro_batch",
                micro,
                f"step {step + 1}",
                on_retry=lambda: optimizer.zero_grad(set_to_none=True),
            )
            scaler.step(optimizer)
            scaler.update()
            if epoch == start_epoch and b == 0:
                # Wall-clock marks for the benchmarks (start-up = process start → here).
                _mark(records, "first_step", epoch)

            # Paper-faithful table metrics on the training batch: teacher-forced accuracy on
            # all samples (kept or not) from this step's forward pass, before the update (free,
            # so every epoch), and R of the updated π's greedy continuations of the batch's
            # prefixes (in `measured` epochs).
            sums["acc"] += acc.mean().item()
            if measured:
                decode = partial(
                    sample_sequences,
                    policy,
                    data.seqs.select(idx),
                    prep.new_tokens,
                    temperature=0,
                    eos_id=prep.eos_id,
                    **prep.decoding,
                )
                greedy = _retry_on_oom(
                    decode, "batch_size", micro, f"greedy decoding of step {step + 1}"
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
                    "perf/micro_batch": micro[0],
                }
                records.append_metrics({"kind": "step", "step": step, "epoch": epoch, **rec})
                logger.log(rec, step=step)
        bar.close()

        epoch_rec = {
            "train/sample_set": epoch % len(prep.sets),
            "train/acc": sums["acc"] / n_batches,
        }
        if measured:
            eval_metrics, samples = evaluate(
                policy,
                prep,
                temperature=cfg.sampling.temperature,
                generator=_generator(cfg.seed, epoch, _EVAL),
            )
            epoch_rec.update({"train/reward": sums["reward"] / n_batches, **eval_metrics})
            records.write_jsonl("samples.jsonl", samples)
        history.append(epoch_rec)
        records.append_metrics({"kind": "epoch", "epoch": epoch, "step": step, **epoch_rec})
        logger.log({"epoch": epoch + 1, **epoch_rec}, step=step)
        records.append_jsonl(
            "trace.jsonl",
            {"epoch": epoch, **_trace(policy, prep, probe, probe_keep, cfg, device)},
        )
        shown = ("train/acc", "train/reward", "eval/likelihood", "eval/reward")
        log.info(
            "epoch %d/%d  %s",
            epoch + 1,
            t.epochs,
            "  ".join(
                f"{k.removeprefix('train/')} {epoch_rec[k]:.3f}" for k in shown if k in epoch_rec
            ),
        )
        records.save_checkpoint(
            {
                "model": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "wandb_id": getattr(logger.run, "id", None),
            }
        )

    _mark(records, "trained", t.epochs - 1)
    return _summary(cfg, prep, history)


def _mark(records: RunRecords, event: str, epoch: int) -> None:
    records.append_metrics({"kind": "perf", "event": event, "epoch": epoch, "time": time.time()})


def _probe_keep(prep: Prepared, probe: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The keep decision of the traced batch: rows `probe` of the first sample set, under the
    run's rule, with the dropout stream of epoch 0 (fixed, so the heatmap's rows align)."""
    reward = prep.reward(cfg.reward.output)
    chosen = keep_of_set(cfg.dropout, cfg.gamma, reward, prep.behavior_prob, prep.groups)
    rows = None if chosen is None else chosen[probe]
    r, bp = reward[probe], prep.behavior_prob[probe]
    return keep_of_batch(cfg.dropout, cfg.gamma, r, bp, _generator(cfg.seed, 0, _DROPOUT), rows)


@torch.no_grad()
def _trace(policy, prep: Prepared, probe, keep, cfg: Config, device) -> dict[str, list]:
    """r̂, π̄ and the (fixed) keep decision of a fixed batch of the first sample set (Fig. 6
    heatmap): its rows, its mask and its scores, whichever set the epoch trained on."""
    x = prep.train.tokens[probe].to(device)
    mask = prep.mask[probe].to(device)
    r = prep.reward(cfg.reward.output)[probe].to(device)
    bp = prep.behavior_prob[probe].to(device)
    logits = policy(input_ids=x[:, :-1]).logits
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
        # an axis of the random arm only: a quantile run with it set is the same run
        "random_replacement": (
            cfg.dropout.random_replacement if cfg.dropout.mode == "random" else None
        ),
        "temperature": cfg.sampling.temperature,
        "stop_at_eos": cfg.sampling.stop_at_eos,
        "top_k": cfg.sampling.top_k,
        "repetition_penalty": cfg.sampling.repetition_penalty,
        "prefix_pool": cfg.sampling.prefix_pool,
        "fresh_per_epoch": cfg.sampling.fresh_per_epoch,
        "seed": cfg.seed,
        "epochs": cfg.trainer.epochs,
        "lr": cfg.trainer.lr,
        "kernels": prep.kernels,
        "sweep": cfg.sweep,
        "n_trajectories": len(prep.train),
    }
