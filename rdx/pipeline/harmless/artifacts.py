"""The harmlessness experiment's fixed parts (paper §7.5, docs/design.md §10): data, π_ref, R, eval.

preference pairs ─┬─ tokenizer ─ SFT policy π_ref (tiny: GPT-2 fine-tuned on the dialogues)
                  └─ reward R (tiny_rm: Bradley-Terry on the pairs; or a hub reward model)

Each is cached with rdx.pipeline.cache.cached by exactly its settings, like the off-policy
artifacts (rdx.pipeline.offpolicy.artifacts), so every arm and seed of a sweep shares them. π starts
as a copy of π_ref whatever the algo (PPO and DPO both fine-tune the reference policy); with
a hub `model`, π_ref is that hub model as it is and the `behavior` group is not used.
The per-epoch evaluation shared by PPO and DPO is rdx.pipeline.harmless.evaluate.
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

import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rdx.config import Config
from rdx.data.hh import Pair, Preferences, load_preferences
from rdx.hub import local_id
from rdx.lm.codec import Codec
from rdx.lm.models import (
    TINY_POSITIONS,
    fixed_dtype,
    load_hub,
    max_positions,
    resolve_device,
    tiny_bert,
    tiny_gpt2,
)
from rdx.lm.pretrain import pack, pretrain_lm
from rdx.lm.sampling import classifier_logits
from rdx.lm.sequences import Sequences
from rdx.lm.tokenizer import add_cls, build_tokenizer, load_tokenizer
from rdx.method.bradley_terry import bradley_terry_loss
from rdx.pipeline.cache import cached

log = logging.getLogger("rdx")

BUILD_SEED = 0  # fixed: π_ref and R are shared by every seed and arm of a sweep
SFT_BLOCK = 48  # tokens per SFT window: one synthetic dialogue is 20-45 tokens
HUB_RM_MAX_TOKENS = 1024  # a hub reward model reads at most this much of a dialogue


@dataclass
class HarmlessPrepared:
    """Everything a PPO or DPO run needs, loaded in memory."""

    data: Preferences
    codec: Codec  # π's and π_ref's tokenizer
    reference: PreTrainedModel  # π_ref: frozen; π starts as a copy of it
    reward_model: PreTrainedModel
    reward_tokenizer: PreTrainedTokenizerBase
    reward_max_tokens: int
    reward_accuracy: float  # held-out pairwise accuracy of R
    new_tokens: int
    max_prompt_tokens: int  # prompts are cut from the left to fit the model's positions
    paths: dict[str, str]

    @property
    def eos_id(self) -> int:
        return self.codec.eos_id

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """R of each (prompt, response) dialogue: the reward model's one scalar."""
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        logits = classifier_logits(
            self.reward_model, self.reward_tokenizer, texts, max_length=self.reward_max_tokens
        )
        return logits[:, 0]

    def prompt_rows(self, prompts: list[str]) -> Sequences:
        """Prompt-only token rows (BOS + the prompt's last max_prompt_tokens tokens)."""
        ids = self.codec.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        rows = [self.codec.bos + x[-self.max_prompt_tokens :] for x in ids]
        return _rows(rows, self.eos_id, [len(r) for r in rows])

    def pair_rows(self, prompts: list[str], responses: list[str]) -> Sequences:
        """Prompt + response (+ EOS) rows; the response tokens are the scored span."""
        tok = self.codec.tokenizer
        pre = tok(prompts, add_special_tokens=False)["input_ids"]
        post = tok(responses, add_special_tokens=False)["input_ids"]
        rows, cuts = [], []
        for p, r in zip(pre, post, strict=True):
            head = self.codec.bos + p[-self.max_prompt_tokens :]
            rows.append(head + r[: self.new_tokens - 1] + [self.eos_id])
            cuts.append(len(head))
        return _rows(rows, self.eos_id, cuts)


def _rows(rows: list[list[int]], pad: int, prefix_lens: list[int]) -> Sequences:
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return Sequences(tokens, torch.tensor(prefix_lens), torch.tensor([len(r) for r in rows]))


def data_digest(data: Preferences) -> str:
    """Hash of the pairs: a changed generator or data file invalidates the cache."""
    h = hashlib.sha256()
    for split in (data.train, data.test):
        for p in split:
            h.update(json.dumps([p.prompt, p.chosen, p.rejected]).encode())
        h.update(b"--split--")
    return h.hexdigest()[:16]


def prepare(cfg: Config) -> HarmlessPrepared:
    """Build (or reuse) the tokenizer, π_ref and R of the run's preference data."""
    d = cfg.dataset
    data = load_preferences(
        d.name, path=d.path, hub=d.hub, n_pairs=d.n_per_attribute, max_words=d.max_words
    )
    device = resolve_device(cfg.trainer.device)
    dtype = fixed_dtype(device, cfg.trainer.precision)
    source = dataclasses.asdict(d)
    source["path"] = source["path"] and os.path.abspath(source["path"])
    source["content"] = data_digest(data)
    root = cfg.cache_dir
    threads = torch.get_num_threads()
    dialogues = [p.prompt + r for p in data.train for r in (p.chosen, p.rejected)]

    tok_dir = tokenizer = None
    tok_key = {"data": source, "vocab_size": cfg.behavior.vocab_size}
    if cfg.model.hub is None or cfg.reward.hub is None:
        build = partial(build_tokenizer, texts=dialogues, vocab_size=cfg.behavior.vocab_size)
        tok_dir = cached(root, "hh_tokenizer", tok_key, build, version=1)
        tokenizer = load_tokenizer(tok_dir)

    if cfg.model.hub is None:
        sft_key = {"tokenizer": tok_key, "behavior": dataclasses.asdict(cfg.behavior)}
        build = partial(_build_sft, tokenizer=tokenizer, texts=dialogues, cfg=cfg)
        sft_dir = cached(root, "hh_sft", sft_key, build, version=1)
        reference = GPT2LMHeadModel.from_pretrained(sft_dir, dtype=torch.float32)
        codec, ref_id = Codec(tokenizer, TINY_POSITIONS), str(sft_dir)
    else:
        reference = load_hub("causal", cfg.model.hub, dtype=dtype)  # bf16 on GPU if asked
        hub_tok = load_hub("tokenizer", cfg.model.hub)
        codec = Codec(hub_tok, max_positions(reference.config))
        ref_id = local_id(cfg.model.hub)
    reference = reference.to(device).eval().requires_grad_(False)

    r = cfg.reward
    reward = {k: v for k, v in dataclasses.asdict(r).items() if k != "output"}
    if r.hub is None:
        rm_key = {"data": source, "reward": reward, "tokenizer": tok_key}
    else:
        rm_key = {"data": source, "reward": {**reward, "hub": local_id(r.hub)}}
    build = partial(_build_reward, cfg=cfg, data=data, tokenizer_dir=tok_dir, device=device)
    rm_dir = cached(root, "hh_reward", rm_key, build, version=2)  # 2: left truncation
    reward_model = AutoModelForSequenceClassification.from_pretrained(rm_dir).to(device, dtype)
    reward_tokenizer = load_tokenizer(rm_dir) if r.hub is None else load_hub("tokenizer", rm_dir)
    if r.hub is None:
        add_cls(reward_tokenizer)
    elif reward_tokenizer.pad_token is None:
        reward_tokenizer.pad_token = reward_tokenizer.eos_token
    reward_tokenizer.truncation_side = "left"  # a long dialogue keeps its end: the response
    accuracy = json.loads((rm_dir / "metrics.json").read_text())["heldout_pairwise_accuracy"]
    torch.set_num_threads(threads)

    new = cfg.algo.new_tokens
    positions = codec.max_len or 2048
    if positions <= new + 8:
        raise ValueError(f"algo.new_tokens={new}: leaves no room for a prompt in {positions}")
    return HarmlessPrepared(
        data=data,
        codec=codec,
        reference=reference,
        reward_model=reward_model.eval(),
        reward_tokenizer=reward_tokenizer,
        reward_max_tokens=TINY_POSITIONS if r.hub is None else HUB_RM_MAX_TOKENS,
        reward_accuracy=accuracy,
        new_tokens=new,
        max_prompt_tokens=positions - new - len(codec.bos),
        paths={
            k: str(v)
            for k, v in (("tokenizer", tok_dir), ("reference", ref_id), ("reward", rm_dir))
            if v is not None
        },
    )


# BUILDERS ------------------------------------------------------------------------------


def _build_sft(out: Path, *, tokenizer, texts: list[str], cfg: Config) -> None:
    """π_ref: a tiny GPT-2 fine-tuned on the dialogues, chosen and rejected responses alike,
    so it answers a harmful request sometimes with a refusal and sometimes without one."""
    b = cfg.behavior
    model = tiny_gpt2(
        len(tokenizer),
        b.n_layer,
        b.n_embd,
        b.n_head,
        seed=BUILD_SEED,
        eos_id=tokenizer.eos_token_id,
    )
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    loss = pretrain_lm(
        model,
        pack(ids, tokenizer.eos_token_id),
        steps=b.pretrain_steps,
        lr=b.pretrain_lr,
        batch_size=b.pretrain_batch_size,
        block=SFT_BLOCK,
        seed=BUILD_SEED,
    )
    model.save_pretrained(out)
    (out / "metrics.json").write_text(json.dumps({"final_loss": loss}))


def _build_reward(
    out: Path, *, cfg: Config, data: Preferences, tokenizer_dir: Path | None, device
) -> None:
    """R: a one-output classifier trained as a Bradley-Terry model on the training pairs
    (the tiny BERT from scratch, or a hub model from its weights), with its held-out
    pairwise accuracy: the share of held-out pairs it ranks chosen above rejected."""
    r = cfg.reward
    torch.manual_seed(BUILD_SEED)
    if r.hub is None:
        rtok = load_tokenizer(tokenizer_dir)
        add_cls(rtok)
        model = tiny_bert(len(rtok), r.n_layer, r.n_embd, r.n_head, num_labels=1, seed=BUILD_SEED)
        max_tokens = TINY_POSITIONS
    else:
        rtok = load_hub("tokenizer", r.hub)
        if rtok.pad_token is None:
            rtok.pad_token = rtok.eos_token
        model = load_hub("classifier", r.hub, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = rtok.pad_token_id
        max_tokens = HUB_RM_MAX_TOKENS
    model = model.to(device)
    rtok.truncation_side = "left"  # a long HH dialogue keeps its end, the response R judges
    enc = partial(rtok, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    g = torch.Generator().manual_seed(BUILD_SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=r.train_lr, weight_decay=0.01)
    train = data.train
    for epoch in range(r.train_epochs):
        model.train()
        order = torch.randperm(len(train), generator=g).tolist()
        total = 0.0
        for start in range(0, len(train), r.train_batch_size):
            batch = [train[i] for i in order[start : start + r.train_batch_size]]
            both = enc(
                [p.prompt + p.chosen for p in batch] + [p.prompt + p.rejected for p in batch]
            )
            scores = model(**both.to(device)).logits[:, 0]
            loss = bradley_terry_loss(scores[: len(batch)], scores[len(batch) :])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        log.info(
            "reward model epoch %d/%d loss %.3f", epoch + 1, r.train_epochs, total / len(train)
        )
    model.eval()
    acc = pairwise_accuracy(model, rtok, data.test, max_tokens)
    log.info("reward model held-out pairwise accuracy %.3f on %d pairs", acc, len(data.test))
    model.cpu().save_pretrained(out)
    rtok.save_pretrained(out)
    (out / "metrics.json").write_text(
        json.dumps({"heldout_pairwise_accuracy": acc, "n_test": len(data.test)})
    )


@torch.no_grad()
def pairwise_accuracy(model, tokenizer, pairs: list[Pair], max_tokens: int) -> float:
    c = classifier_logits(
        model, tokenizer, [p.prompt + p.chosen for p in pairs], max_length=max_tokens
    )
    r = classifier_logits(
        model, tokenizer, [p.prompt + p.rejected for p in pairs], max_length=max_tokens
    )
    return (c[:, 0] > r[:, 0]).float().mean().item()
