"""Stages 1–3 of the pipeline and the fixed models, each cached by exactly its settings.

tokenizer ─┬─ behavior β ── trajectories (prefixes, β's samples) ──┐
           └─ reward R (per task) ─────────────────────────────────┴─ scores (R, β per sample)

β, π and R may each have their own tokenizer (DESIGN §4): the tiny models share the corpus
tokenizer; a hub model (a name, or a local dir written by save_pretrained) brings its own.
β's samples are stored in β's tokens and as text; `prepare` re-tokenises them for π
(rdx.codec) unless π's tokenizer is β's, so that training and evaluation see only π-token
`Sequences` and a mask, whichever case they are in.

Every run of a sweep that shares these settings shares the artifacts (DESIGN §1). The
run's own seed is deliberately absent from every key: β's samples are drawn once with a
fixed sampling seed so that the arms of a comparison train on identical data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rdx.cache import cached
from rdx.codec import Codec
from rdx.config import Config
from rdx.corpus import Corpus, load_corpus
from rdx.models import (
    TINY_POSITIONS,
    fixed_dtype,
    load_hub,
    max_positions,
    resolve_device,
    tiny_bert,
    tiny_gpt2,
)
from rdx.pretrain import classifier_accuracy, pack, pretrain_lm, train_classifier
from rdx.sampling import Sequences, classifier_logits, mean_token_prob, sample
from rdx.tokenizer import load_tokenizer, train_tokenizer

log = logging.getLogger("rdx")

SAMPLING_SEED = 0  # fixed: β's trajectories are shared by every seed of a sweep
PRETRAIN_BLOCK = 32  # tokens per LM window: covers one T=30 trajectory, half the cost of 64
TEXT_FIELDS = ("prefix", "continuation", "ended")  # a trajectory as text (Codec.decode)


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
    train: Sequences  # β's trajectories in π's tokens
    mask: torch.Tensor  # (N, L−1) the positions of `train` that are scored
    reward_logits: torch.Tensor  # (N, C)
    behavior_prob: torch.Tensor  # (N,) β_i
    eval: Sequences  # β's samples of the held-out prefixes, in π's tokens (eval/acc)
    eval_prefix_texts: list[str]  # the held-out prefixes as text
    eval_references: list[list[str]]  # held-out sentences sharing each eval prefix
    new_tokens: int  # continuation budget T − p of every generation
    paths: dict[str, str]

    @property
    def shared_tokens(self) -> bool:
        """π reads β's own tokens: nothing is re-tokenised between them."""
        return self.policy_codec is self.behavior_codec

    @property
    def eos_id(self) -> int:
        return self.policy_codec.eos_id

    def reward(self, output: str) -> torch.Tensor:
        """R_i for the run's attribute: the raw class logit or its softmax probability."""
        if output == "prob":
            return torch.softmax(self.reward_logits, -1)[:, self.label]
        return self.reward_logits[:, self.label]


def corpus_digest(corpus: Corpus) -> str:
    """Hash of the corpus content: a changed generator or data file invalidates the cache."""
    h = hashlib.sha256()
    for split in (corpus.train, corpus.test):
        for e in split:
            h.update(f"{e.task}\t{e.label}\t{e.text}\n".encode())
        h.update(b"--split--")
    return h.hexdigest()[:16]


def _hub_id(name: str | None) -> str | None:
    """A hub name as is; a local model dir by its absolute path (cache keys, records)."""
    if name is not None and os.path.isdir(os.path.expanduser(name)):
        return os.path.abspath(os.path.expanduser(name))
    return name


def _settings(cfg: Config, corpus: Corpus, task: str, dtype: str) -> dict[str, dict[str, Any]]:
    """The cache key of every artifact, each nesting the keys of what it is built from."""
    data = dataclasses.asdict(cfg.dataset)
    data["path"] = data["path"] and os.path.abspath(data["path"])
    data["content"] = corpus_digest(corpus)
    behavior = dataclasses.asdict(cfg.behavior)
    tokenizer = {"dataset": data, "vocab_size": behavior["vocab_size"]}
    if cfg.behavior.hub is None:
        behavior_key = {"dataset": data, "behavior": behavior}
    else:  # a hub β is not trained: only its identity matters
        behavior_key = {"hub": _hub_id(cfg.behavior.hub)}
    reward = {k: v for k, v in dataclasses.asdict(cfg.reward).items() if k != "output"}
    if cfg.reward.hub is None:
        reward_key = {"dataset": data, "reward": reward, "task": task, "tokenizer": tokenizer}
    else:
        reward = {**reward, "hub": _hub_id(cfg.reward.hub)}
        for key in ("n_layer", "n_embd", "n_head"):  # tiny-only sizes
            reward.pop(key)
        reward_key = {"dataset": data, "reward": reward, "task": task}
    sampling = {k: v for k, v in dataclasses.asdict(cfg.sampling).items() if k != "batch_size"}
    traj_key = {
        "behavior": behavior_key,
        "attribute": cfg.attribute,
        "sampling": sampling,
        "seed": SAMPLING_SEED,
        "dtype": dtype,
    }
    return {
        "tokenizer": tokenizer,
        "behavior": behavior_key,
        "reward": reward_key,
        "trajectories": traj_key,
        "scores": {"trajectories": traj_key, "reward": reward_key, "dtype": dtype},
    }


def prepare(cfg: Config) -> Prepared:
    """Build (or reuse) every artifact of the run's (dataset, attribute) and load them."""
    corpus = load_corpus(
        cfg.dataset.name,
        path=cfg.dataset.path,
        hub=cfg.dataset.hub,
        n_per_attribute=cfg.dataset.n_per_attribute,
        max_words=cfg.dataset.max_words,
    )
    task, label = corpus.task_of(cfg.attribute)
    device = resolve_device(cfg.trainer.device)
    dtype = fixed_dtype(device, cfg.trainer.precision)
    keys = _settings(cfg, corpus, task, str(dtype).removeprefix("torch."))
    root = cfg.cache_dir
    threads = torch.get_num_threads()
    paths: dict[str, Path | str] = {}

    # The corpus tokenizer: for every tiny model (β, R, or a tiny π beside a hub β).
    tokenizer = None
    if cfg.behavior.hub is None or cfg.reward.hub is None or cfg.model.hub is None:

        def build_tokenizer(out: Path) -> None:
            train_tokenizer((e.text for e in corpus.train), cfg.behavior.vocab_size, out)

        paths["tokenizer"] = cached(root, "tokenizer", keys["tokenizer"], build_tokenizer)
        tokenizer = load_tokenizer(paths["tokenizer"])

    behavior, behavior_codec, paths["behavior"] = _behavior(cfg, corpus, tokenizer, keys, dtype)
    behavior = behavior.to(device)
    reward_model, reward_tokenizer, rew_dir = _reward(cfg, corpus, task, keys, paths, device)
    paths["reward"] = rew_dir
    reward_accuracy = json.loads((rew_dir / "metrics.json").read_text())["heldout_accuracy"]
    reward_model = reward_model.to(device, dtype)

    s = cfg.sampling
    codec = behavior_codec

    def build_trajectories(out: Path) -> None:
        g = torch.Generator().manual_seed(SAMPLING_SEED)
        train_texts = [e.text for e in corpus.train if (e.task, e.label) == (task, label)]
        test_texts = [e.text for e in corpus.test if (e.task, e.label) == (task, label)]
        width = len(codec.bos) + s.prefix_len
        prefixes = torch.tensor(codec.prefix_ids(train_texts, s.prefix_len), dtype=torch.long)
        prefixes = prefixes.reshape(-1, width)
        pick = torch.randperm(len(prefixes), generator=g)[: s.num_prefixes]
        if len(pick) < s.num_prefixes:
            log.warning(
                "only %d training prefixes for %s (asked %d)",
                len(pick),
                cfg.attribute,
                s.num_prefixes,
            )
        prefixes = prefixes[pick].repeat_interleave(s.samples_per_prefix, dim=0)
        new = s.total_len - s.prefix_len
        tokens = sample(
            behavior,
            prefixes,
            new,
            temperature=s.temperature,
            generator=g,
            eos_id=codec.eos_id,
            batch_size=s.batch_size,
        )
        eval_prefixes, refs = _eval_prefixes(codec, test_texts, s.prefix_len, s.eval_prefixes, g)
        eval_tokens = sample(
            behavior,
            eval_prefixes,
            new,
            temperature=s.temperature,
            generator=g,
            eos_id=codec.eos_id,
            batch_size=s.batch_size,
        )
        p = width  # β's prefix: its BOS (if any) + prefix_len tokens
        record = {"prefix_len": p, "eval_references": refs}
        for name, rows in (("train", tokens), ("eval", eval_tokens)):
            texts = codec.decode(Sequences.from_samples(rows, p, codec.eos_id))
            record[name] = {"tokens": rows, **dict(zip(TEXT_FIELDS, texts, strict=True))}
        torch.save(record, out / "trajectories.pt")

    paths["trajectories"] = cached(root, "trajectories", keys["trajectories"], build_trajectories)
    traj = torch.load(paths["trajectories"] / "trajectories.pt")
    p = traj["prefix_len"]
    behavior_train = Sequences.from_samples(traj["train"]["tokens"], p, codec.eos_id)

    def build_scores(out: Path) -> None:
        texts = codec.tokenizer.batch_decode(traj["train"]["tokens"], skip_special_tokens=True)
        torch.save(
            {
                "reward_logits": classifier_logits(
                    reward_model, reward_tokenizer, texts, batch_size=s.batch_size
                ),
                "behavior_prob": mean_token_prob(
                    behavior,
                    traj["train"]["tokens"],
                    p,
                    eos_id=codec.eos_id,
                    batch_size=s.batch_size,
                ),
            },
            out / "scores.pt",
        )

    paths["scores"] = cached(root, "scores", keys["scores"], build_scores)
    scores = torch.load(paths["scores"] / "scores.pt")
    torch.set_num_threads(threads)

    policy_codec = _policy_codec(cfg, tokenizer, behavior_codec)
    if policy_codec.same_tokens(behavior_codec):
        policy_codec = behavior_codec
        train = behavior_train
        eval_seqs = Sequences.from_samples(traj["eval"]["tokens"], p, codec.eos_id)
    else:
        log.info("re-tokenising β's trajectories for π (different tokenizers)")
        train = policy_codec.encode(*(traj["train"][k] for k in TEXT_FIELDS))
        eval_seqs = policy_codec.encode(*(traj["eval"][k] for k in TEXT_FIELDS))
    return Prepared(
        corpus=corpus,
        task=task,
        label=label,
        behavior=behavior,
        behavior_codec=behavior_codec,
        policy_codec=policy_codec,
        reward_model=reward_model,
        reward_tokenizer=reward_tokenizer,
        reward_accuracy=reward_accuracy,
        train=train,
        mask=train.mask(score_prefix=cfg.trainer.score_prefix),
        reward_logits=scores["reward_logits"],
        behavior_prob=scores["behavior_prob"],
        eval=eval_seqs,
        eval_prefix_texts=traj["eval"]["prefix"],
        eval_references=traj["eval_references"],
        new_tokens=s.total_len - s.prefix_len,
        paths={k: str(v) for k, v in paths.items()},
    )


def _behavior(cfg: Config, corpus: Corpus, tokenizer, keys, dtype) -> tuple[Any, Codec, Any]:
    """β: rdx's tiny GPT-2 pretrained on the corpus (cached), or a hub causal LM as is."""
    if cfg.behavior.hub is not None:
        model = load_hub("causal", cfg.behavior.hub, dtype=dtype).eval()
        hub_tok = load_hub("tokenizer", cfg.behavior.hub)
        return model, Codec(hub_tok, max_positions(model.config)), _hub_id(cfg.behavior.hub)

    def build_behavior(out: Path) -> None:
        b = cfg.behavior
        model = tiny_gpt2(
            len(tokenizer),
            b.n_layer,
            b.n_embd,
            b.n_head,
            seed=SAMPLING_SEED,
            eos_id=tokenizer.eos_token_id,
        )
        ids = tokenizer([e.text for e in corpus.train], add_special_tokens=False)["input_ids"]
        loss = pretrain_lm(
            model,
            pack(ids, tokenizer.eos_token_id),
            steps=b.pretrain_steps,
            lr=b.pretrain_lr,
            batch_size=b.pretrain_batch_size,
            block=PRETRAIN_BLOCK,
            seed=SAMPLING_SEED,
        )
        model.save_pretrained(out)
        (out / "metrics.json").write_text(json.dumps({"final_loss": loss}))

    beh_dir = cached(cfg.cache_dir, "behavior", keys["behavior"], build_behavior)
    model = GPT2LMHeadModel.from_pretrained(beh_dir, dtype=dtype).eval()
    return model, Codec(tokenizer, TINY_POSITIONS), beh_dir


def _reward(cfg: Config, corpus: Corpus, task: str, keys, paths, device):
    """R: a classifier fine-tuned by rdx on the task's labels, cached with its held-out
    accuracy: the tiny BERT from scratch, or a hub encoder (reward=bert) from its weights."""
    r = cfg.reward
    n_labels = len(corpus.tasks[task])

    def build_reward(out: Path) -> None:
        torch.manual_seed(0)  # a hub encoder's new classification head
        if r.hub is None:
            rtok = load_tokenizer(paths["tokenizer"])
            _add_cls(rtok)
            model = tiny_bert(len(rtok), r.n_layer, r.n_embd, r.n_head, n_labels, seed=0)
        else:
            rtok = load_hub("tokenizer", r.hub)
            model = load_hub("classifier", r.hub, num_labels=n_labels, dtype=torch.float32)
        model = model.to(device)
        train = [e for e in corpus.train if e.task == task]
        test = [e for e in corpus.test if e.task == task]
        if r.train_epochs > 0:
            train_classifier(
                model,
                rtok,
                [e.text for e in train],
                [e.label for e in train],
                epochs=r.train_epochs,
                lr=r.train_lr,
                batch_size=r.train_batch_size,
                seed=0,
            )
        acc = classifier_accuracy(
            model.eval(), rtok, [e.text for e in test], [e.label for e in test]
        )
        log.info(
            "reward classifier (%s) held-out accuracy %.3f on %d sentences", task, acc, len(test)
        )
        model.cpu().save_pretrained(out)
        rtok.save_pretrained(out)
        (out / "metrics.json").write_text(
            json.dumps({"heldout_accuracy": acc, "n_test": len(test)})
        )

    rew_dir = cached(cfg.cache_dir, "reward", keys["reward"], build_reward)
    model = AutoModelForSequenceClassification.from_pretrained(rew_dir, dtype=torch.float32)
    if r.hub is None:
        rtok = load_tokenizer(rew_dir)
        _add_cls(rtok)
    else:
        rtok = load_hub("tokenizer", str(rew_dir))
    return model.eval(), rtok, rew_dir


def _policy_codec(cfg: Config, tokenizer, behavior_codec: Codec) -> Codec:
    """π's tokenizer: a hub target's own, β's when π starts as a copy of β, else the corpus
    tokenizer of the tiny models."""
    if cfg.model.hub is not None:
        config = load_hub("config", cfg.model.hub)
        return Codec(load_hub("tokenizer", cfg.model.hub), max_positions(config))
    if cfg.model.init == "behavior":
        return behavior_codec
    return Codec(tokenizer, TINY_POSITIONS)


def _add_cls(tokenizer: PreTrainedTokenizerBase) -> None:
    """BERT pools the first position: make the tiny tokenizer start every text with [CLS]."""
    from tokenizers.processors import TemplateProcessing

    cls = tokenizer.cls_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A", special_tokens=[(cls, tokenizer.cls_token_id)]
    )


def _eval_prefixes(codec: Codec, texts: list[str], p: int, n: int, g: torch.Generator):
    """n held-out prefixes, each with every held-out sentence that starts with it as references."""
    ids = codec.tokenizer(texts, add_special_tokens=False)["input_ids"]
    by_prefix: dict[tuple[int, ...], list[str]] = {}
    for x, text in zip(ids, texts, strict=True):
        if len(x) > p:
            by_prefix.setdefault(tuple(x[:p]), []).append(text)
    keys = sorted(by_prefix)
    order = torch.randperm(len(keys), generator=g)[:n].tolist()
    chosen = [codec.bos + list(keys[i]) for i in order]
    prefixes = torch.tensor(chosen, dtype=torch.long).reshape(len(chosen), len(codec.bos) + p)
    return prefixes, [by_prefix[keys[i]] for i in order]
