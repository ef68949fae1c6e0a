"""The machine's measured matmul peak, the denominator of every MFU in benchmarks.compute.

    .venv/bin/python -m benchmarks.peak            # n=2048
    .venv/bin/python -m benchmarks.peak --quick    # n=1024

fp32 is measured through both GEMM libraries that CPU torch ships: MKL (what torch.matmul
and nn.Linear run in fp32) and oneDNN (torch's mkldnn_linear, which fp32 model code does not
reach by default). On CPUs where MKL takes a slower code path (MKL on AMD runs an AVX2
kernel) they differ by ~2x; the peak is the faster one, since MFU is against what the
hardware does, not what one library gets out of it. bf16 goes through oneDNN (torch's bf16
matmul path) and is measured only where the CPU has native bf16 dot products.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and model in ("unknown", "", "x86_64"):
                    model = val.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return model, flags


def bf16_support() -> tuple[bool, str]:
    """(supported, reason): native bf16 dot products (avx512_bf16 or AMX) that oneDNN uses."""
    _, flags = _cpuinfo()
    fast = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if not torch.backends.mkldnn.is_available():
        return False, "torch built without oneDNN (mkldnn)"
    if not fast:
        return False, "CPU has neither avx512_bf16 nor amx_bf16: bf16 matmul is emulated"
    return True, "cpu flags: " + ", ".join(fast)


def _best_gflops(fn, n: int, min_time: float) -> float:
    """Best call of at least 3 over at least `min_time` seconds: the peak is what the
    hardware can do, so the best, and over long enough to catch a moment when this shared
    machine's other jobs leave both cores free."""
    fn()
    best, start, reps = float("inf"), time.perf_counter(), 0
    while reps < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2 * n**3 / best / 1e9


def matmul_gflops(n: int, dtype: torch.dtype, min_time: float) -> float:
    """torch.matmul of two square n×n matrices (fp32: MKL sgemm; bf16: oneDNN)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    return _best_gflops(lambda: torch.matmul(a, b), n, min_time)


def onednn_fp32_gflops(n: int, min_time: float) -> float | None:
    """fp32 n×n×n through oneDNN (mkldnn_linear on mkldnn tensors); None if unavailable."""
    if not torch.backends.mkldnn.is_available():
        return None
    g = torch.Generator().manual_seed(0)
    try:
        a = torch.randn(n, n, generator=g).to_mkldnn()
        w = torch.randn(n, n, generator=g).to_mkldnn()
        return _best_gflops(lambda: torch._C._nn.mkldnn_linear(a, w, None), n, min_time)
    except (RuntimeError, AttributeError):
        return None


def measure_peak(quick: bool, *, n: int | None = None, min_time: float | None = None) -> dict:
    """fp32 (and bf16 where native) matmul GFLOP/s, 2·n³ flops per n×n×n product.

    n and min_time (seconds per measurement) default to 1024 and 1 s when quick, 2048 and
    3 s otherwise; tests pass small ones."""
    n = n or (1024 if quick else 2048)
    min_time = (1.0 if quick else 3.0) if min_time is None else min_time
    model, _ = _cpuinfo()
    fp32_mkl = matmul_gflops(n, torch.float32, min_time)
    fp32_onednn = onednn_fp32_gflops(n, min_time)
    fp32 = max(fp32_mkl, fp32_onednn or 0.0)
    bf16_ok, bf16_reason = bf16_support()
    bf16 = matmul_gflops(n, torch.bfloat16, min_time) if bf16_ok else None
    return {
        "cpu": model,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "n": n,
        "fp32_gflops": fp32,  # the MFU denominator
        "fp32_source": "oneDNN" if fp32 > fp32_mkl else "MKL (torch.matmul)",
        "fp32_matmul_gflops": fp32_mkl,  # torch.matmul, what fp32 model code runs
        "fp32_onednn_gflops": fp32_onednn,
        "bf16_supported": bf16_ok,
        "bf16_reason": bf16_reason,
        "bf16_gflops": bf16,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(measure_peak(ap.parse_args().quick), indent=2))
