"""The training run: π learns off-policy from β's stored trajectories (paper Eq. 7, Alg. 1).

rdx.pipeline.loop runs it (resume, records, checkpoints); `OffPolicy` is what differs: per
epoch take that epoch's sample set (sampling.fresh_per_epoch), shuffle, and per batch
decide d_i (reward dropout), take a gradient step, decode the paper's train/reward; then
evaluate on held-out prefixes and trace a fixed batch. The data are π-token `Sequences` and
a precomputed mask (rdx.pipeline.offpolicy.artifacts), whether or not π shares β's
tokenizer. On CUDA out-of-memory a step is retried in micro-batches of half the size.
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
from rdx.finite import check_step
from rdx.lm.kernels import use_kernels
from rdx.lm.lora import add_lora, load_trainable_state, lora_axes, trainable_state
from rdx.lm.models import (
    cast_frozen,
    fixed_dtype,
    freeze_all_but_last_layer,
    hub_causal_lm,
    policy_load_dtype,
    resolve_device,
    tiny_gpt2,
    uniform_init,
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
from rdx.pipeline import ddp, loop
from rdx.pipeline.offpolicy.artifacts import Prepared
from rdx.pipeline.offpolicy.decoding import authors_axes, greedy_decoding
from rdx.pipeline.offpolicy.evaluate import attribute_prob, evaluate
from rdx.pipeline.offpolicy.online import online_batch, online_generator
from rdx.records import RunRecords

log = logging.getLogger("rdx")

_ORDER, _DROPOUT, _EVAL = 1, 2, 3  # random streams of an epoch (loop.stream)


def build_policy(cfg: Config, prep: Prepared, device: torch.device) -> torch.nn.Module:
    """π on `device`: a hub architecture (pretrained or random init), a copy of β, or rdx's
    tiny GPT-2 in the corpus tokenizer (init=uniform: either architecture, every weight
    redrawn from U(±0.05) as the authors' random init); float32 trained weights, dropout
    off (eval mode): π's probabilities feed the importance ratio π/β, which dropout noise
    would bias."""
    fixed = fixed_dtype(device, cfg.trainer.precision)
    if cfg.model.hub is not None:
        m = cfg.model
        dtype = policy_load_dtype(m.trainable, m.init, fixed)
        policy = hub_causal_lm(m.hub, m.init, cfg.seed, device=device, dtype=dtype)
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
    if cfg.model.init == "uniform":  # the authors' random init, over the architecture's own
        uniform_init(policy, cfg.seed)
    if cfg.model.trainable == "last_layer":
        freeze_all_but_last_layer(policy)
    if cfg.model.trainable == "lora":  # adapters only (rdx.lm.lora)
        policy = add_lora(policy, **vars(cfg.model.lora))  # r, alpha, target_modules, dropout
    if cfg.model.trainable in ("last_layer", "lora"):
        # Frozen weights go straight to their fixed dtype, never through float32 (27 GB for
        # OPT-6.7B); only the trained ones are made float32 (hub weights may be float16).
        cast_frozen(policy, fixed)
    for p in policy.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    policy = use_kernels(policy.eval(), prep.kernels)
    return policy.to(device)  # a no-op for hub weights loaded onto the device


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
    normalisation: str = "paper",
    micro_batch: int | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
    loss_fn: Callable[..., LossOutput] = reward_dropout_loss,
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
    loss_args = dict(is_clip=is_clip, entropy=entropy, normalisation=normalisation)
    if micro_batch is None or micro_batch >= len(x):
        with autocast(device, precision):
            logits = policy(input_ids=x[:, :-1]).logits
        out = loss_fn(logits, targets, mask, reward, behavior_prob, keep, **loss_args)
        scale(out.loss).backward()
        return out, masked_accuracy(logits.detach(), targets, mask)
    parts = range(0, len(x), micro_batch)
    with torch.no_grad(), autocast(device, precision):
        logits = torch.cat([policy(input_ids=x[i : i + micro_batch, :-1]).logits for i in parts])
    out = loss_fn(logits, targets, mask, reward, behavior_prob, keep, **loss_args)
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
    return loop.run(cfg, OffPolicy(cfg, prep, records), records, logger)


class OffPolicy:
    """Eq. 7 on β's stored samples, as rdx.pipeline.loop runs it: one epoch is a pass over
    that epoch's sample set in shuffled batches, each a reward-dropout gradient step."""

    shown = ("train/acc", "train/reward", "eval/likelihood", "eval/reward")

    def __init__(self, cfg: Config, prep: Prepared, records: RunRecords):
        self.cfg, self.prep, self.records = cfg, prep, records
        t = cfg.trainer
        # One process, or this rank's share of every batch under trainer.strategy=ddp.
        self.shard, self.device = ddp.start(
            t.strategy, resolve_device(t.device), t.batch_size, records
        )
        self.policy = build_policy(cfg, prep, self.device)
        self.model = self.policy  # what the gradient runs through: DDP-wrapped in begin()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        # fused: one kernel for all parameters, ~3x faster than the per-tensor loop on CPU.
        fused = self.device.type in ("cpu", "cuda") and all(
            p.dtype == torch.float32 for p in params
        )
        self.optimizer = torch.optim.Adam(params, lr=t.lr, fused=fused or None)
        # fp16 gradients underflow without loss scaling (nanoGPT does the same); a no-op else.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.state = {
            "model": _Trainable(self.policy),
            "optimizer": self.optimizer,
            "scaler": self.scaler,
        }

        n = len(prep.train)
        # drop the last partial batch: quantiles of a tiny batch are noise
        self.n_batches = n // t.batch_size
        if self.n_batches == 0:
            raise ValueError(f"trainer.batch_size={t.batch_size}: larger than the {n} trajectories")
        self.micro = [min(t.micro_batch or t.batch_size, t.batch_size)]  # halves on CUDA OOM
        self.probe = torch.arange(t.batch_size)  # a fixed batch traced every epoch (Fig. 6)
        self.probe_keep = _probe_keep(prep, self.probe, cfg).to(self.device)  # never changes
        self.start_epoch = 0
        self.sums: dict[str, list[torch.Tensor]] = {}

    def begin(self, start_epoch: int, records: RunRecords, logger: WandbLogger) -> None:
        self.start_epoch = start_epoch
        self.model = self.shard.wrap(self.policy)  # after resume: every rank holds its weights

    def measured(self, epoch: int) -> bool:
        """train/reward's greedy decoding and the held-out evaluation cost a third of an
        epoch; tables read the last epoch's, Fig. 3's curves every epoch's."""
        t = self.cfg.trainer
        return t.epoch_metrics == "every" or epoch == t.epochs - 1

    def train_epoch(self, epoch: int, step: int, log_step: loop.LogStep) -> int:
        cfg, prep, t = self.cfg, self.prep, self.cfg.trainer
        data = prep.sets[epoch % len(prep.sets)]
        # ALGO LOGIC: fixed per-sample quantities of this epoch's sample set (π's tokens).
        reward, beta = data.reward(cfg.reward.output, prep.label), data.behavior_prob
        chosen = keep_of_set(cfg.dropout, cfg.gamma, reward, beta, prep.groups)
        order = torch.randperm(len(prep.train), generator=loop.stream(cfg.seed, epoch, _ORDER))
        drop_gen = loop.stream(cfg.seed, epoch, _DROPOUT)
        measured = self.measured(epoch)
        # Per-step scalars stay on the device until a log point reads them (one host sync
        # per log point, none per step); summed in Python in step order, as .item() did.
        self.sums = sums = {"acc": [], "reward": []}
        bar = tqdm(
            range(self.n_batches),
            desc=f"epoch {epoch + 1}/{t.epochs}",
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )
        tic = time.perf_counter()
        tokens_seen = torch.zeros((), dtype=torch.long, device=self.device)
        for b in bar:
            idx = order[b * t.batch_size : (b + 1) * t.batch_size]
            rows = None if chosen is None else chosen[idx]
            x, mask = data.seqs.tokens[idx].to(self.device), data.mask[idx].to(self.device)
            r, bp = reward[idx].to(self.device), beta[idx].to(self.device)
            if cfg.sampling.online:  # β continues these prefixes afresh (offpolicy.online)
                gen = online_generator(cfg.seed, epoch, b, cfg.sampling.seed)
                fresh = online_batch(cfg, prep, data.seqs.select(idx), gen)
                x, mask, r, bp = (v.to(self.device) for v in fresh)
            keep = keep_of_batch(cfg.dropout, cfg.gamma, r, bp, drop_gen, _to(rows, self.device))
            out, acc = self.step(x, mask, r, bp, keep, step)
            if epoch == self.start_epoch and b == 0:
                # Wall-clock marks for the benchmarks (start-up = process start → here).
                _mark(self.records, "first_step", epoch)
            # Paper-faithful table metrics on the training batch: teacher-forced accuracy on
            # all samples (kept or not) from this step's forward pass, before the update (free,
            # so every epoch), and R of the updated π's greedy continuations of the batch's
            # prefixes (in `measured` epochs).
            sums["acc"].append(acc.mean())
            if measured:
                mine = idx[self.shard.rows(len(idx))]  # this rank's rows; gathered after
                sums["reward"].append(self.greedy_reward(data.seqs.select(mine), step))
            step += 1
            tokens_seen += mask.sum().long()  # scored tokens, not EOS filler
            if step % t.log_every == 0 or b == self.n_batches - 1:
                record = self.step_record(out, keep, tokens_seen, tic)  # the one host sync
                bar.set_postfix(
                    loss=f"{record['train/loss']:.3f}", keep=f"{record['train/keep_frac']:.2f}"
                )
                log_step(epoch, step, record)
        bar.close()
        return step

    def step(
        self, x, mask, reward, behavior_prob, keep, step: int
    ) -> tuple[LossOutput, torch.Tensor]:
        """One optimisation step on a batch (retried in halved micro-batches on CUDA OOM)."""
        t = self.cfg.trainer
        self.optimizer.zero_grad(set_to_none=True)
        mine = self.shard.rows(len(x))  # this rank's rows of the batch (all with one process)
        gradient = partial(
            compute_gradient,
            self.model,
            x[mine],
            mask[mine],
            reward[mine],
            behavior_prob[mine],
            keep[mine],
            device=self.device,
            precision=t.precision,
            is_clip=t.is_clip,
            entropy=t.entropy,
            normalisation=t.normalisation,
            scale=self.shard.scale(self.scaler.scale),  # × world size under DDP
            loss_fn=self.shard.loss_fn(),  # the clip from the global Σw² under DDP
        )
        out, acc = _retry_on_oom(
            gradient,
            "micro_batch",
            self.micro,
            f"step {step + 1}",
            on_retry=lambda: self.optimizer.zero_grad(set_to_none=True),
        )
        out, acc = self.shard.gather_output(out, acc)  # the whole batch's, for the metrics
        # fp16's GradScaler skips steps with inf gradients itself: check only the loss.
        params = None if self.scaler.is_enabled() else self.optimizer.param_groups[0]["params"]
        check_step(step + 1, out.loss, params)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out, acc

    def greedy_reward(self, prefixes, step: int) -> torch.Tensor:
        """The paper's train/reward of one batch: R's mean attribute probability of the
        updated π's greedy continuations of the batch's prefixes (a 0-dim tensor)."""
        prep = self.prep
        decode = partial(
            sample_sequences,
            self.policy,
            prefixes,
            prep.new_tokens,
            temperature=0,
            eos_id=prep.eos_id,
            **greedy_decoding(prep.decoding, self.cfg.eval.greedy),
        )
        greedy = _retry_on_oom(
            decode, "batch_size", self.micro, f"greedy decoding of step {step + 1}"
        )
        return self.shard.gather(attribute_prob(prep, greedy)).mean()

    def step_record(self, out: LossOutput, keep, tokens: torch.Tensor, tic: float) -> dict:
        """The logged scalars of a step, read from the device at once; tokens/s counts the
        scored tokens since `tic`, timed after the read (the device has caught up)."""
        values = [out.loss, out.r_hat.mean(), keep.float().mean(), out.is_weight.max(), tokens]
        loss, r_hat, keep_frac, w_max, tokens = _read(values)
        return {
            "train/loss": loss,
            "train/r_hat_mean": r_hat,
            "train/keep_frac": keep_frac,
            "train/is_weight_max": w_max,
            "perf/tokens_per_s": tokens / (time.perf_counter() - tic),
            "perf/micro_batch": self.micro[0],
        }

    def evaluate(self, epoch: int) -> tuple[dict[str, Any], list[dict] | None]:
        rec = {
            "train/sample_set": epoch % len(self.prep.sets),
            "train/acc": sum(_read(self.sums["acc"])) / self.n_batches,
        }
        if not self.measured(epoch):
            return rec, None
        eval_metrics, samples = evaluate(
            self.policy,
            self.prep,
            temperature=self.cfg.sampling.temperature,
            generator=loop.stream(self.cfg.seed, epoch, _EVAL),
            metric_set=self.cfg.eval.metrics,
            greedy=self.cfg.eval.greedy,
        )
        reward = sum(_read(self.sums["reward"])) / self.n_batches
        rec.update({"train/reward": reward, **eval_metrics})
        return rec, samples

    def trace(self, epoch: int) -> dict[str, Any]:
        return _trace(self.policy, self.prep, self.probe, self.probe_keep, self.cfg, self.device)

    def finish(self, records: RunRecords) -> None:
        _mark(records, "trained", self.cfg.trainer.epochs - 1)
        self.shard.close()

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        return _summary(self.cfg, self.prep, history)


class _Trainable:
    """π's weights as checkpoint.pt holds them: a LoRA π's adapters only, else all."""

    def __init__(self, policy: torch.nn.Module):
        self.policy = policy

    def state_dict(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.policy)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.policy, state)


def _read(scalars: list[torch.Tensor]) -> list[float]:
    """The Python numbers of 0-dim tensors, each exactly as its .item() gives it, in one
    transfer per (device, dtype): stacking never changes a dtype, so nothing is rounded."""
    out: list[float] = [0.0] * len(scalars)
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(scalars):
        groups.setdefault((t.device, t.dtype), []).append(i)
    for rows in groups.values():
        values = torch.stack([scalars[i].detach() for i in rows]).tolist()
        for i, v in zip(rows, values, strict=True):
            out[i] = v
    return out


def _to(rows: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if rows is None else rows.to(device)


def _mark(records: RunRecords, event: str, epoch: int) -> None:
    records.append_metrics({"kind": "perf", "event": event, "epoch": epoch, "time": time.time()})


def _probe_keep(prep: Prepared, probe: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The keep decision of the traced batch: rows `probe` of the first sample set, under the
    run's rule, with the dropout stream of epoch 0 (fixed, so the heatmap's rows align)."""
    reward = prep.reward(cfg.reward.output)
    chosen = keep_of_set(cfg.dropout, cfg.gamma, reward, prep.behavior_prob, prep.groups)
    rows = None if chosen is None else chosen[probe]
    r, bp = reward[probe], prep.behavior_prob[probe]
    return keep_of_batch(cfg.dropout, cfg.gamma, r, bp, loop.stream(cfg.seed, 0, _DROPOUT), rows)


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
    last = history[-1] if history else {}  # none: diverged in the first epoch (loop.diverged)
    s = cfg.sampling
    return {
        **loop.headline(last.get("train/acc"), last.get("train/reward"), last),
        "reward_model_accuracy": prep.reward_accuracy,
        **({} if prep.judge is None else {"judge_accuracy": prep.judge.accuracy}),
        **loop.axes(cfg),
        **lora_axes(cfg.model.trainable, cfg.model.lora),
        # an axis of the random arm only: a quantile run with it set is the same run
        "random_replacement": (
            cfg.dropout.random_replacement if cfg.dropout.mode == "random" else None
        ),
        "temperature": s.temperature,
        "stop_at_eos": s.stop_at_eos,
        "top_k": s.top_k,
        "repetition_penalty": s.repetition_penalty,
        "prefix_pool": s.prefix_pool,
        "fresh_per_epoch": s.fresh_per_epoch,
        "sample_set": s.seed,
        "kernels": prep.kernels,
        "n_trajectories": len(prep.train),
        "n_eval_prefixes": len(prep.eval),  # what was evaluated (sampling.eval_prefixes caps)
        **authors_axes(cfg),
    }
