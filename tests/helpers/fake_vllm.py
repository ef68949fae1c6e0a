"""A stand-in for the `vllm` module on CPU: the names rdx.lm.engines uses (LLM,
SamplingParams, __version__), with vLLM's semantics as its docs and sampler state them.

Installed by tests with `monkeypatch.setitem(sys.modules, "vllm", fake_vllm)`. It loads
the HF model from the dir it is given, decodes requests in batches of `max_num_seqs`
(in reverse order, so a row never sits where the caller put it), processes each row's
logits as vLLM does (repetition penalty over prompt and output, temperature, top-k) and
draws with torch.multinomial from the request's own generator (its seed): a random stream
of its own, as vLLM's is. Stop tokens: the request's stop_token_ids, and the model's EOS
unless ignore_eos; min_tokens masks both. Log-probs are the raw ones (logprobs_mode
raw_logprobs): log_softmax of the unprocessed logits.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM

__version__ = "0.0.0+fake"

_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "seed": None,
    "stop_token_ids": None,
    "ignore_eos": False,
    "max_tokens": 16,
    "min_tokens": 0,
    "logprobs": None,
    "detokenize": True,
}


class SamplingParams:
    """The fields above, checked as vLLM checks them; an unknown one is a TypeError."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"SamplingParams: unexpected keyword(s) {sorted(unknown)}")
        for name, default in _DEFAULTS.items():
            setattr(self, name, kwargs.get(name, default))
        self.stop_token_ids = list(self.stop_token_ids or [])
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must be less than or equal to max_tokens")
        if (self.n, self.top_p, self.min_p) != (1, 1.0, 0.0) or self.presence_penalty:
            raise NotImplementedError("the fake has n=1 and no top-p, min-p or presence penalty")


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    """vllm.LLM on an HF model dir; `instances` keeps every one made (the tests read them)."""

    instances: list[LLM] = []

    def __init__(self, model: str, *, seed: int = 0, max_num_seqs: int = 16, **kwargs: Any) -> None:
        self.kwargs = {"model": model, "seed": seed, **kwargs}
        self.max_num_seqs = max_num_seqs
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        eos = self.model.config.eos_token_id
        self.model_eos = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        self.generator = torch.Generator().manual_seed(seed)
        params = inspect.signature(self.model.forward).parameters
        self.cache = "cache" if "cache" in params else "past_key_values"  # transformers 5
        self.requests: list[SamplingParams] = []
        LLM.instances.append(self)

    def generate(
        self, prompts: list[dict[str, list[int]]], sampling_params: list[SamplingParams], **_: Any
    ) -> list[RequestOutput]:
        self.requests += sampling_params
        order = list(range(len(prompts)))[::-1]
        outputs: dict[int, CompletionOutput] = {}
        for start in range(0, len(order), self.max_num_seqs):
            batch = order[start : start + self.max_num_seqs]
            lengths = {len(prompts[i]["prompt_token_ids"]) for i in batch}
            for length in sorted(lengths):  # one prompt length per forward: no padding
                rows = [i for i in batch if len(prompts[i]["prompt_token_ids"]) == length]
                done = self._decode(
                    [prompts[i]["prompt_token_ids"] for i in rows],
                    [sampling_params[i] for i in rows],
                )
                outputs.update(zip(rows, done, strict=True))
        return [
            RequestOutput(prompts[i]["prompt_token_ids"], [outputs[i]]) for i in range(len(prompts))
        ]

    @torch.no_grad()
    def _decode(
        self, prompts: list[list[int]], params: list[SamplingParams]
    ) -> list[CompletionOutput]:
        gens = [
            self.generator if p.seed is None else torch.Generator().manual_seed(p.seed)
            for p in params
        ]
        ids = torch.tensor(prompts)
        seen = torch.zeros(len(prompts), self.model.config.vocab_size, dtype=torch.bool)
        seen.scatter_(1, ids, True)
        out: list[list[int]] = [[] for _ in prompts]
        logps: list[list[dict[int, Logprob]]] = [[] for _ in prompts]
        finished = [False] * len(prompts)
        step = self.model(input_ids=ids, use_cache=True)
        for _ in range(max(p.max_tokens for p in params)):
            logits = step.logits[:, -1].float()
            raw = torch.log_softmax(logits, -1)
            nxt = []
            for r, p in enumerate(params):
                row = logits[r].clone()
                stops = set(p.stop_token_ids) | (set() if p.ignore_eos else self.model_eos)
                if len(out[r]) < p.min_tokens:
                    row[list(stops | self.model_eos)] = float("-inf")
                if p.repetition_penalty != 1.0:
                    pen = p.repetition_penalty
                    row = torch.where(seen[r], torch.where(row > 0, row / pen, row * pen), row)
                if p.temperature < 1e-5:
                    tok = int(row.argmax())
                else:
                    row = row / p.temperature
                    if p.top_k > 0:
                        kth = torch.topk(row, min(p.top_k, len(row))).values[-1]
                        row = row.masked_fill(row < kth, float("-inf"))
                    tok = int(torch.multinomial(torch.softmax(row, -1), 1, generator=gens[r]))
                nxt.append(tok)
                if not finished[r]:
                    out[r].append(tok)
                    logps[r].append({tok: Logprob(float(raw[r, tok]))})
                    finished[r] = tok in stops or len(out[r]) == p.max_tokens
            if all(finished):
                break
            nxt_t = torch.tensor(nxt)
            seen.scatter_(1, nxt_t[:, None], True)
            past = {self.cache: getattr(step, self.cache)}
            step = self.model(input_ids=nxt_t[:, None], use_cache=True, **past)
        return [
            CompletionOutput(o, lp if p.logprobs is not None else None)
            for o, lp, p in zip(out, logps, params, strict=True)
        ]
