"""Fault injection: the pre-launch check (docs/reliability.md, issue 22's partial cases).

Every value of a command is validated before Hydra starts, whatever other flags it has
(-cn), composing once per distinct value of a group and not at all for a plain value, and
sizes that need no torch are checked before torch is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

from rdx.train import check_overrides
from tests.helpers.cli import rdx_cli

ROOT = Path(__file__).resolve().parents[2]


def launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return rdx_cli(*args, cwd=cwd, timeout=120)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, lines
    return lines[0]


def test_a_config_name_flag_does_not_skip_the_check(tmp_path):
    line = one_line(
        launch("-cn", "train", "-m", "gamma=0.2,1.5", f"hydra.sweep.dir={tmp_path}/s", cwd=tmp_path)
    )
    assert line.startswith("rdx: config error: gamma=1.5") and "(sweep job" in line
    assert not (tmp_path / "s").exists()  # no job ran
    line = one_line(launch("--config-name=train", "gamma=1.5", cwd=tmp_path))
    assert "gamma=1.5" in line


def test_a_list_without_multirun_is_one_rdx_line_with_a_config_name(tmp_path):
    line = one_line(launch("gamma=0.2,1.5", "-cn", "train", cwd=tmp_path))
    assert line == (
        "rdx: config error: gamma=0.2,1.5: a list of values sweeps only with -m; for a list "
        "value use key=[a,b]"
    )


def count_compose(monkeypatch) -> list:
    """The overrides of every hydra.compose call the pre-launch check makes, as it makes them."""
    calls: list = []
    compose = hydra.compose

    def counting(*args, **kwargs):
        calls.append(kwargs.get("overrides"))
        return compose(*args, **kwargs)

    monkeypatch.setattr(hydra, "compose", counting)
    return calls


@pytest.mark.slow  # 6 s: 200 values through the pre-launch check
def test_a_long_list_of_plain_values_is_checked_without_composing_each(monkeypatch, capsys):
    calls = count_compose(monkeypatch)
    seeds = ",".join(str(i) for i in range(199)) + ",-1"
    with pytest.raises(SystemExit) as exit_:
        check_overrides(["-m", f"seed={seeds}", "gamma=0.2,0.4,0.2,0.4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rdx: config error: seed=-1") and "sweep job seed=-1" in err
    assert len(calls) <= 3, f"composed {len(calls)} times for 200 plain values"


def test_a_group_list_composes_once_per_distinct_value(monkeypatch, capsys):
    calls = count_compose(monkeypatch)
    check_overrides(["-m", "dropout=" + ",".join(["none", "random", "quantile"] * 20)])
    assert len(calls) == 1 + 3  # the launch config, then none, random, quantile once each


def test_a_size_the_tiny_models_cannot_hold_is_refused_before_torch_loads():
    code = (
        "import sys\n"
        "from rdx.train import check_overrides\n"
        "try:\n"
        "    check_overrides(['sampling.total_len=5000'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "exit 2 False", proc.stdout + proc.stderr[-2000:]
    assert "sampling.total_len=5000: the tiny models have 64 positions" in proc.stderr
