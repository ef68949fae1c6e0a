"""The hub presets' architectures at their real sizes, built from stated configs with
random weights: what GPU tests and scripts/gpu-check run without downloading weights.

The sizes are the published configs of the hub models (config.json of each repository);
only the fields that set the compute and memory are given, the rest are transformers'
defaults for the class.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    XGLMConfig,
)

ARCHS: dict[str, PretrainedConfig] = {
    "gpt2": GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024),
    "gpt2-large": GPT2Config(n_embd=1280, n_layer=36, n_head=20, vocab_size=50257),
    "opt-6.7b": OPTConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        ffn_dim=16384,
        vocab_size=50272,
        max_position_embeddings=2048,
        word_embed_proj_dim=4096,
    ),
    "xglm-1.7b": XGLMConfig(
        d_model=2048, num_layers=24, attention_heads=16, ffn_dim=8192, vocab_size=256008
    ),
}


def random_lm(
    arch: str, *, dtype: torch.dtype, device: str | torch.device, seed: int = 0
) -> PreTrainedModel:
    """ARCHS[arch] with random weights, made in `dtype` on `device` directly (a 6.7B model
    made in float32 on the host first would take 27 GB of RAM)."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}: expected one of {', '.join(ARCHS)}")
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(ARCHS[arch], dtype=dtype)
    return model.eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
