"""Language models: construction, tokenizers, token rows (Sequences), sampling, pretraining.

This file stays free of torch: rdx.config reads the kernel choices from here.
"""

from __future__ import annotations

from typing import Any

KERNELS = ("onednn", "torch")  # trainer.kernels: rdx.lm.kernels
TINY_POSITIONS = 64  # positions of rdx's tiny GPT-2 and BERT (rdx.lm.models)


def check_positions(cfg: Any) -> str | None:
    """Why sampling.total_len does not fit the tiny models (a one-line message), or None.

    Needs no torch, so the launch checks it before torch is imported; a row is the
    tokenizer's leading specials (at most 1 here) + T tokens. A hub model's rows are cut to
    its own positions by the codec.
    """
    if cfg.behavior.hub is not None and cfg.model.hub is not None:
        return None
    total = cfg.sampling.total_len
    if total < TINY_POSITIONS:
        return None
    return (
        f"sampling.total_len={total}: the tiny models have {TINY_POSITIONS} positions; "
        f"expected <= {TINY_POSITIONS - 1}"
    )
