"""Reference-based text metrics of the evaluation stage (paper Tables 3/4), on a 0-1 scale.

Texts are lower-cased, whitespace-tokenised English, so every metric splits on
whitespace: sacrebleu runs with `tokenize="none"` and rouge-score with a
whitespace tokenizer (its default one would drop punctuation tokens that BLEU
and METEOR count).
"""

from __future__ import annotations

from collections.abc import Sequence

METRIC_KEYS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
_ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


class _WhitespaceTokenizer:
    """rouge-score tokenizer protocol: an object with `tokenize(text) -> list[str]`."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


def _require_wordnet() -> None:
    from rdx.pipeline.wordnet import wordnet_available

    if not wordnet_available():
        raise RuntimeError(
            "METEOR needs nltk's WordNet, which nltk cannot find; "
            "install it offline with `python -m rdx.pipeline.wordnet`"
        )


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists, not a single string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"hypothesis {i} needs a non-empty list of reference strings")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults, no re-tokenisation) for ragged reference lists."""
    import sacrebleu

    # sacrebleu takes reference *streams* (stream k = k-th reference of every hypothesis);
    # None marks "this hypothesis has fewer references" and is dropped per segment.
    width = max(len(refs) for refs in references)
    streams = [
        [refs[k].lower() if k < len(refs) else None for refs in references] for k in range(width)
    ]
    hyps = [h.lower() for h in hypotheses]
    # force: the texts are pre-tokenised on purpose (lower-cased, space-separated words)
    return sacrebleu.corpus_bleu(hyps, streams, tokenize="none", force=True).score / 100.0


def text_metrics(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """BLEU (corpus), ROUGE-1/2/L F and METEOR (means of best-over-references), all 0-1.

    `references[i]` is the list (any length >= 1) of references for `hypotheses[i]`.
    """
    _check(hypotheses, references)
    _require_wordnet()
    from nltk.translate.meteor_score import meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(_ROUGE_TYPES, tokenizer=_WhitespaceTokenizer())
    totals = dict.fromkeys(["rouge1", "rouge2", "rougeL", "meteor"], 0.0)
    for hyp, refs in zip(hypotheses, references, strict=True):
        best = scorer.score_multi(list(refs), hyp)
        for key in _ROUGE_TYPES:
            totals[key] += best[key].fmeasure
        # nltk's METEOR already takes the max over references.
        totals["meteor"] += meteor_score([r.lower().split() for r in refs], hyp.lower().split())
    n = len(hypotheses)
    out = {"bleu": corpus_bleu(hypotheses, references)}
    out.update({key: value / n for key, value in totals.items()})
    return {key: float(out[key]) for key in METRIC_KEYS}


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-gram ratio over the whole set: unique n-grams / all n-grams (0 if none)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [
        tuple(tokens[i : i + n])
        for tokens in (t.lower().split() for t in texts)
        for i in range(len(tokens) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


METRIC_SETS = ("rdx", "authors")


def authors_text_metrics(hypotheses: Sequence[str], sources: Sequence[str]) -> dict[str, float]:
    """The authors' Tables 3/4 metrics (RLHF_evaluate_score.py at 4f58682, its BLEU, ROUGE
    and METEOR blocks): each hypothesis against its one source sentence, every score a
    mean of per-sentence scores, all 0-1.

    - BLEU: nltk `sentence_bleu` with `SmoothingFunction().method4`, whitespace split, as
      cased (the authors do not lower-case);
    - ROUGE-1/2/L F: rouge-score with `use_stemmer=True` and its default tokenizer
      (lower-cases, keeps [a-z0-9] runs);
    - METEOR: nltk `meteor_score` with the one source, whitespace split.
    """
    if isinstance(hypotheses, str) or isinstance(sources, str):
        raise TypeError("hypotheses and sources must be lists, not a single string")
    if len(hypotheses) != len(sources):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(sources)} source sentences")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    _require_wordnet()
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from nltk.translate.meteor_score import meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    smooth = SmoothingFunction().method4
    scorer = RougeScorer(_ROUGE_TYPES, use_stemmer=True)
    totals = dict.fromkeys(METRIC_KEYS, 0.0)
    for hyp, src in zip(hypotheses, sources, strict=True):
        h, s = hyp.split(), src.split()
        # nltk's BLEU of an empty hypothesis is 0 (with a warning): say so without one.
        totals["bleu"] += sentence_bleu([s], h, smoothing_function=smooth) if h else 0.0
        rouge = scorer.score(src, hyp)
        for key in _ROUGE_TYPES:
            totals[key] += rouge[key].fmeasure
        totals["meteor"] += meteor_score([s], h)
    return {key: float(totals[key] / len(hypotheses)) for key in METRIC_KEYS}
