"""PPO with reward dropout, one readable file in the style of CleanRL (docs/design.md §10).

    python -m rdx.train experiment=harmless                      # PPO + R.D. (quantile 0.8)
    python -m rdx.train experiment=harmless algo=ppo dropout=none

Per epoch, the training prompts are shuffled and cut into rollout batches of
trainer.batch_size prompts. Per rollout batch: π samples a response to each prompt; R scores
it; the frozen π_ref gives ln π_ref per token; reward dropout keeps d_i on r̂ = R + ln π_ref
(algo.score); token rewards (KL penalty + R at the end), GAE, advantages whitened over the
batch and zeroed for dropped responses; then algo.ppo_epochs passes of clipped policy +
value loss over minibatches, dropped responses outside every mean (rdx.method.ppo). A
scalar value head on π's last hidden state shares π's trunk. rdx.pipeline.loop runs the
epochs (each ends with the held-out evaluation and a checkpoint).

Why not TRL's PPO: TRL 1.x removed its PPOTrainer (trl.experimental has no ppo module in
1.16), and the 0.x PPOTrainer computes scores inside its train() loop with no hook on the
batch's scores, so reward dropout could not be inserted without copying that loop.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from rdx.config import Config
from rdx.finite import check_step, in_step
from rdx.lm.models import freeze_all_but_last_layer
from rdx.logger import WandbLogger
from rdx.method.objective import token_logprobs
from rdx.method.ppo import (
    dropout_score,
    gae,
    kept_advantages,
    ppo_loss,
    rollout_keep,
    sequence_prob,
    token_rewards,
)
from rdx.pipeline import loop
from rdx.pipeline.harmless.artifacts import HarmlessPrepared
from rdx.pipeline.harmless.evaluate import HarmlessArm
from rdx.records import RunRecords

_ORDER, _ROLLOUT, _DROPOUT, _MINIBATCH = 1, 2, 3, 4  # random streams (loop.stream)


class ValueHead(nn.Module):
    """V(state) from π's last hidden state; zero-initialised so that V starts at 0."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def forward(policy, head: ValueHead, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ln π of every next token (B, L−1) and V of every position (B, L−1), one pass."""
    out = policy(input_ids=x[:, :-1], output_hidden_states=True)
    return token_logprobs(out.logits, x[:, 1:]), head(out.hidden_states[-1])


def train(
    cfg: Config, prep: HarmlessPrepared, records: RunRecords, logger: WandbLogger
) -> dict[str, Any]:
    """Run (or resume) PPO; returns the summary written to summary.json."""
    return loop.run(cfg, PPO(cfg, prep), records, logger)


class PPO(HarmlessArm):
    """π (a copy of π_ref) and its value head, updated per rollout batch of
    trainer.batch_size training prompts; rdx.pipeline.loop runs the epochs."""

    def __init__(self, cfg: Config, prep: HarmlessPrepared):
        device = next(prep.reference.parameters()).device
        policy = copy.deepcopy(prep.reference).float().requires_grad_(True).eval()  # no dropout
        if cfg.model.trainable == "last_layer":
            freeze_all_but_last_layer(policy)
        super().__init__(cfg, prep, policy)
        self.head = ValueHead(policy.config.hidden_size).to(device)
        params = [p for p in policy.parameters() if p.requires_grad] + [*self.head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.trainer.lr)
        self.state = {"model": policy, "value_head": self.head, "optimizer": self.optimizer}
        self.prompts = [p.prompt for p in prep.data.train]
        self.batch = min(cfg.trainer.batch_size, len(self.prompts))
        self.n_batches = len(self.prompts) // self.batch  # the last partial batch is skipped

    def train_epoch(self, epoch: int, step: int, log_step: loop.LogStep) -> int:
        cfg, batch = self.cfg, self.batch
        order = torch.randperm(len(self.prompts), generator=loop.stream(cfg.seed, epoch, _ORDER))
        gens = {k: loop.stream(cfg.seed, epoch, k) for k in (_ROLLOUT, _DROPOUT, _MINIBATCH)}
        tic = time.perf_counter()
        for b in range(self.n_batches):
            idx = order[b * batch : (b + 1) * batch].tolist()
            prompts = [self.prompts[i] for i in idx]
            with in_step(step + 1):  # names the step in a non-finite loss's error
                rec = ppo_step(
                    cfg, self.prep, self.policy, self.head, self.optimizer, prompts, gens
                )
            step += 1
            if step % cfg.trainer.log_every == 0 or b == self.n_batches - 1:
                rec["perf/rollouts_per_s"] = (b + 1) * batch / (time.perf_counter() - tic)
                log_step(epoch, step, rec)
        return step


def ppo_step(
    cfg: Config,
    prep: HarmlessPrepared,
    policy,
    head: ValueHead,
    optimizer: torch.optim.Optimizer,
    prompts: list[str],
    gens: dict[int, torch.Generator],
) -> dict[str, float]:
    """One rollout batch: sample, score, keep, advantages, then the PPO updates."""
    a = cfg.algo
    device = next(policy.parameters()).device
    # ROLLOUT: π's own responses, scored by R, π_ref and the rollout-time π and V.
    from rdx.lm.sampling import sample_sequences

    with torch.no_grad():
        rows = sample_sequences(
            policy,
            prep.prompt_rows(prompts),
            prep.new_tokens,
            temperature=a.temperature,
            generator=gens[_ROLLOUT],
            eos_id=prep.eos_id,
        )
        _, responses, _ = prep.codec.decode(rows)
        reward = prep.score(prompts, responses).to(device)
        x, mask = rows.tokens.to(device), rows.mask().to(device)
        logp_old, values_old = forward(policy, head, x)
        logp_ref = token_logprobs(prep.reference(input_ids=x[:, :-1]).logits, x[:, 1:])
        ref_prob = sequence_prob(logp_ref, mask)
        # REWARD DROPOUT on the rollout batch, then advantages of the kept responses.
        keep = rollout_keep(
            cfg.dropout.mode,
            reward,
            ref_prob,
            score=a.score,
            gamma=cfg.gamma,
            delta=cfg.dropout.delta,
            generator=gens[_DROPOUT],
        )
        rewards = token_rewards(reward, logp_old, logp_ref, mask, a.kl_coef)
        adv, returns = gae(rewards, values_old, mask, discount=a.discount, lam=a.gae_lambda)
        adv = kept_advantages(adv, mask, keep)

    # PPO UPDATES over minibatches; dropped rows are outside every mean.
    sums: dict[str, float] = {"loss": 0.0, "policy": 0.0, "value": 0.0, "clipfrac": 0.0}
    n = 0
    for _ in range(a.ppo_epochs):
        perm = torch.randperm(len(x), generator=gens[_MINIBATCH])
        for start in range(0, len(x), a.minibatch):
            mb = perm[start : start + a.minibatch].to(device)
            if not keep[mb].any():
                continue  # nothing kept: no loss, no step (Adam would still move on a 0 grad)
            logp, values = forward(policy, head, x[mb])
            out = ppo_loss(
                logp,
                logp_old[mb],
                adv[mb],
                values,
                values_old[mb],
                returns[mb],
                mask[mb],
                keep[mb],
                clip=a.clip,
                vf_clip=a.vf_clip,
                vf_coef=a.vf_coef,
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            params = [p for g in optimizer.param_groups for p in g["params"]]
            check_step(f"PPO update {n + 1}", out.loss, params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            for k, v in (
                ("loss", out.loss),
                ("policy", out.policy),
                ("value", out.value),
                ("clipfrac", out.clipfrac),
            ):
                sums[k] += v.item()
            n += 1
    kl = ((logp_old - logp_ref) * mask).sum(-1)  # per response, at rollout time
    return {
        "train/loss": sums["loss"] / max(n, 1),
        "train/policy_loss": sums["policy"] / max(n, 1),
        "train/value_loss": sums["value"] / max(n, 1),
        "train/clipfrac": sums["clipfrac"] / max(n, 1),
        "train/reward": reward.mean().item(),
        "train/r_hat_mean": dropout_score(reward, ref_prob).mean().item(),
        "train/keep_frac": keep.float().mean().item(),
        "train/kl": kl.mean().item(),
        "train/length": (rows.lengths - rows.prefix_lens).float().mean().item(),
    }
