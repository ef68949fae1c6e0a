"""One model's view of trajectories: text ⇄ its tokens (docs/design.md §4, different tokenizers).

β samples in its own tokens; each trajectory is also kept as (prefix text, continuation
text, ended). Another model (π, or β scoring π's samples) gets them re-tokenised: prefix
and continuation separately, so the continuation positions, the scored ones, are exactly
the continuation's tokens; a trajectory that ended gets the model's own EOS, scored as β's
was. R always gets text.
"""

from __future__ import annotations

import hashlib

import torch
from transformers import PreTrainedTokenizerBase

from rdx.lm.sequences import Sequences


def leading_specials(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokens the tokenizer puts before a text (OPT and XGLM: a BOS `</s>`; GPT-2: none)."""
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a b")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


class Codec:
    """Text ⇄ right-padded token rows (`Sequences`) of one causal LM's tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_len: int | None = None):
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token")
        self.tokenizer = tokenizer
        self.eos_id: int = tokenizer.eos_token_id
        self.bos: list[int] = leading_specials(tokenizer)
        self.max_len = max_len  # the model's positions: longer rows are cut (and not ended)

    def fingerprint(self) -> str:
        """Equal for tokenizers that map every text to the same ids (gpt2 and gpt2-large)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        blob = backend.to_str() if backend is not None else repr(sorted(self.tokenizer.get_vocab()))
        return hashlib.sha256(f"{blob}|{self.bos}|{self.eos_id}".encode()).hexdigest()[:16]

    def same_tokens(self, other: Codec) -> bool:
        return self is other or (
            self.fingerprint() == other.fingerprint() and self.max_len == other.max_len
        )

    def prefix_ids(self, texts: list[str], p: int) -> list[list[int]]:
        """The first p tokens (after the BOS) of every text longer than p tokens."""
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [self.bos + x[:p] for x in ids if len(x) > p]

    def encode(self, prefixes: list[str], continuations: list[str], ended: list[bool]) -> Sequences:
        """Rows BOS + tokens(prefix) + tokens(continuation) [+ EOS if the trajectory ended]."""
        tok = self.tokenizer
        pre = tok(prefixes, add_special_tokens=False)["input_ids"] if prefixes else []
        cont = tok(continuations, add_special_tokens=False)["input_ids"] if continuations else []
        rows, prefix_lens = [], []
        for p, c, end in zip(pre, cont, ended, strict=True):
            row = self.bos + p + c + ([self.eos_id] if end else [])
            if self.max_len is not None:
                row = row[: self.max_len]
            rows.append(row)
            prefix_lens.append(min(len(self.bos) + len(p), len(row)))
        width = max((len(r) for r in rows), default=1)
        tokens = torch.full((len(rows), width), self.eos_id, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return Sequences(
            tokens,
            torch.tensor(prefix_lens, dtype=torch.long),
            torch.tensor([len(r) for r in rows], dtype=torch.long),
        )

    def prefixes(self, texts: list[str]) -> Sequences:
        """Prefix-only rows (for decoding): lengths == prefix_lens."""
        return self.encode(texts, [""] * len(texts), [False] * len(texts))

    def decode(self, seqs: Sequences) -> tuple[list[str], list[str], list[bool]]:
        """(prefix text, continuation text, ended) of every row.

        The continuation is the full text minus the prefix's text: decoding it alone would
        drop its leading space with SentencePiece tokenizers (XGLM), gluing the words.
        """
        tok = self.tokenizer
        rows = [seqs.tokens[i, : int(seqs.lengths[i])].tolist() for i in range(len(seqs))]
        ended = [
            len(r) > int(pl) and r[-1] == self.eos_id
            for r, pl in zip(rows, seqs.prefix_lens.tolist(), strict=True)
        ]
        bodies = [r[:-1] if e else r for r, e in zip(rows, ended, strict=True)]
        cuts = seqs.prefix_lens.tolist()
        prefixes = tok.batch_decode(
            [r[:c] for r, c in zip(rows, cuts, strict=True)], skip_special_tokens=True
        )
        full = tok.batch_decode(bodies, skip_special_tokens=True)
        conts = []
        for p, f, body, c in zip(prefixes, full, bodies, cuts, strict=True):
            conts.append(
                f[len(p) :] if f.startswith(p) else tok.decode(body[c:], skip_special_tokens=True)
            )
        return prefixes, conts, ended

    def texts(self, seqs: Sequences) -> list[str]:
        """The full text of every row (what R reads)."""
        rows = [seqs.tokens[i, : int(seqs.lengths[i])].tolist() for i in range(len(seqs))]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)
