"""`scripts/gpu-check`: the GPU tests and a throughput benchmark in ≤ 10 minutes on one GPU.

    python -m benchmarks.gpu_check                 # without CUDA: prints the plan, exits 0
    python -m benchmarks.gpu_check --out benchmarks/gpu.json

Steps (the plan's budgets are estimates; scripts/gpu-check stops the whole at 600 s):
  1. pytest -m gpu tests/lm/test_gpu.py (sampler, scoring, bf16 step, hub architectures).
  2. β sampling: OPT-6.7B's architecture at random init, bf16, keyed draws, tokens/s at
     sampling.batch_size rows × 26 new tokens (the paper's p=4, T=30), and β scoring
     (sequence_prob) tokens/s.
  3. π training: GPT2-124M's architecture, bf16 autocast, AdamW, batch 64 × 30 tokens:
     step time and MFU against the GPU's bf16 dense peak (given by --peak-tflops, or from
     the device name for H100/H200/A100).
  4. β sampling with sampling.engine=vllm (rdx.lm.engines.VLLMEngine): the same rows and
     options as step 2 on vLLM's dummy (random) OPT-6.7B weights, one seeded request per
     row; its start-up is timed apart. Last, because vLLM keeps the memory it claims.
     Skipped, with the reason in the JSON, where vLLM is not installed.
Random weights give the same FLOPs and memory traffic as trained ones; the token counts
of a random model's samples are fixed (stop_at_eos=False), as the authors' β's were.
The JSON is written beside make bench's benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

# bf16 dense tensor-core peaks (TFLOPS), NVIDIA's data sheets (SXM parts).
PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
PLAN = [
    ("tests", "pytest -m gpu tests/lm/test_gpu.py", 240),
    ("beta", "OPT-6.7B arch (random, bf16): sample 512 rows x 26 tokens, score 2048 rows", 150),
    ("train", "GPT2-124M arch (random, bf16 autocast): 20 AdamW steps of 64 x 30 tokens", 90),
    ("beta_vllm", "OPT-6.7B arch (vLLM dummy weights, bf16): sample 512 rows x 26 tokens", 120),
]


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

    run()  # warm-up: kernels, allocator
    torch.cuda.synchronize()
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
        "sample_s": sample_s,
        "sample_tokens_per_s": batch * new_tokens / sample_s,
        "score_rows": len(seqs),
        "score_s": score_s,
        "score_tokens_per_s": len(seqs) * seqs.tokens.shape[1] / score_s,
        "max_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
    }
    return out  # the model is freed with this frame; main empties the cache


def bench_beta_vllm(batch: int, new_tokens: int = 26) -> dict:
    """β tokens/s through VLLMEngine: OPT-6.7B's config in a temp dir, random weights made
    by vLLM itself (load_format=dummy: no 13 GB checkpoint to write), step 2's options."""
    import tempfile

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
        ARCHS["opt-6.7b"].save_pretrained(model_dir)
        engine = VLLMEngine(
            model_dir, dtype="bfloat16", model_eos_ids=(2,), load_format="dummy", max_model_len=64
        )
        t0 = time.perf_counter()
        engine.sample(prefixes[:8], keys[:8], d)  # start-up (weights, KV cache, graphs) and warm-up
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.sample(prefixes, keys, d)
        sample_s = time.perf_counter() - t0
    import vllm

    return {
        "vllm": vllm.__version__,
        "rows": batch,
        "new_tokens": new_tokens,
        "start_s": start_s,
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

    for _ in range(3):
        step()
    torch.cuda.synchronize()
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
        "step_s": step_s,
        "tflops": flops / step_s / 1e12,
    }
    out["mfu"] = out["tflops"] / peak if peak else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/gpu.json"))
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--batch", type=int, default=512, help="β sampling rows per batch")
    args = ap.parse_args()
    print("gpu-check plan:")
    for name, what, budget in PLAN:
        print(f"  {name:9s} ≤{budget:4d} s  {what}")
    from rdx.lm.vllm_mapping import vllm_problem

    if vllm_problem() is not None:
        print(f"  beta_vllm will be skipped: {vllm_problem()}")
    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}): nothing run, no JSON written")
        return 0
    from rdx.records import git_sha, write_json

    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name, args.peak_tflops)
    result: dict = {
        "device": name,
        "torch": torch.__version__,
        "git": git_sha(),
        "peak_bf16_tflops": peak,
        "steps": {},
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-s", "tests/lm/test_gpu.py"]
    )
    result["steps"]["tests"] = {"returncode": proc.returncode, "s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    result["steps"]["beta"] = {**bench_beta(args.batch), "s": time.perf_counter() - t0}
    torch.cuda.empty_cache()
    t0 = time.perf_counter()
    result["steps"]["train"] = {**bench_train(peak), "s": time.perf_counter() - t0}
    torch.cuda.empty_cache()
    t0 = time.perf_counter()
    result["steps"]["beta_vllm"] = {**bench_beta_vllm(args.batch), "s": time.perf_counter() - t0}
    write_json(args.out, result)
    for key, value in result["steps"].items():
        print(key, value)
    print(f"wrote {args.out}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
