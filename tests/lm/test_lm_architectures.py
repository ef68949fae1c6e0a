"""Every hub architecture (GPT-2, OPT, XGLM) through rdx's sampler and
trainable-layer rules, at random init from local dirs."""

import pytest
import torch

from rdx.lm.codec import Codec
from rdx.lm.models import (
    freeze_all_but_last_layer,
    hub_causal_lm,
    load_hub,
    policy_load_dtype,
)
from rdx.lm.sampling import sample

# ------------------------------------------------------------------ architectures


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
def test_cached_sampler_matches_full_recompute(hub, arch):
    """The KV-cache sampler is exact for each preset's architecture (OPT and XGLM compute
    positions their own way), BOS-led prefixes included."""
    model = load_hub("causal", hub[arch]).eval()
    codec = Codec(load_hub("tokenizer", hub[arch]))
    prefixes = torch.tensor(codec.prefix_ids(["the food was good", "the team won the"], 3))
    fast = sample(model, prefixes, 8, temperature=0)
    x = prefixes
    with torch.no_grad():
        for _ in range(8):
            x = torch.cat([x, model(input_ids=x).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(fast, x)


@pytest.mark.parametrize(
    "arch, trainable",
    [
        ("gpt2", {"transformer.h.1.", "transformer.wte.weight"}),
        ("opt", {"model.decoder.layers.1.", "model.decoder.embed_tokens.weight"}),
        ("xglm", {"model.layers.1.", "model.embed_tokens.weight"}),
    ],
)
def test_last_layer_trains_the_last_block_and_the_head(hub, arch, trainable):
    model = load_hub("causal", hub[arch])
    freeze_all_but_last_layer(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(any(n.startswith(t) for t in trainable) for n in names)
    assert any(n.startswith(sorted(trainable)[0]) for n in names)
    assert sum(p.numel() for n, p in model.named_parameters() if n not in names) > 0


def test_hub_random_init_is_seeded_and_not_the_checkpoint(hub):
    a = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    b = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    c = hub_causal_lm(hub["gpt2"], "pretrained", seed=1).state_dict()
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


# ------------------------------------------------------------------ π's dtype on loading


def _policy_cfg(hub_dir, init, trainable="last_layer"):
    from types import SimpleNamespace

    return SimpleNamespace(
        model=SimpleNamespace(hub=hub_dir, init=init, trainable=trainable),
        trainer=SimpleNamespace(precision="bf16"),
        seed=0,
    )


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_a_hub_target_is_made_in_bf16_and_its_frozen_layers_stay_bf16(hub, tmp_path, init):
    """build_policy as on a bf16 GPU run (fixed dtype bf16), on the CPU: a bf16 checkpoint
    loads in bf16, and a random init is drawn in bf16 even where the config says float32,
    so no float32 copy of the model exists; the frozen weights are the loaded tensors
    themselves, still bf16; only the trained block and head are made float32."""
    from types import SimpleNamespace
    from unittest import mock

    from rdx.pipeline.offpolicy import trainer

    bf16 = tmp_path / "opt-bf16"
    load_hub("causal", hub["opt"]).to(torch.bfloat16).save_pretrained(bf16)
    assert load_hub("config", hub["opt"]).dtype == torch.float32
    loaded = {}

    def spy(*args, **kwargs):
        model = hub_causal_lm(*args, **kwargs)
        loaded.update({n: (p.dtype, p.data_ptr()) for n, p in model.named_parameters()})
        return model

    with (
        mock.patch.object(trainer, "fixed_dtype", lambda device, precision: torch.bfloat16),
        mock.patch.object(trainer, "hub_causal_lm", spy),
    ):
        cfg = _policy_cfg(str(bf16) if init == "pretrained" else hub["opt"], init)
        policy = trainer.build_policy(cfg, SimpleNamespace(kernels="torch"), torch.device("cpu"))
    assert {dtype for dtype, _ in loaded.values()} == {torch.bfloat16}
    frozen = {n: p for n, p in policy.named_parameters() if not p.requires_grad}
    assert frozen and {p.dtype for p in frozen.values()} == {torch.bfloat16}
    assert all(p.data_ptr() == loaded[n][1] for n, p in frozen.items())  # never converted
    assert {p.dtype for p in policy.parameters() if p.requires_grad} == {torch.float32}


def test_hub_targets_load_onto_the_gpu_in_the_checkpoints_dtype(monkeypatch):
    """Pretrained weights go to a CUDA device through device_map, in the checkpoint's dtype
    unless every weight is trained (then float32, for Adam)."""
    from rdx.lm import models

    calls = []
    monkeypatch.setattr(models, "load_hub", lambda kind, name, **kw: calls.append(kw))
    hub_causal_lm("opt-6.7b", "pretrained", 0, device=torch.device("cuda", 1))
    hub_causal_lm("gpt2", "pretrained", 0, device=torch.device("cpu"), dtype=torch.float32)
    assert calls == [{"dtype": "auto", "device_map": "cuda:1"}, {"dtype": torch.float32}]
    bf16 = torch.bfloat16
    assert policy_load_dtype("all", "pretrained", bf16) == torch.float32
    assert policy_load_dtype("all", "random", bf16) == torch.float32
    assert policy_load_dtype("last_layer", "pretrained", bf16) is None  # the checkpoint's
    assert policy_load_dtype("lora", "random", bf16) == bf16
