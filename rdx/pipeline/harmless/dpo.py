"""DPO through TRL's DPOTrainer: the comparison arm of the harmlessness experiment (§7.5).

    python -m rdx.train experiment=harmless algo=dpo

rdx owns the run (records, checkpoint per epoch, resume, W&B); TRL does one epoch of DPO
per rdx epoch: a fresh DPOTrainer over the training pairs with rdx's own Adam (so its state
is in rdx's checkpoint), a constant learning rate, and a data order seeded by (seed, epoch),
so that a run resumed at an epoch replays what an uninterrupted one does. TRL's own
checkpoints, reports and progress bars are off. Its per-step logs (loss, reward margins and
accuracies) go to metrics.jsonl and W&B under flat train/* names. Reward dropout does not
apply (paper footnote 11; the config rejects it). The loss TRL minimises is
rdx.method.dpo.dpo_loss's (tests/pipeline/test_harmless.py checks one step against it).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from rdx.config import Config
from rdx.finite import check_step
from rdx.lm.models import freeze_all_but_last_layer
from rdx.logger import WandbLogger
from rdx.pipeline import loop
from rdx.pipeline.harmless.artifacts import HarmlessPrepared
from rdx.pipeline.harmless.evaluate import HarmlessArm
from rdx.records import RunRecords

# TRL's per-step log keys -> rdx's flat metric names
_KEYS = {
    "loss": "train/loss",
    "rewards/chosen": "train/chosen_reward",
    "rewards/rejected": "train/rejected_reward",
    "rewards/margins": "train/reward_margin",
    "rewards/accuracies": "train/pref_accuracy",
    "logps/chosen": "train/chosen_logp",
    "logps/rejected": "train/rejected_logp",
}


def dpo_trainer(cfg: Config, prep: HarmlessPrepared, policy, optimizer, run_dir, epoch: int):
    """TRL's DPOTrainer for one epoch of rdx's run over the training pairs."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    pairs = prep.data.train
    data = Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [p.chosen for p in pairs],
            "rejected": [p.rejected for p in pairs],
        }
    )
    seed = loop.stream_seed(cfg.seed, epoch)  # the epoch's data order
    with warnings.catch_warnings():  # transformers 5's deprecation notices about TRL's defaults
        warnings.simplefilter("ignore")
        args = _config(DPOConfig, cfg, prep, policy, run_dir, seed)
    tokenizer = prep.codec.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(
            model=policy,
            ref_model=prep.reference,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            optimizers=(optimizer, None),
        )
    trainer.remove_callback(PrinterCallback)  # rdx logs TRL's records itself
    return trainer


def _config(config_cls, cfg: Config, prep: HarmlessPrepared, policy, run_dir, seed: int):
    """TRL's DPOConfig for one rdx epoch: rdx's batch, lr and β; nothing saved or reported."""
    t = cfg.trainer
    return config_cls(
        output_dir=str(run_dir / "trl"),
        per_device_train_batch_size=t.batch_size,
        num_train_epochs=1,
        learning_rate=t.lr,
        lr_scheduler_type="constant",
        beta=cfg.algo.beta,
        max_length=prep.max_prompt_tokens + prep.new_tokens,
        seed=seed % 2**32,
        data_seed=seed % 2**32,
        logging_steps=t.log_every,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=next(policy.parameters()).device.type == "cpu",
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        dataloader_num_workers=0,
    )


def train(
    cfg: Config, prep: HarmlessPrepared, records: RunRecords, logger: WandbLogger
) -> dict[str, Any]:
    """Run (or resume) DPO; returns the summary written to summary.json."""
    import datasets

    datasets.disable_progress_bars()
    return loop.run(cfg, DPO(cfg, prep, records.dir), records, logger)


class DPO(HarmlessArm):
    """π (a copy of π_ref) and rdx's Adam; each epoch is one fresh TRL DPOTrainer epoch."""

    def __init__(self, cfg: Config, prep: HarmlessPrepared, run_dir: Path):
        policy = copy.deepcopy(prep.reference).float().requires_grad_(True)
        if cfg.model.trainable == "last_layer":
            freeze_all_but_last_layer(policy)
        super().__init__(cfg, prep, policy)
        params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.trainer.lr)
        self.state = {"model": policy, "optimizer": self.optimizer}
        self.run_dir = run_dir

    def train_epoch(self, epoch: int, step: int, log_step: loop.LogStep) -> int:
        trainer = dpo_trainer(self.cfg, self.prep, self.policy, self.optimizer, self.run_dir, epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
        for entry in trainer.state.log_history:
            if "loss" not in entry:
                continue  # the end-of-training record
            s = step + int(entry["step"])
            check_step(s, entry["loss"])  # TRL logs the loss; NaN weights follow a NaN loss
            log_step(epoch, s, {_KEYS[k]: float(v) for k, v in entry.items() if k in _KEYS})
        self.policy.eval()  # TRL leaves the model in train mode; dropout is off in any case
        return step + trainer.state.global_step
