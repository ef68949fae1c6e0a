"""Smoke-sized runs on the real text in ../shared/data: Yelp sentences and AG News.

A user's fresh clone has no ../shared: these tests then skip and say so.
"""

import json
from pathlib import Path

import pytest

from rdx.pipeline.offpolicy.artifacts import prepare
from rdx.run import execute
from tests.cli.test_config import compose_cfg

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(
    "dataset, folder, attribute, n_classes",
    [("yelp", "yelp", "negative", 2), ("agnews", "ag_news", "sci_tech", 4)],
)
def test_smoke_run_on_real_text(cache, tmp_path, dataset, folder, attribute, n_classes):
    if not (DATA / folder).is_dir():
        pytest.skip(f"real text not found at {DATA / folder} (a fresh clone has no ../shared)")
    cfg = compose_cfg(
        "experiment=smoke",
        f"dataset={dataset}",
        f"dataset.path={DATA / folder}",
        f"attribute={attribute}",
        f"cache_dir={cache}",
        "trainer.threads=1",
        "reward.train_epochs=4",  # smoke's 1 epoch leaves R at chance on real text
    )
    prep = prepare(cfg)
    # held-out prefixes are the starts of real held-out sentences of the task: the real-data
    # default (sampling=fixed_length) draws prefixes from both labels, as the authors did
    assert cfg.sampling.prefix_pool == "task" and not cfg.sampling.stop_at_eos
    assert len(prep.eval_prefix_texts) == cfg.sampling.eval_prefixes
    for prefix, refs in zip(prep.eval_prefix_texts, prep.eval_references, strict=True):
        assert refs and all(ref.startswith(prefix) for ref in refs)
    test_texts = {e.text for e in prep.corpus.test if e.task == prep.task}
    references = {r for refs in prep.eval_references for r in refs}
    assert references <= test_texts
    assert len({e.label for e in prep.corpus.test if e.text in references}) > 1  # both labels
    new = cfg.sampling.total_len - cfg.sampling.prefix_len
    assert (prep.train.lengths - prep.train.prefix_lens == new).all()  # fixed length
    assert prep.reward_logits.shape == (len(prep.train), n_classes)

    result = execute(cfg, tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert status["state"] == "completed"
    assert (summary["dataset"], summary["attribute"]) == (dataset, attribute)
    assert result == pytest.approx(summary["acc"] + summary["reward"])
    # R read real sentences: better than chance on held-out ones, even at smoke size
    assert summary["reward_model_accuracy"] > 1 / n_classes + 0.1
    assert 0 < summary["eval/likelihood"] < 1 and summary["eval/length"] == 26
