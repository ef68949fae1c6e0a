"""The tiny models' tokenizer: byte-level BPE trained on the corpus with `tokenizers`.

A 50k GPT-2 vocabulary would dominate a 1M-parameter model's compute; a corpus-sized
vocabulary keeps the embedding and softmax small. Byte-level BPE decodes back to the exact
text, which the reward model and text metrics need.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

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


def build_tokenizer(out: Path, *, texts: list[str], vocab_size: int) -> None:
    """The cache builder of a corpus tokenizer (rdx.pipeline.cache.cached calls it)."""
    train_tokenizer(texts, vocab_size, out)


def add_cls(tokenizer: PreTrainedTokenizerBase) -> None:
    """BERT pools the first position: make the tiny tokenizer start every text with [CLS]."""
    from tokenizers.processors import TemplateProcessing

    cls = tokenizer.cls_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A", special_tokens=[(cls, tokenizer.cls_token_id)]
    )
