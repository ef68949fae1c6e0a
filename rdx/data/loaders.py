"""Where a corpus comes from: the synthetic grammar, local Yelp/AG News files, or the hub.

Every corpus is lower-cased, whitespace-tokenised sentences (punctuation and clitics as
separate tokens, as in the Yelp style-transfer files), each with a task and a label.
Sentences longer than ``max_words`` tokens are dropped (paper §6: > 30 tokens dropped).

Splits. ``train`` feeds every trained model (behavior LM, reward model, prefixes);
``test`` is held out. From whatever splits a local directory has:
  * a ``train`` split is train; held out := ``test``, else ``dev``, else carved from train;
  * without ``train``: train := ``test`` and held out := ``dev`` when both exist (Yelp in
    ``../shared/data/yelp``: 126,670 test lines train, 63,483 dev lines held out);
  * a single split (AG News in ``../shared/data/ag_news``: only ``test.csv``) is carved:
    held out := the rows whose blake2b hash falls in the lowest 10% (hash of the sentence
    for Yelp, of the row's fields joined by "," for AG News), stable across machines,
    seeds and row order. AG News is carved by row (article), so the sentences of one
    article never straddle the two splits (7,600 rows: 5,502 train / 573 held-out
    sentences of <= 30 tokens).
Hub data (``hub=True``) uses the hub's own train/test splits.

AG News text := the sentences of the description (the title is a headline, not a
sentence): ``\\`` escapes and the HTML-entity debris of the release (`` #39;``, ``quot;``,
``&lt;TICKER&gt;``) are repaired or removed, a leading dateline/source (``LONDON
(Reuters) -``, ``AP -``) is stripped, then the description is split into sentences;
fragments shorter than 4 tokens (split debris) are dropped. Yelp hub reviews are split
into sentences the same way (any length >= 1; numbers are kept, not mapped to ``_num_``
as in the local files). Hub AG News joins title and description: the title is cut at the
first dateline dash, or dropped with the first sentence when there is none (heuristic).

Source: a local ``path`` wins over ``hub``; ``synthetic`` is generated and ignores both.

Subsampling: ``n_per_attribute`` train sentences per attribute, drawn without replacement
by a ``random.Random`` seeded with (dataset, split, attribute, seed), kept in file order.
Held out: at most ``n_test_per_attribute`` per attribute (default ``max(200,
n_per_attribute // 10)`` when ``n_per_attribute`` is set, else all).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from rdx.data.corpus import ATTRIBUTES, Corpus, DataError, Example, check_data_file
from rdx.data.synthetic import generate
from rdx.data.text import agnews_sentences, lines, split_sentences, too_long, warn_too_long
from rdx.hub import offline, reachable

log = logging.getLogger("rdx")

HELD_OUT_FRACTION = 0.10  # carved share of a single local split
_LOCAL_HINT = {"yelp": "../shared/data/yelp", "agnews": "../shared/data/ag_news"}


def check_source(name: str, path: str | None, hub: bool) -> None:
    """Validate where a dataset comes from, without loading it."""
    if name not in ATTRIBUTES:
        raise DataError(f"dataset.name={name}: unknown dataset; allowed: {', '.join(ATTRIBUTES)}")
    if name == "synthetic":
        if hub:  # e.g. experiment=paper_table1 with sweeps=table1, whose attribute axis keeps it
            raise DataError(
                "dataset.hub=true: dataset=synthetic is generated and has no hub source; pick "
                "dataset=yelp or dataset=agnews, or for every attribute on its own dataset "
                "sweeps=paper_table1 / paper_table2 / paper_table2_lora"
            )
        return  # generated: a path does not apply
    if path is None:
        if not hub:
            raise DataError(
                f"dataset.name={name} needs data: pass dataset.path=<dir> (e.g. "
                f"{_LOCAL_HINT[name]}) or dataset.hub=true to download it"
            )
        return
    for files in _local_files(name, Path(path)).values():
        for f in files:  # contents too: a broken file fails here, in a second, without torch
            st = f.stat()
            _check_file(name, str(f), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _check_file(name: str, path: str, mtime_ns: int, size: int) -> None:
    """Read a local data file as load_corpus will (once per version of the file: a sweep's
    check reads it once)."""
    if name == "agnews":
        for _ in _agnews_rows(Path(path)):
            pass
    else:
        read_text(Path(path))


def load_corpus(
    name: str,
    *,
    path: str | None = None,
    hub: bool = False,
    seed: int = 0,
    n_per_attribute: int | None = None,
    max_words: int = 30,
    n_test_per_attribute: int | None = None,
    **synthetic_opts,
) -> Corpus:
    """Load a corpus. A local ``path`` wins over ``hub``; ``synthetic_opts`` (noise,
    neutral_frac) go to :func:`rdx.data.synthetic.generate`."""
    check_source(name, path, hub)
    if synthetic_opts and name != "synthetic":
        raise DataError(f"dataset.name={name}: options {sorted(synthetic_opts)} are synthetic-only")
    for key, value in (
        ("n_per_attribute", n_per_attribute),
        ("n_test_per_attribute", n_test_per_attribute),
        ("max_words", max_words),
    ):
        if value is not None and value < 1:
            raise DataError(f"dataset.{key}={value}: must be a positive integer")
    if name == "synthetic":
        n_per_attribute = 3000 if n_per_attribute is None else n_per_attribute
    if n_test_per_attribute is None and n_per_attribute is not None:
        n_test_per_attribute = max(200, n_per_attribute // 10)
    if name == "synthetic":
        corpus = generate(n_per_attribute, n_test_per_attribute, seed, **synthetic_opts)
        train, test = corpus.train, corpus.test
    elif path is not None:
        train, test = _load_local(name, Path(path))
    else:
        train, test = _load_hub(name)
    train = [e for e in train if len(e.text.split()) <= max_words]
    test = [e for e in test if len(e.text.split()) <= max_words]
    if name == "synthetic":  # generated with exact counts: nothing to subsample
        corpus = Corpus(name, dict(ATTRIBUTES[name]), train, test)
        _check_nonempty(corpus, path, max_words)
        return corpus
    tasks = ATTRIBUTES[name]
    corpus = Corpus(
        name,
        dict(tasks),
        _subsample(train, tasks, n_per_attribute, f"{name}:train:{seed}"),
        _subsample(test, tasks, n_test_per_attribute, f"{name}:test:{seed}"),
    )
    _check_nonempty(corpus, path, max_words)
    return corpus


def _check_nonempty(corpus: Corpus, path: str | None, max_words: int) -> None:
    """A corpus needs training and held-out sentences: a tokenizer or classifier trained on
    none is a broken artifact that would be cached for every later run."""
    source = f"dataset.path={path}" if path else "generated"
    if not path and corpus.name != "synthetic":
        source = "the hub"
    for split, examples in (("training", corpus.train), ("held-out", corpus.test)):
        if not examples:
            raise DataError(
                f"dataset.name={corpus.name} ({source}): no {split} sentences of "
                f"<= {max_words} words (dataset.max_words)"
            )


def _subsample(
    examples: list[Example], tasks: dict[str, tuple[str, ...]], n: int | None, key: str
) -> list[Example]:
    if n is None:
        return examples
    chosen: set[int] = set()
    for task, attrs in tasks.items():
        for label, attr in enumerate(attrs):
            idx = [i for i, e in enumerate(examples) if e.task == task and e.label == label]
            rng = random.Random(f"{key}:{attr}")  # str seeds are stable across processes
            chosen.update(rng.sample(idx, min(n, len(idx))))
    return [e for i, e in enumerate(examples) if i in chosen]


# ---------------------------------------------------------------- local files


def _local_files(name: str, root: Path) -> dict[str, list[Path]]:
    """split -> its files, for every split with a file there; DataError when there is
    nothing usable, or when a split is there but cannot be read (a file of it missing, a
    FIFO, a symlink to a device or to nothing): never another split in its place."""
    if not root.is_dir():
        raise DataError(f"dataset.path={root}: directory not found (dataset.name={name})")
    if name == "yelp":
        named = {s: [root / f"sentiment.{s}.{k}" for k in (0, 1)] for s in ("train", "dev", "test")}
        expected = "sentiment.{train,dev,test}.{0,1}"
    else:
        named = {s: [root / f"{s}.csv"] for s in ("train", "test")}
        expected = "train.csv or test.csv"
    found = {s: fs for s, fs in named.items() if any(os.path.lexists(f) for f in fs)}
    for split, files in found.items():
        for f in files:
            check_data_file(f, f"the {split} split of dataset.path={root}")
    if not found:
        raise DataError(f"dataset.path={root}: no {name} files there; expected {expected}")
    return found


def _choose_splits(found: dict[str, list]) -> tuple[str, str | None]:
    """(train split, held-out split); None: carve the held-out part out of train."""
    if "train" in found:
        return "train", next((s for s in ("test", "dev") if s in found), None)
    if "test" in found and "dev" in found:
        return "test", "dev"
    return next(iter(found)), None


def _load_local(name: str, root: Path) -> tuple[list[Example], list[Example]]:
    found = _local_files(name, root)
    train_split, test_split = _choose_splits(found)
    if train_split != "train" or test_split != "test":  # said, never silent
        held = f"the {test_split} split" if test_split else f"10% carved from {train_split}"
        log.info(
            "dataset.path=%s: splits %s; training on the %s split, holding out %s",
            root,
            "/".join(found),
            train_split,
            held,
        )
    read = _read_yelp if name == "yelp" else _read_agnews
    if test_split is not None:
        return read(found[train_split], None), read(found[test_split], None)
    return read(found[train_split], False), read(found[train_split], True)


def held_out_row(raw: str) -> bool:
    """Whether a row of a single local split goes to the carved held-out part."""
    digest = hashlib.blake2b(raw.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < HELD_OUT_FRACTION * 2**64


def read_text(path: Path) -> str:
    """A data file's text; DataError naming the file (and line) when it is unreadable,
    empty, binary or not UTF-8, before anything is trained or cached from it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    if not data.strip():
        raise DataError(f"{path}: empty file")
    line = data.count(b"\n", 0, data.find(b"\0")) + 1 if b"\0" in data else 0
    if line:
        raise DataError(f"{path}:{line}: binary data (a NUL byte); expected UTF-8 text")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a BOM is not text
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
            "convert it with iconv -t utf-8"
        ) from None


def _read_yelp(files: list[Path], held_out: bool | None) -> list[Example]:
    examples = []
    for label, f in enumerate(files):
        dropped = 0
        for line in lines(read_text(f)):
            if too_long(line):
                dropped += 1
                continue
            text = " ".join(line.lower().split())
            if text and (held_out is None or held_out_row(text) == held_out):
                examples.append(Example(text, "sentiment", label))
        warn_too_long(log, str(f), dropped)
    return examples


def _agnews_rows(path: Path) -> Iterator[list[str]]:
    """Rows `class,title,description` (class 1-4), after an optional header row; any other
    row is a DataError naming the file and line, not a row silently skipped."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows, last = 0, 0  # last: the line the previous row ended on
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row or not "".join(row).strip():
                continue
            # A row is named by the line it starts on: a quote left open there runs the
            # row on over the lines after it.
            where = f"{path}:{start}"
            if reader.line_num > start and len(row) != 3:
                where += f" (a row running on to line {reader.line_num}: an unclosed quote?)"
            if reader.line_num == 1 and not row[0].strip().isdigit():
                continue  # the header (Class Index,Title,Description)
            if len(row) != 3:
                raise DataError(
                    f"{where}: {len(row)} field(s); expected 3 (class,title,description)"
                )
            if row[0].strip() not in ("1", "2", "3", "4"):
                raise DataError(f"{where}: class {row[0]!r}; expected 1, 2, 3 or 4")
            rows += 1
            yield row
    except csv.Error as err:
        raise DataError(f"{path}:{last + 1}: not CSV ({err})") from None
    if rows == 0:
        raise DataError(f"{path}: no data rows (a header only?)")


def _read_agnews(files: list[Path], held_out: bool | None) -> list[Example]:
    examples, dropped = [], 0
    for row in _agnews_rows(files[0]):
        if held_out is None or held_out_row(",".join(row)) == held_out:
            if too_long(row[2]):
                dropped += 1
                continue
            label = int(row[0]) - 1  # classes 1..4 -> world, sport, business, sci_tech
            examples += [Example(s, "topic", label) for s in agnews_sentences(row[2])]
    warn_too_long(log, str(files[0]), dropped)
    return examples


# ---------------------------------------------------------------- hub

# The canonical repos of the legacy names "yelp_polarity" and "ag_news" (parquet, no script).
_HUB = {"yelp": "fancyzhx/yelp_polarity", "agnews": "fancyzhx/ag_news"}


def _load_hub(name: str) -> tuple[list[Example], list[Example]]:
    hint = f"use local files instead: dataset.path=<dir> (e.g. {_LOCAL_HINT[name]})"
    # Unchecked, datasets retries an unreachable hub 5 times with backoff (~25 s when DNS
    # fails at once, minutes when connections hang). Offline mode (HF_HUB_OFFLINE=1) reads
    # only the local HF cache and fails at once when the dataset is not there.
    if not offline() and not reachable():
        raise DataError(
            f"dataset.hub=true: the Hugging Face hub is unreachable ({_HUB[name]}); {hint}, "
            "or set HF_HUB_OFFLINE=1 if it is in your HF cache"
        )
    try:
        import datasets

        ds = datasets.load_dataset(_HUB[name])
    except Exception as e:  # any failure of the hub path is a data-source problem
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"dataset.hub=true: loading {_HUB[name]} failed ({msg}); {hint}") from e
    return _hub_examples(name, ds["train"]), _hub_examples(name, ds["test"])


def _hub_examples(name: str, rows: Iterable[dict]) -> list[Example]:
    task = "sentiment" if name == "yelp" else "topic"
    examples = []
    dropped = 0
    for row in rows:
        text = row["text"]
        if too_long(text):
            dropped += 1
            continue
        if name == "yelp":  # yelp_polarity keeps newlines as literal "\n"
            sentences = split_sentences(text.replace("\\n", " ").replace('\\"', '"'), 1)
        else:  # ag_news text is "title description"; a dateline dash ends the title
            m = re.search(r"\s--?\s", text[:200])
            # No dateline: the title is fused into the first sentence, which is dropped.
            sentences = agnews_sentences(text[m.end() :]) if m else agnews_sentences(text)[1:]
        examples += [Example(s, task, int(row["label"])) for s in sentences]
    warn_too_long(log, f"{_HUB[name]} (hub)", dropped)
    return examples
