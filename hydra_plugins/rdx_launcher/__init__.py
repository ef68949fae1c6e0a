"""`hydra/launcher: rdx_submitit_local`: submitit's local launcher with a cap on parallel jobs.

hydra-submitit-launcher 1.2.0's `submitit_local` starts every job of a sweep at once (submitit's
LocalExecutor has no array parallelism), so a 54-job grid would start 54 processes on 2 cores.
This launcher keeps at most `array_parallelism` jobs running and starts the next as one ends.
Everything else is the stock launcher: each job runs `python -m submitit.core._submit` in its
own process, re-composes the config there and writes `<sweep dir>/<job num>/`; submitit's
`checkpoint()` hook restarts a job that it signals before its `timeout_min`.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules before adding them
# to sys.modules, and dataclasses then cannot resolve string annotations.
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher

log = logging.getLogger(__name__)


class CappedLocalLauncher(LocalLauncher):
    # How often to look for a finished job; a smoke job lasts ~10 s, a real one minutes.
    POLL_S = 0.5

    def __init__(self, array_parallelism: int, **params: Any) -> None:
        if array_parallelism < 1:
            raise ValueError(f"array_parallelism={array_parallelism}: expected >= 1")
        super().__init__(**params)
        self.array_parallelism = array_parallelism
        self.parallel_jobs = array_parallelism

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        # In the job's process: rdx/run.py gives it cores ÷ RDX_PARALLEL_JOBS torch threads.
        os.environ["RDX_PARALLEL_JOBS"] = str(self.parallel_jobs)
        return super().__call__(*args, **kwargs)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit  # lazy, as in the stock launcher: plugin discovery stays fast

        assert self.config is not None
        executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])
        executor.update_parameters(
            **{k: v for k, v in self.params.items() if k != "submitit_folder"}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            f"Submitit 'local' sweep output dir : {sweep_dir} "
            f"(at most {self.array_parallelism} jobs at a time)"
        )

        self.parallel_jobs = min(self.array_parallelism, len(job_overrides))
        pending = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            pending.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}"))
        pending.reverse()  # pop() from the end starts jobs in sweep order

        jobs: list[Any] = []
        running: list[Any] = []
        while pending or running:
            running = [job for job in running if not job.done()]
            while pending and len(running) < self.array_parallelism:
                # Singleton state is taken at submission, as the stock launcher does.
                job = executor.submit(self, *pending.pop(), Singleton.get_state())
                jobs.append(job)
                running.append(job)
            if running:
                time.sleep(self.POLL_S)
        # Every job has ended before any result is read: one job that crashed hard does not
        # leave the others unattended (the post-sweep check reads all their status.json).
        return [job.results()[0] for job in jobs]


@dataclass
class CappedLocalQueueConf(LocalQueueConf):
    _target_: str = "hydra_plugins.rdx_launcher.CappedLocalLauncher"
    # Jobs running at once (conf/launcher/local.yaml sets it from launcher.max_parallel).
    array_parallelism: int = 2


ConfigStore.instance().store(
    group="hydra/launcher",
    name="rdx_submitit_local",
    node=CappedLocalQueueConf(),
    provider="rdx",
)
