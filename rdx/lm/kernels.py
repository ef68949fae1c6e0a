"""Faster fp32 CPU kernels for the models' linear layers and GPT-2's GELU (`trainer.kernels`).

Why: on CPU, torch runs an fp32 `nn.Linear` (and GPT-2's `Conv1D`) as `addmm`, which goes to
MKL's sgemm. On AMD CPUs MKL takes a generic code path at 35–46 % of what oneDNN reaches
on the same matrices (benchmarks/peak.py); torch ships oneDNN but routes only bf16/fp16
matmuls to it. `onednn` sends the linear layers' three products (forward, input gradient,
weight gradient) through oneDNN's `_linear_pointwise` op, and replaces GPT-2's `gelu_new`
(eight elementwise kernels) by torch's fused tanh GELU, the same function.

The results are fp32 products accumulated in another order: logits move by ~1e-6, so a
seeded run is reproducible for a given rdx version and `trainer.kernels`, not bit-equal to
`trainer.kernels=torch` (tests/lm/test_kernels.py states the tolerance). Only CPU float32
tensors outside autocast take the route; anything else falls back to torch's own path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.activations import NewGELUActivation
from transformers.pytorch_utils import Conv1D

from rdx.lm import KERNELS


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (N, in) · weight (out, in)ᵀ + bias, through oneDNN (strided views are fine)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b with every product through oneDNN: ∂x = ∂y W, ∂W = ∂yᵀ x, ∂b = Σ ∂y."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = _onednn(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
        gw = _onednn(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None
        gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


# Below this many rows oneDNN's per-call set-up outweighs its faster GEMM (measured on the
# tiny models: 14 µs vs MKL's 3 µs at 1 row, level at 16, 1.6-2.3x faster from 64 rows).
MIN_ROWS = 16


def _eligible(x: Tensor, weight: Tensor) -> bool:
    return (
        x.numel() >= MIN_ROWS * x.shape[-1]
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear(x, weight, bias) through oneDNN where eligible, with autograd."""
    if not _eligible(x, weight):
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    y = _OneDNNLinear.apply(flat, weight, bias) if needs_grad else _onednn(flat, weight, bias)
    return y.view(*x.shape[:-1], weight.shape[0])


class _Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


class _Conv1D(Conv1D):
    """GPT-2's Conv1D stores its weight (in, out): its transpose is a free view."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight.t(), self.bias)


class _TanhGELU(NewGELUActivation):
    """gelu_new is 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))): torch's tanh GELU, fused."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


_SWAPS = {nn.Linear: _Linear, Conv1D: _Conv1D, NewGELUActivation: _TanhGELU}


def _check(kernels: str) -> None:
    if kernels not in KERNELS:
        raise ValueError(f"trainer.kernels={kernels!r}: expected one of {', '.join(KERNELS)}")


def effective(kernels: str, device: torch.device, dtype: torch.dtype) -> str:
    """The kernels a model on `device` in `dtype` actually runs: the oneDNN route is for CPU
    float32 only (a cache key records this, so GPU runs share artifacts whatever is asked)."""
    _check(kernels)
    fast = kernels == "onednn" and device.type == "cpu" and dtype == torch.float32
    return "onednn" if fast and available() else "torch"


def use_kernels(model: nn.Module, kernels: str) -> nn.Module:
    """Route `model`'s linear layers and GELUs to `kernels` ("onednn" or "torch"), in place.

    Modules change class only (to a subclass with another forward): parameters, state
    dicts, isinstance checks and deepcopy are unchanged, and "torch" switches back.
    """
    _check(kernels)
    onednn = kernels == "onednn" and available()
    for module in model.modules():
        for plain, fast in _SWAPS.items():
            if type(module) is plain and onednn:
                module.__class__ = fast
            elif type(module) is fast and not onednn:
                module.__class__ = plain
    return model
