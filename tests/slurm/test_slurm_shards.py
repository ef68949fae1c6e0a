"""A sharded prepare on the local SLURM cluster: three shard jobs (one array), one of them
killed midway and requeued, the merge job, and a training sweep queued behind the shard
array with a SLURM dependency (docs/sweeps.md, "β's samples as a sharded stage").

Skips via the `slurm_cluster` fixture when no cluster answers. Run with
`scripts/slurm-up && pytest -m slurm tests/slurm/test_slurm_shards.py` (3-5 minutes on 2
cores).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.polling import wait_until
from tests.helpers.slurm import (
    ROOT,
    finish,
    launch,
    report,
    run,
    sacct,
    scontrol_job,
    slurm_job_ids,
    state,
)

pytestmark = pytest.mark.slurm

# Smoke size with 6 samples per prefix: 64 × 6 + 32 held-out = 416 rows of β, 7 chunks of
# 64, so shard 0 of 3 builds chunks 0, 3 and 6. One torch thread everywhere: the shards and
# the unsharded reference do the same float arithmetic.
RUN = ["experiment=smoke", "logger=none", "trainer.threads=1", "sampling.samples_per_prefix=6"]
# Batch 1: each row is decoded alone, the same in a chunk as in the whole plan (a batch of
# other rows can move a near-tie's draw in its last bits), and a chunk takes ~3 s, time for
# the kill to land inside the shard's second chunk.
ROWS = ["sampling.batch_size=1"]
CHUNKS = ["sampling.chunk_rows=64"]
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.mem_gb=1"]
SLURM += ["launcher.cpus_per_task=1"]
FIXED = ("tokenizer", "behavior", "reward")  # the models every shard loads
ENTRY = re.compile(r"cache: (building|built|reusing) (\S+?)/([0-9a-f]{16})")
CHUNK_KINDS = ("trajectory-chunks", "score-chunks")


def _entries(log: str, action: str, kinds: tuple[str, ...]) -> list[str]:
    """`kind/key` of every cache entry the log says it is building, has built (written and
    renamed into place) or reuses, in order."""
    return [f"{k}/{key}" for a, k, key in ENTRY.findall(log) if a == action and k in kinds]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The cache of an unsharded `python -m rdx.prepare` (all rows, one chunk), run here."""
    root = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        [sys.executable, "-m", "rdx.prepare", *RUN, *ROWS, f"cache_dir={root / 'cache'}"]
        + [f"hydra.run.dir={root / 'run'}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "cache"


def _only_entry(cache: Path, kind: str) -> Path:
    (entry,) = [p for p in (cache / kind).iterdir() if p.is_dir()]
    return entry


def _assert_same_rows(got: Path, ref: Path) -> None:
    """The merged trajectories and scores entries hold the reference's rows, row for row."""
    for kind, name in (("trajectories", "trajectories.pt"), ("scores", "scores.pt")):
        a, b = _only_entry(got, kind), _only_entry(ref, kind)
        assert a.name == b.name, kind  # the key holds neither shards nor chunk size
        x = torch.load(a / name, weights_only=True)
        y = torch.load(b / name, weights_only=True)
        if kind == "trajectories":
            assert torch.equal(x["groups"], y["groups"])
            assert x["eval_references"] == y["eval_references"]
            for u, v in zip(x["train"] + [x["eval"]], y["train"] + [y["eval"]], strict=True):
                assert torch.equal(u["tokens"], v["tokens"])
                assert (u["prefix"], u["continuation"], u["ended"]) == (
                    v["prefix"],
                    v["continuation"],
                    v["ended"],
                )
            assert len(x["train"][0]["tokens"]) == 384 and len(x["eval"]["tokens"]) == 32
        else:
            for field in ("reward_logits", "behavior_prob"):
                for u, v in zip(x[field], y[field], strict=True):
                    assert torch.equal(u, v), field


def _times(job_id: str, field: str) -> list[str]:
    out = run("sacct", "-n", "-X", "-P", "-o", field, "-j", job_id)
    return [line for line in out.splitlines() if line]


def test_sharded_prepare_with_a_requeued_shard_then_a_dependent_sweep(
    slurm_cluster, reference, tmp_path
):
    cache, prep, train = tmp_path / "cache", tmp_path / "prep", tmp_path / "train"
    cache.mkdir()
    for kind in FIXED:  # β and R as the reference built them: the shards sample only
        shutil.copytree(reference / kind, cache / kind)
    prepare = launch(
        "-m",
        "sampling.shards=3",
        *RUN,
        *ROWS,
        *CHUNKS,
        *SLURM,
        f"cache_dir={cache}",
        f"hydra.sweep.dir={prep}",
        module="rdx.prepare",
    )
    sweep = None
    try:
        wait_until("the shard array", lambda: len(slurm_job_ids(prep)) == 3, 300)
        tasks = slurm_job_ids(prep)
        (array,) = {t.split("_")[0] for t in tasks}
        assert tasks == [f"{array}_{i}" for i in range(3)], tasks
        # The training sweep, queued behind the whole shard array before it has finished.
        sweep = launch(
            "-m",
            *RUN,
            *CHUNKS,  # to find the chunks, should it merge them before the merge job does
            "dropout=quantile",
            "gamma=0.8",
            *SLURM,
            f"cache_dir={cache}",
            f"hydra.sweep.dir={train}",
            f"+launcher.additional_parameters.dependency=afterok:{array}",
        )
        # Shard 0 (chunks 0, 3, 6) is killed once its first chunk is sampled and scored:
        # `scontrol requeue` is SIGTERM, SIGKILL after KillWait, and back to the queue.
        shard_log = prep / "0" / "train.log"

        def first_chunk_written() -> list[str]:
            log = shard_log.read_text() if shard_log.exists() else ""
            return _entries(log, "built", ("score-chunks",))

        wait_until("shard 0's first chunk", first_chunk_written, 600, 0.2)
        run("scontrol", "requeue", f"{array}_0")
        wait_until("shard 0 to be requeued", lambda: state(prep / "0") == "preempted", 60, 0.2)
        written = _entries(shard_log.read_text(), "built", CHUNK_KINDS)
        stamps = {e: (cache / e / "COMPLETE").stat().st_mtime_ns for e in written}

        (train_job,) = wait_until("the training job", lambda: slurm_job_ids(train), 300)
        pending = wait_until(
            "the training job to wait on its dependency",
            lambda: (job := scontrol_job(train_job))["Reason"] == "Dependency" and job,
            30,
            0.5,
        )
        print(f"training job {train_job} while the shards run:", pending.get("JobState"))
        print("  Reason", pending.get("Reason"), "Dependency", pending.get("Dependency"))
        assert pending["JobState"] == "PENDING" and pending["Reason"] == "Dependency", pending
        assert pending["Dependency"].startswith(f"afterok:{array}"), pending

        out = finish(prepare, timeout=900)
        assert prepare.returncode == 0, out[-3000:]
        train_out = finish(sweep, timeout=900)
        assert sweep.returncode == 0, train_out[-3000:]
    finally:
        for proc in (prepare, sweep):
            if proc is not None and proc.poll() is None:
                proc.kill()
    wait_until(
        "sacct to end the training job",
        lambda: sacct(train_job)[-1:] == [(train_job, "COMPLETED")],
        60,
    )
    print(report(array, train_job))

    # (1) Shard 0 ran twice; its second attempt reused what the first had written.
    runs = [s for _, s in sacct(f"{array}_0")]
    assert len(runs) == 2 and runs[0] in ("REQUEUED", "PREEMPTED"), runs
    assert runs[-1] == "COMPLETED", runs
    assert [s for _, s in sacct(array)].count("COMPLETED") == 3
    log = shard_log.read_text()
    assert "(attempt 2)" in log, log[-2000:]
    first, second = log[: log.index("(attempt 2)")], log[log.index("(attempt 2)") :]
    built_first = _entries(first, "built", CHUNK_KINDS)
    built_second = _entries(second, "building", CHUNK_KINDS)
    print("shard 0, attempt 1 wrote", built_first, "attempt 2 built", built_second)
    assert built_first == written and len(written) >= 2, log[-3000:]  # chunk 0, scored too
    assert not set(written) & set(built_second), log[-3000:]
    assert set(written) <= set(_entries(second, "reusing", CHUNK_KINDS))
    assert any(e.startswith("trajectory-chunks/") for e in built_second)  # it had stopped midway
    assert len(set(written + built_second)) == 6  # 3 chunks, sampled and scored
    # the build it was killed in left its temp dir, which the second attempt removed
    (stale,) = re.findall(r"cache: removing stale ([0-9a-f]{16})\.tmp-", second)
    assert stale in {e.split("/")[1] for e in built_second}, log[-3000:]
    for e, stamp in stamps.items():  # written once: the files are the first attempt's
        assert (cache / e / "COMPLETE").stat().st_mtime_ns == stamp, e
    assert state(prep / "0") == "completed"
    assert state(prep / "merge" / "merge-0") == "completed"

    # (2) The merged entries equal the unsharded build, row for row.
    assert len([p for p in (cache / "trajectory-chunks").iterdir() if p.is_dir()]) == 7
    _assert_same_rows(cache, reference)

    # (3) The training run started after the last shard and read the shards' rows under
    # the same keys: it sampled nothing and trained no model of its own. Each merged entry
    # was built once, by the merge job or by the run (whichever came first: a run that finds
    # the chunks but no merged entry merges them itself, under the entry's lock).
    starts, ends = _times(train_job, "Start"), _times(array, "End")
    assert starts[-1] >= max(ends), (starts, ends)
    run_log = (train / "0" / "train.log").read_text()
    merge_log = (prep / "merge" / "merge-0" / "train.log").read_text()
    for kind in ("trajectories", "scores"):
        entry = f"{kind}/{_only_entry(reference, kind).name}"
        merged_by = [
            who
            for who, log in (("merge job", merge_log), ("training run", run_log))
            if _entries(log, "building", (kind,))
        ]
        print(f"{entry}: merged by the {merged_by}")
        assert len(merged_by) == 1, (merge_log[-2000:], run_log[-2000:])
        assert _entries(run_log, "building", (kind,)) + _entries(run_log, "reusing", (kind,)) == [
            entry
        ]
        assert _entries(merge_log, "building", (kind,)) + _entries(
            merge_log, "reusing", (kind,)
        ) == [entry]
    assert not _entries(run_log, "building", CHUNK_KINDS + FIXED), run_log[-3000:]
    assert state(train / "0") == "completed"
