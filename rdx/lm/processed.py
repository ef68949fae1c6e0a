"""β_i under the distribution β actually sampled from (sampling.behavior_prob=processed).

The authors take β_i as the mean of softmax(generate's `scores`) at the sampled tokens
(prepare_trajectories.py:75-93 at 4f58682): the scores after the repetition penalty,
temperature and top-k, so β_i is a probability under the processed, top-k-renormalised
distribution. rdx's default (`raw`, rdx.lm.sampling.sequence_prob) is the model's own
likelihood at temperature 1 (DESIGN §2). Here the processing is replayed teacher-forced,
with the sampler's own functions, so the two agree with what `sample` drew.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.lm.sampling import keep_top_k, penalize_repeats, sequence_prob
from rdx.lm.sequences import Sequences
from rdx.method.objective import masked_mean

if TYPE_CHECKING:
    from rdx.config import SamplingConfig

BEHAVIOR_PROBS = ("raw", "processed")


def processed_logprobs(
    logits: Tensor,
    tokens: Tensor,
    *,
    temperature: float,
    top_k: int | None,
    repetition_penalty: float,
) -> Tensor:
    """log p(tokens[:, t+1]) under the processed distribution at each position t, (B, L−1).

    logits (B, L−1, V) are β's at positions 0..L−2 of `tokens` (B, L); at position t the
    penalty applies to every token in tokens[:, :t+1], as the sampler's `seen` set.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: the processed distribution needs > 0")
    batch, width = tokens.shape
    seen = torch.zeros(batch, logits.shape[-1], dtype=torch.bool, device=logits.device)
    out = []
    for t in range(width - 1):
        seen.scatter_(1, tokens[:, t : t + 1], True)
        step = logits[:, t].float()
        if repetition_penalty != 1.0:
            step = penalize_repeats(step, seen, repetition_penalty)
        step = step / temperature
        if top_k is not None:
            step = keep_top_k(step, top_k)
        out.append(torch.log_softmax(step, -1).gather(-1, tokens[:, t + 1 : t + 2]).squeeze(-1))
    return torch.stack(out, dim=1)


@torch.no_grad()
def processed_sequence_prob(
    model: PreTrainedModel,
    seqs: Sequences,
    *,
    temperature: float,
    top_k: int | None,
    repetition_penalty: float,
    batch_size: int = 512,
) -> Tensor:
    """β_i as the authors computed it: the mean processed probability of each row's scored
    positions (Sequences.mask), rows in β's tokens."""
    device = next(model.parameters()).device
    mask = seqs.mask()
    out = []
    for start in range(0, len(seqs), batch_size):
        rows = slice(start, start + batch_size)
        chunk = seqs.tokens[rows].to(device)
        logits = model(input_ids=chunk[:, :-1]).logits
        logp = processed_logprobs(
            logits,
            chunk,
            temperature=temperature,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
        )
        out.append(masked_mean(logp.exp(), mask[rows].to(device)).cpu())
    return torch.cat(out)


def behavior_prob_of(sampling: SamplingConfig) -> Callable[..., Tensor]:
    """The β_i function of `sampling.behavior_prob`: (model, seqs, batch_size=) -> (N,)."""
    if sampling.behavior_prob == "raw":
        return sequence_prob
    if sampling.behavior_prob == "processed":
        return partial(
            processed_sequence_prob,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
        )
    raise ValueError(
        f"sampling.behavior_prob={sampling.behavior_prob!r}: expected one of "
        + ", ".join(BEHAVIOR_PROBS)
    )
