"""Stages 1–3 of the pipeline and the fixed models, each cached by exactly its settings.

tokenizer ─┬─ behavior β ── trajectories (prefixes, β's samples) ──┐
           └─ reward R (per task) ─────────────────────────────────┴─ scores (R, β per sample)

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
    BertForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rdx.cache import cached
from rdx.config import Config
from rdx.corpus import Corpus, load_corpus
from rdx.models import tiny_bert, tiny_gpt2
from rdx.pretrain import classifier_accuracy, pack, pretrain_lm, train_classifier
from rdx.sampling import classifier_logits, mean_token_prob, sample
from rdx.tokenizer import load_tokenizer, train_tokenizer

log = logging.getLogger("rdx")

SAMPLING_SEED = 0  # fixed: β's trajectories are shared by every seed of a sweep
PRETRAIN_BLOCK = 32  # tokens per LM window: covers one T=30 trajectory, half the cost of 64


@dataclass
class Prepared:
    """Everything a training run needs, loaded in memory."""

    corpus: Corpus
    task: str
    label: int
    tokenizer: PreTrainedTokenizerBase
    behavior: PreTrainedModel
    reward_model: PreTrainedModel
    reward_tokenizer: PreTrainedTokenizerBase
    reward_accuracy: float
    prefix_len: int
    tokens: torch.Tensor  # (N, T) β's trajectories for training
    reward_logits: torch.Tensor  # (N, C)
    behavior_prob: torch.Tensor  # (N,) β_i
    eval_prefixes: torch.Tensor  # (M, p) held-out prefixes
    eval_tokens: torch.Tensor  # (M, T) β's samples of the held-out prefixes (for eval/acc)
    eval_references: list[list[str]]  # held-out sentences sharing each eval prefix
    eos_id: int  # ends a trajectory; what follows it is filler
    paths: dict[str, str]

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


def _settings(cfg: Config, corpus: Corpus, task: str) -> dict[str, dict[str, Any]]:
    """The cache key of every artifact, each nesting the keys of what it is built from."""
    data = dataclasses.asdict(cfg.dataset)
    data["path"] = data["path"] and os.path.abspath(data["path"])
    data["content"] = corpus_digest(corpus)
    behavior = dataclasses.asdict(cfg.behavior)
    tokenizer = {"dataset": data, "vocab_size": behavior["vocab_size"]}
    behavior_key = {"dataset": data, "behavior": behavior}
    reward = {k: v for k, v in dataclasses.asdict(cfg.reward).items() if k != "output"}
    reward_key = {"dataset": data, "reward": reward, "task": task, "tokenizer": tokenizer}
    sampling = {k: v for k, v in dataclasses.asdict(cfg.sampling).items() if k != "batch_size"}
    traj_key = {
        "behavior": behavior_key,
        "attribute": cfg.attribute,
        "sampling": sampling,
        "seed": SAMPLING_SEED,
    }
    return {
        "tokenizer": tokenizer,
        "behavior": behavior_key,
        "reward": reward_key,
        "trajectories": traj_key,
        "scores": {"trajectories": traj_key, "reward": reward_key},
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
    keys = _settings(cfg, corpus, task)
    root = cfg.cache_dir
    threads = torch.get_num_threads()

    def build_tokenizer(out: Path) -> None:
        train_tokenizer((e.text for e in corpus.train), cfg.behavior.vocab_size, out)

    tok_dir = cached(root, "tokenizer", keys["tokenizer"], build_tokenizer)
    tokenizer = load_tokenizer(tok_dir)

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

    beh_dir = cached(root, "behavior", keys["behavior"], build_behavior)
    behavior = GPT2LMHeadModel.from_pretrained(beh_dir).eval()

    def build_reward(out: Path) -> None:
        r = cfg.reward
        rtok = load_tokenizer(tok_dir)
        _add_cls(rtok)
        train = [e for e in corpus.train if e.task == task]
        test = [e for e in corpus.test if e.task == task]
        model = tiny_bert(len(rtok), r.n_layer, r.n_embd, r.n_head, len(corpus.tasks[task]), seed=0)
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
        acc = classifier_accuracy(model, rtok, [e.text for e in test], [e.label for e in test])
        log.info(
            "reward classifier (%s) held-out accuracy %.3f on %d sentences", task, acc, len(test)
        )
        model.save_pretrained(out)
        rtok.save_pretrained(out)
        (out / "metrics.json").write_text(
            json.dumps({"heldout_accuracy": acc, "n_test": len(test)})
        )

    rew_dir = cached(root, "reward", keys["reward"], build_reward)
    reward_model = BertForSequenceClassification.from_pretrained(rew_dir).eval()
    reward_tokenizer = load_tokenizer(rew_dir)
    _add_cls(reward_tokenizer)
    reward_accuracy = json.loads((rew_dir / "metrics.json").read_text())["heldout_accuracy"]

    s = cfg.sampling

    def build_trajectories(out: Path) -> None:
        g = torch.Generator().manual_seed(SAMPLING_SEED)
        train_texts = [e.text for e in corpus.train if (e.task, e.label) == (task, label)]
        test_texts = [e.text for e in corpus.test if (e.task, e.label) == (task, label)]
        prefixes = _prefixes(tokenizer, train_texts, s.prefix_len)
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
        eos = tokenizer.eos_token_id
        tokens = sample(
            behavior, prefixes, new, temperature=s.temperature, generator=g, eos_id=eos,
            batch_size=s.batch_size,
        )
        eval_prefixes, refs = _eval_prefixes(
            tokenizer, test_texts, s.prefix_len, s.eval_prefixes, g
        )
        eval_tokens = sample(
            behavior,
            eval_prefixes,
            new,
            temperature=s.temperature,
            generator=g,
            eos_id=eos,
            batch_size=s.batch_size,
        )
        torch.save(
            {
                "tokens": tokens,
                "eval_prefixes": eval_prefixes,
                "eval_tokens": eval_tokens,
                "eval_references": refs,
            },
            out / "trajectories.pt",
        )

    traj_dir = cached(root, "trajectories", keys["trajectories"], build_trajectories)
    traj = torch.load(traj_dir / "trajectories.pt")

    def build_scores(out: Path) -> None:
        texts = tokenizer.batch_decode(traj["tokens"], skip_special_tokens=True)
        torch.save(
            {
                "reward_logits": classifier_logits(
                    reward_model, reward_tokenizer, texts, batch_size=s.batch_size
                ),
                "behavior_prob": mean_token_prob(
                    behavior,
                    traj["tokens"],
                    s.prefix_len,
                    eos_id=tokenizer.eos_token_id,
                    batch_size=s.batch_size,
                ),
            },
            out / "scores.pt",
        )

    score_dir = cached(root, "scores", keys["scores"], build_scores)
    scores = torch.load(score_dir / "scores.pt")
    torch.set_num_threads(threads)
    return Prepared(
        corpus=corpus,
        task=task,
        label=label,
        tokenizer=tokenizer,
        behavior=behavior,
        reward_model=reward_model,
        reward_tokenizer=reward_tokenizer,
        reward_accuracy=reward_accuracy,
        prefix_len=s.prefix_len,
        eos_id=tokenizer.eos_token_id,
        tokens=traj["tokens"],
        reward_logits=scores["reward_logits"],
        behavior_prob=scores["behavior_prob"],
        eval_prefixes=traj["eval_prefixes"],
        eval_tokens=traj["eval_tokens"],
        eval_references=traj["eval_references"],
        paths={
            k: str(v)
            for k, v in {
                "tokenizer": tok_dir,
                "behavior": beh_dir,
                "reward": rew_dir,
                "trajectories": traj_dir,
                "scores": score_dir,
            }.items()
        },
    )


def _add_cls(tokenizer: PreTrainedTokenizerBase) -> None:
    """BERT pools the first position: make the tiny tokenizer start every text with [CLS]."""
    from tokenizers.processors import TemplateProcessing

    cls = tokenizer.cls_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A", special_tokens=[(cls, tokenizer.cls_token_id)]
    )


def _prefixes(tokenizer, texts: list[str], p: int) -> torch.Tensor:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = [x[:p] for x in ids if len(x) > p]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, p)


def _eval_prefixes(tokenizer, texts: list[str], p: int, n: int, g: torch.Generator):
    """n held-out prefixes, each with every held-out sentence that starts with it as references."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    by_prefix: dict[tuple[int, ...], list[str]] = {}
    for x, text in zip(ids, texts, strict=True):
        if len(x) > p:
            by_prefix.setdefault(tuple(x[:p]), []).append(text)
    keys = sorted(by_prefix)
    order = torch.randperm(len(keys), generator=g)[:n].tolist()
    chosen = [keys[i] for i in order]
    return torch.tensor(chosen, dtype=torch.long).reshape(-1, p), [by_prefix[k] for k in chosen]
