"""benchmarks.gpu_check on CPU: every step in a process of its own under its budget, a
failing or overrunning step recorded with its status and error while the others still
run, the JSON rewritten after each step; the budgets leave a margin under the timeout."""

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# A step's figures go to $RDX_GPU_CHECK_RESULT, as gpu_check's own children write them.
WRITE = "import json, os; open(os.environ['RDX_GPU_CHECK_RESULT'], 'w').write(json.dumps({}))"


def test_a_failing_step_leaves_the_json_with_every_other_step(tmp_path):
    out = tmp_path / "gpu.json"
    seen = (  # the third step reads the JSON as the first two left it
        f"import json, os; s = json.load(open({str(out)!r}))['steps']; "
        "open(os.environ['RDX_GPU_CHECK_RESULT'], 'w').write(json.dumps("
        "{'seen': {k: v['status'] for k, v in s.items()}}))"
    )
    steps = [
        ("first", py(WRITE.replace("{}", "{'tokens_per_s': 12.5}")), 60),
        ("broken", py("raise RuntimeError('CUDA error: an illegal memory access')"), 60),
        ("third", py(seen), 60),
        ("slow", py("import time; time.sleep(60)"), 1),
        ("crash", py("import os; os._exit(3)"), 60),
        ("skips", py(WRITE.replace("{}", "{'skipped': 'vLLM is not installed'}")), 60),
    ]
    result = gpu_check.run_steps(steps, out, {"device": "test"})
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(result)) and on_disk["device"] == "test"
    got = on_disk["steps"]
    assert got["first"]["status"] == "ok" and got["first"]["tokens_per_s"] == 12.5
    assert got["broken"]["status"] == "failed" and got["broken"]["returncode"] == 1
    assert got["third"]["status"] == "ok"
    seen = got["third"]["seen"]
    assert seen == {
        "first": "ok",
        "broken": "failed",
        "third": "pending",
        "slow": "pending",
        "crash": "pending",
        "skips": "pending",
    }
    assert got["slow"] == {"status": "timeout", "error": "over its 1 s budget", "s": 1}
    assert got["crash"]["status"] == "failed" and got["crash"]["error"] == "exit status 3"
    assert got["skips"]["status"] == "skipped"


def test_a_benchmark_step_writes_its_error_in_one_line(tmp_path):
    """gpu_check's own child: `beta` on a machine without CUDA fails in its process, its
    error one line in the step's record."""
    result = gpu_check.run_steps(
        [("beta", gpu_check.step_argv("beta", gpu_check_args()), 600)],  # a busy CPU: minutes
        tmp_path / "gpu.json",
        {},
    )
    step = result["steps"]["beta"]
    assert step["status"] == "failed" and step["returncode"] == 1
    assert "\n" not in step["error"] and step["error"].split(":")[0].endswith("Error")


def gpu_check_args():
    import argparse

    return argparse.Namespace(batch=8, peak_tflops=None)


def test_the_budgets_leave_a_margin_and_the_script_runs_the_python_on_path():
    assert sum(budget for _, _, budget in gpu_check.PLAN) <= gpu_check.TIMEOUT_S - 60
    script = (ROOT / "scripts" / "gpu-check").read_text()
    assert f"timeout --kill-after=10 {gpu_check.TIMEOUT_S} " in script
    assert ".venv/bin/python" not in script and "command -v python" in script


def test_without_cuda_it_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--only", "beta"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # seconds on an idle machine; minutes on a loaded one
    )
    assert proc.returncode == 0 and "beta" in proc.stdout and "tests " not in proc.stdout
    assert "no CUDA device" in proc.stdout and not out.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--only", "beta,nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # seconds on an idle machine; minutes on a loaded one
    )
    assert bad.returncode == 2 and "unknown step(s) ['nope']" in bad.stderr
