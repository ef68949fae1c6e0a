"""The engines that draw β's trajectories (sampling.engine): rdx's sampler on the HF model,
or vLLM (an optional extra, imported only when chosen; docs/scale.md).

An engine continues β's prefixes row by row, each row's randomness a function of its key
(seed, sample set, prefix, sample) alone: the hf engine hashes the key into its uniforms
(rdx.lm.draw.keyed_uniforms), vLLM seeds the row's request with a hash of it
(rdx.lm.vllm_mapping.request_seed). So batching, chunks and shards change no row for a
given engine; the two engines' rows differ (two random streams), and the trajectories'
cache key names the engine. π's own decoding (its metrics, online sampling) is always hf.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.lm.sampling import sample
from rdx.lm.sequences import Sequences
from rdx.lm.vllm_mapping import INSTALL, request_seed, sampling_kwargs, vllm_problem
from rdx.method.objective import masked_mean

ENGINES = ("hf", "vllm")
# Share of the GPU's memory vLLM may claim (weights and KV cache): the HF β that rescores
# the rows and R stay on the same GPU (OPT-6.7B in bf16: 13 GB), vLLM's default 0.9 would
# not leave them room.
VLLM_MEMORY = 0.5


@dataclass(frozen=True)
class Decoding:
    """How β continues a prefix (the sampling.* decoding keys, with β's EOS)."""

    new_tokens: int
    temperature: float
    eos_id: int | None
    stop_at_eos: bool = True
    top_k: int | None = None
    repetition_penalty: float = 1.0
    batch_size: int = 512  # rows per forward of the hf engine; vLLM batches on its own


@dataclass
class Drawn:
    """An engine's rows: tokens (N, p + new), right-filled with EOS after a row's EOS, and
    the engine's own log-prob of each continuation token (N, new; 0 past a row's end),
    or None where the engine returns none (hf: β_i is the rescoring)."""

    tokens: Tensor
    logprobs: Tensor | None = None


class Engine(Protocol):
    name: str

    def sample(self, prefixes: Tensor, keys: Tensor, decoding: Decoding) -> Drawn:
        """Continue each prefix (N, p) by decoding.new_tokens; keys (N, 4) KEY_FIELDS."""
        ...


class HFEngine:
    """rdx's batched sampler on the HF model (rdx.lm.sampling.sample), keyed draws."""

    name = "hf"

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    def sample(self, prefixes: Tensor, keys: Tensor, decoding: Decoding) -> Drawn:
        d = decoding
        tokens = sample(
            self.model,
            prefixes,
            d.new_tokens,
            temperature=d.temperature,
            keys=keys,
            eos_id=d.eos_id,
            stop_at_eos=d.stop_at_eos,
            top_k=d.top_k,
            repetition_penalty=d.repetition_penalty,
            batch_size=d.batch_size,
        )
        return Drawn(tokens)


def load_vllm() -> ModuleType:
    """The vllm module, imported now; ImportError in one line where it is missing."""
    problem = vllm_problem()
    if problem is not None:
        raise ImportError(problem)
    try:
        import vllm
    except ImportError as err:  # installed but broken (e.g. a torch it was not built for)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ImportError(
            f"sampling.engine=vllm: vLLM does not import ({first}); {INSTALL}"
        ) from None
    return vllm


class VLLMEngine:
    """vLLM's LLM on β's weights (a model dir or hub name), started at the first sample, so
    that a build whose chunks are all cached never starts it.

    Prompts go in as token ids and rows come back as token ids (no tokenizer in vLLM: rdx's
    codec owns the text). Each row is one request with its own seed (request_seed).
    `llm_kwargs` reach vllm.LLM as they are (e.g. load_format="dummy" for random weights).
    """

    name = "vllm"

    def __init__(
        self, model: str, *, dtype: str, model_eos_ids: tuple[int, ...] = (), **llm_kwargs: Any
    ) -> None:
        self.model = model
        self.dtype = dtype
        self.model_eos_ids = model_eos_ids
        self.llm_kwargs = llm_kwargs
        self._llm = None
        self._vllm = load_vllm()  # fail now, in one line, not at the first chunk

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm = self._vllm.LLM(
                model=self.model,
                dtype=self.dtype,
                skip_tokenizer_init=True,
                seed=0,  # every request brings its own seed; this one draws nothing
                gpu_memory_utilization=VLLM_MEMORY,
                # raw: log_softmax of β's logits before any processing, i.e. β's likelihood
                # at temperature 1 (rdx's β_i); vLLM's default has moved between releases
                logprobs_mode="raw_logprobs",
                **self.llm_kwargs,
            )
        return self._llm

    def sample(self, prefixes: Tensor, keys: Tensor, decoding: Decoding) -> Drawn:
        d = decoding
        kwargs = sampling_kwargs(
            new_tokens=d.new_tokens,
            temperature=d.temperature,
            top_k=d.top_k,
            repetition_penalty=d.repetition_penalty,
            stop_at_eos=d.stop_at_eos,
            eos_id=d.eos_id,
            model_eos_ids=self.model_eos_ids,
        )
        if len(keys) != len(prefixes):
            raise ValueError("VLLMEngine.sample: one key per prefix")
        params = [self._vllm.SamplingParams(**kwargs, seed=request_seed(k)) for k in keys.tolist()]
        prompts = [{"prompt_token_ids": row} for row in prefixes.tolist()]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        fill = d.eos_id if d.stop_at_eos and d.eos_id is not None else 0
        width = prefixes.shape[1]
        tokens = torch.full((len(prefixes), width + d.new_tokens), fill, dtype=torch.long)
        tokens[:, :width] = prefixes
        logprobs = torch.zeros(len(prefixes), d.new_tokens)
        for i, out in enumerate(outputs):
            done = out.outputs[0]
            ids = list(done.token_ids)[: d.new_tokens]
            if done.logprobs is None or len(done.logprobs) < len(ids):
                raise RuntimeError("vLLM returned no log-prob for a sampled token (logprobs=0)")
            tokens[i, width : width + len(ids)] = torch.tensor(ids, dtype=torch.long)
            steps = done.logprobs[: len(ids)]
            lp = [step[tok].logprob for tok, step in zip(ids, steps, strict=True)]
            logprobs[i, : len(ids)] = torch.tensor(lp)
        return Drawn(tokens, logprobs)


def engine_key(name: str) -> dict[str, str] | None:
    """What the trajectories' cache key records of the engine: None for hf (the keys of
    entries built before there was a choice hold), vLLM's name and version else (its
    kernels and sampler move between releases)."""
    if name == "hf":
        return None
    if name == "vllm":
        return {"name": "vllm", "version": str(load_vllm().__version__)}
    raise ValueError(f"sampling.engine={name!r}: expected one of {', '.join(ENGINES)}")


def model_eos_ids(model: PreTrainedModel) -> tuple[int, ...]:
    """The EOS ids in the HF model's config and generation config (vLLM stops at them)."""
    found: set[int] = set()
    for config in (model.config, getattr(model, "generation_config", None)):
        ids = getattr(config, "eos_token_id", None)
        if ids is not None:
            found |= {ids} if isinstance(ids, int) else set(ids)
    return tuple(sorted(found))


def make_engine(name: str, model: PreTrainedModel, model_path: str, dtype: str) -> Engine:
    """The engine of sampling.engine for β: `model` is the loaded HF β, `model_path` where
    its weights are (what vLLM loads), `dtype` the HF β's ("bfloat16", "float32", ...)."""
    if name == "hf":
        return HFEngine(model)
    if name == "vllm":
        return VLLMEngine(model_path, dtype=dtype, model_eos_ids=model_eos_ids(model))
    raise ValueError(f"sampling.engine={name!r}: expected one of {', '.join(ENGINES)}")


def engine_prob(logprobs: Tensor, seqs: Sequences) -> Tensor:
    """β_i from an engine's per-token log-probs (Drawn.logprobs, rows of one prefix length):
    the mean probability over the positions sequence_prob averages, so the two differ
    only by the engine's numbers (sampling.likelihood=engine)."""
    p = int(seqs.prefix_lens[0])
    if not bool((seqs.prefix_lens == p).all()):
        raise ValueError("engine_prob: rows of one prefix length expected")
    mask = seqs.mask()[:, p - 1 : p - 1 + logprobs.shape[1]]
    return masked_mean(logprobs.float().exp(), mask)
