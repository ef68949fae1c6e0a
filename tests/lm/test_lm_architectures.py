"""Every hub architecture (GPT-2, OPT, XGLM) through rdx's sampler and
trainable-layer rules, at random init from local dirs."""

import pytest
import torch

from rdx.lm.codec import Codec
from rdx.lm.models import freeze_all_but_last_layer, load_hub
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
    from rdx.lm.models import hub_causal_lm

    a = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    b = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    c = hub_causal_lm(hub["gpt2"], "pretrained", seed=1).state_dict()
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
