"""Paper-scale cost of Table 1 on one 8×H100 node, from FLOP counts and stated utilisations.

Nothing here is measured: it is arithmetic on the paper's sizes (docs/design.md §9: 50k prefixes ×
10 samples per attribute, p=4, T=30, 5 epochs, GPT2-124M target, OPT-6.7B behavior, a
BERT-base reward) and on utilisation assumptions that are stated beside the result, so a
reader can replace them with their own. Counts follow the usual estimates: a forward pass
costs 2·N FLOPs per token, a training step 6·N.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.common import Figure

H100_BF16_DENSE = 989e12  # FLOP/s per H100 SXM, dense bf16 (NVIDIA's datasheet figure)


@dataclass(frozen=True)
class PaperScale:
    prefixes: int = 50_000
    samples_per_prefix: int = 10
    prefix_len: int = 4
    total_len: int = 30
    attributes: int = 6
    arms: int = 9  # N/A + random and quantile at γ ∈ {.2, .4, .6, .8}
    epochs: int = 5
    target_params: float = 124e6  # GPT2-124M (its tied 50k-vocab head is real compute)
    behavior_params: float = 6.7e9  # OPT-6.7B
    reward_params: float = 110e6  # BERT-base
    gpus: int = 8
    peak: float = H100_BF16_DENSE
    # Assumed model-FLOP utilisations (fractions of peak): decoding is memory-bound even at
    # large batch; a 124M model's training steps are too small to fill an H100.
    util_decode: float = 0.15
    util_forward: float = 0.5
    util_train: float = 0.3


def gpu_seconds(s: PaperScale) -> dict[str, float]:
    """GPU-seconds of each stage of the whole grid (attributes × arms runs)."""
    n = s.prefixes * s.samples_per_prefix  # trajectories per attribute
    new = s.total_len - s.prefix_len
    sample = n * new * 2 * s.behavior_params / (s.peak * s.util_decode)
    score = n * s.total_len * 2 * (s.behavior_params + s.reward_params) / (s.peak * s.util_forward)
    train = s.epochs * n * s.total_len * 6 * s.target_params / (s.peak * s.util_train)
    # Each step also decodes π greedily for the batch's reward metric and scores it with R.
    greedy = s.epochs * n * new * 2 * s.target_params / (s.peak * s.util_decode)
    greedy += s.epochs * n * s.total_len * 2 * s.reward_params / (s.peak * s.util_forward)
    runs = s.attributes * s.arms
    return {
        "behavior sampling": s.attributes * sample,
        "behavior + reward scoring": s.attributes * score,
        "target training": runs * train,
        "per-step greedy reward metric": runs * greedy,
    }


def run(s: PaperScale | None = None) -> list[Figure]:
    s = s or PaperScale()
    parts = gpu_seconds(s)
    hours = sum(parts.values()) / s.gpus / 3600
    detail = ", ".join(f"{k} {v / 3600:.1f}" for k, v in parts.items())
    return [
        Figure(
            f"Table 1 at paper scale, one {s.gpus}×H100 node (estimate)",
            hours,
            "h",
            note=f"GPU-hours: {detail}; assumed utilisation decode {s.util_decode:.0%}, "
            f"forward {s.util_forward:.0%}, training {s.util_train:.0%} of "
            f"{s.peak / 1e12:.0f} TFLOP/s bf16; jobs packed perfectly on {s.gpus} GPUs "
            "(OPT-6.7B in bf16, 13.4 GB, fits one GPU)",
        )
    ]
