"""Stages 1–3 of the pipeline and the fixed models, each cached by exactly its settings.

tokenizer ─┬─ behavior β ── trajectories (prefixes, β's samples) ──┐
           └─ reward R (per task) ─────────────────────────────────┴─ scores (R, β per sample)

β, π and R may each have their own tokenizer (docs/design.md §4): the tiny models share the corpus
tokenizer; a hub model (a name, or a local dir written by save_pretrained) brings its own.
β's samples are stored in β's tokens and as text; `prepare` re-tokenises them for π
(rdx.lm.codec) unless π's tokenizer is β's, so that training and evaluation see only π-token
`Sequences` and a mask, whichever case they are in.

Every run of a sweep that shares these settings shares the artifacts (docs/design.md §1). The
run's own seed is deliberately absent from every key: β's samples are drawn with
`sampling.seed` (one sample set per value) so that the arms and π seeds of a comparison
train on identical data, and a replicate over sample sets is one override away.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rdx.config import BehaviorConfig, Config, RewardConfig, SamplingConfig
from rdx.data.corpus import Corpus, Example, check_classes
from rdx.data.loaders import load_corpus
from rdx.hub import local_id
from rdx.lm.codec import Codec
from rdx.lm.engines import engine_key, make_engine
from rdx.lm.kernels import effective, use_kernels
from rdx.lm.length import at_least_tokens
from rdx.lm.models import (
    TINY_POSITIONS,
    fixed_dtype,
    load_hub,
    max_positions,
    resolve_device,
    tiny_bert,
    tiny_gpt2,
)
from rdx.lm.pretrain import classifier_accuracy, pack, pretrain_lm, train_classifier
from rdx.lm.processed import behavior_prob_of
from rdx.lm.sequences import Sequences
from rdx.lm.tokenizer import add_cls, build_tokenizer, load_tokenizer
from rdx.lm.vllm_mapping import logprobs_mode
from rdx.pipeline.cache import cached, cached_tensors
from rdx.pipeline.offpolicy.shards import SCORE_BLOCK, TEXT_FIELDS, Stage, check_pool, row_plan

log = logging.getLogger("rdx")

BUILD_SEED = 0  # β's pretraining: one β for every sample set and π seed
PRETRAIN_BLOCK = 32  # tokens per LM window: covers one T=30 trajectory, half the cost of 64
# sampling keys that change how β's rows are computed or checked, never what they are
HOW_COMPUTED = (
    "batch_size",
    "shards",
    "shard",
    "chunk_rows",
    "allow_fewer_prefixes",
    "vllm_memory",
)
# R's fine-tune settings added after entries were built without them: left out of R's key
# at these values (which train as before), so the keys of those entries hold
REWARD_SINCE_ADDED = {
    "train_max_sentences": None,
    "stop_accuracy": None,
    "stop_check_steps": 200,
    "train_precision": "fp32",
}


@dataclass
class TrainSet:
    """One sample set of β's trajectories in π's tokens, with its fixed per-sample scores."""

    seqs: Sequences
    mask: torch.Tensor  # (N, L−1) the positions of `seqs` that are scored
    reward_logits: torch.Tensor  # (N, C)
    behavior_prob: torch.Tensor  # (N,) β_i

    def reward(self, output: str, label: int) -> torch.Tensor:
        """R_i for class `label`: the raw class logit or its softmax probability."""
        if output == "prob":
            return torch.softmax(self.reward_logits, -1)[:, label]
        return self.reward_logits[:, label]


@dataclass
class Judge:
    """eval.judge's classifier: R's kind, its own init, half of R's training sentences."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    accuracy: float  # held-out accuracy, on R's test sentences
    path: Path


@dataclass
class Prepared:
    """Everything a training run needs, loaded in memory, in π's tokens where it matters."""

    corpus: Corpus
    task: str
    label: int
    behavior: PreTrainedModel
    behavior_codec: Codec  # β's tokenizer: β scores π's samples in these tokens
    policy_codec: Codec  # π's tokenizer; `behavior_codec` itself when π shares β's tokens
    reward_model: PreTrainedModel
    reward_tokenizer: PreTrainedTokenizerBase
    reward_accuracy: float
    sets: list[TrainSet]  # sampling.fresh_per_epoch sets; epoch e trains on set e mod k
    groups: torch.Tensor  # (N,) the prefix each trajectory continues (same in every set)
    decoding: dict[str, Any]  # stop_at_eos, top_k, repetition_penalty: how π decodes too
    eval: Sequences  # β's samples of the held-out prefixes, in π's tokens (eval/acc)
    eval_prefix_texts: list[str]  # the held-out prefixes as text
    eval_references: list[list[str]]  # held-out sentences sharing each eval prefix
    new_tokens: int  # continuation budget T − p of every generation
    paths: dict[str, str]
    kernels: str  # what β, R (and π) run: rdx.lm.kernels.effective
    judge: Judge | None = None  # eval.judge: a second R that π never trained against

    @property
    def shared_tokens(self) -> bool:
        """π reads β's own tokens: nothing is re-tokenised between them."""
        return self.policy_codec is self.behavior_codec

    @property
    def eos_id(self) -> int:
        return self.policy_codec.eos_id

    @property
    def train(self) -> Sequences:
        """The first sample set's trajectories (the only one unless fresh_per_epoch > 1)."""
        return self.sets[0].seqs

    @property
    def mask(self) -> torch.Tensor:
        return self.sets[0].mask

    @property
    def reward_logits(self) -> torch.Tensor:
        return self.sets[0].reward_logits

    @property
    def behavior_prob(self) -> torch.Tensor:
        return self.sets[0].behavior_prob

    def reward(self, output: str) -> torch.Tensor:
        """R_i of the first set for the run's attribute (see TrainSet.reward)."""
        return self.sets[0].reward(output, self.label)


def vllm_logprobs_mode(s: SamplingConfig) -> str:
    return logprobs_mode(behavior_prob=s.behavior_prob, likelihood=s.likelihood)


def corpus_digest(corpus: Corpus) -> str:
    """Hash of the corpus content: a changed generator or data file invalidates the cache."""
    h = hashlib.sha256()
    for split in (corpus.train, corpus.test):
        for e in split:
            h.update(f"{e.task}\t{e.label}\t{e.text}\n".encode())
        h.update(b"--split--")
    return h.hexdigest()[:16]


def artifact_keys(
    cfg: Config, corpus: Corpus, task: str, dtype: str, kernels: str
) -> dict[str, dict[str, Any]]:
    """The cache key of every artifact, each nesting the keys of what it is built from.
    `kernels` (rdx.lm.kernels.effective) moves trained weights and samples by float
    rounding, so what is trained or sampled with it records it."""
    data = dataclasses.asdict(cfg.dataset)
    data["path"] = data["path"] and os.path.abspath(data["path"])
    data["content"] = corpus_digest(corpus)
    behavior = dataclasses.asdict(cfg.behavior)
    tokenizer = {"dataset": data, "vocab_size": behavior["vocab_size"]}
    if cfg.behavior.hub is None:
        behavior_key = {"dataset": data, "behavior": behavior, "kernels": kernels}
    else:  # a hub β is not trained: only its identity matters
        behavior_key = {"hub": local_id(cfg.behavior.hub)}
    reward = {
        k: v
        for k, v in dataclasses.asdict(cfg.reward).items()
        if k != "output" and not (k in REWARD_SINCE_ADDED and v == REWARD_SINCE_ADDED[k])
    }
    if cfg.reward.stop_accuracy is None:
        reward.pop("stop_check_steps", None)  # no stop: how often it is checked changes nothing
    reward["kernels"] = kernels
    if cfg.reward.hub is None:
        reward_key = {"dataset": data, "reward": reward, "task": task, "tokenizer": tokenizer}
    else:
        reward = {**reward, "hub": local_id(cfg.reward.hub)}
        for key in ("n_layer", "n_embd", "n_head"):  # tiny-only sizes
            reward.pop(key)
        reward_key = {"dataset": data, "reward": reward, "task": task}
    # How the rows are computed (batch, shards, chunks) changes no row (offpolicy/shards.py).
    # behavior_prob and likelihood change the scores only, online none of the stored
    # samples; min_tokens is left out at its default, so the keys of artifacts built before
    # it existed hold. The engine has an entry of its own, written only for vllm: hf keys
    # stay those of the entries built before there was a choice.
    sampling = {
        k: v
        for k, v in dataclasses.asdict(cfg.sampling).items()
        if k not in (*HOW_COMPUTED, "behavior_prob", "likelihood", "online", "engine", "seed")
        and not (k == "min_tokens" and v is None)
    }
    # A task-wide prefix pool gives every attribute of the task the same trajectories.
    pool = task if cfg.sampling.prefix_pool == "task" else cfg.attribute
    traj_key = {
        "behavior": behavior_key,
        "attribute": pool,
        "sampling": sampling,
        "seed": cfg.sampling.seed,  # the key's seed entry predates the setting: 0 keys hold
        "dtype": dtype,
        "kernels": kernels,
    }
    engine = engine_key(cfg.sampling.engine, vllm_logprobs_mode(cfg.sampling))
    if engine is not None:
        traj_key["engine"] = engine  # vLLM's name and version: its rows are its own
    return {
        "tokenizer": tokenizer,
        "behavior": behavior_key,
        "reward": reward_key,
        "judge": {"reward": reward_key, "half": JUDGE_HALF, "seed": JUDGE_SEED},
        "trajectories": traj_key,
        "scores": {
            "trajectories": traj_key,
            "reward": reward_key,
            "dtype": dtype,
            "score_block": SCORE_BLOCK,
            **({} if cfg.sampling.behavior_prob == "raw" else {"behavior_prob": "processed"}),
            **({} if cfg.sampling.likelihood == "rescore" else {"likelihood": "engine"}),
        },
    }


@dataclass
class Fixed:
    """The run's corpus and fixed models, loaded, with the artifacts' keys: what both
    `prepare` and a shard job (`prepare_shard`) start from."""

    corpus: Corpus
    task: str
    label: int
    tok_dir: Path | None
    tokenizer: Any
    behavior: PreTrainedModel
    behavior_codec: Codec
    behavior_id: str
    reward_model: PreTrainedModel
    reward_tokenizer: PreTrainedTokenizerBase
    rew_dir: Path
    kernels: str
    stage: Stage  # β's sampling and scoring, chunked (rdx.pipeline.offpolicy.shards)
    keys: dict[str, dict[str, Any]]  # artifact_keys


def load_fixed(cfg: Config) -> Fixed:
    """Build (or reuse) the tokenizer, β and R of the run's (dataset, attribute), load them,
    and set up β's sampling stage."""
    corpus = load_corpus(
        cfg.dataset.name,
        path=cfg.dataset.path,
        hub=cfg.dataset.hub,
        n_per_attribute=cfg.dataset.n_per_attribute,
        max_words=cfg.dataset.max_words,
    )
    task, label = corpus.task_of(cfg.attribute)
    check_classes(corpus, task, f"dataset.path={cfg.dataset.path}" if cfg.dataset.path else "")
    device = resolve_device(cfg.trainer.device)
    dtype = fixed_dtype(device, cfg.trainer.precision)
    kernels = effective(cfg.trainer.kernels, device, dtype)
    keys = artifact_keys(cfg, corpus, task, str(dtype).removeprefix("torch."), kernels)
    root, s = cfg.cache_dir, cfg.sampling
    # The prefix pool: the attribute's own sentences, or the whole task's (the authors').
    label_ok = (lambda e: True) if s.prefix_pool == "task" else (lambda e: e.label == label)
    in_task = [e.text for e in corpus.train if e.task == task and label_ok(e)]
    held_out = [e.text for e in corpus.test if e.task == task and label_ok(e)]
    check_pool(len(in_task), s)  # before any model loads: a sentence gives at most one prefix

    # The corpus tokenizer: for every tiny model (β, R, or a tiny π beside a hub β).
    tok_dir = tokenizer = None
    if cfg.behavior.hub is None or cfg.reward.hub is None or cfg.model.hub is None:
        texts = [e.text for e in corpus.train]
        build = partial(build_tokenizer, texts=texts, vocab_size=cfg.behavior.vocab_size)
        tok_dir = cached(root, "tokenizer", keys["tokenizer"], build, TOKENIZER_VERSION)
        tokenizer = load_tokenizer(tok_dir)

    behavior, behavior_codec, behavior_id = load_behavior(
        cfg, corpus, tokenizer, keys, dtype, kernels, device
    )
    behavior = use_kernels(behavior.to(device), kernels)
    reward_model, reward_tokenizer, rew_dir = load_reward(
        cfg, corpus, task, keys, tok_dir, device, kernels
    )
    reward_model = use_kernels(reward_model.to(device, dtype), kernels)
    if s.min_tokens is not None:  # the authors' sentence filter, in β's tokens
        in_task = at_least_tokens(in_task, behavior_codec.tokenizer, s.min_tokens)
        held_out = at_least_tokens(held_out, behavior_codec.tokenizer, s.min_tokens)
        check_pool(len(in_task), s, f"sentences of >= {s.min_tokens} tokens")

    stage = Stage(
        behavior=behavior,
        codec=behavior_codec,
        reward_model=reward_model,
        reward_tokenizer=reward_tokenizer,
        sampling=s,
        behavior_prob=behavior_prob_of(s),
        plan_fn=partial(row_plan, behavior_codec, in_task, held_out, s, s.seed),
        cache_dir=root,
        traj_key=keys["trajectories"],
        scores_key=keys["scores"],
        engine=make_engine(
            s.engine,
            behavior,
            behavior_id,
            str(dtype).removeprefix("torch."),
            gpu_memory_utilization=s.vllm_memory,
            logprobs_mode=vllm_logprobs_mode(s),
        ),
    )
    return Fixed(
        corpus=corpus,
        task=task,
        label=label,
        tok_dir=tok_dir,
        tokenizer=tokenizer,
        behavior=behavior,
        behavior_codec=behavior_codec,
        behavior_id=behavior_id,
        reward_model=reward_model,
        reward_tokenizer=reward_tokenizer,
        rew_dir=rew_dir,
        kernels=kernels,
        stage=stage,
        keys=keys,
    )


@dataclass
class ShardBuilt:
    """What a shard job built: its chunk entries (rdx.run logs `paths`)."""

    paths: dict[str, str]


def prepare_shard(cfg: Config) -> list[Path]:
    """A shard job of `python -m rdx.prepare sampling.shards=N`: sample and score this
    shard's chunks of β's rows (cached; the merge happens in the runs' prepare)."""
    threads = torch.get_num_threads()
    fixed = load_fixed(cfg)
    try:
        done = fixed.stage.build_shard(cfg.sampling.shard, cfg.sampling.shards)
    finally:
        fixed.stage.engine.close()  # vLLM's processes end with the job, not the process
    torch.set_num_threads(threads)
    return done


def prepare(cfg: Config) -> Prepared | ShardBuilt:
    """Build (or reuse) every artifact of the run's (dataset, attribute) and load them; in a
    shard job of rdx.prepare (sampling.shard set, stage=prepare), only that shard's chunks."""
    if cfg.sampling.shard is not None:
        return ShardBuilt(paths={str(i): str(p) for i, p in enumerate(prepare_shard(cfg))})
    threads = torch.get_num_threads()
    f = load_fixed(cfg)
    s, root, codec, stage = cfg.sampling, cfg.cache_dir, f.behavior_codec, f.stage
    behavior_codec, tokenizer = f.behavior_codec, f.tokenizer
    reward_accuracy = json.loads((f.rew_dir / "metrics.json").read_text())["heldout_accuracy"]
    judge = load_judge(cfg, f) if cfg.eval.judge else None
    try:
        traj_dir, traj = cached_tensors(  # plain data: no code runs
            root,
            "trajectories",
            stage.traj_key,
            stage.merged_trajectories,
            TRAJECTORIES_VERSION,
            "trajectories.pt",
        )
    finally:  # every row is drawn: vLLM's processes and memory go before the scoring
        stage.engine.close()
    p = traj["prefix_len"]
    eos = codec.eos_id if s.stop_at_eos else None  # EOS ends a row only when it stops one
    behavior_sets = [Sequences.from_samples(t["tokens"], p, eos) for t in traj["train"]]
    scores_dir, scores = cached_tensors(
        root, "scores", stage.scores_key, stage.merged_scores, SCORES_VERSION, "scores.pt"
    )
    torch.set_num_threads(threads)

    policy_codec = _policy_codec(cfg, tokenizer, behavior_codec)
    if policy_codec.same_tokens(behavior_codec):
        policy_codec = behavior_codec
        trains = behavior_sets
        eval_seqs = Sequences.from_samples(traj["eval"]["tokens"], p, eos)
    else:
        log.info("re-tokenising β's trajectories for π (different tokenizers)")
        trains = [policy_codec.encode(*(t[k] for k in TEXT_FIELDS)) for t in traj["train"]]
        eval_seqs = policy_codec.encode(*(traj["eval"][k] for k in TEXT_FIELDS))
    warn_caps(s, n_prefixes=len(trains[0]) // s.samples_per_prefix, n_eval=len(eval_seqs))
    sets = [
        TrainSet(
            seqs=seqs,
            mask=seqs.mask(score_prefix=cfg.trainer.score_prefix),
            reward_logits=logits,
            behavior_prob=beta,
        )
        for seqs, logits, beta in zip(
            trains, scores["reward_logits"], scores["behavior_prob"], strict=True
        )
    ]
    return Prepared(
        corpus=f.corpus,
        task=f.task,
        label=f.label,
        behavior=f.behavior,
        behavior_codec=behavior_codec,
        policy_codec=policy_codec,
        reward_model=f.reward_model,
        reward_tokenizer=f.reward_tokenizer,
        reward_accuracy=reward_accuracy,
        sets=sets,
        groups=traj["groups"],
        decoding={
            "stop_at_eos": s.stop_at_eos,
            "top_k": s.top_k,
            "repetition_penalty": s.repetition_penalty,
        },
        eval=eval_seqs,
        eval_prefix_texts=traj["eval"]["prefix"],
        eval_references=traj["eval_references"],
        new_tokens=s.total_len - s.prefix_len,
        kernels=f.kernels,
        judge=judge,
        paths={
            name: str(path)
            for name, path in (
                ("tokenizer", f.tok_dir),
                ("behavior", f.behavior_id),
                ("reward", f.rew_dir),
                ("trajectories", traj_dir),
                ("scores", scores_dir),
                ("judge", judge and judge.path),
            )
            if path is not None
        },
    )


# BUILDERS ------------------------------------------------------------------------------
# Each writes one artifact into `out` (cache.cached renames it into place). Its version is
# part of the cache key: bump it when what the builder writes changes meaning.

TOKENIZER_VERSION = 2


BEHAVIOR_VERSION = 2


def build_behavior(
    out: Path, *, tokenizer, texts: list[str], b: BehaviorConfig, kernels: str
) -> None:
    """rdx's tiny GPT-2 β, pretrained on the corpus's training sentences."""
    model = tiny_gpt2(
        len(tokenizer),
        b.n_layer,
        b.n_embd,
        b.n_head,
        seed=BUILD_SEED,
        eos_id=tokenizer.eos_token_id,
    )
    use_kernels(model, kernels)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    loss = pretrain_lm(
        model,
        pack(ids, tokenizer.eos_token_id),
        steps=b.pretrain_steps,
        lr=b.pretrain_lr,
        batch_size=b.pretrain_batch_size,
        block=PRETRAIN_BLOCK,
        seed=BUILD_SEED,
    )
    model.save_pretrained(out)
    (out / "metrics.json").write_text(json.dumps({"final_loss": loss}))


REWARD_VERSION = 2
# The judge: R's build on one half of a seeded split of R's training sentences, from init
# seed JUDGE_SEED (R's is 0), so it shares neither R's init, nor its batch order, nor the
# other half of its data.
JUDGE_HALF, JUDGE_SEED = 1, 1


def build_reward(
    out: Path,
    *,
    r: RewardConfig,
    task: str,
    tokenizer_dir: Path | None,
    train: list[Example],
    test: list[Example],
    n_labels: int,
    device: torch.device,
    kernels: str,
    seed: int = 0,
) -> None:
    """R fine-tuned on the task's labels (the tiny BERT from scratch, or a hub encoder from
    its weights), saved with its held-out accuracy."""
    torch.manual_seed(seed)  # a hub encoder's new classification head
    if r.hub is None:
        rtok = load_tokenizer(tokenizer_dir)
        add_cls(rtok)
        model = tiny_bert(len(rtok), r.n_layer, r.n_embd, r.n_head, n_labels, seed=seed)
    else:
        rtok = load_hub("tokenizer", r.hub)
        model = load_hub("classifier", r.hub, num_labels=n_labels, dtype=torch.float32)
    model = use_kernels(model.to(device), kernels)
    train = capped(train, r.train_max_sentences)
    check = capped(test, STOP_HELDOUT)  # the stop's held-out sentences (the authors': test)
    done: dict[str, Any] = {}
    if r.train_epochs > 0:
        done = train_classifier(
            model,
            rtok,
            [e.text for e in train],
            [e.label for e in train],
            epochs=r.train_epochs,
            lr=r.train_lr,
            batch_size=r.train_batch_size,
            seed=seed,
            precision=r.train_precision,
            stop_accuracy=r.stop_accuracy,
            stop_check_steps=r.stop_check_steps,
            heldout=([e.text for e in check], [e.label for e in check]),
        )
    acc = classifier_accuracy(model.eval(), rtok, [e.text for e in test], [e.label for e in test])
    log.info("reward classifier (%s) held-out accuracy %.3f on %d sentences", task, acc, len(test))
    model.cpu().save_pretrained(out)
    rtok.save_pretrained(out)
    metrics = {"heldout_accuracy": acc, "n_test": len(test)}
    if r.train_max_sentences is not None or r.stop_accuracy is not None:
        metrics |= {"n_train": len(train), **{f"train_{k}": v for k, v in done.items()}}
    (out / "metrics.json").write_text(json.dumps(metrics))


STOP_HELDOUT = 2048  # held-out sentences of reward.stop_accuracy's check: a few forwards


def capped(train: list[Example], cap: int | None) -> list[Example]:
    """At most `cap` training sentences, a seeded draw that keeps both classes' shares in
    expectation (order kept); all of them, as they are, without a cap or under it."""
    if cap is None or len(train) <= cap:
        return train
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:cap]
    return [train[i] for i in sorted(keep.tolist())]


# 2: trajectories also stored as text (different tokenizers); 3: a list of sample sets,
# the prefix group of each row, decoding options (stop_at_eos, top_k, repetition penalty);
# 4: tokens drawn by inversion (rdx.lm.draw), another stream than torch.multinomial's;
# 5: each row's randomness keyed by (seed, set, prefix, sample), merged from chunks
TRAJECTORIES_VERSION = 5
# 3: lists, one entry per sample set; 4: β_i through a fused log_softmax; 5: merged from
# chunks of the keyed trajectories (rdx.pipeline.offpolicy.shards)
SCORES_VERSION = 5


# LOADERS -------------------------------------------------------------------------------


def load_behavior(
    cfg: Config, corpus: Corpus, tokenizer, keys, dtype, kernels: str, device: torch.device
) -> tuple[PreTrainedModel, Codec, str]:
    """β: rdx's tiny GPT-2 pretrained on the corpus (cached), or a hub causal LM as is;
    returns the model, its codec and its identity (cache dir or hub name). A hub β on a GPU
    loads in `dtype` straight onto it (device_map): no host copy of an OPT-6.7B's 13 GB."""
    if cfg.behavior.hub is not None:
        onto = {"device_map": str(device)} if device.type == "cuda" else {}
        model = load_hub("causal", cfg.behavior.hub, dtype=dtype, **onto).eval()
        hub_tok = load_hub("tokenizer", cfg.behavior.hub)
        return model, Codec(hub_tok, max_positions(model.config)), local_id(cfg.behavior.hub)
    texts = [e.text for e in corpus.train]
    build = partial(
        build_behavior, tokenizer=tokenizer, texts=texts, b=cfg.behavior, kernels=kernels
    )
    beh_dir = cached(cfg.cache_dir, "behavior", keys["behavior"], build, BEHAVIOR_VERSION)
    model = GPT2LMHeadModel.from_pretrained(beh_dir, dtype=dtype).eval()
    return model, Codec(tokenizer, TINY_POSITIONS), str(beh_dir)


def load_reward(
    cfg: Config, corpus: Corpus, task: str, keys, tokenizer_dir: Path | None, device, kernels: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    """R, trained once per task and cached: the model, its tokenizer and its cache dir."""
    r = cfg.reward
    build = partial(
        build_reward,
        r=r,
        task=task,
        tokenizer_dir=tokenizer_dir,
        train=[e for e in corpus.train if e.task == task],
        test=[e for e in corpus.test if e.task == task],
        n_labels=len(corpus.tasks[task]),
        device=device,
        kernels=kernels,
    )
    rew_dir = cached(cfg.cache_dir, "reward", keys["reward"], build, REWARD_VERSION)
    model, rtok = _load_classifier(rew_dir, r.hub)
    return model, rtok, rew_dir


def _load_classifier(path: Path, hub: str | None) -> tuple[PreTrainedModel, Any]:
    """A classifier rdx built (R or the judge) and its tokenizer, from its cache dir."""
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    if hub is None:
        tok = load_tokenizer(path)
        add_cls(tok)
    else:
        tok = load_hub("tokenizer", str(path))
    return model.eval(), tok


def judge_half(train: list[Example], half: int = JUDGE_HALF) -> list[Example]:
    """One half of R's training sentences, split by a fixed permutation (not by position:
    a corpus file sorted by label would give a half of one label)."""
    g = torch.Generator().manual_seed(JUDGE_SEED)
    order = torch.randperm(len(train), generator=g).tolist()
    return [train[i] for i in sorted(order[half::2])]


def load_judge(cfg: Config, f: Fixed) -> Judge:
    """eval.judge's classifier, built once per task and cached like R."""
    r = cfg.reward
    if r.hub is not None and r.train_epochs == 0:
        raise ValueError(
            f"eval.judge=true with reward.train_epochs=0: reward.hub={r.hub} is used as it "
            "is, so a judge trained the same way would be R itself; set reward.train_epochs "
            "> 0 or eval.judge=false"
        )
    task_train = [e for e in f.corpus.train if e.task == f.task]
    build = partial(
        build_reward,
        r=r,
        task=f.task,
        tokenizer_dir=f.tok_dir,
        train=judge_half(task_train),
        test=[e for e in f.corpus.test if e.task == f.task],
        n_labels=len(f.corpus.tasks[f.task]),
        device=resolve_device(cfg.trainer.device),
        kernels=f.kernels,
        seed=JUDGE_SEED,
    )
    judge_dir = cached(cfg.cache_dir, "judge", f.keys["judge"], build, REWARD_VERSION)
    model, jtok = _load_classifier(judge_dir, r.hub)
    model = use_kernels(model.to(f.reward_model.device), f.kernels)
    accuracy = json.loads((judge_dir / "metrics.json").read_text())["heldout_accuracy"]
    return Judge(model=model, tokenizer=jtok, accuracy=accuracy, path=judge_dir)


def _policy_codec(cfg: Config, tokenizer, behavior_codec: Codec) -> Codec:
    """π's tokenizer: a hub target's own, β's when π starts as a copy of β, else the corpus
    tokenizer of the tiny models."""
    if cfg.model.hub is not None:
        config = load_hub("config", cfg.model.hub)
        return Codec(load_hub("tokenizer", cfg.model.hub), max_positions(config))
    if cfg.model.init == "behavior":
        return behavior_codec
    return Codec(tokenizer, TINY_POSITIONS)


def warn_caps(s: SamplingConfig, n_prefixes: int, n_eval: int) -> None:
    """Say so, at every run (the trajectories may come from the cache), when the corpus had
    fewer prefixes than asked; the summary records the numbers used."""
    for key, asked, used in (
        ("num_prefixes", s.num_prefixes, n_prefixes),
        ("eval_prefixes", s.eval_prefixes, n_eval),
    ):
        if used < asked:
            log.warning(
                "sampling.%s=%d: the corpus yields only %d prefixes; %d are used",
                key,
                asked,
                used,
                used,
            )
