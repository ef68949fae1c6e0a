"""Batched decoding with a KV cache, and the fixed models' scores of stored trajectories.

Decoding batches rows whose prefixes have one length p, so it needs no left padding and no
position bookkeeping (which differ between GPT-2, OPT and XGLM): one prefill, then one
token per step against the cache. In β's own tokens every prefix has the same length (the
first p tokens of a sentence); re-tokenised for another model they do not, and
`sample_sequences` decodes each prefix length as its own group. Trajectories end at EOS;
the rest of the row is filler that the masks leave out of every score.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.draw import multinomial_one
from rdx.objective import masked_mean, token_logprobs


@dataclass
class Sequences:
    """Right-padded token rows of one model: prefix, then the continuation that is scored.

    prefix_lens[i]: tokens before the continuation (a BOS included); lengths[i]: tokens up
    to and including the EOS that ended row i (the row's width when none did). Whatever
    model wrote the row, the scored positions follow from these two numbers alone.
    """

    tokens: Tensor  # (N, L) long
    prefix_lens: Tensor  # (N,) long
    lengths: Tensor  # (N,) long

    def __len__(self) -> int:
        return len(self.tokens)

    def mask(self, score_prefix: bool = False) -> Tensor:
        """(N, L−1) mask over predicted positions (see span_mask)."""
        return span_mask(
            self.prefix_lens, self.lengths, self.tokens.shape[1], score_prefix=score_prefix
        )

    def select(self, idx: Tensor) -> Sequences:
        return Sequences(self.tokens[idx], self.prefix_lens[idx], self.lengths[idx])

    @classmethod
    def from_samples(cls, tokens: Tensor, prefix_len: int, eos_id: int | None) -> Sequences:
        """Rows of `sample`: one prefix length, each row ending at its first continuation EOS."""
        scored = continuation_mask(tokens, prefix_len, eos_id=eos_id).sum(1).long()
        prefix_lens = torch.full((len(tokens),), prefix_len, dtype=torch.long)
        return cls(tokens, prefix_lens, prefix_lens + scored)


def span_mask(
    prefix_lens: Tensor, lengths: Tensor, width: int, *, score_prefix: bool = False
) -> Tensor:
    """Mask (N, width−1) over predicted positions: position t scores token t+1.

    Scored: tokens prefix_len ≤ t+1 < length, i.e. the continuation up to and including
    its EOS; `score_prefix` also scores prefix tokens 1..prefix_len−1 (the authors' code).
    For the rows of `sample` this is exactly continuation_mask.
    """
    target = torch.arange(1, width, device=lengths.device)[None, :]
    start = torch.ones_like(prefix_lens) if score_prefix else prefix_lens
    return ((target >= start[:, None]) & (target < lengths[:, None])).float()


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
            if generator is not None and generator.device != probs.device:
                # Draw where the generator lives: a CPU generator keeps one seeded stream
                # whatever device the model is on (multinomial rejects a mismatched one).
                probs = probs.to(generator.device)
            nxt = multinomial_one(probs, generator).to(device)
        if eos_id is not None:
            nxt = nxt.masked_fill(finished, eos_id)
            finished |= nxt == eos_id
        out[:, i] = nxt
        if i + 1 == new_tokens or bool(finished.all()):
            break
        step = model(input_ids=nxt[:, None], use_cache=True, **{cache: getattr(step, cache)})
    return torch.cat([tokens, out], dim=1).cpu()


def sample_sequences(
    model: PreTrainedModel,
    prefixes: Sequences,
    new_tokens: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    batch_size: int = 512,
) -> Sequences:
    """Continue the prefix part of each row (tokens[i, :prefix_lens[i]]) by `new_tokens`.

    Rows are decoded in groups of one prefix length (ascending; in row order within a
    group), so when all prefixes have one length this is exactly `sample` on them, random
    stream included. The result is right-padded with pad_id (default eos_id).
    """
    pad = (eos_id if eos_id is not None else 0) if pad_id is None else pad_id
    lens = prefixes.prefix_lens
    width = int(lens.max()) + new_tokens
    tokens = torch.full((len(lens), width), pad, dtype=torch.long)
    lengths = torch.empty_like(lens)
    for p in sorted(set(lens.tolist())):
        rows = (lens == p).nonzero().squeeze(1)
        out = sample(
            model,
            prefixes.tokens[rows, :p],
            new_tokens,
            temperature=temperature,
            generator=generator,
            eos_id=eos_id,
            batch_size=batch_size,
        )
        tokens[rows, : out.shape[1]] = out
        lengths[rows] = Sequences.from_samples(out, p, eos_id).lengths
    return Sequences(tokens, lens.clone(), lengths)


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
    return _mean_prob(
        model,
        tokens,
        lambda chunk, _: continuation_mask(chunk, prefix_len, eos_id=eos_id),
        batch_size,
    )


@torch.no_grad()
def sequence_prob(model: PreTrainedModel, seqs: Sequences, *, batch_size: int = 512) -> Tensor:
    """mean_token_prob of rows in the model's own tokens, scored span from their lengths."""
    mask = seqs.mask()
    return _mean_prob(model, seqs.tokens, lambda _, rows: mask[rows], batch_size)


def _mean_prob(model, tokens: Tensor, mask_of, batch_size: int) -> Tensor:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(tokens), batch_size):
        rows = slice(start, start + batch_size)
        chunk = tokens[rows].to(device)
        logits = model(input_ids=chunk[:, :-1]).logits
        logp = token_logprobs(logits, chunk[:, 1:])
        out.append(masked_mean(logp.exp(), mask_of(chunk, rows).to(device)).cpu())
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
