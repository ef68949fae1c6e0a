"""Batched decoding with a KV cache, and the fixed models' scores of stored trajectories.

All prefixes of a run have the same length p (they are the first p tokens of sentences),
so decoding needs no left padding and no position bookkeeping: one prefill, then one token
per step against the cache. Trajectories end at EOS; the rest of the row is EOS filler that
continuation_mask leaves out of every score.
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
    eos_id: int | None = None,
    batch_size: int = 512,
) -> Tensor:
    """Continue every prefix (N, p) by up to `new_tokens` tokens; temperature 0 is greedy.

    A row that emits `eos_id` is finished: the rest of it is filled with eos_id, and
    decoding stops early once every row of a batch is finished. The result is (N, p + new).
    """
    out = []
    for start in range(0, len(prefixes), batch_size):
        chunk = prefixes[start : start + batch_size]
        out.append(_sample_batch(model, chunk, new_tokens, temperature, generator, eos_id))
    return torch.cat(out)


def _cache_kwarg(model: PreTrainedModel) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (argument and output field)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sample_batch(model, prefixes, new_tokens, temperature, generator, eos_id):
    device = next(model.parameters()).device
    tokens = prefixes.to(device)
    out = torch.full((len(tokens), new_tokens), eos_id if eos_id is not None else 0, device=device)
    finished = torch.zeros(len(tokens), dtype=torch.bool, device=device)
    cache = _cache_kwarg(model)
    step = model(input_ids=tokens, use_cache=True, logits_to_keep=1)
    for i in range(new_tokens):
        logits = step.logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        if eos_id is not None:
            nxt = nxt.masked_fill(finished, eos_id)
            finished |= nxt == eos_id
        out[:, i] = nxt
        if i + 1 == new_tokens or bool(finished.all()):
            break
        step = model(input_ids=nxt[:, None], use_cache=True, **{cache: getattr(step, cache)})
    return torch.cat([tokens, out], dim=1).cpu()


def continuation_mask(
    tokens: Tensor, prefix_len: int, *, eos_id: int | None = None, score_prefix: bool = False
) -> Tensor:
    """Mask (N, L−1) over predicted positions: position t scores token t+1.

    Scored: continuation tokens (t+1 ≥ p, the tokens β's probability averages over) up to
    and including the first EOS; what follows an EOS is filler, never scored (TRL does the
    same). `score_prefix` also scores prefix tokens 1..p−1, as the authors' code did.
    """
    targets = tokens[:, 1:]
    mask = torch.zeros(targets.shape, dtype=torch.float32, device=tokens.device)
    mask[:, 0 if score_prefix else prefix_len - 1 :] = 1.0
    if eos_id is not None:
        cont = targets == eos_id
        cont[:, : prefix_len - 1] = False  # an EOS inside the prefix ends nothing
        eos_before = (cont.long().cumsum(1) - cont.long()) > 0
        mask = mask.masked_fill(eos_before, 0.0)
    return mask


@torch.no_grad()
def mean_token_prob(
    model: PreTrainedModel,
    tokens: Tensor,
    prefix_len: int,
    *,
    eos_id: int | None = None,
    batch_size: int = 512,
) -> Tensor:
    """β_i: the model's mean per-token probability of each continuation, temperature 1."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size].to(device)
        logits = model(input_ids=chunk[:, :-1]).logits
        logp = token_logprobs(logits, chunk[:, 1:])
        mask = continuation_mask(chunk, prefix_len, eos_id=eos_id)
        out.append(masked_mean(logp.exp(), mask).cpu())
    return torch.cat(out)


@torch.no_grad()
def classifier_logits(
    model: PreTrainedModel,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int = 512,
    max_length: int = 64,
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
