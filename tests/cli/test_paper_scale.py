"""Paper scale: sweeps=paper_table1 composes for all six attributes, a too small prefix pool
is a one-line error, and rdx.prepare fans sampling.shards=N out as shard jobs then a merge."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from rdx.config import ConfigError, SamplingConfig
from rdx.data.corpus import DataError
from rdx.pipeline.offpolicy.shards import check_pool
from rdx.prepare import shard_commands
from tests.cli.test_sweeps import job_config, sweep_jobs
from tests.helpers.cli import rdx_cli

ROOT = Path(__file__).resolve().parents[2]
DATASET = {"negative": "yelp", "positive": "yelp", "world": "agnews", "sport": "agnews"}
DATASET |= {"business": "agnews", "sci_tech": "agnews"}


@pytest.mark.parametrize("attribute", list(DATASET))
def test_paper_table1_composes_each_attribute_on_its_dataset(attribute):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["experiment=paper_table1", f"+sweeps/paper_attribute={attribute}"],
        )
    assert (cfg.attribute, cfg.dataset.name) == (attribute, DATASET[attribute])
    assert cfg.dataset.n_per_attribute is None and cfg.dataset.hub is True
    s = cfg.sampling
    # the authors: one continuation per prefix per epoch, a fresh set each of the 5 epochs
    assert (s.num_prefixes, s.samples_per_prefix, s.fresh_per_epoch) == (50000, 1, 5)
    assert s.allow_fewer_prefixes is False and (s.temperature, s.top_k) == (1.0, 50)
    assert (cfg.behavior.hub, cfg.model.hub, cfg.reward.name) == (
        "facebook/opt-6.7b",
        "gpt2",
        "bert",
    )


def test_documented_command_prints_its_job_config():
    """The header's command, with --cfg job: Hydra composes it (first job's settings)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "experiment=paper_table1",
            "sweeps=paper_table1",
            "launcher=slurm_gpu",
            "+sweeps/paper_attribute=sci_tech",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "attribute: sci_tech" in proc.stdout and "name: agnews" in proc.stdout
    assert "gpus_per_node: 1" in proc.stdout and "mem_gb: 64" in proc.stdout


def test_too_few_prefixes_is_one_line_unless_allowed(caplog):
    strict = SamplingConfig(num_prefixes=50000, allow_fewer_prefixes=False)
    with pytest.raises(DataError) as err:
        check_pool(6000, strict)
    assert str(err.value) == (
        "sampling.num_prefixes=50000: the prefix pool has only 6000 sentences; use more data "
        "(dataset.n_per_attribute=null, the hub's splits) or sampling.allow_fewer_prefixes=true"
    )
    check_pool(50000, strict)  # enough
    check_pool(6000, SamplingConfig(num_prefixes=50000), what="prefixes")  # allowed: a warning
    assert "only 6000 training prefixes (asked 50000)" in caplog.text


@pytest.mark.slow
@pytest.mark.data
def test_paper_table1_on_the_local_ag_news_fails_in_one_line(hub, tmp_path):
    data = ROOT.parent / "shared" / "data" / "ag_news"
    if not data.exists():
        pytest.skip(f"no real data at {data}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            "experiment=paper_table1",
            "attribute=world",
            "dataset=agnews",
            f"dataset.path={data}",
            "dataset.hub=false",
            f"model.hub={hub['gpt2']}",
            f"behavior.hub={hub['opt']}",
            f"reward.hub={hub['bert']}",
            "trainer.precision=fp32",
            "logger=none",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr[-1500:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("rdx: data error: sampling.num_prefixes=50000: the prefix pool has only")
    assert not (tmp_path / "cache" / "trajectories").exists()


def test_prepare_fans_shards_out_then_merges():
    args = ["experiment=smoke", "sampling.shards=3", "launcher=slurm"]
    shards, merge = shard_commands(args)
    assert shards == ["-m", "stage=prepare", "sampling.shard=range(0,3)", *args]
    assert merge == ["-m", "stage=prepare", "hydra.sweep.subdir=merge-${hydra.job.num}", *args]
    swept = shard_commands(["-m", "attribute=negative,world", "sampling.shards=2"])
    assert swept[0] == [
        "-m",
        "stage=prepare",
        "sampling.shard=range(0,2)",
        "attribute=negative,world",
        "sampling.shards=2",
    ]
    assert shard_commands(["sampling.shards=1"]) is None
    assert shard_commands(["attribute=sport"]) is None
    assert shard_commands(["sampling.shards=3", "sampling.shard=1"]) is None  # one shard job
    # A sweep dir is one sweep's: the merge runs in <dir>/merge, not beside the shards.
    named = shard_commands(["sampling.shards=2", "hydra.sweep.dir=/x/prep"])
    assert named[0][-1] == "hydra.sweep.dir=/x/prep"
    assert named[1][-1] == "hydra.sweep.dir=/x/prep/merge"


@pytest.mark.slow
def test_sharded_prepare_runs_its_shards_then_the_merge(tmp_path):
    sweep, cache = tmp_path / "prep", tmp_path / "cache"
    proc = rdx_cli(
        "experiment=smoke",
        "logger=none",
        "sampling.shards=3",
        "sampling.chunk_rows=64",
        f"cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
        module="rdx.prepare",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = json.loads((sweep / "sweep.json").read_text())["counts"]
    merged = json.loads((sweep / "merge" / "sweep.json").read_text())["counts"]
    assert shards == {"completed": 3} and merged == {"completed": 1}
    assert len([p for p in (cache / "trajectory-chunks").iterdir() if p.is_dir()]) == 3
    assert len([p for p in (cache / "trajectories").iterdir() if p.is_dir()]) == 1


def test_chunks_must_hold_whole_scoring_blocks():
    from rdx.config import ConfigError
    from tests.cli.test_config import compose_cfg

    with pytest.raises(ConfigError, match=r"^sampling.chunk_rows=100: must be a multiple of 64"):
        compose_cfg("sampling.chunk_rows=100")
    with pytest.raises(
        ConfigError, match=r"^sampling.shard=3: must be in \[0, sampling.shards=3\)"
    ):
        compose_cfg("sampling.shards=3", "sampling.shard=3")
    assert compose_cfg("sampling.chunk_rows=128").sampling.chunk_rows == 128


@pytest.mark.slow  # 6-8 s each: every job of the sweep composed
@pytest.mark.parametrize("preset", ["paper_table2", "paper_table2_lora"])
def test_paper_table2_presets_put_each_attribute_on_its_dataset(preset, monkeypatch):
    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)  # hub names: offline
    jobs = sweep_jobs(preset, "experiment=paper_table1")
    assert len(jobs) == {"paper_table2": 60, "paper_table2_lora": 48}[preset]
    seen = set()
    for job in jobs:
        cfg = job_config("experiment=paper_table1", f"sweeps={preset}", *job)
        assert cfg.dataset.name == DATASET[cfg.attribute] and cfg.dataset.hub
        seen.add(cfg.attribute)
    assert len(seen) == 6


def test_the_one_dataset_table_presets_under_paper_table1_fail_in_one_line(monkeypatch):
    """sweeps=table2 under experiment=paper_table1 used to train on the synthetic corpus."""
    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)
    assert job_config("experiment=paper_table1").dataset.name == "yelp"
    with pytest.raises(ConfigError) as err:
        job_config("experiment=paper_table1", "sweeps=table2", "attribute=world")
    assert str(err.value) == "attribute='world': dataset yelp has negative, positive"
