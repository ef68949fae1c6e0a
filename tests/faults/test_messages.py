"""Fault injection: errors that were unclear become one line saying what is wrong with
which file (docs/reliability.md, issue 22's partial cases)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rdx.train
from rdx.data.corpus import DataError
from rdx.data.loaders import check_source
from rdx.hub import HubUnavailable
from rdx.records import RunDirError, RunRecords
from rdx.run import execute
from tests.helpers.faults import cfg, fake_pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_a_foreign_flock_on_the_run_dir_is_named_without_question_marks(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True); time.sleep(120)",
            str(tmp_path / ".rdx.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError) as err:
            with RunRecords(tmp_path).lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    said = str(err.value)
    assert "in use by another process (its lock .rdx.lock is held" in said
    assert "?" not in said and "\n" not in said


def test_a_damaged_file_of_a_local_hub_dir_is_named(tmp_path):
    from rdx.lm.models import load_hub

    model = tmp_path / "my-model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast"}')
    (model / "tokenizer.json").write_text("garbage{")
    with pytest.raises(HubUnavailable) as err:
        load_hub("tokenizer", str(model))
    said = str(err.value)
    assert f"{model / 'tokenizer.json'} is damaged" in said, said
    assert "not a local directory" not in said and "\n" not in said


def test_an_old_checkpoint_without_a_readable_config_yaml_says_so(tmp_path, monkeypatch):
    fake_pipeline(monkeypatch)
    records = RunRecords(tmp_path)  # a checkpoint from before config hashes
    records.save_checkpoint({"epoch": 1, "history": [], "torch_rng": torch.get_rng_state()})
    (tmp_path / "config.yaml").write_text("gamma: [unclosed\n")
    with pytest.raises(RunDirError) as err:
        execute(cfg(), tmp_path)
    said = str(err.value)
    assert "its settings are unknown" in said and "config.yaml is missing or damaged" in said
    assert "None" not in said and "\n" not in said


def test_an_unclosed_quote_in_ag_news_names_the_line_it_starts_on(tmp_path):
    (tmp_path / "test.csv").write_text(
        '"1","t","Rebels agreed to a ceasefire in the north."\n'
        '"2","t","An open quote here.\n'
        '"3","t","A third row of text here."\n'
    )
    with pytest.raises(DataError) as err:
        check_source("agnews", str(tmp_path), False)
    said = str(err.value)
    assert said.startswith(f"{tmp_path / 'test.csv'}:2 (a row running on to line 3"), said
    assert "unclosed quote" in said


def test_a_python_tag_in_a_conf_yaml_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    evil = conf / "dropout" / "evil.yaml"
    pwned = tmp_path / "pwned"
    evil.write_text(f'mode: quantile\ndelta: !!python/object/apply:os.mkdir ["{pwned}"]\n')
    monkeypatch.setattr(rdx.train, "CONF", conf)
    monkeypatch.setattr(rdx.train, "SEARCH", (conf, ROOT))
    with pytest.raises(SystemExit) as exit_:
        rdx.train.check_overrides(["dropout=evil"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rdx: config error: {evil}:2: "), err
    assert "no !!python tags" in err[0]
    assert not pwned.exists()
