"""Fault injection: data files that are not what they seem (issue 33, "Wrong data,
silently"). A split whose file is missing, a FIFO or a symlink to a device or to nothing is
an error naming that file, never another split in its place; a fallback between splits is
said; a form feed, NEL or U+2028 does not end a line; a line or word beyond the caps is
dropped with a warning naming the count (docs/reliability.md)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from rdx.data.corpus import DataError
from rdx.data.loaders import load_corpus

GOOD = [f"the food was great and the staff were kind number {i}" for i in range(20)]
BAD = [f"the food was cold and the staff were rude number {i}" for i in range(20)]


def _yelp(root: Path, splits=("train", "dev", "test")) -> Path:
    root.mkdir()
    for split in splits:
        (root / f"sentiment.{split}.0").write_text("\n".join(BAD) + "\n")
        (root / f"sentiment.{split}.1").write_text("\n".join(GOOD) + "\n")
    return root


def _agnews(root: Path) -> Path:
    root.mkdir()
    rows = "".join(
        f'"{c}","t","Officials said the plan number {i} of class {c} would go ahead."\n'
        for i in range(40)
        for c in (1, 2, 3, 4)
    )
    for name in ("train.csv", "test.csv"):
        (root / name).write_text(rows)
    return root


def _replace(path: Path, kind: str, tmp_path: Path) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone")
    # "missing": nothing in its place


WHAT = {
    "fifo": "not a regular file (a FIFO)",
    "dev-zero": "not a regular file (a character device)",
    "dangling": "a dangling symlink",
    "missing": "missing",
}


@pytest.mark.parametrize("kind", sorted(WHAT))
def test_a_yelp_split_that_cannot_be_read_is_named_not_replaced(tmp_path, kind):
    """Before: sentiment.train.* dropped, training on `test` and holding out `dev`."""
    root = _yelp(tmp_path / "yelp")
    bad = root / "sentiment.train.1"
    _replace(bad, kind, tmp_path)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_corpus("yelp", path=str(root))
    said = str(err.value)
    assert time.monotonic() - start < 10  # no read of the FIFO or of /dev/zero
    assert said.startswith(f"{bad}: {WHAT[kind]}") and "\n" not in said, said
    assert f"the train split of dataset.path={root}" in said


@pytest.mark.parametrize("kind", ["fifo", "dangling"])
def test_an_agnews_train_csv_that_cannot_be_read_is_named(tmp_path, kind):
    """Before: AG News carved from test.csv alone."""
    root = _agnews(tmp_path / "ag")
    _replace(root / "train.csv", kind, tmp_path)
    with pytest.raises(DataError) as err:
        load_corpus("agnews", path=str(root))
    assert str(err.value).startswith(f"{root / 'train.csv'}: {WHAT[kind]}"), err.value


def test_an_hh_test_split_that_is_a_fifo_is_named(tmp_path):
    """Before: the held-out pairs carved from train.jsonl."""
    from rdx.data.hh import load_preferences

    root = tmp_path / "hh"
    root.mkdir()
    turn = "\\n\\nHuman: hi\\n\\nAssistant:"
    record = f'{{"chosen": "{turn} no", "rejected": "{turn} yes"}}\n'
    (root / "train.jsonl").write_text(record * 20)
    os.mkfifo(root / "test.jsonl")
    with pytest.raises(DataError, match=r"test.jsonl: not a regular file \(a FIFO\)"):
        load_preferences("hh", path=str(root))


def test_a_fallback_between_splits_is_said(tmp_path, caplog):
    root = _yelp(tmp_path / "yelp", splits=("dev", "test"))
    with caplog.at_level(logging.INFO, logger="rdx"):
        corpus = load_corpus("yelp", path=str(root))
    assert len(corpus.train) == 40 and len(corpus.test) == 40
    said = [m for m in caplog.messages if "training on" in m]
    assert said == [
        f"dataset.path={root}: splits dev/test; training on the test split, holding out "
        "the dev split"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rdx"):
        load_corpus("yelp", path=str(_yelp(tmp_path / "full")))
    assert not [m for m in caplog.messages if "training on" in m]  # train/test: nothing to say


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x0c", "\x85", "\x0b", "\x1c"])
def test_a_line_holding_a_unicode_separator_stays_one_sentence(tmp_path, sep):
    """Before: str.splitlines made it two sentences."""
    root = _yelp(tmp_path / "yelp")
    path = root / "sentiment.train.1"
    path.write_text(path.read_text() + f"the soup was hot{sep}and the bread fresh\r\n")
    corpus = load_corpus("yelp", path=str(root))
    texts = [e.text for e in corpus.train if e.label == 1]
    assert len(texts) == 21
    assert texts[-1] == "the soup was hot and the bread fresh"


def test_a_giant_word_is_dropped_with_a_warning(tmp_path, caplog):
    """One 400k-character "word" passes dataset.max_words; before, it was a sentence."""
    root = _yelp(tmp_path / "yelp")
    path = root / "sentiment.train.0"
    path.write_text(path.read_text() + "x" * 400_000 + "\n" + "a " + "y" * 2000 + " b\n")
    with caplog.at_level(logging.WARNING, logger="rdx"):
        corpus = load_corpus("yelp", path=str(root))
    assert max(len(w) for e in corpus.train for w in e.text.split()) <= 1000
    assert len([e for e in corpus.train if e.label == 0]) == 20
    assert [m for m in caplog.messages if "dropped" in m] == [
        f"{path}: 2 line(s) longer than 10000 characters or holding a word longer than 1000 "
        "dropped (not text a sentence model can learn from)"
    ]
