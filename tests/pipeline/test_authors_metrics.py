"""The authors' evaluation metrics (eval.metrics=authors) and π's plain greedy decode, on
hand-computed cases."""

import pytest

from rdx.pipeline.offpolicy.decoding import greedy_decoding
from rdx.pipeline.textmetrics import authors_text_metrics, text_metrics


def test_one_sentence_by_hand():
    # hyp "the cat sat on the mat" vs source "the cat sat on a mat", 6 tokens each.
    m = authors_text_metrics(["the cat sat on the mat"], ["the cat sat on a mat"])
    # Matches: unigrams 5/6, bigrams 3/5, trigrams 2/4, 4-grams 1/3; no zero count, so
    # method4 changes nothing, and equal lengths give no brevity penalty.
    assert m["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert m["rouge1"] == pytest.approx(5 / 6)  # P = R = 5/6
    assert m["rouge2"] == pytest.approx(3 / 5)
    assert m["rougeL"] == pytest.approx(5 / 6)  # LCS "the cat sat on mat"
    # METEOR of an identical sentence: F = 1, one chunk of 6: 1 − 0.5 · (1/6)³.
    same = authors_text_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same["meteor"] == pytest.approx(1 - 0.5 * (1 / 6) ** 3)
    assert same["bleu"] == pytest.approx(1.0)


def test_rouge_is_stemmed_and_bleu_is_cased():
    m = authors_text_metrics(["The cats were running"], ["the cat was running"])
    # Stemmed and lower-cased: the cat were run / the cat wa run: 3 of 4 unigrams.
    assert m["rouge1"] == pytest.approx(3 / 4)
    assert m["rouge2"] == pytest.approx(1 / 3)  # "the cat" of 3 bigrams
    # rdx's metrics (no stemming): the, running -> 2 of 4.
    assert text_metrics(["the cats were running"], [["the cat was running"]])["rouge1"] == 0.5
    # BLEU splits on whitespace as cased: "The" is not "the".
    cased = authors_text_metrics(["The cat sat on the mat"], ["the cat sat on the mat"])
    assert cased["bleu"] < 1.0 and cased["rouge1"] == pytest.approx(1.0)


def test_scores_are_means_of_sentence_scores():
    m = authors_text_metrics(["a b c d", "w x y z"], ["a b c d", "e f g h"])
    assert m["rouge1"] == pytest.approx(0.5) and m["rougeL"] == pytest.approx(0.5)
    assert m["bleu"] == pytest.approx(0.5, abs=1e-3)  # (1 + ~0) / 2
    empty = authors_text_metrics([""], ["the cat"])
    assert empty["bleu"] == 0.0 and empty["rouge1"] == 0.0


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="2 hypotheses but 1 source sentences"):
        authors_text_metrics(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="not a single string"):
        authors_text_metrics("a", ["a"])


def test_plain_greedy_drops_the_repetition_penalty():
    beta = {"stop_at_eos": False, "top_k": 50, "repetition_penalty": 1.2}
    assert greedy_decoding(beta, "sampling") == beta
    assert greedy_decoding(beta, "plain") == {
        "stop_at_eos": False,
        "top_k": None,
        "repetition_penalty": 1.0,
    }
    with pytest.raises(ValueError, match=r"eval.greedy='beam': expected one of sampling, plain"):
        greedy_decoding(beta, "beam")
