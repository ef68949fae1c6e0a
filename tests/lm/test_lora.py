"""model.trainable=lora (rdx.lm.lora) on tiny GPT-2, OPT and XGLM architectures (random
weights, local dirs): gradients reach only the adapters, frozen weights stay as they were,
the merged model computes the adapter model's logits, and a resumed run ends identical to
an uninterrupted one."""

import json

import pytest
import torch

from rdx.config import ConfigError
from rdx.lm.lora import add_lora, load_trainable_state, merged_copy, trainable_state
from rdx.lm.models import load_hub
from rdx.method.objective import reward_dropout_loss
from rdx.run import execute
from tests.cli.test_config import compose_cfg

ARCHS = ["gpt2", "opt", "xglm"]
TARGETS = {"gpt2": None, "opt": None, "xglm": ["q_proj", "v_proj"]}  # None: peft's default


def _lora_model(hub, arch):
    torch.manual_seed(0)
    base = load_hub("causal", hub[arch]).float().eval()
    return add_lora(base, r=4, alpha=8, target_modules=TARGETS[arch], dropout=0.0)


def _step(model, optimizer, generator):
    """One step of the paper's objective on a random batch (rows of 12 tokens)."""
    vocab = model.config.vocab_size
    x = torch.randint(3, vocab, (6, 12), generator=generator)
    mask = torch.ones(6, 11)
    mask[:, :3] = 0  # the prefix is not scored
    reward = torch.randn(6, generator=generator)
    beta = torch.rand(6, generator=generator) * 0.1
    keep = torch.tensor([True, False, True, True, False, True])
    optimizer.zero_grad(set_to_none=True)
    logits = model(input_ids=x[:, :-1]).logits
    reward_dropout_loss(logits, x[:, 1:], mask, reward, beta, keep).loss.backward()


@pytest.mark.parametrize("arch", ARCHS)
def test_only_adapters_train_and_frozen_weights_stay(hub, arch):
    model = _lora_model(hub, arch)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    assert sum(p.numel() for p in adapters.values()) < sum(p.numel() for p in frozen.values())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        _step(model, optimizer, generator)
        for name, p in model.named_parameters():
            if name in frozen:
                assert p.grad is None, name
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        optimizer.step()
    # Adam holds state for the adapters alone
    assert len(optimizer.state) == len(params)
    after = dict(model.named_parameters())
    for name, before in frozen.items():
        assert torch.equal(after[name], before), name
    moved = [n for n, before in adapters.items() if not torch.equal(after[n], before)]
    assert any("lora_B" in n for n in moved) and any("lora_A" in n for n in moved)


@pytest.mark.parametrize("arch", ARCHS)
def test_merged_model_logits_equal_the_adapter_models(hub, arch):
    model = _lora_model(hub, arch)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):  # B ≠ 0, or merging would be trivially exact
        _step(model, optimizer, generator)
        optimizer.step()
    x = torch.randint(3, model.config.vocab_size, (4, 10), generator=generator)
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        plain = model.get_base_model()
        with model.disable_adapter():
            base = model(input_ids=x).logits
        merged = merged_copy(model)
        assert not hasattr(merged, "peft_config") and type(merged) is type(plain)
        assert (adapted - base).abs().max() > 1e-3  # the adapters changed the logits
        torch.testing.assert_close(merged(input_ids=x).logits, adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_holds_adapters_only_and_restores_them(hub, arch):
    model = _lora_model(hub, arch)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    _step(model, optimizer, torch.Generator().manual_seed(3))
    optimizer.step()
    state = trainable_state(model)
    assert state and all("lora_" in k for k in state)
    fresh = _lora_model(hub, arch)
    load_trainable_state(fresh, state)
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_xglm_without_target_modules_names_the_key(hub):
    base = load_hub("causal", hub["xglm"])
    with pytest.raises(ValueError, match=r"model.lora.target_modules=null: .* xglm"):
        add_lora(base, r=4, alpha=8)
    with pytest.raises(ValueError, match=r"has no module 'c_attn'"):
        add_lora(base, r=4, alpha=8, target_modules=["c_attn"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.lora.r=0", "model.lora.r=0: expected a number > 0"),
        ("model.lora.dropout=1.0", "model.lora.dropout=1.0: expected a number in [0, 1)"),
        ("model.trainable=adapters", "model.trainable='adapters': expected one of"),
        ("experiment=harmless model.trainable=lora", "model.trainable=lora with algo=ppo"),
    ],
)
def test_bad_lora_settings_fail_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        compose_cfg("experiment=smoke", *override.split())
    assert str(err.value).startswith(message)


def _run(hub, arch, cache, run_dir, epochs):
    cfg = compose_cfg(
        "experiment=smoke",
        f"cache_dir={cache}",
        "trainer.threads=1",
        f"trainer.epochs={epochs}",
        f"model.hub={hub[arch]}",
        f"model.name={arch}",
        "model.trainable=lora",
        "model.lora.r=4",
        *([f"model.lora.target_modules=[{','.join(TARGETS[arch])}]"] if TARGETS[arch] else []),
    )
    execute(cfg, run_dir)
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_resumed_lora_run_ends_identical_to_an_uninterrupted_one(hub, arch, tmp_path):
    """2 epochs in one go vs 1 epoch, then the same run dir asked for 2: the checkpoint
    holds the adapters and Adam's state, and the resumed run ends with the same adapters
    and the same summary."""
    cache = tmp_path / "cache"
    whole = _run(hub, arch, cache, tmp_path / "whole", 2)
    _run(hub, arch, cache, tmp_path / "resumed", 1)
    resumed = _run(hub, arch, cache, tmp_path / "resumed", 2)
    assert resumed == whole
    assert whole["trainable"] == "lora" and whole["lora_r"] == 4
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys() and all("lora_" in k for k in a["model"])
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    states = a["optimizer"]["state"]
    assert len(states) == len(a["model"])  # Adam state for the adapters alone
