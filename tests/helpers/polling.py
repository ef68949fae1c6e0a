"""Polling helper for the SLURM tests: the cluster answers asynchronously."""

import time


def wait_until(what: str, predicate, timeout: float, poll: float = 1.0):
    """Return predicate()'s first truthy value, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
