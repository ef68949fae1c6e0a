"""Table 6's generated examples: π continues the prefixes the paper borrowed from PPLM, and
each generated word is scored by how much R's attribute probability falls without it.

The paper's Table 6 (Appendix C) shows π's text after "The chicken", "The country"
(sentiment) and "The issue focused on" (topic), prefixes it took from Dathathri et al.
(2019, PPLM); the rest of each list below is PPLM's own prefix list for that task. The
attribute-bearing words, red in the paper, are here the words whose removal lowers R's
probability of the run's attribute the most (a leave-one-word-out attribution: model-
agnostic, and R reads text, whatever tokenizer π has).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

PPLM_PREFIXES: dict[str, tuple[str, ...]] = {
    "sentiment": (
        "The chicken",
        "The country",
        "The horse",
        "The pizza",
        "The potato",
        "The lake",
    ),  # fmt: skip
    "topic": (
        "The issue focused on",
        "In summary",
        "This essay discusses",
        "Views on",
        "The connection",
        "To conclude",
    ),  # fmt: skip
}


def word_drop_attribution(
    score: Callable[[list[str]], Sequence[float]], prefix: str, generation: str
) -> tuple[float, list[tuple[str, float]]]:
    """(R of prefix + generation, [(word, R(full) − R(full without that word))] over the
    generation's whitespace words); the prefix is never dropped."""
    words = generation.split()
    lead = prefix.rstrip()
    texts = [" ".join([lead, *words]).strip()]
    texts += [" ".join([lead, *words[:i], *words[i + 1 :]]).strip() for i in range(len(words))]
    scores = [float(s) for s in score(texts)]
    full = scores[0]
    return full, [(w, full - s) for w, s in zip(words, scores[1:], strict=True)]


@torch.inference_mode()
def pplm_examples(
    policy: PreTrainedModel,
    prep: Any,
    score: Callable[[list[str]], Sequence[float]],
    decoding: dict[str, Any],
) -> list[dict[str, Any]]:
    """π's greedy continuation of each PPLM prefix of the run's task, with attributions:
    samples.jsonl rows with "source": "pplm" (Prepared `prep`: codec, eos, length)."""
    from rdx.lm.sampling import sample_sequences

    prefixes = list(PPLM_PREFIXES.get(prep.task, ()))
    if not prefixes:
        return []
    seqs = prep.policy_codec.prefixes(prefixes)
    gen = sample_sequences(
        policy, seqs, prep.new_tokens, temperature=0, eos_id=prep.eos_id, **decoding
    )
    shown, continuations, _ = prep.policy_codec.decode(gen)
    rows = []
    for given, prefix, cont in zip(prefixes, shown, continuations, strict=True):
        reward, attribution = word_drop_attribution(score, prefix, cont)
        rows.append(
            {
                "source": "pplm",
                "prefix": prefix,
                "given_prefix": given,  # before π's tokenizer (lower-casing, unknown words)
                "generation": cont,
                "reward": reward,
                "attribution": [[w, a] for w, a in attribution],
            }
        )
    return rows
