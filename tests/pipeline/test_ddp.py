"""trainer.strategy=ddp on CPU (gloo, 2 processes): the gradient equals one process's on
the same global batch within 1e-6, the pure global-batch pieces by hand, and a whole
2-process run's summary equals a 1-process run's (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdx.method.distributed import global_reward_dropout_loss, shard_rows
from rdx.method.objective import reward_dropout_loss
from rdx.pipeline import ddp_check

ROOT = Path(__file__).resolve().parents[2]


def test_shard_rows_split_the_batch_in_order():
    assert [shard_rows(8, r, 2) for r in (0, 1)] == [slice(0, 4), slice(4, 8)]
    assert shard_rows(6, 2, 3) == slice(4, 6)
    with pytest.raises(ValueError, match="6 rows does not split over 4"):
        shard_rows(6, 0, 4)


def test_global_clip_of_two_halves_is_the_whole_batchs():
    """Two halves, each with its own loss but the clip norm of the whole: their coefficients
    are the whole batch's, and DDP's mean of 2 × each half's loss is J."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 11, generator=g)
    targets = torch.randint(0, 11, (6, 5), generator=g)
    mask = torch.ones(6, 5)
    reward, beta = torch.randn(6, generator=g), torch.rand(6, generator=g) * 0.05
    keep = torch.tensor([True, True, False, True, False, True])
    whole = reward_dropout_loss(logits, targets, mask, reward, beta, keep)
    assert whole.is_weight.norm() == pytest.approx(1.0)  # the clip is active
    halves = [slice(0, 3), slice(3, 6)]
    w2 = [reward_dropout_loss(logits[h], targets[h], mask[h], reward[h], beta[h], keep[h],
                              is_clip=None).is_weight.square().sum() for h in halves]  # fmt: skip
    total = w2[0] + w2[1]
    parts = [
        global_reward_dropout_loss(
            logits[h], targets[h], mask[h], reward[h], beta[h], keep[h],
            sum_across=lambda local, total=total: total,  # what the all-reduce returns
        )
        for h in halves
    ]  # fmt: skip
    torch.testing.assert_close(torch.cat([p.coef for p in parts]), whole.coef)
    torch.testing.assert_close(torch.cat([p.is_weight for p in parts]), whole.is_weight)
    torch.testing.assert_close((2 * parts[0].loss + 2 * parts[1].loss) / 2, whole.loss)


@pytest.mark.slow  # 14 s: two torchrun processes
def test_two_gloo_processes_give_one_process_gradient(capsys):
    """The printed comparison (python -m rdx.pipeline.ddp_check): rdx's DDP step within
    1e-6 of one process on the whole batch; a naive DDP step (own clip, DDP's mean) far off."""
    reference = ddp_check.one_process()
    grads = ddp_check.ddp_gradients(world=2)
    largest = max(g.abs().max().item() for g in reference.values())
    diff = ddp_check.max_difference(grads["ddp"], reference)
    naive = ddp_check.max_difference(grads["naive"], reference)
    print(f"largest |grad| {largest:.3e}; rdx DDP - one process {diff:.3e}; naive {naive:.3e}")
    assert diff < 1e-6
    assert naive > 1e-2 * largest  # the test can tell a wrong scaling apart


def _smoke(run_dir: Path, *extra: str) -> list[str]:
    return [
        "-m", "rdx.train", "experiment=smoke", "trainer.device=cpu", "trainer.threads=1",
        "trainer.kernels=torch", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_two_process_run_summary_equals_one_process_run(tmp_path):
    """The same smoke run (same data order and dropout stream) on 1 process and on 2 gloo
    processes under torchrun: equal summaries within 1e-4 (the gradients agree to ~1e-7;
    a few Adam steps and greedy decoding carry that, so the held-out figures are compared
    to 1e-4), records by rank 0 alone; then the 2-process run resumes from its checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one"
    subprocess.run([sys.executable, *_smoke(one)], cwd=ROOT, env=env, check=True, timeout=900)
    two = tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29561"]  # fmt: skip
    cmd = [*torchrun, *_smoke(two, "trainer.strategy=ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((two / "summary.json").read_text())
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert b[key] == value, key
    steps = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert len([s for s in steps if s["kind"] == "epoch"]) == 2  # rank 0 alone wrote them
    # resume: asked for a third epoch, both ranks continue from rank 0's checkpoint
    cmd = [*torchrun, *_smoke(two, "trainer.strategy=ddp", "trainer.epochs=3")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout + proc.stderr  # both ranks log it
    epochs = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [0, 1, 2]


def test_ddp_without_a_launcher_or_with_an_uneven_batch_fails_in_one_line(tmp_path, monkeypatch):
    from rdx.config import ConfigError
    from rdx.pipeline.ddp import Shard, start
    from rdx.records import RunRecords

    for var in ("RANK", "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    cpu = torch.device("cpu")
    assert start("single", cpu, 8, RunRecords(tmp_path)) == (Shard(), cpu)
    with pytest.raises(ConfigError, match="trainer.strategy=ddp: no RANK/WORLD_SIZE .* torchrun"):
        start("ddp", cpu, 8, RunRecords(tmp_path))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="trainer.batch_size=8: must split evenly over the 3"):
        start("ddp", cpu, 8, RunRecords(tmp_path))
