"""Held-out evaluation of π, every epoch (DESIGN §3).

π continues held-out prefixes it never trained on; β scores the likelihood and R the reward
of what it wrote (the paper's β(τ̂) and R(τ̂) for τ̂ ~ π), and the generations are compared
with the held-out sentences that share the prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from rdx.artifacts import Prepared
from rdx.objective import masked_accuracy
from rdx.sampling import classifier_logits, continuation_mask, mean_token_prob, sample


@torch.no_grad()
def teacher_forced_accuracy(
    policy: PreTrainedModel,
    tokens: torch.Tensor,
    prefix_len: int,
    eos_id: int | None = None,
    batch_size: int = 256,
) -> float:
    """Mean masked argmax accuracy of π on continuation tokens (the paper's Acc)."""
    device = next(policy.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(tokens), batch_size):
        x = tokens[start : start + batch_size].to(device)
        logits = policy(input_ids=x[:, :-1]).logits
        mask = continuation_mask(x, prefix_len, eos_id=eos_id)
        total += masked_accuracy(logits, x[:, 1:], mask).sum().item()
        count += len(x)
    return total / max(count, 1)


@torch.no_grad()
def attribute_prob(prep: Prepared, tokens: torch.Tensor) -> torch.Tensor:
    """R's softmax probability of the run's attribute for each trajectory (the reward metric)."""
    texts = prep.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    logits = classifier_logits(prep.reward_model, prep.reward_tokenizer, texts)
    return torch.softmax(logits, -1)[:, prep.label]


def evaluate(
    policy: PreTrainedModel,
    prep: Prepared,
    *,
    total_len: int,
    temperature: float,
    generator: torch.Generator,
    text_metrics: bool = True,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """eval/* figures and the generated samples (prefix, generation, reward)."""
    p = prep.prefix_len
    eos = prep.eos_id
    gen = sample(
        policy,
        prep.eval_prefixes,
        total_len - p,
        temperature=temperature,
        generator=generator,
        eos_id=eos,
    )
    likelihood = mean_token_prob(prep.behavior, gen, p, eos_id=eos)
    reward = attribute_prob(prep, gen)
    full = prep.tokenizer.batch_decode(gen, skip_special_tokens=True)
    prefixes = prep.tokenizer.batch_decode(gen[:, :p], skip_special_tokens=True)
    continuations = prep.tokenizer.batch_decode(gen[:, p:], skip_special_tokens=True)

    from rdx.textmetrics import distinct_n

    metrics = {
        "eval/likelihood": likelihood.mean().item(),
        "eval/reward": reward.mean().item(),
        "eval/acc": teacher_forced_accuracy(policy, prep.eval_tokens, p, eos),
        # generated tokens up to and including EOS: short degenerate text shows up here
        "eval/length": continuation_mask(gen, p, eos_id=eos).sum(1).mean().item(),
        "eval/distinct2": distinct_n(continuations, 2),
    }
    if text_metrics:
        from rdx.textmetrics import text_metrics as compute

        scores = compute(full, prep.eval_references)
        metrics.update({f"eval/{k}": v for k, v in scores.items()})
    samples = [
        {"prefix": a, "generation": b, "reward": r, "likelihood": li}
        for a, b, r, li in zip(
            prefixes, continuations, reward.tolist(), likelihood.tolist(), strict=True
        )
    ]
    return metrics, samples
