"""Fault injection: a class with too few sentences to train or evaluate R is a one-line
data error naming the class and its counts, before anything is built (docs/reliability.md,
issue 22 §2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdx.data.corpus import Corpus, DataError, Example
from tests.helpers.cli import rdx_cli

ROOT = Path(__file__).resolve().parents[2]


def test_a_class_below_the_minimum_is_named_with_its_counts():
    from rdx.data.corpus import check_classes

    train = [Example(f"w {i}", "topic", 0) for i in range(50)]
    train += [Example(f"s {i}", "topic", 1) for i in range(3)]
    test = [Example(f"w {i}", "topic", 0) for i in range(9)]
    corpus = Corpus("agnews", {"topic": ("world", "sport")}, train, test)
    with pytest.raises(DataError) as err:
        check_classes(corpus, "topic", "dataset.path=/d")
    said = str(err.value)
    assert "class sport has 3 training and 0 held-out" in said and "(dataset.path=/d)" in said
    assert "\n" not in said
    more = [Example(f"s {i}", "topic", 1) for i in range(10)]
    check_classes(Corpus("agnews", corpus.tasks, train + more, test + more[:5]), "topic")


def test_a_target_attribute_with_no_sentences_builds_nothing(tmp_path):
    """AG News data holding only `world` rows, run for attribute=sport."""
    data = tmp_path / "agnews"
    data.mkdir()
    rows = [
        f'"1","t","Rebels in region {i} agreed to a ceasefire with the army on day {i}."'
        for i in range(300)
    ]
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    cache, run = tmp_path / "cache", tmp_path / "run"
    proc = rdx_cli(
        "experiment=smoke",
        "logger=none",
        "dataset=agnews",
        f"dataset.path={data}",
        "attribute=sport",
        "stage=prepare",
        f"cache_dir={cache}",
        f"hydra.run.dir={run}",
        timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rdx:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and "data error" in lines[0], lines
    assert "class sport has 0 training and 0 held-out sentence(s)" in lines[0]
    assert not cache.exists() or not any(cache.iterdir())  # no β, R, trajectories
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "class sport" in status["error"]


def test_a_capped_prefix_count_is_warned(caplog):
    import logging

    from rdx.config import SamplingConfig
    from rdx.pipeline.offpolicy.artifacts import warn_caps

    with caplog.at_level(logging.WARNING, logger="rdx"):
        warn_caps(SamplingConfig(num_prefixes=64, eval_prefixes=100000), n_prefixes=64, n_eval=91)
    assert caplog.messages == [
        "sampling.eval_prefixes=100000: the corpus yields only 91 prefixes; 91 are used"
    ]


@pytest.mark.slow
def test_eval_prefixes_beyond_the_corpus_are_warned_and_recorded(tmp_path):
    run = tmp_path / "run"
    proc = rdx_cli(
        "experiment=smoke",
        "logger=none",
        "trainer.threads=1",
        "trainer.epochs=1",
        "sampling.eval_prefixes=100000",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    used = summary["n_eval_prefixes"]
    assert 0 < used < 100000
    said = f"sampling.eval_prefixes=100000: the corpus yields only {used} prefixes"
    assert said in proc.stdout + proc.stderr  # Hydra logs to stdout
