"""Held-out evaluation of π (docs/design.md §3): after the last epoch, or after every epoch with
trainer.epoch_metrics=every.

π continues held-out prefixes it never trained on; β scores the likelihood and R the reward
of what it wrote (the paper's β(τ̂) and R(τ̂) for τ̂ ~ π), and the generations are compared
with the held-out sentences that share the prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from rdx.lm.sampling import Sequences, classifier_logits, sample_sequences, sequence_prob
from rdx.method.objective import masked_accuracy
from rdx.pipeline.offpolicy.artifacts import Prepared


@torch.inference_mode()
def teacher_forced_accuracy(
    policy: PreTrainedModel, seqs: Sequences, batch_size: int = 256
) -> float:
    """Mean masked argmax accuracy of π on continuation tokens (the paper's Acc)."""
    device = next(policy.parameters()).device
    mask = seqs.mask()
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        x = seqs.tokens[start : start + batch_size].to(device)
        logits = policy(input_ids=x[:, :-1]).logits
        rows = mask[start : start + batch_size].to(device)
        total += masked_accuracy(logits, x[:, 1:], rows).sum().item()
        count += len(x)
    return total / max(count, 1)


@torch.no_grad()  # not inference_mode: the trainer sums it into normal tensors
def attribute_prob(prep: Prepared, seqs: Sequences) -> torch.Tensor:
    """R's softmax probability of the run's attribute for each of π's rows (the reward metric).

    R reads text, whatever tokenizer wrote the rows.
    """
    logits = classifier_logits(
        prep.reward_model, prep.reward_tokenizer, prep.policy_codec.texts(seqs)
    )
    return torch.softmax(logits, -1)[:, prep.label]


@torch.no_grad()
def text_attribute_prob(prep: Prepared, texts: list[str]) -> torch.Tensor:
    """R's softmax probability of the run's attribute for each text."""
    logits = classifier_logits(prep.reward_model, prep.reward_tokenizer, texts)
    return torch.softmax(logits, -1)[:, prep.label]


def evaluate(
    policy: PreTrainedModel,
    prep: Prepared,
    *,
    temperature: float,
    generator: torch.Generator,
    text_metrics: bool = True,
    metric_set: str = "authors",
    greedy: str = "sampling",
    examples: bool = True,
    batch_size: int = 512,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """eval/* figures and the generated samples (prefix, generation, reward).

    metric_set="rdx": π's samples against every held-out sentence sharing the prefix;
    "authors": π's greedy continuation (decoding per `greedy`) against the prefix's source
    sentence, the first held-out sentence that starts with it (rdx keeps one row per distinct
    prefix; the authors one per test sentence).
    """
    gen = sample_sequences(
        policy,
        prep.eval,
        prep.new_tokens,
        temperature=temperature,
        generator=generator,
        eos_id=prep.eos_id,
        batch_size=batch_size,
        **prep.decoding,  # β's decoding options: π's samples are drawn as β's were
    )
    prefixes, continuations, ended = prep.policy_codec.decode(gen)
    # β's likelihood of π's samples, in β's tokens: π's own rows when they share tokens.
    in_behavior = (
        gen
        if prep.shared_tokens
        else prep.behavior_codec.encode(prep.eval_prefix_texts, continuations, ended)
    )
    likelihood = sequence_prob(prep.behavior, in_behavior)
    reward = attribute_prob(prep, gen)
    full = prep.policy_codec.texts(gen)
    if prep.judge is not None:  # the same texts through a classifier π never trained on
        judged = classifier_logits(prep.judge.model, prep.judge.tokenizer, full)
        judge_reward = torch.softmax(judged, -1)[:, prep.label].mean().item()

    from rdx.pipeline.textmetrics import distinct_n

    out = {
        "eval/likelihood": likelihood.mean().item(),
        "eval/reward": reward.mean().item(),
        "eval/acc": teacher_forced_accuracy(policy, prep.eval),
        # generated tokens up to and including EOS: short degenerate text shows up here
        "eval/length": (gen.lengths - gen.prefix_lens).float().mean().item(),
        "eval/distinct2": distinct_n(continuations, 2),
    }
    if prep.judge is not None:
        out["eval/judge_reward"] = judge_reward
    if text_metrics and metric_set == "rdx":
        from rdx.pipeline.textmetrics import text_metrics as compute

        scores = compute(full, prep.eval_references)
        out.update({f"eval/{k}": v for k, v in scores.items()})
    elif text_metrics:
        from rdx.pipeline.offpolicy.decoding import greedy_decoding
        from rdx.pipeline.textmetrics import authors_text_metrics

        greedy_rows = sample_sequences(
            policy,
            prep.eval,
            prep.new_tokens,
            temperature=0,
            eos_id=prep.eos_id,
            batch_size=batch_size,
            **greedy_decoding(prep.decoding, greedy),
        )
        texts = prep.policy_codec.texts(greedy_rows)
        scores = authors_text_metrics(texts, [refs[0] for refs in prep.eval_references])
        out.update({f"eval/{k}": v for k, v in scores.items()})
    samples = [
        {"prefix": a, "generation": b, "ended": e, "reward": r, "likelihood": li}
        for a, b, e, r, li in zip(
            prefixes, continuations, ended, reward.tolist(), likelihood.tolist(), strict=True
        )
    ]
    if (
        examples
    ):  # Table 6: π after the PPLM prefixes, words scored by R (rdx.pipeline.offpolicy.examples)
        from rdx.pipeline.offpolicy.decoding import greedy_decoding
        from rdx.pipeline.offpolicy.examples import pplm_examples

        samples += pplm_examples(
            policy, prep, lambda texts: text_attribute_prob(prep, texts).tolist(),
            greedy_decoding(prep.decoding, greedy),
        )  # fmt: skip
    return out, samples
