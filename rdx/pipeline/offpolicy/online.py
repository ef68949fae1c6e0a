"""Online sampling (sampling.online): β continues each batch's prefixes afresh, the way the
authors' Fig. 3 runs did (reinforce_LLM.py at 4f58682: a new `generate` per batch at
temperature 0.4 with repetition penalty 3.0; sweeps=fig3_authors sets both).

The default, off-policy from stored trajectories (DESIGN §1-2), samples once per set; here
the batch's rows keep only their prefixes, and R and β_i are computed for the new
continuations. The objective is unchanged: the same π/β importance weight, the same
dropout. The random stream of batch b of epoch e comes from (seed, e, b) alone, so a run
resumed at an epoch replays the same samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rdx.config import Config
from rdx.lm.processed import behavior_prob_of
from rdx.lm.sampling import classifier_logits, sample
from rdx.lm.sequences import Sequences
from rdx.pipeline.offpolicy.artifacts import Prepared


def online_generator(seed: int, epoch: int, batch: int, sample_set: int = 0) -> torch.Generator:
    """β's stream for one batch: π's `seed` and `sampling.seed` both move it (set 0 keeps the
    streams of runs recorded before sampling.seed existed)."""
    base = (seed * 1_000_003 + epoch) * 1_000_033 + batch + 7
    return torch.Generator().manual_seed(base + sample_set * 1_000_000_007)


@torch.no_grad()
def online_batch(
    cfg: Config, prep: Prepared, rows: Sequences, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(tokens, mask, R_i, β_i) of β's fresh continuations of `rows`' prefixes (CPU)."""
    if not prep.shared_tokens:
        raise ValueError(
            "sampling.online=true: π and β must share a tokenizer (β's rows are π's input)"
        )
    s = cfg.sampling
    p = int(rows.prefix_lens[0])
    if not bool((rows.prefix_lens == p).all()):
        raise ValueError("sampling.online=true: the batch's prefixes differ in length")
    out = sample(
        prep.behavior,
        rows.tokens[:, :p],
        prep.new_tokens,
        temperature=s.temperature,
        generator=generator,
        eos_id=prep.eos_id,
        stop_at_eos=s.stop_at_eos,
        top_k=s.top_k,
        repetition_penalty=s.repetition_penalty,
        batch_size=s.batch_size,
    )
    seqs = Sequences.from_samples(out, p, prep.eos_id if s.stop_at_eos else None)
    beta = behavior_prob_of(s)(prep.behavior, seqs, batch_size=s.batch_size)
    logits = classifier_logits(
        prep.reward_model, prep.reward_tokenizer, prep.behavior_codec.texts(seqs)
    )
    reward = logits[:, prep.label] if cfg.reward.output == "logit" else (
        torch.softmax(logits, -1)[:, prep.label]
    )  # fmt: skip
    return seqs.tokens, seqs.mask(score_prefix=cfg.trainer.score_prefix), reward, beta
