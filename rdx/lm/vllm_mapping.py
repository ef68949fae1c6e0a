"""β's decoding options as vLLM's SamplingParams, one to one or refused, and the seed of
each request (sampling.engine=vllm; docs/scale.md has the table).

Pure: no vLLM, no torch, so rdx.config checks the options at validation and tests check
the mapping without either. "One to one" means the same distribution at every step:
vLLM processes the logits in rdx's order (repetition penalty on prompt and output tokens,
then temperature, then top-k) and draws with its own random stream, so the tokens differ
from the hf engine's but not their law. An option vLLM would change (a temperature it
clamps or rejects, an extra stop token) is refused with one line naming the key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
import sys
from collections.abc import Iterable, Sequence
from typing import Any

INSTALL = "pip install 'rdx[vllm]'"
# vLLM rejects temperatures above 2 and raises those in (0, 0.01) to 0.01 (with a warning):
# either way not the distribution asked for.
MAX_TEMPERATURE = 2.0
MIN_TEMPERATURE = 0.01
# vLLM's logprobs_mode values rdx uses: raw, log_softmax of β's logits (rdx's raw β_i);
# processed, after the repetition penalty, temperature and top-k, in rdx's order
# (vLLM 0.32's V1 and V2 samplers; rdx.lm.processed's β_i)
LOGPROBS_MODES = ("raw_logprobs", "processed_logprobs")


class MappingError(ValueError):
    """A decoding option that vLLM cannot reproduce; the message is one line."""


def vllm_problem() -> str | None:
    """Why vLLM cannot be imported here (one line), or None. Looks without importing it."""
    if "vllm" in sys.modules:  # imported already (or a test's stand-in)
        return None
    if importlib.util.find_spec("vllm") is None:
        return f"sampling.engine=vllm: vLLM is not installed; {INSTALL} (on a CUDA machine)"
    return None


def refusal(*, temperature: float, top_k: int | None, repetition_penalty: float) -> str | None:
    """Why these options do not map identically onto SamplingParams (one line), or None."""
    if temperature > MAX_TEMPERATURE:
        return (
            f"sampling.temperature={temperature}: vLLM accepts at most {MAX_TEMPERATURE}; "
            "use sampling.engine=hf"
        )
    if 0 < temperature < MIN_TEMPERATURE:
        return (
            f"sampling.temperature={temperature}: vLLM raises temperatures below "
            f"{MIN_TEMPERATURE} to {MIN_TEMPERATURE}; use 0 (greedy) or sampling.engine=hf"
        )
    if top_k is not None and top_k < 1:
        return f"sampling.top_k={top_k}: expected >= 1, or null for all tokens"
    if repetition_penalty <= 0:
        return f"sampling.repetition_penalty={repetition_penalty}: expected a number > 0"
    return None


def sampling_kwargs(
    *,
    new_tokens: int,
    temperature: float,
    top_k: int | None,
    repetition_penalty: float,
    stop_at_eos: bool,
    eos_id: int | None,
    model_eos_ids: Iterable[int] = (),
) -> dict[str, Any]:
    """SamplingParams keywords equal to rdx's sampler with these options (seed aside).

    `model_eos_ids`: the EOS ids in β's config and generation config. vLLM adds them to
    every request's stop tokens unless ignore_eos; rdx stops at `eos_id` alone, so another
    one is refused.
    """
    problem = refusal(temperature=temperature, top_k=top_k, repetition_penalty=repetition_penalty)
    if problem is not None:
        raise MappingError(problem)
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": new_tokens,
        "temperature": temperature,
        "top_k": 0 if top_k is None else top_k,  # 0: every token (vLLM's "disabled")
        "repetition_penalty": repetition_penalty,
        # vLLM's other processors, written out at their identities so that a release that
        # changes a default changes nothing here
        "top_p": 1.0,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        # min_tokens stays 0 in both modes: vLLM enforces it by masking every stop token,
        # EOS included, which would make EOS impossible where rdx samples it as a token
        "min_tokens": 0,
        "logprobs": 0,  # the sampled token's log-prob only (sampling.likelihood=engine)
        "detokenize": False,  # rows are decoded by rdx's codec; vLLM has no tokenizer
    }
    if not stop_at_eos:  # fixed length: every row gets new_tokens, EOS an ordinary token
        return {**kwargs, "ignore_eos": True, "stop_token_ids": []}
    if eos_id is None:
        raise MappingError("sampling.stop_at_eos=true: β's tokenizer has no EOS to stop at")
    others = sorted(set(model_eos_ids) - {eos_id})
    if others:
        raise MappingError(
            f"sampling.stop_at_eos=true: β's config also lists EOS ids {others} beside the "
            f"tokenizer's {eos_id}; vLLM would stop at them, rdx does not (use engine=hf)"
        )
    return {**kwargs, "ignore_eos": False, "stop_token_ids": [eos_id]}


def logprobs_mode(*, behavior_prob: str, likelihood: str) -> str:
    """The log-probs vLLM returns: the processed ones only where they become β_i
    (likelihood=engine, behavior_prob=processed); the raw ones else."""
    if likelihood == "engine" and behavior_prob == "processed":
        return "processed_logprobs"
    return "raw_logprobs"


def request_seed(key: Sequence[int]) -> int:
    """The seed of one row's request, a function of its row key alone (rdx.lm.draw's
    KEY_FIELDS: seed, sample set, prefix, sample), in [0, 2⁶³): vLLM gives a seeded
    request its own generator, so neither the batch nor the shard enters its draws."""
    if len(key) != 4 or any(not 0 <= int(k) < 2**32 for k in key):
        raise ValueError(f"request_seed: expected 4 integers in [0, 2**32), got {list(key)}")
    digest = hashlib.blake2b(struct.pack("<4Q", *map(int, key)), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
