"""How many torch threads a run takes when trainer.threads is not set: the cores left free.

Measured on the 2 shared cores of the build machines (docs/configuration.md, "Threads"): on a quiet
machine a second thread makes the default run ~1.1x faster; with any other CPU-bound
process beside it, 2 threads made it 4-7x slower than 1 (130 against 990 tokens/s), because
torch's threads wait on each other at every step while one of them has no core. So a
second thread is taken only when no other process wants a core at start-up.

"Wants a core" is the kernel's count of runnable tasks (/proc/loadavg, field 4), this
process excluded, as the median of a few samples so that a passing shell command does not
decide it. It is read once, at start-up: a run does not change its threads midway.
"""

from __future__ import annotations

import os
import statistics
import time

LOADAVG = "/proc/loadavg"


def runnable_others(samples: int = 5, interval: float = 0.02, path: str = LOADAVG) -> int | None:
    """Tasks other than this one that are running or waiting for a core, or None where the
    kernel does not say (no /proc: macOS, Windows)."""
    counts = []
    for i in range(samples):
        try:
            with open(path) as f:
                running = f.read().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        if not running.isdigit():
            return None
        counts.append(int(running) - 1)  # the reader itself is running
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, round(statistics.median(counts)))


def free_threads(cores: int, parallel_jobs: int = 1, others: int | None = None) -> int:
    """Threads for one run: its share of the cores (cores ÷ jobs of this launch), but no
    more than the cores that other processes leave free; at least 1."""
    share = max(1, cores // max(1, parallel_jobs))
    if others is None:
        return share
    return max(1, min(share, cores - others))


def cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a Slurm or cgroup set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
