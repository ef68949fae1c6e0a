"""Does a DDP step give one process's gradient? A check on CPU processes (gloo).

    python -m rdx.pipeline.ddp_check            # 2 CPU processes, gloo
    python -m rdx.pipeline.ddp_check --world 4

One tiny GPT-2 step of the paper's objective on a batch of B rows whose importance weights
are clipped (‖w‖₂ > c) and half dropped by quantile dropout: the gradient of one process on
the whole batch, against k DDP processes on B/k rows each (rdx.pipeline.ddp: global keep
mask, global Σw², loss × k), and against a naive DDP step (each rank's own clip norm,
DDP's average). Prints the largest absolute difference of each against the one-process
gradient, and the gradients' largest entry for scale.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rdx.lm.models import tiny_gpt2
from rdx.method.dropout import quantile_keep
from rdx.method.objective import bi_objective_reward, reward_dropout_loss
from rdx.pipeline.ddp import Shard
from rdx.pipeline.offpolicy.trainer import compute_gradient

CPU = torch.device("cpu")


def batch(rows: int = 8, length: int = 12, vocab: int = 64):
    """A fixed batch: tokens, scored mask (continuation), reward, β's mean probability,
    the γ=0.5 quantile keep mask of the whole batch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (rows, length), generator=g)
    mask = torch.ones(rows, length - 1)
    mask[:, :3] = 0
    reward = torch.randn(rows, generator=g)
    beta = torch.rand(rows, generator=g) * 0.02 + 0.005  # small β: w = π̄/β far above 1
    keep = quantile_keep(bi_objective_reward(reward, beta), 0.5)
    return x, mask, reward, beta, keep


def policy(vocab: int = 64) -> torch.nn.Module:
    return tiny_gpt2(vocab, n_layer=2, n_embd=32, n_head=2, seed=0).eval()


def gradient(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def one_process() -> dict[str, torch.Tensor]:
    model = policy()
    compute_gradient(model, *batch(), device=CPU)
    return gradient(model)


def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    x, mask, reward, beta, keep = batch()
    shard = Shard(rank, world, CPU)
    mine = shard.rows(len(x))
    rows = (x[mine], mask[mine], reward[mine], beta[mine], keep[mine])
    grads = {}
    for name in ("ddp", "naive"):
        inner = policy()
        model = shard.wrap(inner)
        if name == "ddp":
            compute_gradient(
                model, *rows, device=CPU, loss_fn=shard.loss_fn(), scale=shard.scale(lambda v: v)
            )
        else:  # each rank's own clip norm, DDP's mean of the ranks' gradients
            compute_gradient(model, *rows, device=CPU, loss_fn=reward_dropout_loss)
        grads[name] = gradient(inner)
    if rank == 0:
        torch.save(grads, out)
    dist.barrier()
    dist.destroy_process_group()


def ddp_gradients(world: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    """{"ddp": ..., "naive": ...}: rank 0's gradients after one step on `world` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        init, out = f"file://{Path(tmp) / 'init'}", str(Path(tmp) / "grads.pt")
        mp.spawn(_worker, args=(world, init, out), nprocs=world, join=True)
        return torch.load(out)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2, help="processes (B=8 must split)")
    world = parser.parse_args().world
    reference = one_process()
    grads = ddp_gradients(world)
    x, mask, reward, beta, keep = batch()
    with torch.no_grad():
        logits = policy()(input_ids=x[:, :-1]).logits
    raw = reward_dropout_loss(logits, x[:, 1:], mask, reward, beta, keep, is_clip=None)
    largest = max(g.abs().max().item() for g in reference.values())
    print(
        f"batch B={len(x)} on {world} gloo processes; kept {int(keep.sum())}/{len(x)}; "
        f"unclipped ||w||_2 = {raw.is_weight.norm().item():.3f} (clip c = 1.0)"
    )
    print(f"largest |gradient| entry, one process: {largest:.3e}")
    print(f"max |DDP (rdx) - one process|:         {max_difference(grads['ddp'], reference):.3e}")
    print(f"max |naive DDP - one process|:         {max_difference(grads['naive'], reference):.3e}")


if __name__ == "__main__":
    main()
