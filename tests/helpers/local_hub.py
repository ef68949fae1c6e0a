"""Local "hub" dirs for offline tests: every preset's architecture built tiny.

No test downloads anything. Every preset's architecture (GPT-2, OPT, XGLM, BERT) is built
tiny with random weights and saved, with a tokenizer trained here, to a temp dir that is
passed as model.hub / behavior.hub / reward.hub (from_pretrained takes a local dir).
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
    XGLMConfig,
    XGLMForCausalLM,
)

from rdx.data.synthetic import generate


def _texts() -> list[str]:
    corpus = generate(200, 20, seed=0)
    return [e.text for e in corpus.train]


def _bpe(texts, vocab: int, *, bos: bool, metaspace: bool) -> PreTrainedTokenizerFast:
    """A causal LM tokenizer: byte-level BPE like GPT-2/OPT, or SentencePiece-style
    (Metaspace, like XGLM: a word's leading space is part of its first token); with a BOS
    before every text like OPT and XGLM (`</s>`, which is also their EOS)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<unk>", "</s>"]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=specials,
            initial_alphabet=[] if metaspace else pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if bos:
        eos = tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="</s> $A", special_tokens=[("</s>", eos)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        bos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _wordpiece(texts, vocab: int) -> PreTrainedTokenizerFast:
    """BERT's kind: lower-cased WordPiece, [CLS] text [SEP]."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False),
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _save(model, tokenizer, out: Path) -> str:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def build_hub(root: Path) -> dict[str, str]:
    """Tiny random-weight models of every preset's class, each with its own tokenizer,
    saved under root: {"gpt2" | "opt" | "xglm" | "bert": model dir}."""
    texts = _texts()
    torch.manual_seed(0)
    gpt2_tok = _bpe(texts, 300, bos=False, metaspace=False)
    opt_tok = _bpe(texts, 400, bos=True, metaspace=False)
    xglm_tok = _bpe(texts, 350, bos=True, metaspace=True)
    bert_tok = _wordpiece(texts, 250)
    eos = {t: t.eos_token_id for t in (gpt2_tok, opt_tok, xglm_tok)}
    small = {"n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2}
    return {
        "gpt2": _save(
            GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=len(gpt2_tok),
                    **small,
                    bos_token_id=eos[gpt2_tok],
                    eos_token_id=eos[gpt2_tok],
                )
            ),
            gpt2_tok,
            root / "gpt2",
        ),
        "opt": _save(
            OPTForCausalLM(
                OPTConfig(
                    vocab_size=len(opt_tok),
                    hidden_size=32,
                    word_embed_proj_dim=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    ffn_dim=64,
                    max_position_embeddings=64,
                    pad_token_id=opt_tok.pad_token_id,
                    bos_token_id=eos[opt_tok],
                    eos_token_id=eos[opt_tok],
                )
            ),
            opt_tok,
            root / "opt",
        ),
        "xglm": _save(
            XGLMForCausalLM(
                XGLMConfig(
                    vocab_size=len(xglm_tok),
                    d_model=32,
                    num_layers=2,
                    attention_heads=2,
                    ffn_dim=64,
                    max_position_embeddings=64,
                    pad_token_id=xglm_tok.pad_token_id,
                    bos_token_id=eos[xglm_tok],
                    eos_token_id=eos[xglm_tok],
                )
            ),
            xglm_tok,
            root / "xglm",
        ),
        "bert": _save(
            BertModel(
                BertConfig(
                    vocab_size=len(bert_tok),
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=64,
                    max_position_embeddings=64,
                )
            ),
            bert_tok,
            root / "bert",
        ),
    }
