"""Batched decoding with a KV cache, and the fixed models' scores of stored trajectories.

Decoding runs one prefill, then one token per step against the cache. In β's own tokens
every prefix has the same length (the first p tokens of a sentence), so a batch needs no
padding. Re-tokenised for another model the lengths differ: greedy decodes (π's metric
decode) then run in one left-padded batch, with an attention mask and position ids from it
(TRL's recipe: GPT-2, OPT and XGLM use absolute positions); sampled rows are decoded one
prefix length at a time, which keeps a generator's stream where it was. Trajectories end
at EOS; the rest of the row is filler that the masks leave out of every score.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.lm.draw import draw_uniforms, invert, keyed_uniforms
from rdx.lm.sequences import Sequences, continuation_lengths
from rdx.method.objective import masked_mean, token_logprobs

EARLY_STOP_EVERY = 8  # steps between checks that a batch has finished (each is a host sync)


def sample(
    model: PreTrainedModel,
    prefixes: Tensor,
    new_tokens: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
    keys: Tensor | None = None,
    eos_id: int | None = None,
    stop_at_eos: bool = True,
    top_k: int | None = None,
    repetition_penalty: float = 1.0,
    batch_size: int = 512,
    prefix_mask: Tensor | None = None,
) -> Tensor:
    """Continue every prefix (N, p) by up to `new_tokens` tokens; temperature 0 is greedy.

    A row that emits `eos_id` is finished: the rest of it is filled with eos_id, and
    decoding stops early once every row of a batch is finished. With `stop_at_eos=False`
    EOS is an ordinary token and every row gets exactly `new_tokens` (the authors' β never
    stopped: its EOS was a token it had not learned). The logits are processed as Hugging
    Face's generate does: repetition penalty on every token already in the row (prefix
    included), then temperature, then top-k. The result is (N, p + new).

    Randomness: with `keys` ((N, 4), rdx.lm.draw.KEY_FIELDS) row i's uniform at step t is
    keyed_uniforms(keys[i], t), so its tokens do not depend on the batch size or on which
    rows share its batch; else one stream from `generator` (the default one if None).

    `prefix_mask` (N, p) bool marks the real tokens of left-padded prefixes (False on the
    padding, which the attention, the positions and the repetition penalty leave out).
    """
    if keys is not None and (generator is not None or len(keys) != len(prefixes)):
        raise ValueError("sample: pass keys (one per prefix) or a generator, not both")
    stop = eos_id if stop_at_eos else None
    out = []
    with torch.inference_mode():
        for start in range(0, len(prefixes), batch_size):
            rows = slice(start, start + batch_size)
            out.append(
                _sample_batch(
                    model,
                    prefixes[rows],
                    new_tokens,
                    temperature,
                    generator,
                    None if keys is None else keys[rows],
                    stop,
                    top_k,
                    repetition_penalty,
                    None if prefix_mask is None else prefix_mask[rows],
                )
            )
        tokens = torch.cat(out)
    return tokens.clone()  # out of inference mode: autograd may read it (π's own samples)


def _cache_kwarg(model: PreTrainedModel) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (argument and output field)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def penalize_repeats(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """HF's repetition penalty: the logits of tokens already in the row (`seen`, a (B, V)
    bool) are divided by `penalty` where positive and multiplied where negative."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def keep_top_k(logits: Tensor, k: int) -> Tensor:
    """Logits outside each row's k largest set to −inf (ties with the k-th kept, as HF)."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _sample_batch(
    model,
    prefixes,
    new_tokens,
    temperature,
    generator,
    keys,
    eos_id,
    top_k,
    repetition_penalty,
    prefix_mask=None,
):
    """One batch, with no host sync per step: the random numbers are made on the device
    (keyed) or drawn for the whole batch at once (a generator), invalid logits are flagged
    and checked once at the end, and the early stop is checked every EARLY_STOP_EVERY steps.
    Left-padded prefixes (`prefix_mask`) attend to their real tokens only, at positions
    counted from their first real token, as if each row were decoded alone."""
    device = next(model.parameters()).device
    if prefix_mask is not None and bool(prefix_mask.all()):
        prefix_mask = None  # no padding in this batch: the plain path, bit for bit
    tokens = prefixes.to(device)
    if keys is not None:
        keys = keys.to(device)
    elif temperature != 0:
        # The generator's stream, step-major: step i reads row r's number at i·B + r, the
        # order in which a per-step torch.rand(B) would have drawn them.
        stream = draw_uniforms(new_tokens * len(tokens), generator, device).to(device)
        stream = 1.0 - stream.view(new_tokens, len(tokens))
    ok = torch.ones(len(tokens), dtype=torch.bool, device=device)
    out = torch.full((len(tokens), new_tokens), eos_id if eos_id is not None else 0, device=device)
    finished = torch.zeros(len(tokens), dtype=torch.bool, device=device)
    cache = _cache_kwarg(model)
    padded = {}  # attention mask and position ids of a left-padded batch, per step
    if prefix_mask is not None:
        real = prefix_mask.to(device)
        attention = torch.ones(
            len(tokens), tokens.shape[1] + new_tokens, dtype=torch.long, device=device
        )
        attention[:, : tokens.shape[1]] = real
        first = (real.long().cumsum(1) - 1).clamp(min=0)  # padding at 0: never attended
        after = real.long().sum(1, keepdim=True)  # the first continuation token's position
        padded = {"attention_mask": attention[:, : tokens.shape[1]], "position_ids": first}
    step = model(input_ids=tokens, use_cache=True, logits_to_keep=1, **padded)
    seen = None
    if repetition_penalty != 1.0:
        vocab = step.logits.shape[-1]
        seen = torch.zeros(len(tokens), vocab, dtype=torch.bool, device=device)
        # padding marks nothing: its slots name the row's last token, a real one
        real_ids = tokens if prefix_mask is None else torch.where(real, tokens, tokens[:, -1:])
        seen.scatter_(1, real_ids, True)
    for i in range(new_tokens):
        logits = step.logits[:, -1].float()
        if seen is not None:
            logits = penalize_repeats(logits, seen, repetition_penalty)
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            logits = logits / temperature
            if top_k is not None:
                logits = keep_top_k(logits, top_k)
            v = keyed_uniforms(keys, i) if keys is not None else stream[i]
            nxt, fine = invert(logits, v)  # softmax(logits), by inversion
            ok &= fine
        if eos_id is not None:
            nxt = nxt.masked_fill(finished, eos_id)
            finished |= nxt == eos_id
        out[:, i] = nxt
        if seen is not None:
            seen.scatter_(1, nxt[:, None], True)
        if i + 1 == new_tokens:
            break
        if eos_id is not None and (i + 1) % EARLY_STOP_EVERY == 0 and bool(finished.all()):
            break
        if prefix_mask is not None:
            width = tokens.shape[1] + i + 1
            padded = {"attention_mask": attention[:, :width], "position_ids": after + i}
        step = model(
            input_ids=nxt[:, None], use_cache=True, **{cache: getattr(step, cache)}, **padded
        )
    if not bool(ok.all()):
        raise ValueError("sample: a row's logits are NaN or all −inf")
    return torch.cat([tokens, out], dim=1).cpu()


def sample_sequences(
    model: PreTrainedModel,
    prefixes: Sequences,
    new_tokens: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
    keys: Tensor | None = None,
    eos_id: int | None = None,
    stop_at_eos: bool = True,
    top_k: int | None = None,
    repetition_penalty: float = 1.0,
    pad_id: int | None = None,
    batch_size: int = 512,
    left_pad: bool | None = None,
) -> Sequences:
    """Continue the prefix part of each row (tokens[i, :prefix_lens[i]]) by `new_tokens`.

    Prefixes of mixed lengths are decoded either in one left-padded batch (`left_pad`; by
    default for greedy decodes, where no random stream depends on the grouping) or in
    groups of one prefix length (ascending; in row order within a group). When all
    prefixes have one length both are exactly `sample` on them, random stream included.
    The result is right-padded with pad_id (default eos_id).
    """
    pad = (eos_id if eos_id is not None else 0) if pad_id is None else pad_id
    stop = eos_id if stop_at_eos else None
    lens = prefixes.prefix_lens
    options = dict(
        temperature=temperature,
        generator=generator,
        eos_id=eos_id,
        stop_at_eos=stop_at_eos,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
    )
    width = int(lens.max()) + new_tokens
    tokens = torch.full((len(lens), width), pad, dtype=torch.long)
    if left_pad is None:
        left_pad = temperature == 0
    if left_pad:
        left, real = left_padded(prefixes, pad)
        out = sample(model, left, new_tokens, keys=keys, prefix_mask=real, **options)
        continuation = out[:, left.shape[1] :]
        tokens[:, : left.shape[1]] = prefixes.tokens[:, : left.shape[1]].masked_fill(
            torch.arange(left.shape[1]) >= lens[:, None], pad
        )
        tokens.scatter_(1, lens[:, None] + torch.arange(new_tokens), continuation)
        return Sequences(tokens, lens.clone(), continuation_lengths(continuation, lens, stop))
    lengths = torch.empty_like(lens)
    for p in sorted(set(lens.tolist())):
        rows = (lens == p).nonzero().squeeze(1)
        out = sample(
            model,
            prefixes.tokens[rows, :p],
            new_tokens,
            keys=None if keys is None else keys[rows],
            **options,
        )
        tokens[rows, : out.shape[1]] = out
        lengths[rows] = Sequences.from_samples(out, p, stop).lengths
    return Sequences(tokens, lens.clone(), lengths)


def left_padded(prefixes: Sequences, pad: int) -> tuple[Tensor, Tensor]:
    """The prefix part of each row moved to the right end of a (N, max prefix_len) block,
    padding on the left, and the mask of its real tokens."""
    lens = prefixes.prefix_lens
    width = int(lens.max())
    src = torch.arange(width) - (width - lens)[:, None]  # column j holds token j − shift
    real = src >= 0
    left = prefixes.tokens.gather(1, src.clamp(min=0)).masked_fill(~real, pad)
    return left, real


def sequence_prob(model: PreTrainedModel, seqs: Sequences, *, batch_size: int = 512) -> Tensor:
    """β_i: the model's mean per-token probability (temperature 1) of each row's scored
    positions (Sequences.mask), rows in the model's own tokens."""
    device = next(model.parameters()).device
    mask = seqs.mask()
    out = []
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            rows = slice(start, start + batch_size)
            chunk = seqs.tokens[rows].to(device)
            logits = model(input_ids=chunk[:, :-1]).logits
            logp = token_logprobs(logits, chunk[:, 1:])
            out.append(masked_mean(logp.exp(), mask[rows].to(device)).cpu())
        probs = torch.cat(out)
    return probs.clone()  # a normal tensor: inference-mode ones refuse autograd's use


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
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out.append(model(**enc).logits.float().cpu())
        logits = torch.cat(out)
    return logits.clone()  # a normal tensor: inference-mode ones refuse autograd's use
