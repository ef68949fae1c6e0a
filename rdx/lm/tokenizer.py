"""The tiny models' tokenizer: byte-level BPE trained on the corpus with `tokenizers`.

A 50k GPT-2 vocabulary would dominate a 1M-parameter model's compute; a corpus-sized
vocabulary keeps the embedding and softmax small. Byte-level BPE decodes back to the exact
text, which the reward model and text metrics need.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "eos_token": "[EOS]"}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: Path
) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    fast.save_pretrained(out_dir)
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path))
