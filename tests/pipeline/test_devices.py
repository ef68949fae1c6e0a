"""rdx.devices: each local/joblib worker claims its own GPU, on a faked device count."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdx.devices import claim_gpu, pin_worker_gpu

ROOT = Path(__file__).resolve().parents[2]


def test_slots_fill_gpu_by_gpu_and_run_out(tmp_path):
    """3 GPUs × 2 runs each: slots 0-5 are GPUs 0,0,1,1,2,2, then none is free."""
    got = [claim_gpu(3, 2, tmp_path) for _ in range(7)]
    assert got == [0, 0, 1, 1, 2, 2, None]


def test_two_worker_processes_get_different_gpus(tmp_path):
    """Two job processes at once on a faked 4-GPU machine: CUDA_VISIBLE_DEVICES 0 and 1;
    a third, after both exited, gets GPU 0 again (a finished job frees its slot)."""
    code = (
        "import sys, time; from rdx.devices import pin_worker_gpu; "
        "print(pin_worker_gpu({'runs_per_gpu': 1}), flush=True); time.sleep(float(sys.argv[1]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(RDX_GPUS="4", TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "3"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    seen = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert seen == ["0", "1"]
    again = subprocess.run(
        [sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env
    )
    assert again.stdout.strip() == "0"


def test_no_pinning_without_the_preset_key_or_with_one_gpu_or_a_chosen_device(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("RDX_GPUS", "4")
    assert pin_worker_gpu({}) is None  # basic and slurm presets: no runs_per_gpu
    monkeypatch.setenv("RDX_GPUS", "1")
    assert pin_worker_gpu({"runs_per_gpu": 1}) is None
    monkeypatch.setenv("RDX_GPUS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # SLURM or the user chose
    assert pin_worker_gpu({"runs_per_gpu": 1}) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match=r"launcher.runs_per_gpu=0: expected an integer >= 1"):
        pin_worker_gpu({"runs_per_gpu": 0})
