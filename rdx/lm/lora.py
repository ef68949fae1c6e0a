"""`model.trainable=lora`: LoRA adapters on π through peft, for ≥1B targets.

The paper froze all but the last layer of its ≥1B targets for lack of memory (Table 2);
LoRA trains low-rank adapters instead, so only the adapters get gradients and Adam state,
and checkpoints hold the adapters alone (the frozen base is rebuilt from its hub weights or
its seed, the same way every time). Adapter dropout defaults to 0: π's probabilities enter
the importance weight π̄/β and the −ln π̄ term (DESIGN §2, §11), and dropout noise there
would bias both, as it would in the base model, which runs in eval mode.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

log = logging.getLogger("rdx")


def default_targets(model_type: str) -> list[str] | None:
    """peft's usual modules for an architecture (GPT-2: c_attn; OPT: q_proj, v_proj), or
    None where peft has none (XGLM: conf/model/xglm-1.7b.yaml names them)."""
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return list(targets) if targets else None


def add_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: float,
    target_modules: list[str] | tuple[str, ...] | None = None,
    dropout: float = 0.0,
) -> PeftModel:
    """`model` with LoRA adapters on `target_modules` (None: peft's default for the
    architecture); every base weight frozen. Adapters start at B = 0, so the wrapped model
    computes what `model` did until it trains."""
    model_type = getattr(model.config, "model_type", "?")
    targets = list(target_modules) if target_modules else default_targets(model_type)
    if not targets:
        raise ValueError(
            f"model.lora.target_modules=null: peft has no default modules for {model_type}; "
            "name them, e.g. model.lora.target_modules=[q_proj,v_proj]"
        )
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(
            f"model.lora.target_modules={targets}: {model_type} has no module {missing[0]!r}"
        )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        # GPT-2's Conv1D stores weights transposed; peft would warn and set this itself.
        fan_in_fan_out=model_type == "gpt2",
    )
    model = get_peft_model(model, config)
    trained, total = model.get_nb_trainable_parameters()
    log.info("lora on %s: %d trainable parameters of %d", ",".join(targets), trained, total)
    return model


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of π: the adapters of a LoRA model, else every weight."""
    if isinstance(model, PeftModel):
        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return model.state_dict()


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """The inverse of trainable_state; every stored adapter tensor must land on the model."""
    if not isinstance(model, PeftModel):
        model.load_state_dict(state)
        return
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"checkpoint adapters do not fit this model: {unexpected[:3]}")


def merged_copy(model: PeftModel) -> torch.nn.Module:
    """A plain transformers model with the adapters merged into its weights (for export or
    serving without peft); `model` itself is left as it is."""
    return copy.deepcopy(model).merge_and_unload()


def lora_axes(trainable: str, lora: Any) -> dict[str, Any]:
    """The LoRA settings as summary.json axes (null unless model.trainable=lora)."""
    on = trainable == "lora"
    return {
        "lora_r": lora.r if on else None,
        "lora_alpha": lora.alpha if on else None,
        "lora_target_modules": list(lora.target_modules or []) or None if on else None,
        "lora_dropout": lora.dropout if on else None,
    }
