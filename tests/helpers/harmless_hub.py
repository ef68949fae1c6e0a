"""Local "hub" dirs of the harmlessness presets' architectures, built tiny with random weights.

Falcon (falcon-rw-1b: ALiBi, sequential attention), GPT-NeoX (Pythia), GPT-J and Mistral,
each saved with a byte-level BPE tokenizer trained here on the synthetic dialogues (Mistral's
with a BOS before every text, as its SentencePiece tokenizer has), so that the presets run
offline through the real code path. Nothing is downloaded.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    FalconConfig,
    FalconForCausalLM,
    GPTJConfig,
    GPTJForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
)

from rdx.data.hh import synthetic_pairs

PRESETS = ("falcon-1b", "pythia-2.8b", "gpt-j-6b", "mistral-7b")


def tokenizer(bos: bool) -> PreTrainedTokenizerFast:
    train, _ = synthetic_pairs(300, 10)
    texts = [p.prompt + r for p in train for r in (p.chosen, p.rejected)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build(preset: str, root: Path) -> str:
    """A tiny random model of `preset`'s architecture class, saved to root/preset."""
    tok = tokenizer(bos=preset == "mistral-7b")
    ids = {
        "vocab_size": len(tok),
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(0)
    if preset == "falcon-1b":
        model = FalconForCausalLM(
            FalconConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                alibi=True,
                multi_query=False,
                parallel_attn=False,
                bias=True,
                new_decoder_architecture=False,
                max_position_embeddings=128,
                **ids,
            )
        )
    elif preset == "pythia-2.8b":
        model = GPTNeoXForCausalLM(
            GPTNeoXConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
                **ids,
            )
        )
    elif preset == "gpt-j-6b":
        model = GPTJForCausalLM(
            GPTJConfig(n_embd=32, n_layer=2, n_head=2, rotary_dim=8, n_positions=128, **ids)
        )
    else:
        model = MistralForCausalLM(
            MistralConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                intermediate_size=64,
                max_position_embeddings=128,
                **ids,
            )
        )
    out = root / preset
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
