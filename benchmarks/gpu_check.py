"""`scripts/gpu-check`: the GPU tests and a throughput benchmark in ≤ 10 minutes on one GPU.

    python -m benchmarks.gpu_check                 # without CUDA: prints the plan, exits 0
    python -m benchmarks.gpu_check --out benchmarks/gpu.json
    python -m benchmarks.gpu_check --only beta,train

Steps, each in a process of its own under its budget (the budgets add up to 500 s, 100 s
under scripts/gpu-check's 600 s): a step that fails, runs out of its budget or kills its
process is recorded with its status and error, and the next step runs. The JSON is
written before the first step (every step `pending`) and again after each, so a run
stopped anywhere leaves what it measured:
  1. pytest -m gpu tests/lm/test_gpu.py (sampler, scoring, bf16 step, hub architectures,
     the vLLM engine in a process of its own), offline.
  2. β sampling: OPT-6.7B's architecture at random init, bf16, keyed draws, tokens/s at
     sampling.batch_size rows × 26 new tokens (the paper's p=4, T=30), and β scoring
     (sequence_prob) tokens/s.
  3. π training: GPT2-124M's architecture, bf16 autocast, AdamW, batch 64 × 30 tokens:
     step time and MFU against the GPU's bf16 dense peak (given by --peak-tflops, or from
     the device name for H100/H200/A100).
  4. β sampling with sampling.engine=vllm (rdx.lm.engines.VLLMEngine): the same rows and
     options as step 2 on vLLM's dummy (random) OPT-6.7B weights, one seeded request per
     row; its start-up is timed apart. Skipped, with the reason in the JSON, where vLLM
     is not installed.
Every measured figure is timed after a warm-up call of the same shape, so first-use
compilation (kernels, the allocator, vLLM's graphs) is not in it; the warm-up's time is
recorded beside it (`warmup_s`, `start_s`). Random weights give the same FLOPs and memory
traffic as trained ones; the token counts of a random model's samples are fixed
(stop_at_eos=False), as the authors' β's were. Step statuses: ok, skipped, failed,
timeout, pending (not reached).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# bf16 dense tensor-core peaks (TFLOPS), NVIDIA's data sheets (SXM parts).
PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
# (name, what, budget in s). The budgets add up to 500 s: 100 s under scripts/gpu-check's
# 600 s for the parent's start, four child starts (~5 s of imports each) and the JSON.
PLAN = [
    ("tests", "pytest -m gpu tests/lm/test_gpu.py", 180),
    ("beta", "OPT-6.7B arch (random, bf16): sample 512 rows x 26 tokens, score 2048 rows", 110),
    ("train", "GPT2-124M arch (random, bf16 autocast): 20 AdamW steps of 64 x 30 tokens", 60),
    ("beta_vllm", "OPT-6.7B arch (vLLM dummy weights, bf16): sample 512 rows x 26 tokens", 150),
]
TIMEOUT_S = 600  # scripts/gpu-check's; tests/bench checks the budgets leave a margin
STATUSES = ("ok", "skipped", "failed", "timeout", "pending")


def peak_tflops(name: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((v for k, v in PEAKS.items() if k in name), None)


def bench_beta(batch: int, new_tokens: int = 26) -> dict:
    from rdx.lm.archs import n_params, random_lm
    from rdx.lm.sampling import sample, sequence_prob
    from rdx.lm.sequences import Sequences

    model = random_lm("opt-6.7b", dtype=torch.bfloat16, device="cuda")
    prefixes = torch.randint(4, 50000, (batch, 5), generator=torch.Generator().manual_seed(0))
    keys = torch.stack(
        [torch.zeros(batch), torch.zeros(batch), torch.arange(batch), torch.zeros(batch)], 1
    ).long()

    def run() -> torch.Tensor:
        return sample(
            model,
            prefixes,
            new_tokens,
            temperature=1.0,
            keys=keys,
            top_k=50,
            repetition_penalty=1.2,
            eos_id=2,
            stop_at_eos=False,
            batch_size=batch,
        )

    t0 = time.perf_counter()
    run()  # warm-up at the measured shape: kernels, allocator
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = run()
    torch.cuda.synchronize()
    sample_s = time.perf_counter() - t0
    seqs = Sequences.from_samples(rows.repeat(4, 1), 5, None)
    sequence_prob(model, seqs, batch_size=512)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    sequence_prob(model, seqs, batch_size=512)
    torch.cuda.synchronize()
    score_s = time.perf_counter() - t0
    out = {
        "params": n_params(model),
        "rows": batch,
        "new_tokens": new_tokens,
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "sample_tokens_per_s": batch * new_tokens / sample_s,
        "score_rows": len(seqs),
        "score_s": score_s,
        "score_tokens_per_s": len(seqs) * seqs.tokens.shape[1] / score_s,
        "max_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
    }
    return out  # the model is freed with this frame; main empties the cache


def bench_beta_vllm(batch: int, new_tokens: int = 26) -> dict:
    """β tokens/s through VLLMEngine: OPT-6.7B's config in a temp dir (its architectures
    written, as save_pretrained of a model would), random weights made by vLLM itself
    (load_format=dummy: no 13 GB checkpoint to write), step 2's options."""
    from rdx.lm.archs import ARCHS
    from rdx.lm.engines import Decoding, VLLMEngine
    from rdx.lm.vllm_mapping import vllm_problem

    problem = vllm_problem()
    if problem is not None:
        return {"skipped": problem}
    prefixes = torch.randint(4, 50000, (batch, 5), generator=torch.Generator().manual_seed(0))
    keys = torch.stack(
        [torch.zeros(batch), torch.zeros(batch), torch.arange(batch), torch.zeros(batch)], 1
    ).long()
    d = Decoding(new_tokens, 1.0, eos_id=2, stop_at_eos=False, top_k=50, repetition_penalty=1.2)
    with tempfile.TemporaryDirectory() as model_dir:
        config = ARCHS["opt-6.7b"]
        config.architectures = ["OPTForCausalLM"]
        config.save_pretrained(model_dir)
        engine = VLLMEngine(
            model_dir, dtype="bfloat16", model_eos_ids=(2,), load_format="dummy", max_model_len=64
        )
        try:
            t0 = time.perf_counter()
            engine.sample(prefixes[:8], keys[:8], d)  # start-up: weights, KV cache, graphs
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            engine.sample(prefixes, keys, d)  # warm-up at the measured shape
            warmup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            engine.sample(prefixes, keys, d)
            sample_s = time.perf_counter() - t0
            found = engine.key()
        finally:
            engine.close()
    return {
        "vllm": found["version"],
        "runner": found["runner"],
        "rows": batch,
        "new_tokens": new_tokens,
        "start_s": start_s,
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "sample_tokens_per_s": batch * new_tokens / sample_s,
    }


def bench_train(peak: float | None, steps: int = 20, batch: int = 64, width: int = 30) -> dict:
    from rdx.lm.archs import n_params, random_lm
    from rdx.method.objective import token_logprobs

    model = random_lm("gpt2", dtype=torch.float32, device="cuda").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.randint(0, 50257, (batch, width), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
        loss = -token_logprobs(logits, x[:, 1:]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):  # warm-up: kernels, allocator, AdamW's state
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / steps
    n = n_params(model)
    tokens = batch * (width - 1)
    flops = 6 * n * tokens  # forward + backward, weights only (attention is small at T=30)
    out = {
        "params": n,
        "batch": batch,
        "tokens_per_step": tokens,
        "warmup_s": warmup_s,
        "step_s": step_s,
        "tflops": flops / step_s / 1e12,
    }
    out["mfu"] = out["tflops"] / peak if peak else None
    return out


# THE STEPS, each in a child process ------------------------------------------------------


def one_line(err: BaseException | str) -> str:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return (text.strip().splitlines() or ["?"])[0][:300]


def step_argv(name: str, args: argparse.Namespace) -> list[str]:
    """The child's command for step `name` (run with the interpreter running this one)."""
    if name == "tests":
        return [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-s", "tests/lm/test_gpu.py"]
    argv = [sys.executable, "-m", "benchmarks.gpu_check", "--step", name]
    argv += ["--batch", str(args.batch)]
    if args.peak_tflops is not None:
        argv += ["--peak-tflops", str(args.peak_tflops)]
    return argv


def run_child(argv: list[str], budget: float, result_file: Path) -> dict:
    """Run one step's process (and its children: vLLM's engine) in a session of its own,
    killed as a whole at `budget` s. The step's figures come back through `result_file`
    (a benchmark child) or its exit status (pytest)."""
    t0 = time.perf_counter()
    env = {**os.environ, "RDX_GPU_CHECK_RESULT": str(result_file), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"status": "timeout", "error": f"over its {budget:.0f} s budget", "s": budget}
    out: dict = {"s": time.perf_counter() - t0, "returncode": rc}
    figures = json.loads(result_file.read_text()) if result_file.exists() else None
    if isinstance(figures, dict):
        out |= figures
    if "error" in out:
        out["status"] = "failed"
    elif rc != 0:
        out |= {"status": "failed", "error": f"exit status {rc}"}
    else:
        out["status"] = "skipped" if "skipped" in out else "ok"
    return out


def run_steps(steps: list[tuple[str, list[str], float]], out: Path, result: dict) -> dict:
    """Each step in turn, the JSON rewritten before the first and after each one."""
    from rdx.records import first_non_finite, write_json

    result["steps"] = {name: {"status": "pending"} for name, _, _ in steps}
    write_json(out, result)
    for name, argv, budget in steps:
        print(f"gpu-check: {name} (≤ {budget:.0f} s)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            got = run_child(argv, budget, Path(tmp) / "result.json")
        bad = first_non_finite(got)
        if bad is not None:
            got = {"status": "failed", "error": f"{bad[0]}={bad[1]} is not finite", "s": got["s"]}
        result["steps"][name] = got
        write_json(out, result)
        why = f": {got['error']}" if "error" in got else ""
        print(f"gpu-check: {name} {got['status']}{why}", flush=True)
    return result


def child(name: str, args: argparse.Namespace) -> int:
    """`--step NAME`: run one benchmark, its figures (or its error, one line) written to
    $RDX_GPU_CHECK_RESULT."""
    target = Path(os.environ.get("RDX_GPU_CHECK_RESULT", f"gpu-check-{name}.json"))
    try:
        if name == "beta":
            figures = bench_beta(args.batch)
        elif name == "train":
            name_ = torch.cuda.get_device_name(0)
            figures = bench_train(peak_tflops(name_, args.peak_tflops))
        elif name == "beta_vllm":
            figures = bench_beta_vllm(args.batch)
        else:
            raise ValueError(f"--step {name}: expected one of beta, train, beta_vllm")
    except Exception as err:  # the parent records it and runs the next step
        target.write_text(json.dumps({"error": one_line(err)}))
        raise
    target.write_text(json.dumps(figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/gpu.json"))
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--batch", type=int, default=512, help="β sampling rows per batch")
    ap.add_argument("--only", default=None, help="comma-separated steps to run (default: all)")
    ap.add_argument("--step", default=None, help=argparse.SUPPRESS)  # a child's one step
    args = ap.parse_args(argv)
    if args.step is not None:
        return child(args.step, args)
    known = [n for n, _, _ in PLAN]
    names = known if args.only is None else args.only.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        ap.error(f"--only {args.only}: unknown step(s) {unknown}; expected some of {known}")
    print(f"gpu-check plan ({sys.executable}):")
    for name, what, budget in PLAN:
        if name in names:
            print(f"  {name:9s} ≤{budget:4d} s  {what}")
    from rdx.lm.vllm_mapping import vllm_problem

    if "beta_vllm" in names and vllm_problem() is not None:
        print(f"  beta_vllm will be skipped: {vllm_problem()}")
    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}): nothing run, no JSON written")
        return 0
    from rdx.records import git_sha

    name = torch.cuda.get_device_name(0)
    result: dict = {
        "device": name,
        "torch": torch.__version__,
        "python": sys.executable,
        "git": git_sha(),
        "peak_bf16_tflops": peak_tflops(name, args.peak_tflops),
    }
    steps = [(n, step_argv(n, args), budget) for n, _, budget in PLAN if n in names]
    result = run_steps(steps, args.out, result)
    for key, value in result["steps"].items():
        print(key, value)
    print(f"wrote {args.out}")
    return 0 if all(v["status"] in ("ok", "skipped") for v in result["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
