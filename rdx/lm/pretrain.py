"""Training of the fixed models rdx builds itself: the tiny behavior LM and reward classifier.

Both are trained once per (corpus, settings) and cached; runs never train them again.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor
from transformers import PreTrainedModel

log = logging.getLogger("rdx")


def pack(token_lists: list[list[int]], eos_id: int) -> Tensor:
    """One long stream of sentences separated by EOS, GPT-style."""
    stream = [t for ids in token_lists for t in (*ids, eos_id)]
    return torch.tensor(stream, dtype=torch.long)


def pretrain_lm(
    model: PreTrainedModel,
    stream: Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    block: int,
    seed: int,
) -> float:
    """Next-token pretraining on random windows of the packed stream; returns the final loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # Short warm-up then cosine decay: stable at a high lr for a few hundred steps.
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        ),
    )
    model.train()
    loss_ema = None
    for step in range(steps):
        starts = torch.randint(0, len(stream) - block - 1, (batch_size,), generator=g)
        x = torch.stack([stream[s : s + block + 1] for s in starts])
        loss = _lm_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log.info("behavior pretrain step %d/%d loss %.3f", step + 1, steps, loss_ema)
    model.eval()
    return float(loss_ema)


def _lm_loss(model: PreTrainedModel, x: Tensor) -> Tensor:
    logits = model(input_ids=x[:, :-1]).logits
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
    )


def train_classifier(
    model: PreTrainedModel,
    tokenizer,
    texts: list[str],
    labels: list[int],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    precision: str = "fp32",
    stop_accuracy: float | None = None,
    stop_check_steps: int = 200,
    heldout: tuple[list[str], list[int]] | None = None,
) -> dict:
    """Fine-tune a classifier with AdamW; returns what it did (steps, stop).

    stop_accuracy (the authors' finetune_BERT.py): every `stop_check_steps` steps, stop once
    the accuracy on the training batches since the last check and on `heldout` both reach
    it. precision=bf16: the forward under bf16 autocast on CUDA (weights and Adam in fp32);
    off CUDA it trains in fp32."""
    if stop_accuracy is not None and heldout is None:
        raise ValueError("train_classifier: stop_accuracy needs heldout sentences")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    y = torch.tensor(labels)
    autocast = precision == "bf16" and model.device.type == "cuda"
    model.train()
    steps, right, seen = 0, torch.zeros((), device=model.device), 0
    done: dict = {"steps": 0, "stopped": False}
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=g)
        total = 0.0
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=64,
                return_tensors="pt",
            ).to(model.device)  # a hub encoder (reward=bert) fine-tunes on the GPU
            target = y[idx].to(model.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = model(**enc, labels=target)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total += out.loss.item() * len(idx)
            steps += 1
            if stop_accuracy is None:
                continue
            right += (out.logits.detach().argmax(-1) == target).sum()
            seen += len(idx)
            if steps % stop_check_steps == 0:
                train_acc = right.item() / seen
                right, seen = torch.zeros_like(right), 0
                held = classifier_accuracy(model.eval(), tokenizer, *heldout)
                model.train()
                log.info("reward step %d: train acc %.3f, held-out %.3f", steps, train_acc, held)
                if train_acc >= stop_accuracy and held >= stop_accuracy:
                    done |= {"stopped": True, "train_accuracy": train_acc, "heldout": held}
                    break
        log.info("reward train epoch %d/%d loss %.3f", epoch + 1, epochs, total / len(texts))
        if done["stopped"]:
            break
    model.eval()
    return {**done, "steps": steps}


@torch.no_grad()
def classifier_accuracy(
    model: PreTrainedModel, tokenizer, texts: list[str], labels: list[int]
) -> float:
    from rdx.lm.sampling import classifier_logits

    pred = classifier_logits(model, tokenizer, texts).argmax(-1)
    return (pred == torch.tensor(labels)).float().mean().item()
