"""Batched decoding with a KV cache, and the fixed models' scores of stored trajectories.

All prefixes of a run have the same length p (they are the first p tokens of sentences),
so decoding needs no padding and no position bookkeeping: one prefill, then one token per
step against the cache.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.objective import masked_mean, token_logprobs


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    prefixes: Tensor,
    new_tokens: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
) -> Tensor:
    """Continue every prefix (N, p) by `new_tokens` tokens; temperature 0 means greedy."""
    out = []
    for start in range(0, len(prefixes), batch_size):
        out.append(_sample_batch(model, prefixes[start : start + batch_size], new_tokens,
                                 temperature, generator))
    return torch.cat(out)


def _cache_kwarg(model: PreTrainedModel) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (argument and output field)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sample_batch(model, prefixes, new_tokens, temperature, generator):
    device = next(model.parameters()).device
    tokens = prefixes.to(device)
    result = [tokens]
    cache = _cache_kwarg(model)
    step = model(input_ids=tokens, use_cache=True, logits_to_keep=1)
    for i in range(new_tokens):
        logits = step.logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        result.append(nxt)
        if i + 1 < new_tokens:
            step = model(input_ids=nxt, use_cache=True, **{cache: getattr(step, cache)})
    return torch.cat(result, dim=1).cpu()


def continuation_mask(batch: int, length: int, prefix_len: int, *, score_prefix: bool = False) -> Tensor:
    """Mask over the L−1 predicted positions: position t scores token t+1.

    Default: only continuation tokens (t+1 ≥ p), the tokens β's probability averages over.
    `score_prefix` also scores prefix tokens 1..p−1, as the authors' whole-sequence code did.
    """
    mask = torch.zeros(batch, length - 1)
    mask[:, 0 if score_prefix else prefix_len - 1 :] = 1.0
    return mask


@torch.no_grad()
def mean_token_prob(
    model: PreTrainedModel, tokens: Tensor, prefix_len: int, *, batch_size: int = 512
) -> Tensor:
    """β_i: the model's mean per-token probability of each continuation, temperature 1."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size].to(device)
        logits = model(input_ids=chunk[:, :-1]).logits
        logp = token_logprobs(logits, chunk[:, 1:])
        mask = continuation_mask(len(chunk), chunk.shape[1], prefix_len).to(device)
        out.append(masked_mean(logp.exp(), mask).cpu())
    return torch.cat(out)


@torch.no_grad()
def classifier_logits(
    model: PreTrainedModel, tokenizer, texts: list[str], *, batch_size: int = 512, max_length: int = 64
) -> Tensor:
    """R's class logits (N, C) for each text, re-tokenised with the classifier's tokenizer."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        out.append(model(**enc).logits.float().cpu())
    return torch.cat(out)
