"""Typed run configuration, validated once at the edge (DESIGN §5).

Hydra composes plain YAML; `validate` turns the composed DictConfig into these frozen
dataclasses or raises ConfigError with one line naming the key, the value and what is
allowed. This module imports no torch, so bad input fails in about a second.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from rdx import hub
from rdx.lm import KERNELS
from rdx.method import DROPOUT_MODES, GAMMA_MODES


class ConfigError(ValueError):
    """A user error in the configuration; the message is one line, shown without traceback."""


@dataclass(frozen=True)
class ModelConfig:
    """Target π."""

    name: str = "tiny"
    hub: str | None = None  # Hugging Face name; None = rdx's tiny model
    init: str = "random"  # random | behavior | pretrained (hub weights)
    trainable: str = "all"  # all | last_layer


@dataclass(frozen=True)
class BehaviorConfig:
    """Behavior β: tiny GPT-2 pretrained on the corpus, or a hub causal LM."""

    name: str = "tiny"
    hub: str | None = None
    vocab_size: int = 2048
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    pretrain_steps: int = 300
    pretrain_lr: float = 2e-3
    pretrain_batch_size: int = 64


@dataclass(frozen=True)
class RewardConfig:
    """Reward classifier R: tiny BERT trained on the task labels, or a hub classifier."""

    name: str = "tiny"
    hub: str | None = None
    output: str = "logit"  # logit | prob
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    train_epochs: int = 2
    train_lr: float = 1e-3
    train_batch_size: int = 64


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "synthetic"
    path: str | None = None
    hub: bool = False
    n_per_attribute: int | None = 3000
    max_words: int = 30


@dataclass(frozen=True)
class SamplingConfig:
    """How β's trajectories are drawn, and how π decodes for its metrics (DESIGN §1)."""

    prefix_len: int = 4
    total_len: int = 30
    num_prefixes: int = 1024
    samples_per_prefix: int = 4
    temperature: float = 0.4
    eval_prefixes: int = 128
    batch_size: int = 512
    stop_at_eos: bool = True  # false: every continuation is T−p tokens, EOS an ordinary token
    top_k: int | None = None  # sample among the k most likely tokens (None: all)
    repetition_penalty: float = 1.0  # HF's: divide (or multiply, if < 0) seen tokens' logits
    prefix_pool: str = "attribute"  # attribute | task (both labels; the label picks R's class)
    fresh_per_epoch: int = 1  # k sample sets of β; epoch e trains on set e mod k
    allow_fewer_prefixes: bool = True  # false: fewer prefixes than num_prefixes is an error
    shards: int = 1  # prepare: β's rows split over this many shard jobs (rdx.pipeline.shards)
    shard: int | None = None  # set per shard job: build this shard's chunks only
    chunk_rows: int = 8192  # rows per checkpointed chunk of β's sampling and scoring


# Rows per scoring forward of β's trajectories (rdx.pipeline.shards): chunks hold whole blocks.
SCORE_BLOCK = 64


@dataclass(frozen=True)
class DropoutConfig:
    mode: str = "quantile"
    delta: float | None = None
    random_replacement: bool = False  # random mode: the authors' with-replacement draw


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    is_clip: float | None = 1.0
    entropy: bool = True
    score_prefix: bool = False
    device: str = "auto"
    precision: str = "fp32"
    micro_batch: int | None = None  # rows per forward pass (None: the batch); halves on OOM
    threads: int | None = None
    log_every: int = 10
    kernels: str = "onednn"  # onednn | torch: fp32 CPU linear layers (rdx.lm.kernels)
    epoch_metrics: str = "last"  # last | every: epochs that compute train/reward and eval/*


@dataclass(frozen=True)
class LoggerConfig:
    kind: str = "wandb"  # wandb | none
    project: str = "rdx"
    entity: str | None = None
    mode: str = "auto"  # auto | online | offline | disabled
    group: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlgoConfig:
    """How π is trained (conf/algo/): offpolicy is Eq. 7 on β's stored samples (DESIGN §2);
    ppo and dpo are the harmlessness experiment's arms (DESIGN §10, paper §7.5)."""

    name: str = "offpolicy"  # offpolicy | ppo | dpo
    score: str = "r_hat"  # ppo: dropout thresholds r_hat = R + ln π_ref, or reward (R alone)
    new_tokens: int = 24  # ppo/dpo: response tokens per prompt (rollouts and evaluation)
    temperature: float = 1.0  # ppo: rollout sampling temperature
    ppo_epochs: int = 2  # optimisation passes over each rollout batch
    minibatch: int = 16  # rows per PPO gradient step
    clip: float = 0.2  # PPO ratio clip ε
    vf_clip: float | None = 0.2  # value clip around the rollout's values; null = off
    vf_coef: float = 0.1  # weight of the value loss
    kl_coef: float = 0.05  # per-token KL penalty to π_ref in PPO's reward
    discount: float = 1.0  # GAE γ (named apart from the dropout rate gamma)
    gae_lambda: float = 0.95
    beta: float = 0.1  # dpo: the KL strength β of −ln σ(β Δ)
    eval_prompts: int = 64  # held-out prompts for eval/* every epoch


@dataclass(frozen=True)
class Config:
    attribute: str = "positive"
    gamma: float | None = 0.8  # None when the dropout mode ignores it
    seed: int = 0
    stage: str = "train"
    cache_dir: str = "~/.cache/rdx"
    model: ModelConfig = field(default_factory=ModelConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: str | None = None  # the sweep preset's name, for W&B groups and tables
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    resume: str = "auto"  # never | auto | force: what to do with a run dir holding a run


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """Coerce one YAML value to the field's annotated type or raise ConfigError."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | globals())  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(key, value, inner)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: expected a list")
        return tuple(str(v) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r}: expected an integer")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # inf and nan pass every `> 0` check
                raise ConfigError(f"{key}={value!r}: expected a finite number")
            return float(value)
        raise ConfigError(f"{key}={value!r}: expected a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={value!r}: expected a string")
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _build(cls: type, node: Any, prefix: str = "") -> Any:
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix.rstrip('.')}={node!r}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(node) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _convert(prefix + k, v, fields[k].type) for k, v in node.items()}
    return cls(**kwargs)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")


def _positive(key: str, value: int | float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key}={value!r}: expected a number > 0")


def validate(raw: dict[str, Any]) -> Config:
    """Check every value before any work; `raw` is the composed config as a plain dict."""
    _check_launcher(raw.get("launcher"))
    raw = {k: v for k, v in raw.items() if k not in ("hydra", "launcher", "local", "experiment")}
    # γ means nothing to none/threshold dropout: accept any value there and record null.
    mode = (raw.get("dropout") or {}).get("mode")
    _choice("dropout.mode", mode, DROPOUT_MODES)
    if mode in ("none", "threshold"):
        raw["gamma"] = None
    cfg: Config = _build(Config, raw)

    if mode in GAMMA_MODES:
        if cfg.gamma is None or not 0.0 <= cfg.gamma < 1.0:
            raise ConfigError(
                f"gamma={cfg.gamma!r}: expected a number in [0, 1) for {mode} dropout"
            )
        if mode == "quantile" and cfg.trainer.batch_size < 2:
            raise ConfigError(
                f"trainer.batch_size={cfg.trainer.batch_size}: "
                "quantile dropout needs a batch of >= 2"
            )
    if mode == "threshold" and cfg.dropout.delta is None:
        raise ConfigError("dropout.delta=None: threshold dropout needs a number (keep r̂ > delta)")

    _choice("stage", cfg.stage, ("prepare", "train"))
    _choice("resume", cfg.resume, ("never", "auto", "force"))
    if not 0 <= cfg.seed < 2**32:  # seeds derived from it must fit torch's 64-bit seed
        raise ConfigError(f"seed={cfg.seed}: expected an integer in [0, 2**32)")
    _choice("model.init", cfg.model.init, ("random", "behavior", "pretrained"))
    _choice("model.trainable", cfg.model.trainable, ("all", "last_layer"))
    _choice("reward.output", cfg.reward.output, ("logit", "prob"))
    _choice("trainer.precision", cfg.trainer.precision, ("fp32", "bf16", "fp16"))
    _choice("trainer.kernels", cfg.trainer.kernels, KERNELS)
    _choice("trainer.epoch_metrics", cfg.trainer.epoch_metrics, ("last", "every"))
    _choice("logger.kind", cfg.logger.kind, ("wandb", "none"))
    _choice("logger.mode", cfg.logger.mode, ("auto", "online", "offline", "disabled"))
    if cfg.trainer.device != "auto" and not cfg.trainer.device.startswith(("cpu", "cuda", "mps")):
        raise ConfigError(
            f"trainer.device={cfg.trainer.device!r}: expected auto, cpu, cuda[:N] or mps"
        )
    if cfg.model.init == "pretrained" and cfg.model.hub is None:
        raise ConfigError(
            "model.init='pretrained': needs a hub model (model=gpt2 ...); use random or behavior"
        )
    if (
        cfg.model.init == "behavior"
        and cfg.model.hub is not None
        and cfg.model.hub != cfg.behavior.hub
    ):
        raise ConfigError(
            f"model.init='behavior': target {cfg.model.hub!r} and "
            f"behavior {cfg.behavior.hub!r} differ"
        )

    s = cfg.sampling
    for key in ("prefix_len", "num_prefixes", "samples_per_prefix", "eval_prefixes", "batch_size"):
        _positive(f"sampling.{key}", getattr(s, key))
    _positive("sampling.shards", s.shards)
    _positive("sampling.chunk_rows", s.chunk_rows)
    if s.chunk_rows % SCORE_BLOCK:
        raise ConfigError(
            f"sampling.chunk_rows={s.chunk_rows}: must be a multiple of {SCORE_BLOCK} "
            "(the scoring block, rdx.pipeline.shards)"
        )
    if s.shard is not None and not 0 <= s.shard < s.shards:
        raise ConfigError(f"sampling.shard={s.shard}: must be in [0, sampling.shards={s.shards})")
    if s.total_len <= s.prefix_len:
        raise ConfigError(
            f"sampling.total_len={s.total_len}: must exceed sampling.prefix_len={s.prefix_len}"
        )
    _positive("sampling.temperature", s.temperature)
    _positive("sampling.top_k", s.top_k, allow_none=True)
    _positive("sampling.repetition_penalty", s.repetition_penalty)
    _positive("sampling.fresh_per_epoch", s.fresh_per_epoch)
    _choice("sampling.prefix_pool", s.prefix_pool, ("attribute", "task"))
    if mode in ("prompt_quantile",) and s.samples_per_prefix < 2:
        raise ConfigError(
            f"sampling.samples_per_prefix={s.samples_per_prefix}: prompt_quantile dropout "
            "ranks each prefix's samples, so it needs >= 2"
        )
    for key in ("epochs", "batch_size", "lr", "log_every"):
        _positive(f"trainer.{key}", getattr(cfg.trainer, key))
    _positive("trainer.is_clip", cfg.trainer.is_clip, allow_none=True)
    _positive("trainer.micro_batch", cfg.trainer.micro_batch, allow_none=True)
    _positive("trainer.threads", cfg.trainer.threads, allow_none=True)
    _positive("dataset.n_per_attribute", cfg.dataset.n_per_attribute, allow_none=True)
    _positive("dataset.max_words", cfg.dataset.max_words)
    trajectories = s.num_prefixes * s.samples_per_prefix
    if cfg.trainer.batch_size > trajectories:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size}: larger than the {trajectories} "
            f"trajectories (sampling.num_prefixes={s.num_prefixes} x "
            f"sampling.samples_per_prefix={s.samples_per_prefix})"
        )
    for key in (
        "n_layer",
        "n_embd",
        "n_head",
        "vocab_size",
        "pretrain_steps",
        "pretrain_batch_size",
    ):
        _positive(f"behavior.{key}", getattr(cfg.behavior, key))
    if cfg.behavior.n_embd % cfg.behavior.n_head:
        raise ConfigError(
            f"behavior.n_embd={cfg.behavior.n_embd}: must be divisible by behavior.n_head="
            f"{cfg.behavior.n_head}"
        )
    if cfg.reward.n_embd % cfg.reward.n_head:
        raise ConfigError(
            f"reward.n_embd={cfg.reward.n_embd}: must be divisible by "
            f"reward.n_head={cfg.reward.n_head}"
        )

    if cfg.reward.train_epochs < 0 or (cfg.reward.train_epochs == 0 and cfg.reward.hub is None):
        raise ConfigError(
            f"reward.train_epochs={cfg.reward.train_epochs}: expected >= 1 "
            "(0 = use a hub classifier as it is, only with reward.hub)"
        )
    for key, name in (
        ("model.hub", cfg.model.hub),
        ("behavior.hub", cfg.behavior.hub),
        ("reward.hub", cfg.reward.hub),
    ):
        problem = hub.check_name(key, name)
        if problem is not None:
            raise ConfigError(problem)

    if cfg.algo.name == "offpolicy":
        _check_data(cfg)
    else:
        _check_algo(cfg)
    return dataclasses.replace(cfg, cache_dir=os.path.expanduser(cfg.cache_dir))


def _check_launcher(launcher: Any) -> None:
    """The launcher group's own keys (conf/launcher/*.yaml), which Config does not hold."""
    if not isinstance(launcher, dict):
        return
    for key in ("max_parallel", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism"):
        value = launcher.get(key)
        if key in launcher and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"launcher.{key}={value!r}: expected an integer >= 1")


def _check_data(cfg: Config) -> None:
    from rdx.data.corpus import ATTRIBUTES, DataError
    from rdx.data.loaders import check_source

    known = ", ".join(ATTRIBUTES)
    if cfg.dataset.name not in ATTRIBUTES:
        raise ConfigError(f"dataset.name={cfg.dataset.name!r}: expected one of {known}")
    attributes = [a for attrs in ATTRIBUTES[cfg.dataset.name].values() for a in attrs]
    if cfg.attribute not in attributes:
        raise ConfigError(
            f"attribute={cfg.attribute!r}: dataset {cfg.dataset.name} has {', '.join(attributes)}"
        )
    try:
        check_source(cfg.dataset.name, cfg.dataset.path, cfg.dataset.hub)
    except DataError as err:
        raise ConfigError(str(err)) from None


def _check_algo(cfg: Config) -> None:
    """PPO and DPO (the harmlessness experiment): preference data, dropout that applies."""
    from rdx.data.corpus import DataError
    from rdx.data.hh import check_source

    a = cfg.algo
    _choice("algo.name", a.name, ("offpolicy", "ppo", "dpo"))
    mode = cfg.dropout.mode
    if a.name == "dpo" and mode != "none":
        raise ConfigError(
            f"dropout={mode} with algo=dpo: reward dropout does not apply to DPO, which "
            "trains on preference pairs without explicit rewards (paper footnote 11); "
            "use dropout=none"
        )
    if mode not in ("none", "quantile", "random", "threshold"):
        raise ConfigError(
            f"dropout={mode} with algo={a.name}: PPO drops per rollout batch; expected one "
            "of none, quantile, random, threshold"
        )
    _choice("algo.score", a.score, ("r_hat", "reward"))
    for key in ("new_tokens", "temperature", "ppo_epochs", "minibatch", "clip", "beta"):
        _positive(f"algo.{key}", getattr(a, key))
    _positive("algo.eval_prompts", a.eval_prompts)
    _positive("algo.vf_clip", a.vf_clip, allow_none=True)
    for key in ("vf_coef", "kl_coef"):
        if getattr(a, key) < 0:
            raise ConfigError(f"algo.{key}={getattr(a, key)!r}: expected a number >= 0")
    for key in ("discount", "gae_lambda"):
        if not 0.0 <= getattr(a, key) <= 1.0:
            raise ConfigError(f"algo.{key}={getattr(a, key)!r}: expected a number in [0, 1]")
    try:
        check_source(cfg.dataset.name, cfg.dataset.path, cfg.dataset.hub)
    except DataError as err:
        raise ConfigError(str(err)) from None


def to_dict(cfg: Config) -> dict[str, Any]:
    """The validated config as plain data (for config.yaml, W&B and cache keys)."""
    return dataclasses.asdict(cfg)
