"""The authors' sentence filter, counted in tokens (sampling.min_tokens).

The authors tokenise every sentence left-padded to T = 30 tokens and drop each row with a
pad inside the prefix (prepare_trajectories.py:318-319 at 4f58682, `indice_pad_in_prefix`
and `remove_pad_in_prefix_case`): a sentence survives iff it has at least 30 tokens. The
paper's text (§6) instead drops sentences of over 30 *words*, rdx's default
(dataset.max_words, rdx.data.loaders).
"""

from __future__ import annotations

from typing import Any


def at_least_tokens(texts: list[str], tokenizer: Any, n: int) -> list[str]:
    """The texts of `n` or more tokens under `tokenizer` (no special tokens), in order."""
    if n < 1:
        raise ValueError(f"sampling.min_tokens={n}: expected an integer >= 1")
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [text for text, x in zip(texts, ids, strict=True) if len(x) >= n]
