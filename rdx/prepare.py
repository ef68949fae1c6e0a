"""Build the cached artifacts (corpus tokenizer, β, R, trajectories, scores) without training.

python -m rdx.prepare attribute=sport                   # same overrides as rdx.train
python -m rdx.prepare -m attribute=negative,positive    # a sweep: one job per attribute
python -m rdx.prepare sampling.shards=8 launcher=slurm  # β's rows by 8 shard jobs, then a merge

With `sampling.shards=N` (N > 1, on the command line) β's sampling and scoring run as N
shard jobs through the chosen launcher (a SLURM job array with launcher=slurm), each
building its chunks of rows (rdx.pipeline.offpolicy.shards); a requeued or rerun shard continues at
its first missing chunk. One more job then merges the chunks into the trajectories and
scores entries that the runs read (a run that finds the chunks but no merged entry merges
them itself, so a training sweep may also start once the shards are done).
"""

from __future__ import annotations

import subprocess
import sys

from rdx.train import cli


def shard_commands(argv: list[str]) -> list[list[str]] | None:
    """The two rdx.train multiruns of a sharded prepare (the shard jobs, then the merge
    jobs), or None when `argv` asks for no sharding (or is itself one shard). A sweep in
    argv (-m attribute=negative,world) gets N shard jobs for each of its settings."""
    shards = [a.split("=", 1)[1] for a in argv if a.startswith("sampling.shards=")]
    if not shards or any(a.startswith("sampling.shard=") for a in argv):
        return None
    try:
        n = int(shards[-1])
    except ValueError:
        return None  # rdx.train's validation names the bad value
    if n <= 1:
        return None
    argv = [a for a in argv if a not in ("-m", "--multirun")]
    # A sweep dir is one sweep's (rdx.sweep): the merge is a sweep of its own, in <dir>/merge
    # when the command names the dir (else in a sweep dir of its own time, as any sweep).
    merge_argv = [f"{a}/merge" if a.startswith("hydra.sweep.dir=") else a for a in argv]
    return [
        ["-m", "stage=prepare", f"sampling.shard=range(0,{n})", *argv],
        # a job per setting, in subdirs of their own: every chunk is cached, they merge them
        ["-m", "stage=prepare", "hydra.sweep.subdir=merge-${hydra.job.num}", *merge_argv],
    ]


def main(argv: list[str]) -> int:
    commands = shard_commands(argv)
    if commands is None:
        sys.argv[1:] = ["stage=prepare", *argv]
        cli()
        return 0
    for args in commands:
        rc = subprocess.run([sys.executable, "-m", "rdx.train", *args]).returncode
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
