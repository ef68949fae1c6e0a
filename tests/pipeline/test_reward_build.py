"""R's fine-tune (artifacts.build_reward): a cap on its sentences, the authors' stop once
training and held-out accuracy both pass a threshold, and the tiny R's cache key as it was
before either existed."""

import dataclasses
import json

import pytest
import torch

from rdx.config import Config, RewardConfig
from rdx.data.synthetic import generate
from rdx.lm.tokenizer import train_tokenizer
from rdx.pipeline.cache import cache_key
from rdx.pipeline.offpolicy.artifacts import REWARD_VERSION, artifact_keys, build_reward, capped

# The default tiny R's key on generate(200, 40) at 7be2fcd, before the new settings.
OLD_REWARD_KEY = "c71a7e4a4e1d4934"


def test_the_default_tiny_rewards_key_is_the_one_before_the_new_settings():
    corpus = generate(200, 40, seed=0)

    def key(**reward):
        cfg = Config()
        cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, **reward))
        return artifact_keys(cfg, corpus, "sentiment", "float32", "torch")["reward"]

    assert cache_key(key(), REWARD_VERSION) == OLD_REWARD_KEY
    assert key(stop_check_steps=50) == key()  # no stop: its period is no setting of R's
    for change in (
        {"train_max_sentences": 100},
        {"stop_accuracy": 0.95},
        {"train_precision": "bf16"},
    ):
        assert key(**change) != key(), change


def test_capped_is_a_seeded_draw_in_order_and_nothing_under_the_cap():
    rows = list(range(1000))
    got = capped(rows, 100)
    assert got == sorted(got) and len(set(got)) == 100 and got == capped(rows, 100)
    assert 20 < sum(r < 500 for r in got) < 80  # drawn from the whole, not a prefix
    assert capped(rows, 1000) is rows and capped(rows, None) is rows


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    corpus = generate(300, 100, seed=0, noise=0.0, neutral_frac=0.0)  # an easy task
    tok = tmp_path_factory.mktemp("tok")
    train_tokenizer([e.text for e in corpus.train], 300, tok)
    train = [e for e in corpus.train if e.task == "sentiment"]
    test = [e for e in corpus.test if e.task == "sentiment"]
    return tok, train, test


def build(out, task, **reward) -> dict:
    tok, train, test = task
    r = RewardConfig(n_layer=1, n_embd=32, n_head=2, **reward)
    out.mkdir()
    build_reward(
        out,
        r=r,
        task="sentiment",
        tokenizer_dir=tok,
        train=train,
        test=test,
        n_labels=2,
        device=torch.device("cpu"),
        kernels="torch",
    )
    return json.loads((out / "metrics.json").read_text())


def test_the_stop_ends_the_fine_tune_once_both_accuracies_pass(task, tmp_path):
    full_steps = 20 * (600 // 32 + 1)  # 20 epochs of 600 sentences at batch 32
    got = build(
        tmp_path / "r",
        task,
        train_epochs=20,
        train_batch_size=32,
        stop_accuracy=0.6,  # this tiny R passes 0.6 on both near step 100 of 380
        stop_check_steps=5,
    )
    assert got["train_stopped"] is True and got["train_steps"] % 5 == 0
    assert got["train_steps"] < full_steps
    assert got["train_train_accuracy"] >= 0.6 and got["train_heldout"] >= 0.6
    # the stop's held-out sentences are R's test sentences here (fewer than the cap):
    # R is saved as it was at the stop
    assert got["n_train"] == 600
    assert got["heldout_accuracy"] == pytest.approx(got["train_heldout"])


def test_the_cap_trains_on_that_many_sentences(task, tmp_path):
    got = build(tmp_path / "r", task, train_epochs=1, train_max_sentences=128)
    assert got["n_train"] == 128 and got["train_steps"] == 2  # batch 64
    assert got["train_stopped"] is False
    plain = build(tmp_path / "plain", task, train_epochs=1)
    assert set(plain) == {"heldout_accuracy", "n_test"}  # the metrics of entries before
