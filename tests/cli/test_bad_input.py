"""Bad input, as a new user types it: each case is one line on stderr, no traceback, exit
status 2, naming the key or file at fault, and no work done (docs/reliability.md).

Every case is a real `python -m rdx.train ...` process; config and data-file errors are
caught before torch is imported (~0.3 s each), the two that need torch (the device, the
tiny models' positions) in a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _data(root: Path) -> dict[str, Path]:
    """A directory per broken data file, each otherwise a valid layout of its dataset."""
    good_csv = '"1","t","Rebels agreed to a ceasefire in the north on Monday."\n'
    cases = {
        "yelp_not_utf8": {"sentiment.test.0": b"fine food\ngreat \xff\xfe place\n"},
        "yelp_binary": {"sentiment.test.0": b"\x00\x01\x02\x89PNG\x00\xff" * 20},
        "yelp_empty": {"sentiment.test.0": b""},
        "agnews_fields": {"test.csv": (good_csv + '"2","only a title"\n').encode()},
        "agnews_header_only": {"test.csv": b"Class Index,Title,Description\n"},
        "agnews_class": {"test.csv": (good_csv + '"7","t","Some text here ok."\n').encode()},
        "agnews_binary": {"test.csv": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4},
        "agnews_not_utf8": {
            "test.csv": (good_csv + '"2","t","caf\xe9 cr\xe8me"\n').encode("latin-1")
        },
    }
    (root / "a_file").write_text("not a directory\n")
    dirs = {}
    for name, files in cases.items():
        d = root / name
        d.mkdir()
        if name.startswith("yelp"):  # the other file of the split is fine
            (d / "sentiment.test.1").write_text("the staff was rude .\n")
        for fname, content in files.items():
            (d / fname).write_bytes(content)
        dirs[name] = d
    return dirs


# (id, arguments, what the one line must name). {data} is the broken-files root.
CASES = [
    # values
    ("lr-inf", ["trainer.lr=inf"], "trainer.lr=inf"),
    ("lr-nan", ["trainer.lr=nan"], "trainer.lr=nan"),
    ("lr-negative", ["trainer.lr=-1"], "trainer.lr=-1"),
    ("lr-text", ["trainer.lr=fast"], "trainer.lr='fast'"),
    ("seed-negative", ["seed=-1"], "seed=-1"),
    ("seed-huge", ["seed=18446744073709551616"], "seed=18446744073709551616"),
    ("seed-float", ["seed=0.5"], "seed=0.5"),
    ("gamma-range", ["gamma=1.5"], "gamma=1.5"),
    ("gamma-text", ["gamma=high"], "gamma='high'"),
    ("epochs-zero", ["trainer.epochs=0"], "trainer.epochs=0"),
    ("batch-too-big", ["trainer.batch_size=100000"], "trainer.batch_size=100000"),
    ("batch-one-quantile", ["trainer.batch_size=1"], "trainer.batch_size=1"),
    ("max-words-zero", ["dataset.max_words=0"], "dataset.max_words=0"),
    ("total-len-short", ["sampling.total_len=2"], "sampling.total_len=2"),
    ("temperature-zero", ["sampling.temperature=0"], "sampling.temperature=0"),
    ("precision", ["trainer.precision=fp8"], "trainer.precision='fp8'"),
    ("device-name", ["trainer.device=tpu"], "trainer.device='tpu'"),
    ("logger-mode", ["logger.mode=sometimes"], "logger.mode='sometimes'"),
    ("resume-policy", ["resume=maybe"], "resume='maybe'"),
    ("stage", ["stage=eval"], "stage='eval'"),
    ("attribute", ["attribute=happy"], "attribute='happy'"),
    ("dataset-name", ["dataset.name=imdb"], "dataset.name='imdb'"),
    ("n-head", ["behavior.n_head=3"], "behavior.n_embd=128"),
    ("threshold-no-delta", ["dropout=threshold", "dropout.delta=null"], "dropout.delta"),
    ("init-pretrained-tiny", ["model.init=pretrained"], "model.init='pretrained'"),
    ("yelp-no-path", ["dataset=yelp"], "dataset.path"),
    ("yelp-missing-dir", ["dataset=yelp", "dataset.path=/nonexistent/yelp"], "/nonexistent/yelp"),
    ("max-parallel-zero", ["launcher=local", "launcher.max_parallel=0"], "launcher.max_parallel=0"),
    ("max-parallel-text", ["launcher=local", "launcher.max_parallel=two"], "launcher.max_parallel"),
    # keys, groups and override syntax
    ("group-typo", ["dropout=quantil"], "dropout='quantil'"),
    ("model-typo", ["model=gpt5"], "model='gpt5'"),
    ("unknown-key", ["foo=1"], "'foo'"),
    ("unknown-nested-key", ["trainer.lrr=0.1"], "'trainer.lrr'"),
    ("unknown-appended-key", ["+trainer.lrr=0.1"], "trainer.lrr"),
    ("unparsable", ["trainer.lr=["], "trainer.lr=["),
    ("list-without-m", ["gamma=0.2,0.4"], "gamma=0.2,0.4"),
    # where the records go
    ("run-dir-under-a-file", ["hydra.run.dir={data}/a_file/run"], "a_file is a file"),
    ("sweep-dir-under-a-file", ["-m", "seed=0,1", "hydra.sweep.dir={data}/a_file/sw"], "a_file"),
    # sweep lists: checked value by value before any job launches
    ("sweep-gamma", ["-m", "gamma=0.2,1.5"], "gamma=1.5"),
    ("sweep-lr", ["-m", "seed=0,1", "trainer.lr=0.1,inf"], "trainer.lr=inf"),
    ("sweep-preset", ["-m", "sweeps=table1", "attribute=positive,sportt"], "attribute='sportt'"),
    ("sweep-group", ["-m", "dropout=none,rand"], "dropout='rand'"),
    # data files: the file and, where there is one, the line
    ("yelp-not-utf8", ["dataset=yelp", "dataset.path={data}/yelp_not_utf8"], "sentiment.test.0:2"),
    ("yelp-binary", ["dataset=yelp", "dataset.path={data}/yelp_binary"], "sentiment.test.0:1"),
    ("yelp-empty", ["dataset=yelp", "dataset.path={data}/yelp_empty"], "sentiment.test.0: empty"),
    (
        "agnews-fields",
        ["dataset=agnews", "attribute=world", "dataset.path={data}/agnews_fields"],
        "test.csv:2",
    ),
    (
        "agnews-header-only",
        ["dataset=agnews", "attribute=world", "dataset.path={data}/agnews_header_only"],
        "test.csv: no data rows",
    ),
    (
        "agnews-class",
        ["dataset=agnews", "attribute=world", "dataset.path={data}/agnews_class"],
        "test.csv:2",
    ),
    (
        "agnews-binary",
        ["dataset=agnews", "attribute=world", "dataset.path={data}/agnews_binary"],
        "test.csv:1",
    ),
    (
        "agnews-not-utf8",
        ["dataset=agnews", "attribute=world", "dataset.path={data}/agnews_not_utf8"],
        "test.csv:2",
    ),
]


# What the values ask of this machine: torch is imported first, a few seconds each.
SLOW_CASES = [
    ("positions", ["sampling.total_len=80"], "sampling.total_len=80"),
    ("no-cuda", ["trainer.device=cuda"], "trainer.device='cuda'"),
]


def run_cli(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RDX_CACHE": str(tmp / "cache"), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rdx.train",
            *args,
            "logger=none",
            *[
                f"hydra.{kind}.dir={tmp}/{kind}"
                for kind in ("run", "sweep")
                if not any(a.startswith(f"hydra.{kind}.dir=") for a in args)
            ],
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every fast case, run as its own process, four at a time (most of a case is the
    interpreter starting)."""
    root = tmp_path_factory.mktemp("bad-input")
    data = root / "data"
    data.mkdir()
    _data(data)

    def one(case: tuple[str, list[str], str]) -> tuple[str, tuple]:
        tmp = root / case[0]
        tmp.mkdir()
        return case[0], (run_cli([a.replace("{data}", str(data)) for a in case[1]], tmp), tmp)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, CASES))


def check_one_line(proc: subprocess.CompletedProcess, tmp: Path, named: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert lines[0].startswith("rdx: ") and named in lines[0], lines[0]
    # Nothing was started: no run records, no sweep dir, no cache entry.
    assert not (tmp / "run" / "status.json").exists()
    assert not (tmp / "sweep").exists()
    assert not (tmp / "cache").exists()


def test_the_matrix_has_at_least_40_cases():
    assert len(CASES) + len(SLOW_CASES) >= 40
    assert len({c[0] for c in CASES + SLOW_CASES}) == len(CASES) + len(SLOW_CASES)


@pytest.mark.parametrize("case, named", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(results, case, named):
    check_one_line(*results[case], named)


@pytest.mark.slow
@pytest.mark.parametrize("args, named", [c[1:] for c in SLOW_CASES], ids=[c[0] for c in SLOW_CASES])
def test_bad_input_for_this_machine_is_one_line_exit_2(tmp_path, args, named):
    if "trainer.device=cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: trainer.device=cuda is valid here")
    check_one_line(run_cli(args, tmp_path), tmp_path, named)


def test_analysis_on_a_binary_csv_is_one_line(tmp_path):
    csv = tmp_path / "runs.csv"
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 8)
    for module in ("analysis.tables", "analysis.figures"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--csv", str(csv), "--out", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and str(csv) in lines[0], lines[0]
