"""Model construction: rdx's tiny GPT-2/BERT and Hugging Face hub models, one code path.

Tiny models use the same `transformers` classes as hub models, so everything downstream
(sampling, scoring, training) is exercised by the tests on the real code path.
"""

from __future__ import annotations

import os

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
)

from rdx import hub
from rdx.hub import HubUnavailable

# Positions the tiny models support: T=30 trajectories and 64-token pretraining windows
# (defined torch-free, so the launch checks sampling.total_len before torch loads).
from rdx.lm import TINY_POSITIONS

# Weight loading/saving progress bars would drown the training log.
transformers.utils.logging.disable_progress_bar()


def tiny_gpt2(
    vocab_size: int, n_layer: int, n_embd: int, n_head: int, seed: int, eos_id: int = 0
) -> GPT2LMHeadModel:
    # Dropout off: π's log-probs feed the importance ratio π/β, which dropout noise would bias.
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=TINY_POSITIONS,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def tiny_bert(
    vocab_size: int, n_layer: int, n_embd: int, n_head: int, num_labels: int, seed: int
) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        intermediate_size=4 * n_embd,
        max_position_embeddings=TINY_POSITIONS,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def load_hub(kind: str, name: str, **kwargs):
    """kind: causal | classifier | tokenizer | config; `name` is a hub name or a local dir.

    Without RDX_HUB=1 only local files are read (a saved dir or the HF cache): transformers
    would otherwise retry an unreachable hub for ~30 s per file. HF_HUB_OFFLINE is read once
    when huggingface_hub is imported, so setting it here would come too late for this
    process; local_files_only is what makes the failure immediate.
    """
    if not hub.enabled():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # for libraries imported after this
        kwargs.setdefault("local_files_only", True)
        if kind in ("causal", "classifier"):
            # transformers 5 looks for a PEFT adapter_config.json without local_files_only,
            # and so retries an unreachable hub for ~25 s before the real load fails
            kwargs.setdefault("adapter_kwargs", {"local_files_only": True})
    loader = {
        "causal": AutoModelForCausalLM,
        "classifier": AutoModelForSequenceClassification,
        "tokenizer": AutoTokenizer,
        "config": AutoConfig,
    }[kind]
    try:
        return loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:  # not there, or a directory of damaged files
        raise HubUnavailable(hub.load_failure(name, kind, err)) from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fixed_dtype(device: torch.device, precision: str) -> torch.dtype:
    """dtype of the fixed models β and R: the run's precision on GPU (an OPT-6.7B β is 27 GB
    in float32), float32 on CPU, where half-precision matmuls are slow and gain nothing."""
    if device.type != "cuda" or precision == "fp32":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def max_positions(config) -> int | None:
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    return None


# The authors' not-pretrained target (load_pretrained_LLM.py at 4f58682, init_weight=uniform,
# their Fig. 3a runs): every trainable weight assigned tf.random.uniform(−0.05, 0.05).
UNIFORM_BOUND = 0.05


@torch.no_grad()
def uniform_init(model: torch.nn.Module, seed: int, bound: float = UNIFORM_BOUND) -> None:
    """Every parameter of `model` drawn afresh from U(−bound, bound), as the authors' random
    init: LayerNorm gains and biases too (a gain near 0 instead of 1 is part of what they
    trained from). Drawn in float32 on the host from one generator seeded by `seed`, in
    parameter order, so a seed gives the same π on every device; a tied weight (GPT-2's
    embedding and head) is one parameter and drawn once."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        draw = torch.rand(p.shape, generator=generator, dtype=torch.float32)
        p.copy_((draw * 2 - 1) * bound)  # [0, 1) -> [−bound, bound)


def hub_causal_lm(
    name: str,
    init: str,
    seed: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """A hub architecture with its pretrained weights, or freshly initialised (init=random:
    the paper's Fig. 3a case) from its config alone, without loading the weights.

    Made in `dtype` (None: the checkpoint's own, "auto"), never through float32 first:
    pretrained weights load straight onto a CUDA `device` (device_map: no host copy of an
    OPT-6.7B's 13 GB); a random init is drawn on the host, from the CPU generator, so one
    seed gives one π on every machine (a CUDA draw depends on the GPU's launch shapes).
    """
    as_asked = {} if dtype is None else {"dtype": dtype}
    if init in ("random", "uniform"):  # uniform: drawn over this by uniform_init
        config = load_hub("config", name)
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, **as_asked)  # else config.dtype
    onto = {"device_map": str(device)} if device is not None and device.type == "cuda" else {}
    return load_hub("causal", name, **{"dtype": "auto", **as_asked}, **onto)


def policy_load_dtype(trainable: str, init: str, fixed: torch.dtype) -> torch.dtype | None:
    """The dtype a hub π is made in (hub_causal_lm): float32 when every weight is trained
    (Adam's updates would round away in half precision); else the checkpoint's own (None),
    or `fixed` for a random init, so that the frozen weights never exist in float32 and
    only the trained ones are made float32 (cast_frozen, rdx.pipeline.offpolicy.trainer)."""
    if trainable == "all":
        return torch.float32
    return fixed if init in ("random", "uniform") else None


def cast_frozen(model: PreTrainedModel, dtype: torch.dtype) -> None:
    """Frozen weights in half precision (memory of a `last_layer` 6.7B target); trained ones
    stay float32 so that Adam's updates are not rounded away."""
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(dtype)


def freeze_all_but_last_layer(model: PreTrainedModel) -> None:
    """`trainable: last_layer` for ≥1B targets: train the last block and the output head only."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = None
    for attr in ("transformer.h", "model.decoder.layers", "model.layers", "gpt_neox.layers"):
        obj = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        blocks = obj
        break
    if blocks is None:
        raise ValueError(f"trainable=last_layer: unknown block layout for {type(model).__name__}")
    for p in blocks[-1].parameters():
        p.requires_grad_(True)
    for p in model.get_output_embeddings().parameters():
        p.requires_grad_(True)
