"""How π decodes for its metrics: with β's decoding options, or as the authors' plain
`generate(do_sample=False)` (issue 20, switch c).

The authors' reward metric and their Tables 3/4 texts come from π's greedy decode without
a repetition penalty (RLHF_train.py and RLHF_evaluate.py at 4f58682 call
`generate(do_sample=False)`, whose repetition_penalty defaults to 1.0; top-k is moot for
greedy). rdx's default decodes π as β was sampled (sampling.repetition_penalty, top_k),
so that π's text is read under the same rules as the text it learned from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdx.config import Config

GREEDY_MODES = ("sampling", "plain")


def greedy_decoding(decoding: dict[str, Any], mode: str) -> dict[str, Any]:
    """The decoding options of π's greedy metric decode: β's (`sampling`) or `plain`."""
    if mode == "sampling":
        return dict(decoding)
    if mode == "plain":
        return {**decoding, "repetition_penalty": 1.0, "top_k": None}
    raise ValueError(f"eval.greedy={mode!r}: expected one of {', '.join(GREEDY_MODES)}")


def authors_axes(cfg: Config) -> dict[str, Any]:
    """The issue-20 switches a run's summary records, dotted so that the tables never pool
    runs that differ in them (analysis.tables.config_axes)."""
    return {
        "eval.metrics": cfg.eval.metrics,
        "eval.greedy": cfg.eval.greedy,
        "sampling.behavior_prob": cfg.sampling.behavior_prob,
        "sampling.min_tokens": cfg.sampling.min_tokens,
        "trainer.normalisation": cfg.trainer.normalisation,
    }
