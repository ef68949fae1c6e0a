"""Shared pytest fixtures."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def artifact_cache(tmp_path_factory):
    """RDX_CACHE for the whole session: a test (or a CLI it starts) that names no cache_dir
    builds into one tmp cache, shared by those tests, never into the user's ~/.cache/rdx or
    the RDX_CACHE they set for their own runs."""
    patch = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("rdx-cache")
    patch.setenv("RDX_CACHE", str(path))
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> dict[str, str]:
    """Tiny random-weight models of every hub preset's class, saved to local dirs."""
    from tests.helpers.local_hub import build_hub

    return build_hub(tmp_path_factory.mktemp("hub"))


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip, saying why, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    why = (
        f"no CUDA device (torch {torch.__version__}): run on a GPU machine, e.g. scripts/gpu-check"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=why))


SLURM_NOT_RUNNING = "SLURM cluster not running: start it with scripts/slurm-up"


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local SLURM cluster from scripts/slurm-up, or a skip saying how to start it.

    Skips (never passes silently) when `sinfo` is missing or the controller does not
    answer within a few seconds. If neither SLURM_CONF nor /etc/slurm/slurm.conf
    points at a config and slurm-up's cluster is up, uses the config in $RDX_SLURM_DIR
    (default /tmp/rdx-slurm) and exports SLURM_CONF for this test session, so
    subprocesses (sbatch, submitit) see it.
    Returns the node's partitions, e.g. {"debug", "urgent"}.
    """
    if shutil.which("sinfo") is None:
        pytest.skip(f"{SLURM_NOT_RUNNING} (sinfo not found)")
    state = Path(os.environ.get("RDX_SLURM_DIR", "/tmp/rdx-slurm"))
    if (
        "SLURM_CONF" not in os.environ
        and not os.path.exists("/etc/slurm/slurm.conf")
        and (state / "pids").exists()  # slurm-up ran and slurm-down did not
    ):
        os.environ["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"{SLURM_NOT_RUNNING} (sinfo got no answer within 5 s)")
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["sinfo failed"])[-1]
        pytest.skip(f"{SLURM_NOT_RUNNING} ({reason})")
    return set(proc.stdout.split())
