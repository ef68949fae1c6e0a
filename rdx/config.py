"""Typed run configuration: the one source of every default and every allowed value.

The frozen dataclasses below hold each setting's default and, for a setting with a fixed
set of values, what is allowed (`one_of`). `register()` hands their defaults to Hydra's
ConfigStore as the `rdx_defaults` node that conf/train.yaml composes first, so the YAML
files under conf/ only choose presets: each one holds what differs from these defaults
(tests/cli/test_config.py fails on a YAML value that restates one). `validate` types the
composed DictConfig with OmegaConf's structured configs (these dataclasses as schemas) and
checks every value, raising ConfigError with one line naming the key, the value and what
is allowed. This module imports no torch, so bad input fails in about a second.
Each training algorithm has its own settings class (`ALGOS`: the one list of them).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from rdx import hub
from rdx.lm import KERNELS, vllm_mapping
from rdx.method import BATCH_MODES, DROPOUT_MODES, GAMMA_MODES, PPO_SCORES, SET_MODES


class ConfigError(ValueError):
    """A user error in the configuration; the message is one line, shown without traceback."""


def one_of(*allowed: str, default: str | None = None) -> Any:
    """A setting with a fixed set of values: its default (the first, unless given) and the
    allowed values, in one place; validate() checks it."""
    return field(default=allowed[0] if default is None else default, metadata={"allowed": allowed})


@dataclass(frozen=True)
class LoraConfig:
    """Adapters of `model.trainable=lora` (rdx.lm.lora)."""

    r: int = 8  # rank of each adapter
    alpha: float = 16.0  # scale alpha/r of the adapter's update
    target_modules: tuple[str, ...] | None = None  # None: peft's default for the architecture
    dropout: float = 0.0  # 0: π's probabilities feed the importance weight (docs/design.md)


@dataclass(frozen=True)
class ModelConfig:
    """Target π."""

    name: str = "tiny"
    hub: str | None = None  # a Hugging Face name (or a saved dir); None = rdx's tiny GPT-2
    # random: fresh weights (the paper's Fig. 3a) | behavior: β's | pretrained: the hub's |
    # uniform: every weight from U(−0.05, 0.05), the authors' Fig. 3a init (rdx.lm.models)
    init: str = one_of("random", "behavior", "pretrained", "uniform")
    # last_layer: the paper's ≥1B targets; lora: adapters only (rdx.lm.lora)
    trainable: str = one_of("all", "last_layer", "lora")
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class BehaviorConfig:
    """Behavior β: tiny GPT-2 pretrained on the corpus, or a hub causal LM."""

    name: str = "tiny"
    hub: str | None = None
    vocab_size: int = 2048  # BPE on the corpus; a 50k GPT-2 vocab makes tiny models slow
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    pretrain_steps: int = 300  # ~1.5 passes over the default corpus in ~1 min on 2 cores
    pretrain_lr: float = 2e-3
    pretrain_batch_size: int = 64


@dataclass(frozen=True)
class RewardConfig:
    """Reward classifier R: tiny BERT trained on the task labels, or a hub classifier."""

    name: str = "tiny"
    hub: str | None = None
    output: str = one_of("logit", "prob")  # the raw class logit (authors' code) | softmax
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    train_epochs: int = 2  # 0: use reward.hub as an already fine-tuned classifier
    train_lr: float = 1e-3
    train_batch_size: int = 64
    # R's fine-tune on at most this many of the task's training sentences, a seeded draw
    # (None: all). yelp_polarity splits into ~4.5M sentences; the paper's Yelp has ~444k
    train_max_sentences: int | None = None
    # stop once R's accuracy on its last stop_check_steps training batches and on held-out
    # sentences both reach this (the authors' finetune_BERT.py: 0.95); None: every epoch
    stop_accuracy: float | None = None
    stop_check_steps: int = 200
    # bf16: the fine-tune's forward under bf16 autocast on CUDA (fp32 weights and Adam
    # state; no effect off CUDA, where half-precision matmuls gain nothing)
    train_precision: str = one_of("fp32", "bf16")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "synthetic"
    path: str | None = None  # a local copy of a real dataset (docs/reproduction.md)
    hub: bool = False  # true: load it from the Hugging Face hub
    n_per_attribute: int | None = 3000  # training texts (pairs) per attribute; None: all
    max_words: int = 30  # longer sentences are dropped (paper §6)


@dataclass(frozen=True)
class SamplingConfig:
    """How β's trajectories are drawn, and how π decodes for its metrics (docs/design.md §1;
    paper: p=4, T=30, 50k prefixes × 10). The sampling group (conf/sampling/) sets the
    decoding keys."""

    prefix_len: int = 4  # p: tokens of each sentence given to β
    total_len: int = 30  # T: prefix + continuation tokens
    num_prefixes: int = 1024  # training prefixes per attribute (paper: 50k; CPU-sized)
    samples_per_prefix: int = 4
    # β's sample set: another value draws other prefixes and other continuations from the
    # same β (and R); π's `seed` never changes β's rows, so replicate over both
    seed: int = 0
    temperature: float = 0.4  # the paper's setting "for training stability"
    eval_prefixes: int = 128  # held-out prefixes for eval/* every epoch
    batch_size: int = 512  # prefixes per sampling/scoring batch
    stop_at_eos: bool = True  # false: every continuation is T−p tokens, EOS an ordinary token
    top_k: int | None = None  # sample among the k most likely tokens (None: all)
    repetition_penalty: float = 1.0  # HF's: divide (or multiply, if < 0) seen tokens' logits
    prefix_pool: str = one_of("attribute", "task")  # task: both labels; the label picks R's class
    fresh_per_epoch: int = 1  # k sample sets of β; epoch e trains on set e mod k
    # raw: β's own likelihood (docs/design.md §2); processed: under the penalised,
    # tempered, top-k distribution β sampled from (the authors', rdx.lm.processed)
    behavior_prob: str = one_of("raw", "processed")
    # keep only sentences of at least this many β tokens (the authors: 30; rdx.lm.length);
    # None: off, dataset.max_words filters by words instead
    min_tokens: int | None = None
    # true: β samples every training batch afresh (the authors' Fig. 3; offpolicy/online.py);
    # the stored sets give only the prefixes
    online: bool = False
    allow_fewer_prefixes: bool = True  # false: fewer prefixes than num_prefixes is an error
    shards: int = 1  # prepare: β's rows split over this many shard jobs (offpolicy/shards.py)
    shard: int | None = None  # set per shard job: build this shard's chunks only
    chunk_rows: int = 8192  # rows per checkpointed chunk of β's sampling and scoring
    # what draws β's trajectories: hf, rdx's sampler on the HF model; vllm, vLLM on β's
    # weights (pip install 'rdx[vllm]', CUDA; rdx.lm.engines, docs/scale.md). π decodes with hf.
    engine: str = one_of("hf", "vllm")
    # β_i from: rescore, the HF β's forward over the stored rows (either engine: the numbers
    # evaluation scores with); engine, vLLM's log-probs of its own draws (engine=vllm only)
    likelihood: str = one_of("rescore", "engine")
    # engine=vllm: the share of the GPU's memory vLLM claims at start (its weights and KV
    # cache); the HF β waits on the host meanwhile, R (and π's GPU context) use the rest
    vllm_memory: float = 0.8


# Rows per scoring forward of β's trajectories (offpolicy/shards.py): chunks hold whole blocks.
SCORE_BLOCK = 64


@dataclass(frozen=True)
class DropoutConfig:
    mode: str = one_of(*DROPOUT_MODES, default="quantile")
    delta: float | None = None  # threshold mode: keep r̂ > delta
    random_replacement: bool = False  # random mode: the authors' with-replacement draw


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 64  # the paper's batch size
    # measured on the default (quantile, seed 0, 5 epochs): acc+reward 1.448 at 5e-5, 1.630
    # at 5e-4, 1.643 at 2e-3 (lower held-out likelihood); the paper: 5e-5
    lr: float = 5e-4
    is_clip: float | None = 1.0  # L2 clip of the batch's importance-weight vector; None = off
    entropy: bool = True  # keep the −ln π̄ entropy term of Eq. 7
    score_prefix: bool = False  # also score prefix tokens (the authors' teacher forcing)
    device: str = "auto"  # auto: cuda when available, else cpu
    # autocast; the loss coefficients stay float32
    precision: str = one_of("fp32", "bf16", "fp16")
    micro_batch: int | None = None  # rows per forward pass (None: the batch); halves on OOM
    # torch threads; None = cores ÷ parallel jobs (RDX_PARALLEL_JOBS), at most the cores other
    # processes leave free (rdx/threads.py)
    threads: int | None = None
    log_every: int = 10  # steps between train/* step records
    # fp32 CPU linear layers through oneDNN (~2x MKL's on AMD; docs/performance.md)
    kernels: str = one_of(*KERNELS)
    # the epochs that compute train/reward (greedy decoding) and eval/*: tables read the
    # last, Fig. 3's curves every
    epoch_metrics: str = one_of("last", "every")
    # paper: CE_i and π̄_i as masked means (docs/design.md §2); authors: CE summed over the
    # padded width, π̄ over all positions, pads included (their RLHF_train.py:249, 383)
    normalisation: str = one_of("paper", "authors")
    # single | ddp: one run on k processes, launched by torchrun or launcher=slurm
    # launcher.tasks_per_node=k (rdx.pipeline.ddp)
    strategy: str = one_of("single", "ddp")


@dataclass(frozen=True)
class LoggerConfig:
    kind: str = one_of("wandb", "none")
    project: str = "rdx"
    entity: str | None = None
    # auto = online when an API key is configured, else offline
    mode: str = one_of("auto", "online", "offline", "disabled")
    group: str | None = None  # default: the sweep's name, if any
    tags: tuple[str, ...] = ()


# ALGORITHMS ----------------------------------------------------------------------------
# Each algorithm's settings, with `code` (its prepare and train modules, which
# rdx.pipeline.algos imports) and `ignores` (run settings it does not read: setting one
# away from its default is an error, not silence).

_UNUSED_BY_HARMLESS = (
    "dropout.random_replacement",
    "reward.output",
    "trainer.is_clip",
    "trainer.entropy",
    "trainer.score_prefix",
    "trainer.micro_batch",
    "trainer.kernels",
    "trainer.epoch_metrics",
    *(f"sampling.{f.name}" for f in dataclasses.fields(SamplingConfig)),
)


@dataclass(frozen=True)
class AlgoConfig:
    """How π is trained (`algo=`): one subclass per algorithm."""

    name: str = "offpolicy"
    code: ClassVar[tuple[str, str]]
    ignores: ClassVar[tuple[str, ...]] = ()
    picks: ClassVar[dict[str, str]] = {}  # other groups' options this one selects


@dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    """The paper's Eq. 7 / Algorithm 1: π learns off-policy from β's stored samples."""

    name: str = "offpolicy"
    code: ClassVar = ("rdx.pipeline.offpolicy.artifacts", "rdx.pipeline.offpolicy.trainer")


@dataclass(frozen=True)
class PPOConfig(AlgoConfig):
    """PPO with reward dropout (docs/harmless.md): π samples a response per prompt, the
    frozen π_ref (the SFT policy) plays β's role, the `dropout` rule keeps d_i on each
    rollout batch of trainer.batch_size prompts. Otherwise standard PPO (CleanRL style)."""

    name: str = "ppo"
    score: str = one_of(*PPO_SCORES)  # what dropout thresholds: R + ln π_ref, or R alone
    new_tokens: int = 24  # response budget; the synthetic responses are 8-25 tokens
    temperature: float = 1.0  # rollouts (and the evaluation) sample π itself
    ppo_epochs: int = 2  # passes over each rollout batch (TRL's 4; 2 halves CPU time)
    minibatch: int = 16  # rows per gradient step: 4 per pass of a 64-prompt rollout batch
    clip: float = 0.2  # ratio clip ε (Schulman et al. 2017)
    vf_clip: float | None = 0.2  # value clip around the rollout's values; None = off
    vf_coef: float = 0.1  # value loss weight (TRL's); the value head shares π's trunk
    # per-token KL penalty to π_ref in the reward; measured on experiment=harmless: TRL's
    # 0.05 (at lr 1e-4) let KL reach 10-28 nats/response and R collapse by epoch 3
    kl_coef: float = 0.2
    discount: float = 1.0  # GAE γ (named apart from the dropout rate gamma): no discount
    gae_lambda: float = 0.95  # GAE λ (TRL's lam)
    eval_prompts: int = 64  # held-out prompts scored every epoch
    code: ClassVar = ("rdx.pipeline.harmless.artifacts", "rdx.pipeline.harmless.ppo")
    ignores: ClassVar = _UNUSED_BY_HARMLESS


@dataclass(frozen=True)
class DPOConfig(AlgoConfig):
    """DPO (Rafailov et al. 2023) through TRL's DPOTrainer, the comparison arm of §7.5. It
    has no per-sample reward, so reward dropout does not apply (paper footnote 11):
    `algo=dpo` sets dropout=none, and another dropout is a config error."""

    name: str = "dpo"
    beta: float = 0.1  # β of −ln σ(β Δ): the paper's and TRL's default
    new_tokens: int = 24  # evaluation response tokens
    temperature: float = 1.0  # the evaluation's sampling temperature
    eval_prompts: int = 64  # held-out prompts scored every epoch
    code: ClassVar = ("rdx.pipeline.harmless.artifacts", "rdx.pipeline.harmless.dpo")
    ignores: ClassVar = _UNUSED_BY_HARMLESS
    picks: ClassVar = {"dropout": "none"}


ALGOS: dict[str, type[AlgoConfig]] = {c.name: c for c in (OffPolicyConfig, PPOConfig, DPOConfig)}


@dataclass(frozen=True)
class EvalConfig:
    """How π's text is scored (docs/design.md §3; the authors' settings: docs/reproduction.md)."""

    # authors: π's greedy text vs its one source sentence, nltk sentence-BLEU (method4)
    # averaged, stemmed ROUGE; rdx: π's samples vs every held-out sentence sharing the
    # prefix, corpus sacreBLEU (rdx.pipeline.textmetrics)
    metrics: str = one_of("authors", "rdx")
    # sampling: π's greedy decodes use β's decoding options; plain: none (the authors'
    # generate(do_sample=False): no repetition penalty; rdx.pipeline.offpolicy.decoding)
    greedy: str = one_of("sampling", "plain")
    # true: a judge, a second R (same kind, another init) trained on one half of R's training
    # sentences, scores π's held-out samples as eval/judge_reward beside eval/reward: a gain
    # that R alone sees is π gaming R (rdx.pipeline.offpolicy.artifacts.load_judge)
    judge: bool = False


@dataclass(frozen=True)
class Config:
    # one of the dataset's attributes (synthetic: negative positive world sport business
    # sci_tech)
    attribute: str = "positive"
    # dropout rate γ in [0, 1): quantile drops r̂ below the γ-quantile; None when the
    # dropout mode ignores it (none, threshold)
    gamma: float | None = 0.8
    seed: int = 0
    # prepare: build the cached corpus/models/trajectories/scores only; train: the whole run
    stage: str = one_of("prepare", "train", default="train")
    cache_dir: str = "~/.cache/rdx"  # conf/train.yaml reads RDX_CACHE first
    model: ModelConfig = field(default_factory=ModelConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: str | None = None  # set by sweeps/ presets: W&B group and the tables' sweep column
    algo: AlgoConfig = field(default_factory=OffPolicyConfig)
    # a run dir holding a run: auto = resume/answer only with equal settings; never; force
    resume: str = one_of("never", "auto", "force", default="auto")
    eval: EvalConfig = field(default_factory=EvalConfig)


def defaults() -> dict[str, Any]:
    """Every default as plain data: Hydra's `rdx_defaults` node."""
    return OmegaConf.to_container(OmegaConf.structured(Config))


def register() -> None:
    """Give Hydra the dataclasses' defaults (ConfigStore): `rdx_defaults`, composed first by
    conf/train.yaml, and one `algo` option per algorithm. Stored untyped, so that a bad
    value reaches validate() and its one-line error rather than a composition error."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="rdx_defaults", node=defaults())
    for name, cls in ALGOS.items():
        node = OmegaConf.to_container(OmegaConf.structured(cls))
        # An option that picks another group's option must sit in the global package.
        picks = [{f"override /{group}": option} for group, option in cls.picks.items()]
        store.store(
            group="algo",
            name=name,
            package="_global_",
            node={"defaults": [*picks, "_self_"], "algo": node},
        )


# TYPING --------------------------------------------------------------------------------


def _typed(cls: type, node: Any, prefix: str) -> Any:
    """node (plain data) as an instance of dataclass cls, typed by OmegaConf's structured
    config of cls; a wrong type, an unknown key, a non-finite number or a value outside a
    `one_of` is a ConfigError naming it."""
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix.rstrip('.')}={node!r}: expected a mapping")
    schema = _writable(OmegaConf.structured(cls))
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(schema, node))
    except OmegaConfBaseException as err:
        raise _error(cls, node, prefix, err) from None
    return _checked(obj, prefix)


def _writable(node: DictConfig) -> DictConfig:
    """Frozen dataclasses give read-only schemas, node by node: merging needs them open."""
    OmegaConf.set_readonly(node, False)
    for value in node.values():
        if isinstance(value, DictConfig):
            _writable(value)
    return node


def _error(cls: type, node: dict, prefix: str, err: OmegaConfBaseException) -> ConfigError:
    path = str(err.full_key or err.key or "").split(".")
    owner, value = cls, node
    for part in path[:-1]:  # the dataclass and the raw value the error is about
        owner = typing.get_type_hints(owner)[part]
        value = value.get(part, {}) if isinstance(value, dict) else {}
    key = prefix + ".".join(path)
    names = [f.name for f in dataclasses.fields(owner)]
    if isinstance(err, ConfigKeyError) or path[-1] not in names:
        return ConfigError(f"{key}: unknown key; allowed: {', '.join(sorted(names))}")
    value = value.get(path[-1]) if isinstance(value, dict) else value
    return ConfigError(f"{key}={value!r}: expected {_kind(typing.get_type_hints(owner)[path[-1]])}")


def _kind(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    base = typing.get_origin(args[0]) or args[0]
    if base is tuple:
        return "a list"
    if dataclasses.is_dataclass(base):
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(base, str(base))


def _checked(obj: Any, prefix: str) -> Any:
    """obj with every nested setting checked: a finite number in every float (inf and nan
    pass every `> 0` check), an allowed value in every `one_of`; tuples as tuples."""
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            changes[f.name] = _checked(value, key + ".")
            continue
        if "allowed" in f.metadata:
            _choice(key, value, f.metadata["allowed"])
        floats = float in (hints[f.name], *typing.get_args(hints[f.name]))
        if floats and value is not None and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r}: expected a finite number")
        if isinstance(value, list):  # OmegaConf gives lists for tuple fields
            changes[f.name] = tuple(value)
    return dataclasses.replace(obj, **changes)


def _build(raw: dict[str, Any]) -> Config:
    """The typed Config of the composed plain data; `algo` by the class of algo.name."""
    raw = dict(raw)
    algo = raw.pop("algo", None) or {}
    name = algo.get("name", AlgoConfig.name) if isinstance(algo, dict) else algo
    if name not in ALGOS:
        raise ConfigError(f"algo.name={name!r}: expected one of {', '.join(ALGOS)}")
    cfg = _typed(Config, raw, "")
    return dataclasses.replace(cfg, algo=_typed(ALGOS[name], algo, "algo."))


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
    cfg = _build(raw)

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

    if not 0 <= cfg.seed < 2**32:  # seeds derived from it must fit torch's 64-bit seed
        raise ConfigError(f"seed={cfg.seed}: expected an integer in [0, 2**32)")
    _check_lora(cfg.model.lora)
    for key, value, what in (
        ("trainer.strategy", cfg.trainer.strategy, "ddp"),
        ("model.trainable", cfg.model.trainable, "lora"),
    ):
        if value == what and cfg.algo.name != "offpolicy":  # PPO/DPO train π their own way
            raise ConfigError(f"{key}={what} with algo={cfg.algo.name}: only algo=offpolicy has it")
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
    if not 0.0 < s.vllm_memory <= 1.0:
        raise ConfigError(f"sampling.vllm_memory={s.vllm_memory!r}: expected a number in (0, 1]")
    if s.chunk_rows % SCORE_BLOCK:
        raise ConfigError(
            f"sampling.chunk_rows={s.chunk_rows}: must be a multiple of {SCORE_BLOCK} "
            "(the scoring block, offpolicy/shards.py)"
        )
    if s.shard is not None and not 0 <= s.shard < s.shards:
        raise ConfigError(f"sampling.shard={s.shard}: must be in [0, sampling.shards={s.shards})")
    if s.shard is not None and cfg.stage != "prepare":
        raise ConfigError(
            f"sampling.shard={s.shard} with stage={cfg.stage}: a shard job only prepares; "
            "use python -m rdx.prepare sampling.shards=N (it runs the shard jobs and the merge)"
        )
    if s.total_len <= s.prefix_len:
        raise ConfigError(
            f"sampling.total_len={s.total_len}: must exceed sampling.prefix_len={s.prefix_len}"
        )
    _positive("sampling.temperature", s.temperature)
    _positive("sampling.top_k", s.top_k, allow_none=True)
    _positive("sampling.repetition_penalty", s.repetition_penalty)
    _positive("sampling.fresh_per_epoch", s.fresh_per_epoch)
    _positive("sampling.min_tokens", s.min_tokens, allow_none=True)
    _check_engine(cfg)
    if s.online and mode in SET_MODES:
        raise ConfigError(
            f"dropout={mode} with sampling.online=true: it ranks a stored sample set, which "
            "online sampling does not keep; use none, quantile, random or threshold"
        )
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

    r = cfg.reward
    _positive("reward.train_max_sentences", r.train_max_sentences, allow_none=True)
    _positive("reward.stop_check_steps", r.stop_check_steps)
    if r.stop_accuracy is not None and not 0.0 < r.stop_accuracy <= 1.0:
        raise ConfigError(
            f"reward.stop_accuracy={r.stop_accuracy!r}: expected a number in (0, 1], or null"
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

    if not cfg.cache_dir.strip():  # RDX_CACHE= (an unset shell variable): never the cwd
        raise ConfigError(
            "cache_dir is empty (RDX_CACHE set to nothing, e.g. an unset shell variable?); "
            "the artifacts would be written into the current directory: set RDX_CACHE to a "
            "directory, or unset it for ~/.cache/rdx"
        )
    _check_ignored(cfg)
    if cfg.algo.name == "offpolicy":
        _check_data(cfg)
    else:
        _check_harmless(cfg)
    return dataclasses.replace(cfg, cache_dir=os.path.expanduser(cfg.cache_dir))


def _check_engine(cfg: Config) -> None:
    """sampling.engine and sampling.likelihood: what vLLM can draw as rdx would, and where."""
    s = cfg.sampling
    if s.likelihood == "engine" and s.engine != "vllm":
        raise ConfigError(
            f"sampling.likelihood=engine with sampling.engine={s.engine}: only vllm returns "
            "its own log-probs (hf's β_i is the rescoring); use likelihood=rescore"
        )
    if s.engine != "vllm":
        return
    if s.online:
        raise ConfigError(
            "sampling.online=true with sampling.engine=vllm: online sampling draws each "
            "batch inside training with the HF model; use sampling.engine=hf"
        )
    if cfg.trainer.device.startswith(("cpu", "mps")):
        raise ConfigError(
            f"sampling.engine=vllm with trainer.device={cfg.trainer.device}: vLLM runs on "
            "CUDA; use trainer.device=cuda or sampling.engine=hf"
        )
    problem = vllm_mapping.refusal(
        temperature=s.temperature, top_k=s.top_k, repetition_penalty=s.repetition_penalty
    )
    if problem is not None:
        raise ConfigError(problem)


def _check_lora(lora: LoraConfig) -> None:
    _positive("model.lora.r", lora.r)
    _positive("model.lora.alpha", lora.alpha)
    if not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"model.lora.dropout={lora.dropout!r}: expected a number in [0, 1)")
    if lora.target_modules is not None and not lora.target_modules:
        raise ConfigError("model.lora.target_modules=[]: expected module names, or null")


def _check_launcher(launcher: Any) -> None:
    """The launcher group's own keys (conf/launcher/*.yaml), which Config does not hold."""
    if not isinstance(launcher, dict):
        return
    keys = ("max_parallel", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism")
    for key in (*keys, "tasks_per_node"):  # tasks_per_node: ddp on SLURM
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


def _check_ignored(cfg: Config) -> None:
    """A run setting the algorithm does not read must stay at its default: a value set
    there would be recorded in config.yaml and change nothing."""
    plain, default = to_dict(cfg), dataclasses.asdict(Config())
    for key in cfg.algo.ignores:
        section, name = key.split(".")
        value = plain[section][name]
        if value != default[section][name]:
            raise ConfigError(
                f"{key}={value!r}: algo={cfg.algo.name} does not use it; "
                f"leave it at {default[section][name]!r}"
            )


def _check_harmless(cfg: Config) -> None:
    """PPO and DPO (the harmlessness experiment): preference data, dropout that applies."""
    from rdx.data.corpus import DataError
    from rdx.data.hh import check_source

    a = cfg.algo
    mode = cfg.dropout.mode
    if isinstance(a, DPOConfig) and mode != "none":
        raise ConfigError(
            f"dropout={mode} with algo=dpo: reward dropout does not apply to DPO, which "
            "trains on preference pairs without explicit rewards (paper footnote 11); "
            "use dropout=none"
        )
    if mode not in BATCH_MODES:
        raise ConfigError(
            f"dropout={mode} with algo={a.name}: PPO drops per rollout batch; expected one "
            f"of {', '.join(BATCH_MODES)}"
        )
    positive = ("new_tokens", "temperature", "eval_prompts")
    if isinstance(a, PPOConfig):
        positive += ("ppo_epochs", "minibatch", "clip")
        _positive("algo.vf_clip", a.vf_clip, allow_none=True)
        for key in ("vf_coef", "kl_coef"):
            if getattr(a, key) < 0:
                raise ConfigError(f"algo.{key}={getattr(a, key)!r}: expected a number >= 0")
        for key in ("discount", "gae_lambda"):
            if not 0.0 <= getattr(a, key) <= 1.0:
                raise ConfigError(f"algo.{key}={getattr(a, key)!r}: expected a number in [0, 1]")
    else:
        positive += ("beta",)
    for key in positive:
        _positive(f"algo.{key}", getattr(a, key))
    try:
        check_source(cfg.dataset.name, cfg.dataset.path, cfg.dataset.hub)
    except DataError as err:
        raise ConfigError(str(err)) from None


def to_dict(cfg: Config) -> dict[str, Any]:
    """The validated config as plain data (for config.yaml, W&B and cache keys)."""
    return dataclasses.asdict(cfg)


register()  # at import: every compose of conf/ (rdx.train, tests, analysis) imports rdx.config
