"""β's rows do not depend on how they are computed: batch size, chunks and shards give the
same trajectories and scores (rdx.pipeline.offpolicy.shards, rdx.lm.draw.keyed_uniforms)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from rdx.config import Config, SamplingConfig
from rdx.data.synthetic import generate
from rdx.lm.codec import Codec
from rdx.lm.engines import VLLMEngine, model_eos_ids
from rdx.lm.models import tiny_bert, tiny_gpt2
from rdx.lm.sampling import sample, sequence_prob
from rdx.lm.tokenizer import add_cls, load_tokenizer, train_tokenizer
from rdx.pipeline.cache import cache_key
from rdx.pipeline.offpolicy.artifacts import artifact_keys
from rdx.pipeline.offpolicy.shards import Stage, row_plan
from tests.helpers import fake_vllm

SAMPLING = SamplingConfig(
    num_prefixes=24,
    samples_per_prefix=4,
    eval_prefixes=8,
    fresh_per_epoch=2,
    temperature=1.0,
    top_k=40,
    repetition_penalty=1.2,
    stop_at_eos=True,
    chunk_rows=30,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random β (near-uniform over a small vocabulary: every step is a real draw,
    and EOS ends some rows early) and a tiny R, on the corpus tokenizer."""
    corpus = generate(200, 40, seed=0)
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer([e.text for e in corpus.train], 300, out)
    tok = load_tokenizer(out)
    rtok = load_tokenizer(out)
    add_cls(rtok)
    beta = tiny_gpt2(len(tok), 2, 32, 2, seed=0, eos_id=tok.eos_token_id).eval()
    reward = tiny_bert(len(tok), 1, 16, 2, num_labels=2, seed=0).eval()
    train = [e.text for e in corpus.train if e.task == "sentiment"]
    test = [e.text for e in corpus.test if e.task == "sentiment"]
    return beta, Codec(tok), reward, rtok, train, test


def stage(models, cache: Path, engine=None, **sampling) -> Stage:
    beta, codec, reward, rtok, train, test = models
    s = dataclasses.replace(SAMPLING, **sampling)
    return Stage(
        behavior=beta,
        codec=codec,
        reward_model=reward,
        reward_tokenizer=rtok,
        sampling=s,
        behavior_prob=sequence_prob,
        plan_fn=lambda: row_plan(codec, train, test, s, 0),
        cache_dir=cache,
        traj_key={"test": "traj"},
        scores_key={"test": "scores"},
        score_block=10,
        engine=engine,
    )


def merged(st: Stage, out: Path) -> tuple[dict, dict]:
    out.mkdir()
    st.merged_trajectories(out)
    if st.engine is not None:  # as prepare does: every row drawn, vLLM goes before scoring
        st.engine.close()
    st.merged_scores(out)
    return (
        torch.load(out / "trajectories.pt", weights_only=True),
        torch.load(out / "scores.pt", weights_only=True),
    )


def assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    (ta, sa), (tb, sb) = a, b
    for x, y in zip(ta["train"] + [ta["eval"]], tb["train"] + [tb["eval"]], strict=True):
        assert torch.equal(x["tokens"], y["tokens"])
        assert x["continuation"] == y["continuation"] and x["ended"] == y["ended"]
    assert torch.equal(ta["groups"], tb["groups"])
    for key in ("reward_logits", "behavior_prob"):
        for x, y in zip(sa[key], sb[key], strict=True):
            assert torch.equal(x, y), key


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory):
    """One chunk, one batch of 512 rows: the straightforward build."""
    root = tmp_path_factory.mktemp("ref")
    return merged(stage(models, root / "cache", batch_size=512, chunk_rows=10_000), root / "out")


def test_plan_has_every_row_once_with_its_key(models, reference):
    st = stage(models, Path("/nonexistent"))
    plan = st.plan
    n = 24 * 4
    assert plan.prefixes.shape[0] == 2 * n + 8 and plan.train_rows == 2 * n
    assert len({tuple(k) for k in plan.keys.tolist()}) == len(plan.keys)  # keys are unique
    assert plan.keys[:n, 1].eq(0).all() and plan.keys[n : 2 * n, 1].eq(1).all()
    assert (
        torch.equal(plan.keys[:n, 2], plan.groups) and plan.keys[:8, 3].tolist() == [0, 1, 2, 3] * 2
    )
    traj, scores = reference
    # the sets are different draws of the same prefixes; the rows really are random
    assert torch.equal(traj["train"][0]["tokens"][:, :3], traj["train"][1]["tokens"][:, :3])
    assert not torch.equal(traj["train"][0]["tokens"], traj["train"][1]["tokens"])
    assert 0 < sum(traj["train"][0]["ended"]) < n  # EOS ended some rows, not all
    assert scores["reward_logits"][0].shape == (n, 2) and scores["behavior_prob"][1].shape == (n,)


@pytest.mark.parametrize(
    ("batch_size", "shards"),
    [  # batch 4: 25-45 CPU-s each (150 small batches); 16 and 512 check the same rule fast
        pytest.param(4, 1, marks=pytest.mark.slow),
        (16, 2),
        (512, 3),
        pytest.param(4, 3, marks=pytest.mark.slow),
    ],
)
def test_batch_size_chunks_and_shards_change_no_row(
    models, reference, tmp_path, batch_size, shards
):
    st = stage(models, tmp_path / "cache", batch_size=batch_size, chunk_rows=30)
    for shard in range(shards):  # the shard jobs, one after another
        st.build_shard(shard, shards)
    chunks = [p for p in (tmp_path / "cache" / "trajectory-chunks").iterdir() if p.is_dir()]
    assert len(chunks) == st.n_chunks == 7  # 200 rows in chunks of 30
    got = merged(st, tmp_path / "out")
    ref_rows = torch.cat([t["tokens"] for t in reference[0]["train"] + [reference[0]["eval"]]])
    got_rows = torch.cat([t["tokens"] for t in got[0]["train"] + [got[0]["eval"]]])
    same = (ref_rows == got_rows).all(1)
    print(
        f"batch {batch_size:3d}, {shards} shard(s), {st.n_chunks} chunks: "
        f"{int(same.sum())}/{len(same)} rows identical to one batch of 512; β_i max |Δ| "
        f"{float((got[1]['behavior_prob'][0] - reference[1]['behavior_prob'][0]).abs().max()):.1e}"
    )
    assert_same(got, reference)


def test_a_row_is_the_same_alone_as_in_any_batch(models, reference):
    """Row r decoded by itself equals row r of the full build (the batch is not in its draws)."""
    st = stage(models, Path("/nonexistent"))
    beta, codec = models[0], models[1]
    for r in (0, 5, 101, 190):
        alone = sample(
            beta,
            st.plan.prefixes[r : r + 1],
            26,
            temperature=1.0,
            keys=st.plan.keys[r : r + 1],
            eos_id=codec.eos_id,
            top_k=40,
            repetition_penalty=1.2,
        )
        rows = torch.cat([t["tokens"] for t in reference[0]["train"]])
        assert torch.equal(alone[0], rows[r])


def test_a_killed_shard_resumes_at_its_first_missing_chunk(
    models, reference, tmp_path, monkeypatch
):
    """Killed inside its third chunk, the shard's rerun samples only the chunks it had not
    finished, and the merge equals the uninterrupted build."""
    st = stage(models, tmp_path / "cache", batch_size=16, chunk_rows=30)
    real_sample = st.engine.sample
    sampled: list[int] = []

    def killed_at_third_chunk(*args, **kwargs):
        sampled.append(len(args[0]))
        if len(sampled) == 3:
            raise KeyboardInterrupt("killed")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(st.engine, "sample", killed_at_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        st.build_shard(0, 1)
    sampled.clear()
    monkeypatch.setattr(
        st.engine, "sample", lambda *a, **k: sampled.append(1) or real_sample(*a, **k)
    )
    st.build_shard(0, 1)  # the requeued job: chunks 0 and 1 come from the cache
    assert len(sampled) == st.n_chunks - 2
    assert not list((tmp_path / "cache" / "trajectory-chunks").glob("*.tmp-*"))
    assert_same(merged(st, tmp_path / "out"), reference)


# THE VLLM ENGINE (through tests/helpers/fake_vllm) -----------------------------------


@pytest.fixture
def vllm_engine(models, tmp_path, monkeypatch):
    """VLLMEngine(batch) on the fake vLLM, β's weights saved where vLLM would load them."""
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    beta = models[0]
    beta.save_pretrained(tmp_path / "beta")

    def make(max_num_seqs: int) -> VLLMEngine:
        return VLLMEngine(
            str(tmp_path / "beta"),
            dtype="float32",
            model_eos_ids=model_eos_ids(beta),
            max_num_seqs=max_num_seqs,
        )

    return make


def test_vllm_sharded_build_equals_the_unsharded_one(models, reference, tmp_path, vllm_engine):
    one = stage(models, tmp_path / "one", engine=vllm_engine(64), chunk_rows=10_000)
    whole = merged(one, tmp_path / "whole")
    st = stage(models, tmp_path / "cache", engine=vllm_engine(7), chunk_rows=30)
    for shard in range(3):
        st.build_shard(shard, 3)
    assert_same(merged(st, tmp_path / "out"), whole)
    rows = torch.cat([t["tokens"] for t in whole[0]["train"]])
    hf_rows = torch.cat([t["tokens"] for t in reference[0]["train"]])
    assert not torch.equal(rows, hf_rows)  # another engine, another random stream
    assert 0 < sum(whole[0]["train"][0]["ended"]) < len(rows) // 2


@pytest.mark.slow  # 11 CPU-s; the sharded fake-vLLM build stays in the fast tier
def test_vllm_likelihood_engine_gives_the_rescoring_from_the_engines_log_probs(
    models, tmp_path, vllm_engine
):
    rescored = merged(stage(models, tmp_path / "a", engine=vllm_engine(16)), tmp_path / "ra")
    own = stage(models, tmp_path / "b", engine=vllm_engine(16), likelihood="engine")
    own.behavior_prob = None  # never called: β_i comes from the chunk's log-probs
    got = merged(own, tmp_path / "rb")
    for x, y in zip(got[1]["behavior_prob"], rescored[1]["behavior_prob"], strict=True):
        assert torch.allclose(x, y, atol=1e-5)  # the fake runs the same float32 β


def test_the_trajectories_key_names_the_engine_and_keeps_hf_keys(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    corpus = generate(200, 40, seed=0)

    def keys(**sampling):
        cfg = Config()
        cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, **sampling))
        return artifact_keys(cfg, corpus, "sentiment", "float32", "torch")

    hf, vllm = keys(), keys(engine="vllm")
    # hf: no engine anywhere in the key, so entries built before the choice are found
    assert "engine" not in hf["trajectories"] and "engine" not in hf["trajectories"]["sampling"]
    assert "likelihood" not in hf["trajectories"]["sampling"] and "likelihood" not in hf["scores"]
    assert vllm["trajectories"]["engine"] == {
        "name": "vllm",
        "version": fake_vllm.__version__,
        "runner": "v1",  # vLLM's model runner draws its own rows (V2 others)
    }
    assert cache_key(hf["trajectories"], 5) != cache_key(vllm["trajectories"], 5)
    assert cache_key(hf["scores"], 5) != cache_key(vllm["scores"], 5)
    own = keys(engine="vllm", likelihood="engine")
    assert own["trajectories"] == vllm["trajectories"]  # the same rows, other scores
    assert own["scores"]["likelihood"] == "engine" and own["scores"] != vllm["scores"]


def test_the_sample_set_seed_keys_the_trajectories_and_set_0_keeps_old_keys():
    """sampling.seed fills the key's `seed` entry, which held the fixed 0 before the setting
    existed: set 0's entries are found again, another set is another entry; β, R and the
    run identity at set 0 are unchanged."""
    from rdx.records import config_identity

    corpus = generate(200, 40, seed=0)

    def keys(**sampling):
        cfg = Config()
        cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, **sampling))
        return cfg, artifact_keys(cfg, corpus, "sentiment", "float32", "torch")

    (cfg0, zero), (cfg1, one) = keys(), keys(seed=1)
    assert zero["trajectories"]["seed"] == 0 and "seed" not in zero["trajectories"]["sampling"]
    assert one["trajectories"]["seed"] == 1
    assert cache_key(zero["trajectories"], 5) != cache_key(one["trajectories"], 5)
    assert (zero["behavior"], zero["reward"]) == (one["behavior"], one["reward"])
    assert zero["judge"]["reward"] == zero["reward"] and zero["judge"]["seed"] != 0
    as_dict = dataclasses.asdict
    assert "sampling.seed" not in config_identity(as_dict(cfg0))
    assert config_identity(as_dict(cfg1))["sampling.seed"] == 1


def test_the_judge_trains_on_one_half_of_r_sentences():
    from rdx.pipeline.offpolicy.artifacts import judge_half

    train = generate(200, 40, seed=0).train
    one, other = judge_half(train, 1), judge_half(train, 0)
    assert len(one) + len(other) == len(train) and abs(len(one) - len(other)) <= 1
    assert {id(e) for e in one}.isdisjoint(id(e) for e in other)
    assert {e.label for e in one} == {e.label for e in train}  # not one label's block
