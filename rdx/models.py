"""Model construction: rdx's tiny GPT-2/BERT and Hugging Face hub models, one code path.

Tiny models use the same `transformers` classes as hub models, so everything downstream
(sampling, scoring, training) is exercised by the tests on the real code path.
"""

from __future__ import annotations

import os

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
)

# Weight loading/saving progress bars would drown the training log.
transformers.utils.logging.disable_progress_bar()

# Positions the tiny models support: T=30 trajectories and 64-token pretraining windows.
TINY_POSITIONS = 64


class HubUnavailable(RuntimeError):
    """A hub name was requested but the hub cannot be reached."""


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


def _hub_guard(name: str) -> None:
    # Without a reachable hub, from_pretrained retries for minutes; offline mode makes it
    # fail at once from the local HF cache, which is what we want unless the user opted in.
    if os.environ.get("RDX_HUB", "0") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_hub(kind: str, name: str, **kwargs) -> PreTrainedModel:
    """kind: causal | classifier | tokenizer. Fails fast with a message when offline."""
    _hub_guard(name)
    loader = {
        "causal": AutoModelForCausalLM,
        "classifier": AutoModelForSequenceClassification,
        "tokenizer": AutoTokenizer,
    }[kind]
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as err:
        raise HubUnavailable(
            f"cannot load {name!r} from the Hugging Face hub or its local cache "
            f"({err.__class__.__name__}); download it on a machine with access "
            "(huggingface-cli download NAME), or set RDX_HUB=1 "
            "to allow downloads, or use the tiny presets (model=tiny behavior=tiny reward=tiny)"
        ) from None


def freeze_all_but_last_layer(model: PreTrainedModel) -> None:
    """`trainable: last_layer` for ≥1B targets: train the last block and the output head only."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = None
    for attr in ("transformer.h", "model.decoder.layers", "model.layers"):
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
