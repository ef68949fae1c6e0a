"""A corpus: sentences with a task and a label, and the one table of tasks and attributes.

Every corpus is lower-cased, whitespace-tokenised sentences (punctuation and clitics as
separate tokens, as in the Yelp style-transfer files), each with a task and a label index
into its task's attributes. Where the sentences come from: rdx.data.loaders.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

TASKS: dict[str, tuple[str, ...]] = {
    "sentiment": ("negative", "positive"),
    "topic": ("world", "sport", "business", "sci_tech"),
}
# dataset -> its tasks; the synthetic grammar has both, as the paper's two datasets do.
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": TASKS,
    "yelp": {"sentiment": TASKS["sentiment"]},
    "agnews": {"topic": TASKS["topic"]},
}


class DataError(ValueError):
    """A one-line, user-facing problem with the dataset settings or files."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_data_file(path: Path, what: str) -> None:
    """DataError unless `path` (a file some split is read from) is a regular file, after
    following symlinks: a FIFO hangs the read, /dev/zero never ends, and a dangling symlink
    or a special file must not make another split stand in for this one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(
                f"{path}: a dangling symlink (to {os.readlink(path)}); {what} is read from "
                "it: point it at the data file, or remove it"
            ) from None
        raise DataError(f"{path}: missing; {what} is read from it: restore it") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise DataError(
            f"{path}: not a regular file ({kind}); {what} is read from it: replace it "
            "with the data file, or remove it"
        )


@dataclass(frozen=True)
class Example:
    text: str  # lower-cased, whitespace-separated words
    task: str  # "sentiment" | "topic"
    label: int  # index into Corpus.tasks[task]


@dataclass
class Corpus:
    name: str
    tasks: dict[str, tuple[str, ...]]  # task -> attribute names in label order
    train: list[Example]
    test: list[Example]  # held out: never used to train anything

    def task_of(self, attribute: str) -> tuple[str, int]:
        for task, attrs in self.tasks.items():
            if attribute in attrs:
                return task, attrs.index(attribute)
        raise DataError(
            f"attribute={attribute}: unknown for dataset {self.name}; "
            f"allowed: {', '.join(self.attributes())}"
        )

    def attributes(self) -> list[str]:
        return [a for attrs in self.tasks.values() for a in attrs]


# Below these a class's reward classifier is trained or judged on next to nothing: R of a
# class it never saw, or a held-out accuracy of 1.000 on one class (issue 22 §2).
MIN_TRAIN_PER_CLASS = 10
MIN_HELD_OUT_PER_CLASS = 5


def check_classes(corpus: Corpus, task: str, source: str = "") -> None:
    """DataError (one line naming the class and its counts) when a class of `task` has too
    few training or held-out sentences to train or evaluate R; called before any build."""
    attrs = corpus.tasks[task]
    counts = {a: [0, 0] for a in attrs}
    for col, examples in enumerate((corpus.train, corpus.test)):
        for e in examples:
            if e.task == task:
                counts[attrs[e.label]][col] += 1
    for attr, (n_train, n_test) in counts.items():
        if n_train < MIN_TRAIN_PER_CLASS or n_test < MIN_HELD_OUT_PER_CLASS:
            where = f" ({source})" if source else ""
            raise DataError(
                f"dataset {corpus.name}{where}: class {attr} has {n_train} training and "
                f"{n_test} held-out sentence(s); training and evaluating R needs at least "
                f"{MIN_TRAIN_PER_CLASS} and {MIN_HELD_OUT_PER_CLASS} of every class of the "
                f"{task} task"
            )
