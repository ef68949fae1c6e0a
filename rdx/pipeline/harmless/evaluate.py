"""What PPO and DPO share once built: the held-out evaluation, π_ref's baseline record and
the summary, as the harmlessness arms' common part of rdx.pipeline.loop's `Algorithm`."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from rdx.config import Config
from rdx.lm.sampling import sample_sequences
from rdx.logger import WandbLogger
from rdx.method.objective import masked_accuracy, masked_mean, token_logprobs
from rdx.pipeline import loop
from rdx.pipeline.harmless.artifacts import HarmlessPrepared
from rdx.records import RunRecords

EVAL_STREAM = 9  # the evaluation's random stream (trainers use 1-4)


@torch.no_grad()
def evaluate(
    policy: PreTrainedModel,
    prep: HarmlessPrepared,
    n_prompts: int,
    *,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[dict, list]:
    """π's responses to the first n held-out prompts: R's score, π_ref's likelihood,
    BLEU/ROUGE/METEOR against the chosen response, length, diversity; and π's teacher-forced
    accuracy on the held-out chosen responses.

    Sampled at the rollout temperature from a seeded stream, not greedy: a greedy tiny
    policy answers every harmful prompt the same way, so R's mean would only be a 0/1
    switch, while samples measure how often and how well π refuses."""
    from rdx.pipeline.textmetrics import distinct_n, text_metrics

    device = next(policy.parameters()).device
    pairs = prep.data.test[:n_prompts]
    prompts = [p.prompt for p in pairs]
    out = sample_sequences(
        policy,
        prep.prompt_rows(prompts),
        prep.new_tokens,
        temperature=temperature,
        generator=generator,
        eos_id=prep.eos_id,
    )
    _, responses, _ = prep.codec.decode(out)
    reward = prep.score(prompts, responses)
    mask = out.mask().to(device)
    x = out.tokens.to(device)
    ref_logp = token_logprobs(prep.reference(input_ids=x[:, :-1]).logits, x[:, 1:])
    likelihood = masked_mean(ref_logp.exp(), mask)
    chosen = prep.pair_rows(prompts, [p.chosen for p in pairs])
    cx = chosen.tokens.to(device)
    acc = masked_accuracy(policy(input_ids=cx[:, :-1]).logits, cx[:, 1:], chosen.mask().to(device))
    refs = [[p.chosen.strip() or "."] for p in pairs]
    metrics = {
        "eval/reward": reward.mean().item(),
        "eval/likelihood": likelihood.mean().item(),
        "eval/acc": acc.mean().item(),
        **{f"eval/{k}": v for k, v in text_metrics(responses, refs).items()},
        "eval/length": (out.lengths - out.prefix_lens).float().mean().item(),
        "eval/distinct2": distinct_n(responses, 2),
    }
    samples = [
        {"prompt": p.prompt, "response": resp, "reward": rew, "chosen": p.chosen}
        for p, resp, rew in zip(pairs, responses, reward.tolist(), strict=True)
    ]
    return metrics, samples


def evaluate_at(policy, prep: HarmlessPrepared, cfg: Config, epoch: int) -> tuple[dict, list]:
    """The evaluation after `epoch` (−1: before training), on a stream fixed by (seed,
    epoch), so that the arms of a seed see the same draws and a resumed run replays them."""
    return evaluate(
        policy,
        prep,
        cfg.algo.eval_prompts,
        temperature=cfg.algo.temperature,
        generator=loop.stream(cfg.seed, epoch, EVAL_STREAM),
    )


class HarmlessArm:
    """The part of loop.Algorithm that PPO and DPO share: π starts as π_ref; every epoch
    ends with the held-out evaluation; a fresh run first records π_ref's own figures."""

    shown = ("eval/reward", "eval/likelihood", "eval/meteor")

    def __init__(self, cfg: Config, prep: HarmlessPrepared, policy: PreTrainedModel):
        self.cfg, self.prep, self.policy = cfg, prep, policy

    def begin(self, start_epoch: int, records: RunRecords, logger: WandbLogger) -> None:
        if start_epoch == 0:  # π_ref's own figures, the baseline every arm starts from
            metrics, _ = evaluate_at(self.policy, self.prep, self.cfg, epoch=-1)
            records.append_metrics({"kind": "init", "epoch": 0, "step": 0, **metrics})
            logger.log({"epoch": 0, **metrics}, step=0)

    def evaluate(self, epoch: int) -> tuple[dict[str, Any], list[dict]]:
        return evaluate_at(self.policy, self.prep, self.cfg, epoch)

    def trace(self, epoch: int) -> None:
        return None

    def finish(self, records: RunRecords) -> None:
        pass

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """summary.json of a PPO or DPO run: the last epoch's eval/* and the run's axes.

        `reward` is R's mean score of π's held-out responses (Fig. 4's reward), `acc` π's
        held-out teacher-forced accuracy on the chosen responses; `acc_plus_reward` keeps
        the off-policy runs' key so that every run's summary has it (a sum of unlike
        scales here)."""
        cfg, last = self.cfg, history[-1] if history else {}  # none: diverged in epoch 1
        return {
            **loop.headline(last.get("eval/acc"), last.get("eval/reward"), last),
            "reward_model_accuracy": self.prep.reward_accuracy,
            "algo": cfg.algo.name,
            "score": getattr(cfg.algo, "score", None),  # PPO's; DPO has no score
            **loop.axes(cfg),
            "init": "reference",
            "n_pairs": len(self.prep.data.train),
        }
