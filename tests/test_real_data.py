"""Smoke-sized runs on the real text in ../shared/data: Yelp sentences and AG News.

A user's fresh clone has no ../shared: these tests then skip and say so.
"""

import json
from pathlib import Path

import pytest

from rdx.pipeline.artifacts import prepare
from rdx.run import execute
from tests.test_config import compose_cfg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

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
    # held-out prefixes are the starts of real held-out sentences of the attribute
    assert len(prep.eval_prefix_texts) == cfg.sampling.eval_prefixes
    for prefix, refs in zip(prep.eval_prefix_texts, prep.eval_references, strict=True):
        assert refs and all(ref.startswith(prefix) for ref in refs)
    test_texts = {e.text for e in prep.corpus.test if e.label == prep.label}
    assert {r for refs in prep.eval_references for r in refs} <= test_texts
    assert prep.reward_logits.shape == (len(prep.train), n_classes)

    result = execute(cfg, tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert status["state"] == "completed"
    assert (summary["dataset"], summary["attribute"]) == (dataset, attribute)
    assert result == pytest.approx(summary["acc"] + summary["reward"])
    # R read real sentences: better than chance on held-out ones, even at smoke size
    assert summary["reward_model_accuracy"] > 1 / n_classes + 0.1
    assert 0 < summary["eval/likelihood"] < 1 and 0 < summary["eval/length"] <= 26
