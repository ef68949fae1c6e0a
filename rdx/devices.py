"""One GPU per worker of the local and joblib launchers (CUDA_VISIBLE_DEVICES).

On a multi-GPU workstation every job of a local sweep would otherwise take cuda:0. Each
job process (a submitit job, or a joblib worker that runs job after job) claims a slot
before CUDA starts: slot s is GPU s // runs_per_gpu, held by an exclusive file lock for the
process's life, so at most runs_per_gpu workers share a GPU and a slot freed by a finished
job goes to the next one. SLURM, or a user who set CUDA_VISIBLE_DEVICES, has chosen already.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger("rdx")

_held: list[FileLock] = []  # the claimed slot's lock, held until the process exits


def gpu_count() -> int:
    """GPUs on this machine, counted without starting CUDA in this process (its device
    list is fixed at CUDA's start): RDX_GPUS if set (tests fake a count with it), else
    `nvidia-smi -L`, else 0."""
    if "RDX_GPUS" in os.environ:
        return int(os.environ["RDX_GPUS"])
    if shutil.which("nvidia-smi") is None:
        return 0
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return sum(line.startswith("GPU ") for line in proc.stdout.splitlines())


def claim_gpu(n_gpus: int, runs_per_gpu: int, lock_dir: Path) -> int | None:
    """The GPU of the first free slot of n_gpus × runs_per_gpu, its lock kept held; None
    when every slot is taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(n_gpus * runs_per_gpu):
        lock = FileLock(str(lock_dir / f"slot-{slot}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _held.append(lock)
        return slot // runs_per_gpu
    return None


def pin_worker_gpu(launcher: Any) -> str | None:
    """Give this job process its own GPU when the launcher preset asks for it (local and
    joblib define launcher.runs_per_gpu) and the machine has more than one; returns the
    CUDA_VISIBLE_DEVICES it set, or None."""
    if not isinstance(launcher, dict) or "runs_per_gpu" not in launcher:
        return None
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return None  # chosen by the scheduler or the user
    runs_per_gpu = launcher["runs_per_gpu"]
    if not isinstance(runs_per_gpu, int) or isinstance(runs_per_gpu, bool) or runs_per_gpu < 1:
        raise ValueError(f"launcher.runs_per_gpu={runs_per_gpu!r}: expected an integer >= 1")
    n = gpu_count()
    if n <= 1:
        return None
    lock_dir = Path(tempfile.gettempdir()) / f"rdx-gpu-slots-{os.getuid()}"
    gpu = claim_gpu(n, runs_per_gpu, lock_dir)
    if gpu is None:
        log.warning(
            "all %d GPU slots (%d GPUs × %d) are taken: this job sees every GPU",
            n * runs_per_gpu,
            n,
            runs_per_gpu,
        )
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log.info("CUDA_VISIBLE_DEVICES=%d (launcher.runs_per_gpu=%d, %d GPUs)", gpu, runs_per_gpu, n)
    return str(gpu)
