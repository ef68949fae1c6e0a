"""β's engines (rdx.lm.engines): the vLLM option mapping, its refusals, per-request seeds,
and the vLLM engine on CPU through tests/helpers/fake_vllm (vllm.LLM's interface)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from rdx.hub import HubUnavailable
from rdx.lm.engines import (
    Decoding,
    HFEngine,
    VLLMEngine,
    engine_key,
    engine_prob,
    load_vllm,
    make_engine,
)
from rdx.lm.models import tiny_gpt2
from rdx.lm.processed import processed_sequence_prob
from rdx.lm.sampling import sample, sequence_prob
from rdx.lm.sequences import Sequences
from rdx.lm.vllm_mapping import MappingError, logprobs_mode, request_seed, sampling_kwargs
from tests.helpers import fake_vllm

EOS = 3
OPTIONS = dict(new_tokens=20, temperature=0.7, top_k=None, repetition_penalty=1.0)


def keys_for(n: int, set_id: int = 0) -> torch.Tensor:
    return torch.stack(
        [torch.zeros(n), torch.full((n,), set_id), torch.arange(n) // 4, torch.arange(n) % 4], 1
    ).long()


@pytest.fixture
def vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setattr(fake_vllm.LLM, "instances", [])
    monkeypatch.setattr(fake_vllm.LLM, "live", [])
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER", raising=False)
    return fake_vllm


@pytest.fixture(scope="module")
def beta(tmp_path_factory):
    """A tiny random GPT-2 (near-uniform over 97 tokens: EOS ends some rows), saved."""
    model = tiny_gpt2(97, 2, 32, 2, seed=0, eos_id=EOS).eval()
    path = tmp_path_factory.mktemp("beta")
    model.save_pretrained(path)
    return model, str(path)


def prefixes_for(n: int) -> torch.Tensor:
    return torch.randint(4, 97, (n, 5), generator=torch.Generator().manual_seed(1))


# MAPPING -------------------------------------------------------------------------------


def test_each_option_maps_one_to_one():
    kw = sampling_kwargs(**OPTIONS, stop_at_eos=True, eos_id=EOS, model_eos_ids=(EOS,))
    assert (kw["max_tokens"], kw["temperature"], kw["top_k"]) == (20, 0.7, 0)  # 0: all tokens
    assert (kw["stop_token_ids"], kw["ignore_eos"], kw["min_tokens"]) == ([EOS], False, 0)
    assert (kw["top_p"], kw["min_p"], kw["presence_penalty"], kw["frequency_penalty"]) == (
        1.0,
        0.0,
        0.0,
        0.0,
    )
    assert kw["logprobs"] == 0 and kw["detokenize"] is False
    kw = sampling_kwargs(
        **{**OPTIONS, "top_k": 40, "repetition_penalty": 1.2}, stop_at_eos=True, eos_id=EOS
    )
    assert (kw["top_k"], kw["repetition_penalty"]) == (40, 1.2)
    assert (
        sampling_kwargs(**{**OPTIONS, "temperature": 0.0}, stop_at_eos=True, eos_id=EOS)[
            "temperature"
        ]
        == 0.0
    )  # greedy in both


def test_fixed_length_ignores_eos_and_keeps_it_an_ordinary_token():
    """min_tokens stays 0: vLLM would enforce min_tokens=max_tokens by masking EOS."""
    kw = sampling_kwargs(**OPTIONS, stop_at_eos=False, eos_id=EOS, model_eos_ids=(EOS, 7))
    assert (kw["ignore_eos"], kw["stop_token_ids"], kw["min_tokens"], kw["max_tokens"]) == (
        True,
        [],
        0,
        20,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"temperature": 2.5}, "sampling.temperature=2.5: vLLM accepts at most 2.0"),
        ({"temperature": 0.005}, "sampling.temperature=0.005: vLLM raises temperatures below"),
        ({"top_k": 0}, "sampling.top_k=0: expected >= 1"),
        ({"eos_id": None}, "sampling.stop_at_eos=true: β's tokenizer has no EOS"),
        ({"model_eos_ids": (EOS, 50)}, "β's config also lists EOS ids [50]"),
    ],
)
def test_what_does_not_map_is_refused_in_one_line(change, message):
    args = {**OPTIONS, "stop_at_eos": True, "eos_id": EOS, **change}
    with pytest.raises(MappingError) as err:
        sampling_kwargs(**args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_request_seeds_are_a_function_of_the_key_alone():
    keys = torch.cat([keys_for(2048), keys_for(2048, set_id=1), keys_for(8, set_id=2**31)])
    seeds = [request_seed(k) for k in keys.tolist()]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert request_seed([0, 1, 2, 3]) == request_seed((0, 1, 2, 3))
    with pytest.raises(ValueError, match="4 integers"):
        request_seed([0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        request_seed([0, 0, -1, 0])


# THE ENGINES ---------------------------------------------------------------------------


def test_missing_vllm_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError) as err:
        load_vllm()
    assert "pip install 'rdx[vllm]'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ImportError, match="rdx\\[vllm\\]"):
        make_engine("vllm", tiny_gpt2(97, 1, 16, 2, seed=0), "/nowhere", "float32")


def test_hf_engine_is_rdx_sampler(beta):
    model, _ = beta
    d = Decoding(new_tokens=12, temperature=1.0, eos_id=EOS, top_k=40, batch_size=8)
    got = HFEngine(model).sample(prefixes_for(16), keys_for(16), d)
    want = sample(
        model, prefixes_for(16), 12, temperature=1.0, keys=keys_for(16), eos_id=EOS, top_k=40
    )
    assert torch.equal(got.tokens, want) and got.logprobs is None


def test_vllm_engine_sends_each_row_as_a_seeded_request(vllm, beta):
    model, path = beta
    engine = make_engine("vllm", model, path, "float32")
    d = Decoding(new_tokens=20, temperature=0.9, eos_id=EOS, top_k=50, repetition_penalty=1.3)
    drawn = engine.sample(prefixes_for(12), keys_for(12), d)
    (llm,) = vllm.LLM.instances
    assert llm.kwargs["model"] == path and llm.kwargs["dtype"] == "float32"
    assert llm.kwargs["skip_tokenizer_init"] and llm.kwargs["logprobs_mode"] == "raw_logprobs"
    assert [p.seed for p in llm.requests] == [request_seed(k) for k in keys_for(12).tolist()]
    p = llm.requests[0]
    assert (p.temperature, p.top_k, p.repetition_penalty, p.max_tokens) == (0.9, 50, 1.3, 20)
    assert (p.stop_token_ids, p.ignore_eos) == ([EOS], False)
    assert drawn.tokens.shape == (12, 25) and torch.equal(drawn.tokens[:, :5], prefixes_for(12))
    seqs = Sequences.from_samples(drawn.tokens, 5, EOS)
    after = torch.arange(25)[None, :] >= seqs.lengths[:, None]
    assert drawn.tokens[after].eq(EOS).all()  # filled with EOS after a row's EOS, as hf


def test_vllm_rows_do_not_depend_on_batching_or_splits(vllm, beta):
    """The same rows whole (batches of 16) or split in three uneven calls (batches of 5):
    every row is its own seeded request."""
    model, path = beta
    prefixes, keys = prefixes_for(40), keys_for(40)
    d = Decoding(new_tokens=20, temperature=1.0, eos_id=EOS, top_k=40, repetition_penalty=1.2)
    whole = VLLMEngine(path, dtype="float32", model_eos_ids=(EOS,), max_num_seqs=16)
    split = VLLMEngine(path, dtype="float32", model_eos_ids=(EOS,), max_num_seqs=5)
    a = whole.sample(prefixes, keys, d)
    whole.close()  # one engine at a time holds the GPU
    parts = [
        split.sample(prefixes[s], keys[s], d) for s in (slice(0, 3), slice(3, 29), slice(29, 40))
    ]
    assert torch.equal(a.tokens, torch.cat([p.tokens for p in parts]))
    # the log-probs move in their last bits with the batch's shape (the model's kernels)
    assert torch.allclose(a.logprobs, torch.cat([p.logprobs for p in parts]), atol=1e-5)
    ended = Sequences.from_samples(a.tokens, 5, EOS).lengths < 25
    assert 0 < int(ended.sum()) < 40  # EOS stopped some rows, not all
    split.close()
    other = whole.sample(prefixes, keys_for(40, set_id=1), d)  # sample after close restarts
    assert not torch.equal(a.tokens, other.tokens)  # another sample set, other draws


def test_vllm_fixed_length_rows_are_full(vllm, beta):
    model, path = beta
    d = Decoding(new_tokens=20, temperature=1.0, eos_id=EOS, stop_at_eos=False)
    drawn = make_engine("vllm", model, path, "float32").sample(prefixes_for(24), keys_for(24), d)
    (llm,) = vllm.LLM.instances
    assert all(p.ignore_eos and p.min_tokens == 0 for p in llm.requests)
    assert drawn.tokens.shape == (24, 25) and (drawn.logprobs != 0).all()


def test_engine_likelihood_is_the_rescoring_up_to_the_engines_numbers(vllm, beta):
    """β_i from the engine's raw log-probs averages the positions sequence_prob does (the
    fake runs the same float32 model, so the two agree to rounding)."""
    model, path = beta
    d = Decoding(new_tokens=20, temperature=1.0, eos_id=EOS)
    drawn = make_engine("vllm", model, path, "float32").sample(prefixes_for(32), keys_for(32), d)
    seqs = Sequences.from_samples(drawn.tokens, 5, EOS)
    assert torch.allclose(engine_prob(drawn.logprobs, seqs), sequence_prob(model, seqs), atol=1e-5)


def test_close_shuts_vllm_down_so_a_second_engine_starts(vllm, beta):
    """vLLM's memory check fails a second LLM while the first holds the GPU (the next β
    build of a launcher=basic sweep, in the same process); close() frees it."""
    model, path = beta
    d = Decoding(new_tokens=6, temperature=1.0, eos_id=EOS)
    first = make_engine("vllm", model, path, "float32")
    first.sample(prefixes_for(4), keys_for(4), d)
    second = make_engine("vllm", model, path, "float32")
    with pytest.raises(ValueError, match="less than desired GPU memory utilization"):
        second.sample(prefixes_for(4), keys_for(4), d)
    first.close()
    assert vllm.LLM.instances[0].shut_down and vllm.LLM.live == []
    second.sample(prefixes_for(4), keys_for(4), d)
    first.close()  # closing twice, or an engine never started, is nothing
    make_engine("vllm", model, path, "float32").close()
    assert len(vllm.LLM.live) == 1


def test_a_model_dir_without_architectures_loads_as_a_generator(vllm, beta, tmp_path):
    """gpu-check's OPT-6.7B dir is a bare config: vLLM would take it for a pooling model."""
    model, _ = beta
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="pooling"):  # what vLLM does on its own
        vllm.LLM(str(tmp_path))
    vllm.LLM.live.clear()
    engine = make_engine("vllm", model, str(tmp_path), "float32")
    drawn = engine.sample(prefixes_for(4), keys_for(4), Decoding(6, 1.0, EOS))
    (llm,) = vllm.LLM.instances[-1:]
    assert llm.kwargs["runner"] == "generate"
    assert llm.kwargs["hf_overrides"] == {"architectures": ["GPT2LMHeadModel"]}
    assert drawn.tokens.shape == (4, 11)
    config["model_type"] = "no-such-model"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MappingError, match="model_type='no-such-model' has no causal-LM class"):
        make_engine("vllm", model, str(tmp_path), "float32").sample(
            prefixes_for(4), keys_for(4), Decoding(6, 1.0, EOS)
        )


def test_memory_share_and_model_runner_reach_vllm_and_the_key(vllm, beta, monkeypatch):
    model, path = beta
    d = Decoding(new_tokens=6, temperature=1.0, eos_id=EOS)
    engine = make_engine("vllm", model, path, "float32", gpu_memory_utilization=0.3)
    engine.sample(prefixes_for(4), keys_for(4), d)
    (llm,) = vllm.LLM.instances
    assert llm.kwargs["gpu_memory_utilization"] == 0.3
    assert llm.runner_env == "0"  # V1 unless asked: vLLM 0.32 would pick V2 on CUDA
    assert engine_key("vllm") == {"name": "vllm", "version": fake_vllm.__version__, "runner": "v1"}
    engine.close()
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    v2 = make_engine("vllm", model, path, "float32")
    v2.sample(prefixes_for(4), keys_for(4), d)
    assert vllm.LLM.instances[-1].runner_env == "1" and engine_key("vllm")["runner"] == "v2"
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "maybe")
    with pytest.raises(ValueError, match="VLLM_USE_V2_MODEL_RUNNER='maybe': expected 0 or 1"):
        engine_key("vllm")


def test_processed_likelihood_comes_from_vllms_processed_log_probs(vllm, beta):
    """behavior_prob=processed, likelihood=engine: vLLM's processed_logprobs (penalty,
    temperature, top-k, rdx's order) give rdx's processed β_i; the key says which."""
    model, path = beta
    mode = logprobs_mode(behavior_prob="processed", likelihood="engine")
    assert mode == "processed_logprobs"
    assert logprobs_mode(behavior_prob="processed", likelihood="rescore") == "raw_logprobs"
    options = dict(temperature=0.7, top_k=20, repetition_penalty=1.3)
    d = Decoding(new_tokens=20, eos_id=EOS, **options)
    engine = make_engine("vllm", model, path, "float32", logprobs_mode=mode)
    drawn = engine.sample(prefixes_for(32), keys_for(32), d)
    assert vllm.LLM.instances[0].kwargs["logprobs_mode"] == "processed_logprobs"
    seqs = Sequences.from_samples(drawn.tokens, 5, EOS)
    want = processed_sequence_prob(model, seqs, **options)
    assert torch.allclose(engine_prob(drawn.logprobs, seqs), want, atol=1e-5)
    assert not torch.allclose(want, sequence_prob(model, seqs), atol=1e-3)
    assert engine_key("vllm", mode)["logprobs"] == "processed_logprobs"
    assert "logprobs" not in engine_key("vllm")  # the raw entries' keys as before


def test_a_hub_name_reaches_vllm_as_its_local_snapshot(vllm, beta, tmp_path, monkeypatch):
    """Resolved under rdx's hub policy before vLLM sees it: an offline node fails in one
    line instead of vLLM waiting on the network."""
    from huggingface_hub import constants

    model, path = beta
    snap = tmp_path / "models--org--tiny" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    model.save_pretrained(snap)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    make_engine("vllm", model, "org/tiny", "float32").sample(
        prefixes_for(2), keys_for(2), Decoding(4, 1.0, EOS)
    )
    assert vllm.LLM.instances[0].kwargs["model"] == str(snap)
    with pytest.raises(HubUnavailable) as err:
        make_engine("vllm", model, "org/absent", "float32")
    assert "'org/absent'" in str(err.value) and "\n" not in str(err.value)
    assert len(vllm.LLM.instances) == 1  # refused before any vLLM started
