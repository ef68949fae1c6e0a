"""Token rows of one model and the one rule for which of their positions are scored.

Every score in rdx (β_i, π̄_i, CE_i, accuracies) averages over the same positions: the
continuation after the prefix, up to and including the EOS that ended it, never the filler
after it (TRL masks the same way). `Sequences` carries the two numbers per row that fix
those positions, whichever model's tokens the row is in; `span_mask` turns them into the
mask of predicted positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Sequences:
    """Right-padded token rows of one model: prefix, then the continuation that is scored.

    prefix_lens[i]: tokens before the continuation (a BOS included); lengths[i]: tokens up
    to and including the EOS that ended row i (the row's width when none did). Whatever
    model wrote the row, the scored positions follow from these two numbers alone.
    """

    tokens: Tensor  # (N, L) long
    prefix_lens: Tensor  # (N,) long
    lengths: Tensor  # (N,) long

    def __len__(self) -> int:
        return len(self.tokens)

    def mask(self, score_prefix: bool = False) -> Tensor:
        """(N, L−1) mask over predicted positions (see span_mask)."""
        return span_mask(
            self.prefix_lens, self.lengths, self.tokens.shape[1], score_prefix=score_prefix
        )

    def select(self, idx: Tensor) -> Sequences:
        return Sequences(self.tokens[idx], self.prefix_lens[idx], self.lengths[idx])

    @classmethod
    def from_samples(cls, tokens: Tensor, prefix_len: int, eos_id: int | None) -> Sequences:
        """Rows of `sample`: one prefix length, each row ending at its first continuation
        EOS (an EOS inside the prefix ends nothing); eos_id None: no row ends early."""
        prefix_lens = torch.full((len(tokens),), prefix_len, dtype=torch.long)
        lengths = continuation_lengths(tokens[:, prefix_len:], prefix_lens, eos_id)
        return cls(tokens, prefix_lens, lengths)


def continuation_lengths(continuation: Tensor, prefix_lens: Tensor, eos_id: int | None) -> Tensor:
    """lengths of rows prefix + continuation (N, new): up to and including the first EOS of
    the continuation, the whole row when there is none (or eos_id is None)."""
    lengths = prefix_lens + continuation.shape[1]
    if eos_id is not None:
        is_eos = continuation == eos_id
        first = is_eos.long().argmax(1)  # the first EOS of a row that has one
        ended = is_eos.any(1)
        lengths = torch.where(ended, prefix_lens + first + 1, lengths)
    return lengths


def span_mask(
    prefix_lens: Tensor, lengths: Tensor, width: int, *, score_prefix: bool = False
) -> Tensor:
    """Mask (N, width−1) over predicted positions: position t scores token t+1.

    Scored: tokens prefix_len ≤ t+1 < length, i.e. the continuation up to and including
    its EOS; `score_prefix` also scores prefix tokens 1..prefix_len−1 (the authors' code).
    """
    target = torch.arange(1, width, device=lengths.device)[None, :]
    start = torch.ones_like(prefix_lens) if score_prefix else prefix_lens
    return ((target >= start[:, None]) & (target < lengths[:, None])).float()
