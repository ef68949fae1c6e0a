"""`trainer.strategy=ddp`: one run on k processes, each with its rows of every batch.

    torchrun --nproc_per_node=4 -m rdx.train trainer.strategy=ddp hydra.run.dir=runs/ddp
    python -m rdx.train -m sweeps=table1 trainer.strategy=ddp launcher=slurm \
        launcher.tasks_per_node=4 launcher.gpus_per_node=4

torchrun (or SLURM through submitit, one task per GPU) starts k copies of the same command.
Every rank loads the same data, decides the same keep mask of the whole batch, trains
DDP-wrapped π on its B/k rows with the objective of rdx.method.distributed (global clip
norm, loss × k), and evaluates the same weights. Rank 0 is the run (its records, status,
W&B and summary); ranks > 0 write nothing, read the checkpoint of rank 0's run dir to resume,
and take rank 0's run dir through the process group (give hydra.run.dir all the same: Hydra
of each rank creates its own otherwise).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rdx.config import ConfigError
from rdx.method.distributed import global_reward_dropout_loss, shard_rows
from rdx.method.objective import LossOutput, reward_dropout_loss
from rdx.records import RunRecords

log = logging.getLogger("rdx")

LAUNCH = "launch it with torchrun --nproc_per_node=N -m rdx.train ... (or launcher=slurm "
LAUNCH += "launcher.tasks_per_node=N)"


def _slurm_env() -> None:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT of a SLURM job of several tasks
    (submitit's launcher starts one task per process; submitit fills them in)."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def process_rank(strategy: str) -> int:
    """This process's rank in a ddp run (0 for every other run). Under ddp on GPU it also
    makes cuda:LOCAL_RANK the current device, before β and R are loaded onto "cuda"."""
    if strategy != "ddp":
        return 0
    _slurm_env()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return int(os.environ.get("RANK", "0"))


@dataclass
class Shard:
    """This process's part of a run: rank `rank` of `world`. world=1 changes nothing."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    def rows(self, n: int) -> slice:
        return shard_rows(n, self.rank, self.world)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of a per-row tensor, in batch order."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def gather_output(self, out: LossOutput, acc: torch.Tensor) -> tuple[LossOutput, torch.Tensor]:
        """The whole batch's LossOutput and accuracy, for the step's metrics (detached)."""
        if self.world == 1:
            return out, acc
        rows = {
            k: self.gather(getattr(out, k).detach()) for k in ("coef", "r_hat", "pi_mean", "ce")
        }
        whole = LossOutput(
            loss=self.sum(out.loss.detach()), is_weight=self.gather(out.is_weight), **rows
        )
        return whole, self.gather(acc)

    def loss_fn(self) -> Callable[..., LossOutput]:
        if self.world == 1:
            return reward_dropout_loss
        return partial(global_reward_dropout_loss, sum_across=self.sum)

    def scale(self, inner: Callable[[torch.Tensor], torch.Tensor]):
        """DDP averages gradients over the ranks while J sums over the batch: × world."""
        if self.world == 1:
            return inner
        return lambda loss: inner(loss * self.world)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = (
            [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        )
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        """After the last collective: wait for every rank, then end the process group."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def start(strategy: str, device: torch.device, batch_size: int, records: RunRecords):
    """(Shard, device) of this process: the process group joined under ddp, the device
    cuda:LOCAL_RANK on GPU; ranks > 0 read rank 0's run dir from then on."""
    if strategy != "ddp":
        return Shard(), device
    process_rank(strategy)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(f"trainer.strategy=ddp: no RANK/WORLD_SIZE in the environment; {LAUNCH}")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if batch_size % world:
        raise ConfigError(
            f"trainer.batch_size={batch_size}: must split evenly over the {world} processes"
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Ranks > 0 evaluate as rank 0 does, but rank 0 also writes records and W&B.
        dist.init_process_group(backend, timeout=timedelta(minutes=60))
    shared = [str(records.dir)]
    dist.broadcast_object_list(shared, src=0)
    if rank > 0:
        records.dir = Path(shared[0])
        records.checkpoint_path = records.dir / records.checkpoint_path.name
    log.info("ddp: rank %d of %d on %s", rank, world, device)
    return Shard(rank, world, device), device


class WorkerRecords(RunRecords):
    """A rank > 0's records: it reads rank 0's checkpoint and writes nothing."""

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def append_metrics(self, record: dict[str, Any]) -> None:
        pass

    def trim_metrics(self, completed_epochs: int, name: str = "metrics.jsonl") -> None:
        pass

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        pass

    def write_jsonl(self, name: str, records: list[dict[str, Any]]) -> None:
        pass

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        pass


class NullLogger:
    """W&B of a rank > 0: nothing (rank 0 logs the run)."""

    run = None

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass
