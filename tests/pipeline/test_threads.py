"""The thread default: a run's share of the cores, but only the cores other processes leave."""

from __future__ import annotations

import os

import pytest

from rdx import threads
from rdx.run import default_threads


@pytest.mark.parametrize(
    "cores, jobs, others, expected",
    [
        (2, 1, 0, 2),  # an idle 2-core machine: both cores
        (2, 1, 1, 1),  # one CPU-bound process beside it: 1 thread (4-7x faster than 2)
        (2, 1, 5, 1),  # a crowded machine: still 1, never 0
        (2, 2, 0, 1),  # two jobs of one launch: each its share
        (2, 2, 1, 1),  # ... the other job is one of the others
        (16, 1, 3, 13),  # a big machine gives what is free
        (16, 4, 3, 4),  # ... but no more than the share
        (4, 1, None, 4),  # the kernel does not say (no /proc): the share
    ],
)
def test_free_threads_rule(cores, jobs, others, expected):
    assert threads.free_threads(cores, jobs, others) == expected


def fake_loadavg(tmp_path, *running: int):
    """A /proc/loadavg whose field 4 reads each of `running` in turn."""
    path = tmp_path / "loadavg"
    values = iter(running)

    def sample(*_args):
        path.write_text(f"7.32 5.68 2.73 {next(values)}/136 10147\n")

    return path, sample


def test_runnable_others_is_the_median_less_this_process(tmp_path, monkeypatch):
    path, sample = fake_loadavg(tmp_path, 3, 1, 9, 3, 1)
    sample()
    monkeypatch.setattr(threads.time, "sleep", sample)  # the next sample, at each pause
    # samples 3 1 9 3 1 -> less the reader: 2 0 8 2 0 -> median 2; one spike does not count
    assert threads.runnable_others(samples=5, path=str(path)) == 2


def test_runnable_others_without_proc(tmp_path):
    assert threads.runnable_others(path=str(tmp_path / "none")) is None
    (tmp_path / "odd").write_text("1.0 2.0\n")
    assert threads.runnable_others(path=str(tmp_path / "odd")) is None


def test_default_run_takes_one_thread_beside_a_busy_process(monkeypatch):
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS", "RDX_PARALLEL_JOBS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "runnable_others", lambda: 1)
    assert default_threads(None) == 1
    monkeypatch.setattr(threads, "runnable_others", lambda: 0)
    assert default_threads(None) == 2
    assert default_threads(2) == 2  # trainer.threads is obeyed as given
