"""Corpora: the synthetic grammar's properties, local Yelp/AG News loading, data errors."""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from pathlib import Path

import pytest

from rdx.data.corpus import ATTRIBUTES, Corpus, DataError, Example
from rdx.data.loaders import check_source, held_out_row, load_corpus
from rdx.data.synthetic import generate
from rdx.data.text import clean_agnews, split_sentences, tokenize

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real text data not found at {DATA} (../shared/data)"
)


@pytest.fixture(scope="module")
def syn() -> Corpus:
    return load_corpus("synthetic")


def count_classifier(train: list[Example], n_classes: int):
    """Multinomial naive Bayes on word counts: the simplest bag-of-words reward model."""
    counts = [Counter() for _ in range(n_classes)]
    for e in train:
        counts[e.label].update(e.text.split())
    vocab = len(set().union(*counts))
    totals = [sum(c.values()) for c in counts]

    def predict(text: str) -> int:
        def score(k: int) -> float:
            return sum(math.log((counts[k][w] + 1) / (totals[k] + vocab)) for w in text.split())

        return max(range(n_classes), key=score)

    return predict


def accuracy(train: Corpus, test: list[Example], task: str) -> float:
    predict = count_classifier([e for e in train.train if e.task == task], len(train.tasks[task]))
    test = [e for e in test if e.task == task]
    return sum(predict(e.text) == e.label for e in test) / len(test)


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_given_the_seed():
    a, b = generate(200, 50, seed=3), generate(200, 50, seed=3)
    assert a.train == b.train and a.test == b.test
    c = generate(200, 50, seed=4)
    assert sum(x.text == y.text for x, y in zip(a.train, c.train, strict=True)) < 10


def test_synthetic_counts_per_attribute_and_split(syn: Corpus):
    assert syn.tasks == ATTRIBUTES["synthetic"]
    for split, n in (("train", 3000), ("test", 300)):
        got = Counter((e.task, e.label) for e in getattr(syn, split))
        assert got == {(t, i): n for t, attrs in syn.tasks.items() for i in range(len(attrs))}
    small = load_corpus("synthetic", n_per_attribute=100, n_test_per_attribute=7, seed=1)
    assert len(small.train) == 600 and len(small.test) == 42


def test_synthetic_sentences_look_like_the_real_files(syn: Corpus):
    texts = [e.text for e in syn.train + syn.test]
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 10 and max(lengths) <= 25
    assert 15 <= sum(lengths) / len(lengths) <= 21
    assert all(t == t.lower() and t == " ".join(t.split()) for t in texts)
    train = [e.text for e in syn.train]
    assert len(set(train)) / len(train) > 0.9  # varied, not a handful of templates
    vocab = {w for t in texts for w in t.split()}
    assert 500 <= len(vocab) <= 1500


def test_synthetic_held_out_never_repeats_a_train_sentence(syn: Corpus):
    train = {e.text for e in syn.train}
    assert not [e.text for e in syn.test if e.text in train]


def test_synthetic_openings_do_not_reveal_the_attribute(syn: Corpus):
    for task, attrs in syn.tasks.items():
        by_attr = [
            Counter(
                " ".join(e.text.split()[:4]) for e in syn.train if (e.task, e.label) == (task, i)
            )
            for i in range(len(attrs))
        ]
        total = sum(by_attr, Counter())
        # The most common 4-word prefixes occur in every attribute, with similar shares.
        for opening, n in total.most_common(5):
            shares = [c[opening] / n for c in by_attr]
            assert min(shares) > 0.5 / len(attrs), (opening, shares)
        shared = sum(n for k, n in total.items() if all(c[k] for c in by_attr))
        assert shared / sum(total.values()) > 0.95


def test_synthetic_label_noise_rate_matches_noise():
    # A classifier trained on noise-free text recovers each sentence's content attribute
    # (topic: ~100%), so its disagreement with the labels measures the flipped fraction.
    clean = generate(2000, 10, seed=5, noise=0.0, neutral_frac=0.0)
    assert accuracy(clean, clean.test, "topic") > 0.98
    for noise in (0.1, 0.25):
        noisy = generate(10, 1000, seed=6, noise=noise, neutral_frac=0.0)
        assert accuracy(clean, noisy.test, "topic") == pytest.approx(1 - noise, abs=0.03)


def test_synthetic_neutral_sentences_carry_no_label_signal():
    neutral = generate(1000, 500, seed=2, neutral_frac=1.0)
    assert accuracy(neutral, neutral.test, "sentiment") == pytest.approx(0.5, abs=0.06)
    assert accuracy(neutral, neutral.test, "topic") == pytest.approx(0.25, abs=0.05)


def test_synthetic_labels_are_learnable_but_not_perfectly(syn: Corpus):
    # Ceiling at the defaults: (1 - 0.6) * (1 - 0.05) + 0.6 / K = 0.68 (K=2), 0.53 (K=4).
    assert 0.55 < accuracy(syn, syn.test, "sentiment") < 0.72
    assert 0.4 < accuracy(syn, syn.test, "topic") < 0.58


def test_synthetic_rejects_bad_rates():
    with pytest.raises(ValueError, match="noise=1.5"):
        generate(10, 10, noise=1.5)


def test_attribute_lookup(syn: Corpus):
    assert syn.attributes() == ["negative", "positive", "world", "sport", "business", "sci_tech"]
    assert syn.task_of("positive") == ("sentiment", 1)
    assert syn.task_of("sci_tech") == ("topic", 3)
    with pytest.raises(DataError, match=r"attribute=sports: .*allowed: negative, positive, world"):
        syn.task_of("sports")


def test_max_words_drops_long_sentences():
    short = load_corpus("synthetic", n_per_attribute=200, max_words=15)
    assert short.train and all(len(e.text.split()) <= 15 for e in short.train + short.test)
    assert len(short.train) < 1200


# ---------------------------------------------------------------- text cleaning


def test_tokenize_matches_the_yelp_style():
    assert tokenize("It's GREAT, didn't you say?") == "it 's great , did n't you say ?"


def test_clean_agnews_repairs_the_release_escapes():
    raw = (
        "NEW YORK (Reuters) - Dell Inc. &lt;DELL.O&gt;, the world #39;s  largest PC maker,"
        " said it would pay \\$10 for a  quot;new\\deal quot; ...  #151; really."
    )
    assert clean_agnews(raw) == (
        "Dell Inc. , the world's largest PC maker, said it would pay $10 for a "
        '"new deal" ... \u2014 really.'
    )
    assert clean_agnews("AP - It's barely dawn.") == "It's barely dawn."
    assert clean_agnews("SPACE.com - TORONTO, Canada -- A second team") == "A second team"
    assert clean_agnews("_ At least three bombs") == "At least three bombs"
    assert clean_agnews("Unions representing workers - say") == "Unions representing workers - say"


def test_sentence_split_keeps_abbreviations():
    text = "Shares of Microsoft Corp. Rose in the U.S. Market today. Then it fell back again."
    assert split_sentences(text) == [
        "shares of microsoft corp . rose in the u.s . market today .",
        "then it fell back again .",
    ]


# ---------------------------------------------------------------- split rules (tmp files)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_yelp_with_train_split_uses_train_and_test(tmp_path: Path):
    for split in ("train", "dev", "test"):
        for k in (0, 1):
            _write(
                tmp_path / f"sentiment.{split}.{k}", [f"{split} {k} line {i} ." for i in range(5)]
            )
    c = load_corpus("yelp", path=str(tmp_path))
    assert {e.text.split()[0] for e in c.train} == {"train"}
    assert {e.text.split()[0] for e in c.test} == {"test"}
    assert all(int(e.text.split()[1]) == e.label for e in c.train + c.test)


def test_single_split_is_carved_by_a_stable_hash(tmp_path: Path):
    lines = [f"sentence number {i} here ." for i in range(2000)]
    for k in (0, 1):
        _write(tmp_path / f"sentiment.dev.{k}", lines)
    c = load_corpus("yelp", path=str(tmp_path))
    assert len(c.train) + len(c.test) == 4000
    assert 0.08 < len(c.test) / 4000 < 0.12
    held = {e.text for e in c.test}
    expected = {
        t
        for t in lines
        if int(hashlib.blake2b(t.encode(), digest_size=8).hexdigest(), 16) < 0.1 * 2**64
    }
    assert held == expected  # by text: the same sentence falls on the same side everywhere
    assert not held & {e.text for e in c.train}
    _write(tmp_path / "sentiment.dev.0", lines[::-1])  # row order does not matter
    assert {e.text for e in load_corpus("yelp", path=str(tmp_path)).test} == held


def test_agnews_train_and_test_csv(tmp_path: Path):
    rows = [
        ["1", "t", "Rebels agreed to a ceasefire in the north on Monday."],
        ["2", "t", "The home side won the cup final in extra time."],
    ]
    for name in ("train.csv", "test.csv"):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    c = load_corpus("agnews", path=str(tmp_path))
    assert [(e.label, e.text.split()[0]) for e in c.train] == [(0, "rebels"), (1, "the")]
    assert c.test == c.train


# ---------------------------------------------------------------- errors


def test_unknown_dataset():
    with pytest.raises(DataError, match=r"dataset.name=imdb: .*allowed: synthetic, yelp, agnews"):
        check_source("imdb", None, False)


def test_real_data_needs_a_path_or_the_hub():
    for name in ("yelp", "agnews"):
        with pytest.raises(DataError, match=r"dataset.path=<dir> .*dataset.hub=true"):
            load_corpus(name)
    check_source("yelp", None, True)  # the hub is opt-in and accepted without loading


def test_missing_dir_and_missing_files(tmp_path: Path):
    with pytest.raises(DataError, match=r"dataset.path=.*nope: directory not found"):
        check_source("yelp", str(tmp_path / "nope"), False)
    with pytest.raises(DataError, match=r"no yelp files there; expected sentiment"):
        check_source("yelp", str(tmp_path), False)
    with pytest.raises(DataError, match=r"expected train.csv or test.csv"):
        load_corpus("agnews", path=str(tmp_path))


def test_bad_sizes_and_synthetic_only_options():
    with pytest.raises(DataError, match=r"dataset.n_per_attribute=0"):
        load_corpus("synthetic", n_per_attribute=0)
    with pytest.raises(DataError, match=r"synthetic-only"):
        load_corpus("yelp", hub=True, noise=0.2)


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    asked: list[float] = []
    monkeypatch.setattr(
        "rdx.data.loaders.reachable", lambda timeout=3.0: asked.append(timeout) or False
    )
    import datasets  # imported here so that a call to it can be counted

    loads: list[str] = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: loads.append(a[0]))
    with pytest.raises(DataError, match=r"hub is unreachable.*dataset.path=<dir>"):
        load_corpus("agnews", hub=True)
    # one probe of the hub, and no load_dataset (whose retries take ~25 s)
    assert asked == [3.0] and loads == []


# ---------------------------------------------------------------- real local data


def _lines(path: Path, max_words: int) -> list[str]:
    return [s for s in path.read_text().splitlines() if 0 < len(s.split()) <= max_words]


@needs_data
@pytest.mark.data
def test_yelp_local_split_rule_and_counts():
    root = DATA / "yelp"
    c = load_corpus("yelp", path=str(root), max_words=10)
    # No train files: train := test (the larger split), held out := dev.
    for split, examples in (("test", c.train), ("dev", c.test)):
        for label in (0, 1):
            expected = _lines(root / f"sentiment.{split}.{label}", 10)
            assert [e.text for e in examples if e.label == label] == expected
    assert "excellent chinese and superb service ." in {e.text for e in c.train if e.label == 1}
    assert "ok never going back to this place again ." in {e.text for e in c.test if e.label == 0}


@needs_data
@pytest.mark.data
def test_yelp_subsampling_is_balanced_and_seeded():
    root = str(DATA / "yelp")
    a = load_corpus("yelp", path=root, n_per_attribute=500, seed=0)
    assert Counter(e.label for e in a.train) == {0: 500, 1: 500}
    assert Counter(e.label for e in a.test) == {0: 200, 1: 200}  # max(200, 500 // 10)
    assert load_corpus("yelp", path=root, n_per_attribute=500, seed=0).train == a.train
    b = load_corpus("yelp", path=root, n_per_attribute=500, seed=1)
    assert len({e.text for e in a.train} & {e.text for e in b.train}) < 200


@needs_data
@pytest.mark.data
def test_agnews_local_classes_cleaning_and_carving():
    c = load_corpus("agnews", path=str(DATA / "ag_news"))
    business = {e.text for e in c.train + c.test if e.label == 2}
    # Row 1 of test.csv, class 3 (Business): "Unions representing workers at Turner   Newall ..."
    assert (
        "unions representing workers at turner newall say they are ' disappointed ' after talks"
        " with stricken parent firm federal mogul ." in business
    )
    known = {  # rows 38, 30 and 17 of test.csv; "AP -" and "Jet Propulsion Lab --" stripped
        "a 1994 law strengthened job protections for national guard and reserve troops called"
        " to active duty .": 0,
        "just imagine what david ortiz could do on a good night 's rest .": 1,
        "scientists have discovered irregular lumps beneath the icy surface of jupiter 's"
        " largest moon , ganymede .": 3,
    }
    labels = {e.text: e.label for e in c.train + c.test}
    assert {t: labels.get(t) for t in known} == known
    texts = [e.text for e in c.train + c.test]
    assert not [t for t in texts if "#39;" in t or "quot;" in t or "\\" in t]
    assert all(4 <= len(t.split()) <= 30 for t in texts)
    # Only test.csv: held out := rows whose hash is in the lowest 10%, the same every time.
    with open(DATA / "ag_news" / "test.csv", newline="") as f:
        rows = list(csv.reader(f))
    held_rows = [r for r in rows if held_out_row(",".join(r))]
    assert 0.08 < len(held_rows) / len(rows) < 0.12
    assert load_corpus("agnews", path=str(DATA / "ag_news")).test == c.test
    assert 400 < len(c.test) < 900 and len(c.train) > 5000
    assert set(Counter(e.label for e in c.train)) == {0, 1, 2, 3}
