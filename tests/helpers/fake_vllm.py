"""A stand-in for the `vllm` module on CPU: the names rdx.lm.engines uses (LLM,
SamplingParams, __version__), with vLLM's semantics as its docs and sampler state them.

Installed by tests with `monkeypatch.setitem(sys.modules, "vllm", fake_vllm)`. It loads
the HF model from the dir it is given, decodes requests in batches of `max_num_seqs`
(in reverse order, so a row never sits where the caller put it), processes each row's
logits as vLLM does (repetition penalty over prompt and output, temperature, top-k) and
draws with torch.multinomial from the request's own generator (its seed): a random stream
of its own, as vLLM's is. Stop tokens: the request's stop_token_ids, and the model's EOS
unless ignore_eos; min_tokens masks both. Log-probs as logprobs_mode asks: raw_logprobs,
log_softmax of the unprocessed logits; processed_logprobs, of the logits after the penalty,
temperature and top-k (vLLM 0.32's samplers).

What a real vLLM does beyond one engine, kept here because rdx must cope with it: an LLM
while another in the process still holds its memory (not shut down through
llm_engine.engine_core.shutdown()) fails vLLM's memory check; a model whose config names
no architectures, with runner="auto", is taken for a pooling model and fails; the model
runner is read from VLLM_USE_V2_MODEL_RUNNER when the LLM starts.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

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


class _EngineCore:
    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def shutdown(self) -> None:
        if self.llm in LLM.live:
            LLM.live.remove(self.llm)
        self.llm.shut_down = True


class _LLMEngine:
    def __init__(self, llm: LLM, v2: bool) -> None:
        self.engine_core = _EngineCore(llm)
        self.vllm_config = type("VllmConfig", (), {"use_v2_model_runner": v2})()


class LLM:
    """vllm.LLM on an HF model dir; `instances` keeps every one made (the tests read them),
    `live` those not shut down."""

    instances: list[LLM] = []
    live: list[LLM] = []

    def __init__(
        self,
        model: str,
        *,
        seed: int = 0,
        max_num_seqs: int = 16,
        runner: str = "auto",
        hf_overrides: dict | None = None,
        logprobs_mode: str = "raw_logprobs",
        gpu_memory_utilization: float = 0.9,
        **kwargs: Any,
    ) -> None:
        if LLM.live:
            raise ValueError(
                "Free memory on device cuda:0 on startup is less than desired GPU memory "
                f"utilization ({gpu_memory_utilization}): another engine holds it"
            )
        config = json.loads((Path(model) / "config.json").read_text())
        arch = (hf_overrides or {}).get("architectures") or config.get("architectures")
        if not arch and runner == "auto":
            raise ValueError(f"{model}: no architectures; resolved runner auto to pooling")
        if arch and arch[0] not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
            raise ValueError(f"{arch[0]} is not a text generation model")
        if logprobs_mode not in ("raw_logprobs", "processed_logprobs"):
            raise ValueError(f"logprobs_mode={logprobs_mode!r}: not in the fake")
        self.kwargs = {
            "model": model,
            "seed": seed,
            "runner": runner,
            "hf_overrides": hf_overrides,
            "logprobs_mode": logprobs_mode,
            "gpu_memory_utilization": gpu_memory_utilization,
            **kwargs,
        }
        self.logprobs_mode = logprobs_mode
        self.runner_env = os.environ.get("VLLM_USE_V2_MODEL_RUNNER")
        self.llm_engine = _LLMEngine(self, self.runner_env == "1")
        self.shut_down = False
        self.max_num_seqs = max_num_seqs
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        eos = self.model.config.eos_token_id
        self.model_eos = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        self.generator = torch.Generator().manual_seed(seed)
        params = inspect.signature(self.model.forward).parameters
        self.cache = "cache" if "cache" in params else "past_key_values"  # transformers 5
        self.requests: list[SamplingParams] = []
        LLM.instances.append(self)
        LLM.live.append(self)

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
                    if self.logprobs_mode == "processed_logprobs":
                        logp = float(torch.log_softmax(row, -1)[tok])
                    else:
                        logp = float(raw[r, tok])
                    logps[r].append({tok: Logprob(logp)})
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
