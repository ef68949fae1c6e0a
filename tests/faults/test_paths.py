"""Fault injection: paths left empty, a user's own file in a run dir, an unquoted path with
a space, HOME unset (issue 33, "Paths"). Each is one line before anything is written, or
(HOME) no error at all (docs/reliability.md)."""

from __future__ import annotations

import os
import pwd

import pytest

from rdx.records import RunDirError
from rdx.train import check_overrides
from tests.helpers.faults import cfg, fake_pipeline


def _refused(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        check_overrides(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("multirun", [False, True])
def test_an_empty_output_dir_is_refused(tmp_path, monkeypatch, capsys, multirun):
    """`hydra.run.dir=$UNSET`: before, the run's records went into the current directory."""
    monkeypatch.chdir(tmp_path)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    said = _refused(capsys, [*(["-m", "seed=0,1"] if multirun else []), f"{key}="])
    assert said == (
        f"rdx: run dir error: {key} is empty (an unset shell variable?); the run's records "
        f"would be written into the current directory: give {key} a directory, or leave it "
        "out for runs/<date>/<time>"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_empty_rdx_cache_is_refused(tmp_path, monkeypatch, capsys):
    """`RDX_CACHE=$UNSET`: before, β, R and the trajectories were built in the cwd."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RDX_CACHE", "")
    said = _refused(capsys, [f"hydra.run.dir={tmp_path / 'run'}"])
    assert said.startswith("rdx: config error: cache_dir is empty (RDX_CACHE set to nothing")
    assert list(tmp_path.iterdir()) == []


def test_home_unset_is_no_error(tmp_path, monkeypatch, capsys):
    """Before: `Environment variable 'HOME' not found`, though RDX_CACHE was set."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rdx.config import validate
    from rdx.train import CONF

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setenv("RDX_CACHE", str(tmp_path / "cache"))
    check_overrides([f"hydra.run.dir={tmp_path / 'run'}"])  # no SystemExit
    assert capsys.readouterr().err == ""
    for env, expected in (
        (str(tmp_path / "cache"), str(tmp_path / "cache")),
        (None, os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".cache/rdx")),
    ):
        if env is None:
            monkeypatch.delenv("RDX_CACHE")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            raw = OmegaConf.to_container(compose("train"), resolve=True)
        assert validate(raw).cache_dir == expected


def test_an_unquoted_path_with_a_space_hints_at_quoting(capsys):
    said = _refused(capsys, ["hydra.run.dir=/tmp/my", "runs"])
    assert said.startswith("rdx: config error: 'runs': not a valid override (")
    assert said.endswith(
        "; if it is the rest of a value with a space, quote the whole override: "
        "'hydra.run.dir=/tmp/my runs'"
    )


def test_a_run_dir_holding_a_users_config_yaml_is_refused(tmp_path, monkeypatch):
    """Before: the user's config.yaml was written over."""
    from rdx.run import execute

    fake_pipeline(monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    mine = "model: my-own-model\nlr: 0.1\n"
    (run / "config.yaml").write_text(mine)
    with pytest.raises(RunDirError) as err:
        execute(cfg(), run)
    assert str(err.value) == (
        f"run dir {run} holds a config.yaml that rdx did not write (no status.json, not an "
        "rdx config); rdx would write over it: pick another hydra.run.dir, or move the file"
    )
    assert (run / "config.yaml").read_text() == mine
    assert not (run / "status.json").exists()


def test_rdxs_own_config_yaml_without_a_status_is_resumed(tmp_path, monkeypatch):
    """A run killed between its config.yaml and its first status.json is rdx's own."""
    from rdx.run import execute

    fake_pipeline(monkeypatch)
    run = tmp_path / "run"
    execute(cfg(), run)
    (run / "status.json").unlink()
    assert execute(cfg(), run) is not None


def test_a_swept_hydra_key_is_one_line(capsys):
    """Before: Hydra's two lines ("Sweeping over Hydra's configuration is not supported")."""
    said = _refused(capsys, ["-m", "hydra.sweep.dir=/tmp/a,/tmp/b", "seed=0"])
    assert said == (
        "rdx: config error: hydra.sweep.dir=/tmp/a,/tmp/b: Hydra's own settings (hydra.*) "
        "cannot be swept; run one sweep per value, e.g. one command per hydra.sweep.dir"
    )
