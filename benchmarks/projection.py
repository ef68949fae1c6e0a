"""Paper scale: the Table 1 and Table 2 grids on one N-GPU node, stage by stage, per β engine.

    python -m benchmarks.projection                     # CPU-scaled inputs, 8 GPUs
    python -m benchmarks.projection --gpus 16 --gpu-json benchmarks/gpu.json

The grids are the composed presets (`experiment=paper_table1` with `sweeps=paper_table1`, and
with `sweeps=table2`'s model sizes): runs, prefixes, samples per prefix, sample sets, epochs,
batch size, lengths and models are read from them, never restated. Which runs share β's
samples follows rdx's cache keys (rdx.pipeline.offpolicy.artifacts): with
`sampling.prefix_pool=task` every attribute of a task reads one set of trajectories and
scores, and the target model is in no key, so one build per task serves the whole grid.

Every stage is a count from the grid times a per-call time (`call_s`): the larger of the
host's time to issue the call (Python and dispatch, which a GPU does not shorten) and the
device's time (FLOPs at a stated MFU, or bytes at a stated share of HBM bandwidth). Each
input is a named figure with its source (`Inputs.sources`): a CPU measurement scaled by a
stated CPU→GPU ratio until a GPU figure exists, scripts/gpu-check's JSON once it does
(`with_gpu`). No GPU figure exists yet: no GPU machine was lent in the sessions that wrote
this, so every per-call time below is CPU-scaled or a stated assumption.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from benchmarks.common import Figure

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("hf", "vllm")
GOAL_HOURS = 1.5  # issue 31 (issue 19: 4 h): Table 1 at paper scale on one 8-GPU H100 node
# Sweep axes that change what a run's dropout keeps, never how much work it does: every arm
# takes the same batches, forwards and backwards (a dropped row's a_i is 0, not skipped).
COST_FREE_AXES = ("+sweeps/arm", "seed")


# GRID: what the presets say ---------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """One network's size, as the cost model needs it."""

    name: str
    params: float  # every parameter (weights read per decode step)
    trainable: float  # the parameters π trains (all, or the last block and the head)
    layers: int
    bytes_per_param: float = 2.0  # bf16 on the GPU


@dataclass(frozen=True)
class RunShape:
    """The cost-relevant settings of one training run; runs of one shape cost the same."""

    target: Model
    epochs: int
    steps_per_epoch: int  # whole batches of one sample set (the trainer drops the last)
    measured_epochs: int  # epochs that decode train/reward and evaluate (epoch_metrics)
    dataset: str


@dataclass(frozen=True)
class Grid:
    name: str
    runs: tuple[tuple[RunShape, int], ...]  # (shape, how many runs)
    beta_builds: tuple[str, ...]  # one dataset name per trajectories+scores entry
    reward_builds: tuple[str, ...]  # one dataset name per fine-tuned R
    sample_sets: int
    prefixes: int
    samples_per_prefix: int
    eval_prefixes: int
    prefix_len: int
    total_len: int
    batch_size: int
    sampling_batch: int
    behavior: Model
    reward: Model
    reward_epochs: int
    reward_batch: int
    reward_max_sentences: int | None = None  # reward.train_max_sentences
    reward_bf16: bool = False  # reward.train_precision=bf16
    reward_check_steps: int | None = None  # reward.stop_check_steps where stop_accuracy is set

    @property
    def n_runs(self) -> int:
        return sum(n for _, n in self.runs)

    @property
    def new_tokens(self) -> int:
        return self.total_len - self.prefix_len

    @property
    def set_rows(self) -> int:
        return self.prefixes * self.samples_per_prefix

    @property
    def beta_rows(self) -> int:
        """Rows β decodes per build: every sample set, then the held-out prefixes."""
        return self.sample_sets * self.set_rows + self.eval_prefixes


def model_size(name: str, hub: str | None, trainable: str, cfg=None) -> Model:
    """The size of a preset's network, from rdx.lm.archs' stated configs built on the meta
    device (nothing downloaded, nothing allocated); `tiny` from rdx.config's sizes."""
    import torch
    from transformers import AutoModelForCausalLM, BertConfig, BertForSequenceClassification

    from rdx.lm.archs import ARCHS
    from rdx.lm.models import freeze_all_but_last_layer

    with torch.device("meta"):
        if name == "bert":  # bert-base-uncased: BertConfig's defaults are its sizes
            model = BertForSequenceClassification(BertConfig(num_labels=4))
        elif name in ARCHS:
            model = AutoModelForCausalLM.from_config(ARCHS[name])
        elif name == "tiny":  # rdx's tiny GPT-2 in the corpus tokenizer (cfg.behavior's sizes)
            from transformers import GPT2Config, GPT2LMHeadModel

            b = cfg.behavior
            model = GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=b.vocab_size, n_layer=b.n_layer, n_embd=b.n_embd, n_head=b.n_head
                )
            )
        else:
            raise ValueError(f"model {name!r} ({hub}): no stated architecture in rdx.lm.archs")
    if trainable == "last_layer":
        freeze_all_but_last_layer(model)
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers = model.config.num_hidden_layers
    return Model(name, float(params), float(trained), int(layers))


def compose_jobs(overrides: list[str], sweep: dict[str, str] | None = None) -> list:
    """The job configs of a sweep (Hydra's compose API, as rdx.train's jobs get them), with
    their multiplicity: the product of the sweep's axes, one compose per combination of
    the axes that change a run's cost (COST_FREE_AXES are counted, not composed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import rdx.config  # noqa: F401  registers rdx_defaults

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        if sweep is None:
            base = compose("train", overrides=overrides, return_hydra_config=True)
            sweep = dict(OmegaConf.to_container(base.hydra.sweeper.params))
        axes = {k: str(v).split(",") for k, v in sweep.items()}
        costly = [k for k in axes if k not in COST_FREE_AXES]
        repeat = math.prod(len(v) for k, v in axes.items() if k in COST_FREE_AXES)
        jobs = []
        for values in product(*(axes[k] for k in costly)):
            extra = [f"{k}={v}" for k, v in zip(costly, values, strict=True)]
            jobs.append((compose("train", overrides=overrides + extra), repeat))
    return jobs


def grid_of(name: str, jobs: list) -> Grid:
    """The grid's counts from its composed jobs; the stages' sharing from rdx's cache keys."""
    from rdx.data.corpus import ATTRIBUTES

    first = jobs[0][0]
    s, t, r = first.sampling, first.trainer, first.reward
    shapes: Counter = Counter()
    beta, rewards = set(), set()
    sizes: dict[tuple, Model] = {}
    for cfg, n in jobs:
        js, jt = cfg.sampling, cfg.trainer
        same = (js.num_prefixes, js.samples_per_prefix, js.fresh_per_epoch, js.total_len)
        if same != (s.num_prefixes, s.samples_per_prefix, s.fresh_per_epoch, s.total_len):
            raise ValueError(f"{name}: the jobs differ in β's sampling settings ({same})")
        task = next(k for k, v in ATTRIBUTES[cfg.dataset.name].items() if cfg.attribute in v)
        pool = task if js.prefix_pool == "task" else cfg.attribute  # artifact_keys' rule
        beta.add((cfg.dataset.name, pool))
        rewards.add((cfg.dataset.name, task))
        key = (cfg.model.name, cfg.model.hub, cfg.model.trainable)
        if key not in sizes:
            sizes[key] = model_size(*key, cfg=cfg)
        measured = 1 if jt.epoch_metrics == "last" else jt.epochs
        steps = js.num_prefixes * js.samples_per_prefix // jt.batch_size
        shapes[RunShape(sizes[key], jt.epochs, steps, measured, cfg.dataset.name)] += n
    behavior = model_size(first.behavior.name, first.behavior.hub, "all")
    reward = model_size(r.name, r.hub, "all")
    return Grid(
        name=name,
        runs=tuple(shapes.items()),
        beta_builds=tuple(sorted(d for d, _ in beta)),
        reward_builds=tuple(sorted(d for d, _ in rewards)),
        sample_sets=s.fresh_per_epoch,
        prefixes=s.num_prefixes,
        samples_per_prefix=s.samples_per_prefix,
        eval_prefixes=s.eval_prefixes,
        prefix_len=s.prefix_len,
        total_len=s.total_len,
        batch_size=t.batch_size,
        sampling_batch=s.batch_size,
        behavior=behavior,
        reward=dataclasses.replace(reward, bytes_per_param=4.0),  # R runs in float32
        reward_epochs=r.train_epochs,
        reward_batch=r.train_batch_size,
        reward_max_sentences=r.train_max_sentences,
        reward_bf16=r.train_precision == "bf16",
        reward_check_steps=None if r.stop_accuracy is None else r.stop_check_steps,
    )


PAPER = ["experiment=paper_table1"]


def table1_grid() -> Grid:
    """`experiment=paper_table1 sweeps=paper_table1`: 6 attributes × 9 arms × seed 0."""
    return grid_of("Table 1", compose_jobs([*PAPER, "sweeps=paper_table1"]))


def table2_grid() -> Grid:
    """`experiment=paper_table1 sweeps=paper_table2`: 5 target models × 6 attributes × 2 arms."""
    return grid_of("Table 2", compose_jobs([*PAPER, "sweeps=paper_table2"]))


# INPUTS: each a named figure with its source ------------------------------------------------

# Host time of one call (Python, transformers' modules, dispatch), measured on this CPU with
# rdx's own code on width-64 models at 1 row (compute negligible), fitted as base + per layer
# (1 and 7 layers), median thread CPU time (the machine is shared; wall time is not the
# host's cost). `measure_host` re-measures them; these are the figures of 2026-12-01 at
# 62d7ef7 (the sampler with top-k 50 and repetition penalty 1.2; greedy without).
HOST_CPU = {
    "decode": (0.861e-3, 0.699e-3),  # one sampling step (KV cache), per step
    "greedy": (0.413e-3, 0.698e-3),  # one greedy step
    "forward": (1.283e-3, 0.992e-3),  # sequence_prob over one block
    "classifier": (1.230e-3, 1.010e-3),  # classifier_logits (BERT) over one block
    "train": (3.177e-3, 3.772e-3),  # compute_gradient + Adam, one step
}
# Measured on this CPU: Python sentence splitting of a hub row (an ~80-word review: 87 µs)
# plus β's fast tokenizer on its sentences for the min_tokens filter (100 µs), per row.
CORPUS_ROW_S = 187e-6
HUB_ROWS = {"yelp": 560_000, "agnews": 120_000}  # the hub's train splits (data README)
# Sentences R fine-tunes on per hub row: AG News 1.25, measured by rdx's loader on the local
# test split (7,600 rows: 9,535 sentences); Yelp 8, an assumption (no hub copy here).
SENTENCES_PER_ROW = {"yelp": 8.0, "agnews": 1.25}


@dataclass(frozen=True)
class Inputs:
    gpus: int = 8
    peak_bf16: float = 989e12  # FLOP/s per H100 SXM, dense bf16 (NVIDIA's data sheet)
    peak_fp32: float = 67e12  # FLOP/s per H100 SXM, fp32 without TF32 (data sheet): R's fine-tune
    hbm_bw: float = 3.35e12  # B/s per H100 SXM, HBM3 (data sheet)
    bw_eff: float = 0.7  # share of HBM bandwidth a bf16 decode step reads at (assumption)
    # MFUs measured on this CPU (make bench, docs/performance.md), times ratio_mfu
    mfu_forward_cpu: float = 0.442  # score β sequence_prob: 44.2% of the CPU's peak
    mfu_train_cpu: float = 0.412  # train π GPT2-124M fp32: 41.2%
    ratio_mfu: float = 1.0  # GPU MFU / CPU MFU (assumption: the same share of its peak)
    host: dict = field(default_factory=lambda: dict(HOST_CPU))
    ratio_host: float = 1.0  # GPU host time / CPU host time per call (assumption)
    # start-up of every job
    process_s: float = 3.76  # process start → first step, measured (make bench, tiny models)
    cuda_init_s: float = 5.0  # CUDA context and first kernels (assumption)
    load_bw: float = 2e9  # B/s from safetensors on node-local disk to the GPU (assumption)
    corpus_row_s: float = CORPUS_ROW_S
    # R's fine-tune
    reward_texts: dict = field(
        default_factory=lambda: {d: HUB_ROWS[d] * SENTENCES_PER_ROW[d] for d in HUB_ROWS}
    )
    reward_tokens: int = 48  # padded BERT tokens per training row, cut at 64 (assumption)
    reward_score_tokens: int = 40  # padded BERT tokens of a T=30 trajectory's text (assumption)
    text_metrics_s: float = 3.0  # the authors' BLEU/ROUGE/METEOR on 512 texts (assumption)
    # vLLM (no measurement: stated assumptions until gpu-check writes steps.beta_vllm)
    vllm_batch: int = 256  # rows per step: vLLM's default max_num_seqs
    vllm_bw_eff: float = 0.8  # share of HBM bandwidth per decode step (CUDA graphs, paged KV)
    vllm_mfu: float = 0.5
    vllm_step_host_s: float = 2e-3  # scheduler + sampler per step, not hidden by the graphs
    vllm_startup_s: float = 60.0  # memory profiling and CUDA-graph capture per engine
    vllm_logprobs: bool = False  # True: β_i from vLLM's log-probs, no HF rescoring
    # GPU figures (scripts/gpu-check's JSON): None until one exists
    gpu_beta_sample_tok_s: float | None = None  # hf engine, OPT-6.7B, per GPU
    gpu_vllm_sample_tok_s: float | None = None
    gpu_beta_score_tok_s: float | None = None
    gpu_train_step_s: float | None = None  # GPT2-124M, batch 64 × 30 tokens, bf16
    sources: dict = field(default_factory=dict)

    @property
    def mfu_forward(self) -> float:
        return self.mfu_forward_cpu * self.ratio_mfu

    @property
    def mfu_train(self) -> float:
        return self.mfu_train_cpu * self.ratio_mfu

    def host_s(self, kind: str, layers: int) -> float:
        base, per_layer = self.host[kind]
        return (base + per_layer * layers) * self.ratio_host


def default_sources(inp: Inputs) -> dict[str, str]:
    cpu = "measured on the 2-core CPU of docs/performance.md"
    return {
        "peak_bf16": "NVIDIA H100 SXM data sheet, dense bf16",
        "peak_fp32": "NVIDIA H100 SXM data sheet, fp32 (R at reward.train_precision=fp32)",
        "hbm_bw": "NVIDIA H100 SXM data sheet, HBM3",
        "bw_eff": "assumption",
        "mfu_forward": f"CPU β scoring MFU {inp.mfu_forward_cpu:.1%} ({cpu}) × {inp.ratio_mfu}",
        "mfu_train": (
            f"CPU GPT2-124M training MFU {inp.mfu_train_cpu:.1%} ({cpu}) × {inp.ratio_mfu}"
        ),
        "host": f"rdx's calls at width 64, 1 row, thread CPU time ({cpu}) × {inp.ratio_host}",
        "process_s": f"job start-up to the first step ({cpu})",
        "cuda_init_s": "assumption",
        "load_bw": "assumption (node-local NVMe or page cache; a network file system is slower)",
        "corpus_row_s": f"sentence split + fast tokenizer per ~80-word row ({cpu})",
        "reward_texts": "hub train rows × sentences per row (AG News measured locally; Yelp 8, "
        "assumed)",
        "reward_tokens": "assumption",
        "text_metrics_s": "assumption",
        "vllm": "assumptions (no vLLM figure measured yet)",
    }


def with_gpu(inp: Inputs, data: dict) -> Inputs:
    """Inputs with scripts/gpu-check's figures (benchmarks/gpu_check.py's JSON) in place of
    the CPU-scaled ones they measure: β's tokens/s (hf; vLLM under steps.beta_vllm), β's
    scoring tokens/s, π's GPT2-124M step time and its MFU."""
    steps = data.get("steps", {})
    got, sources = {}, dict(inp.sources)
    where = f"gpu-check on {data.get('device', 'a GPU')} at {str(data.get('git', '?'))[:7]}"
    picks = (
        ("gpu_beta_sample_tok_s", "beta", "sample_tokens_per_s"),
        ("gpu_beta_score_tok_s", "beta", "score_tokens_per_s"),
        ("gpu_vllm_sample_tok_s", "beta_vllm", "sample_tokens_per_s"),
        ("gpu_train_step_s", "train", "step_s"),
    )
    for name, step, key in picks:
        value = steps.get(step, {}).get(key)
        if value is not None:
            got[name] = float(value)
            sources[name] = f"{where}: steps.{step}.{key}"
    mfu = steps.get("train", {}).get("mfu")
    if mfu is not None:  # a measured GPU MFU replaces the CPU one times the ratio
        got |= {"mfu_train_cpu": float(mfu), "ratio_mfu": 1.0}
        sources["mfu_train"] = f"{where}: steps.train.mfu"
    return dataclasses.replace(inp, **got, sources=sources)


def load_gpu_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


# COSTS: pure functions of a grid and the inputs ------------------------------------------------


def call_s(host: float, flops: float = 0.0, peak_mfu: float = 1.0, nbytes: float = 0.0, bw=1.0):
    """One call: the host issues it while the device runs it, so the slower of the two."""
    return max(host, flops / peak_mfu, nbytes / bw)


def decode_step_s(m: Model, rows: int, pos: float, inp: Inputs, kind: str = "decode") -> float:
    """One decoding step of `rows` rows with the HF model through rdx's sampler: host-bound
    for small models, else the weights and KV cache read at bw_eff, or 2N FLOPs per row."""
    width = math.sqrt(m.params / (12 * m.layers))  # d from N ≈ 12·L·d² (the cache only)
    kv = rows * m.layers * 2 * width * pos * 2  # bf16 keys and values of `pos` positions
    return call_s(
        inp.host_s(kind, m.layers),
        2 * m.params * rows,
        inp.peak_bf16 * inp.mfu_forward,
        m.params * m.bytes_per_param + kv,
        inp.hbm_bw * inp.bw_eff,
    )


def vllm_step_s(m: Model, rows: int, pos: float, inp: Inputs) -> float:
    width = math.sqrt(m.params / (12 * m.layers))
    kv = rows * m.layers * 2 * width * pos * 2
    return call_s(
        inp.vllm_step_host_s,
        2 * m.params * rows,
        inp.peak_bf16 * inp.vllm_mfu,
        m.params * m.bytes_per_param + kv,
        inp.hbm_bw * inp.vllm_bw_eff,
    )


def forward_s(m: Model, rows: int, tokens: int, inp: Inputs, kind="forward", peak=None) -> float:
    """One forward over rows × tokens (scoring: FLOP-bound for β, host-bound for R)."""
    return call_s(
        inp.host_s(kind, m.layers),
        2 * m.params * rows * tokens,
        (peak or inp.peak_bf16) * inp.mfu_forward,
    )


def train_step_s(m: Model, rows: int, tokens: int, inp: Inputs, peak=None) -> float:
    """One training step: a forward through every layer (2N per token), a backward through
    the trained ones (4N_trained), Adam; or the host's time to issue it."""
    flops = (2 * m.params + 4 * m.trainable) * rows * tokens
    return call_s(inp.host_s("train", m.layers), flops, (peak or inp.peak_bf16) * inp.mfu_train)


def beta_tokens_per_s(g: Grid, inp: Inputs, engine: str) -> float:
    """β's new tokens per second per GPU: gpu-check's figure, else the roofline above."""
    pos = g.prefix_len + 1 + g.new_tokens / 2  # mean positions in the cache
    if engine == "hf":
        if inp.gpu_beta_sample_tok_s is not None:
            return inp.gpu_beta_sample_tok_s
        return g.sampling_batch / decode_step_s(g.behavior, g.sampling_batch, pos, inp)
    if inp.gpu_vllm_sample_tok_s is not None:
        return inp.gpu_vllm_sample_tok_s
    return inp.vllm_batch / vllm_step_s(g.behavior, inp.vllm_batch, pos, inp)


def reward_sentences(g: Grid, inp: Inputs, dataset: str) -> int:
    """The sentences R fine-tunes on: the task's, capped at reward.train_max_sentences."""
    n = inp.reward_texts[dataset]
    return n if g.reward_max_sentences is None else min(n, g.reward_max_sentences)


def reward_finetune_s(g: Grid, inp: Inputs, dataset: str) -> float:
    """R's fine-tune on one task's (capped) training sentences: every epoch's steps of
    reward_batch rows, fp32 or under bf16 autocast, and the accuracy stop's held-out checks.
    An upper bound where the stop is set: the step it stops at depends on the data."""
    steps = g.reward_epochs * math.ceil(reward_sentences(g, inp, dataset) / g.reward_batch)
    peak = inp.peak_bf16 if g.reward_bf16 else inp.peak_fp32
    step = train_step_s(g.reward, g.reward_batch, inp.reward_tokens, inp, peak)
    checks = 0.0
    if g.reward_check_steps is not None:
        # artifacts.STOP_HELDOUT = 2048 held-out sentences in classifier_logits' 512-row blocks
        block = forward_s(g.reward, 512, inp.reward_tokens, inp, "classifier", peak)
        checks = steps // g.reward_check_steps * 4 * block
    return steps * step + checks


def load_s(inp: Inputs, *models: Model) -> float:
    return (
        inp.process_s
        + inp.cuda_init_s
        + sum(m.params * m.bytes_per_param for m in models) / (inp.load_bw)
    )


STAGES = (
    "R fine-tune",
    "β job start-up",
    "β sampling",
    "β likelihood rescoring",
    "R scoring",
    "run start-up",
    "π training",
    "metric greedy decode",
    "evaluation",
)
PREP = STAGES[:5]


def run_stage_s(g: Grid, shape: RunShape, inp: Inputs) -> dict[str, float]:
    """GPU-seconds of one training run, by stage (its GPU is held for all of them)."""
    m, b = shape.target, g.batch_size
    width = g.total_len + 1  # BOS + T tokens per trajectory row
    pos = g.prefix_len + 1 + g.new_tokens / 2
    corpus = HUB_ROWS.get(shape.dataset, 0) * inp.corpus_row_s * inp.ratio_host
    step = train_step_s(m, b, width, inp)
    if inp.gpu_train_step_s is not None and m.name == "gpt2":
        step = inp.gpu_train_step_s  # the same shape, measured
    greedy = g.new_tokens * decode_step_s(m, b, pos, inp, "greedy")
    greedy += forward_s(g.reward, b, inp.reward_score_tokens, inp, "classifier")
    e = g.eval_prefixes
    evaluation = (
        g.new_tokens * decode_step_s(m, e, pos, inp)  # π's samples
        + g.new_tokens * decode_step_s(m, e, pos, inp, "greedy")  # the authors' greedy text
        + math.ceil(e / g.sampling_batch) * forward_s(g.behavior, e, width, inp)  # β(τ̂)
        + forward_s(g.reward, e, inp.reward_score_tokens, inp, "classifier")  # R(τ̂)
        + forward_s(m, e, width, inp)  # teacher-forced accuracy
        + inp.text_metrics_s
    )
    return {
        "run start-up": load_s(inp, g.behavior, m, g.reward) + corpus,
        "π training": shape.epochs * shape.steps_per_epoch * step,
        "metric greedy decode": shape.measured_epochs * shape.steps_per_epoch * greedy,
        "evaluation": shape.measured_epochs * evaluation,
    }


def stage_gpu_s(g: Grid, inp: Inputs, engine: str) -> dict[str, float]:
    """GPU-seconds of every stage of the grid, with β sampled by `engine` (hf or vllm)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    out = dict.fromkeys(STAGES, 0.0)
    r = g.reward
    out["R fine-tune"] = sum(reward_finetune_s(g, inp, d) for d in g.reward_builds)
    builds = len(g.beta_builds)
    jobs = builds * inp.gpus  # sampling.shards = N: one shard job per GPU and build
    start = load_s(inp, g.behavior, r) + (inp.vllm_startup_s if engine == "vllm" else 0.0)
    out["β job start-up"] = jobs * start
    out["β sampling"] = builds * g.beta_rows * g.new_tokens / beta_tokens_per_s(g, inp, engine)
    scored = builds * g.sample_sets * g.set_rows
    blocks = math.ceil(scored / 64)  # SCORE_BLOCK rows per forward
    width = g.total_len + 1
    if not (engine == "vllm" and inp.vllm_logprobs):
        if inp.gpu_beta_score_tok_s is not None:
            out["β likelihood rescoring"] = scored * width / inp.gpu_beta_score_tok_s
        else:
            out["β likelihood rescoring"] = blocks * forward_s(g.behavior, 64, width, inp)
    out["R scoring"] = blocks * forward_s(r, 64, inp.reward_score_tokens, inp, "classifier")
    for shape, n in g.runs:
        for k, v in run_stage_s(g, shape, inp).items():
            out[k] += n * v
    return out


def node_hours(g: Grid, inp: Inputs, engine: str) -> dict[str, float]:
    """Wall-clock hours on the N-GPU node: β's stage, then the runs.

    β's stage: R is fine-tuned inside the first shard job of its task while the task's other
    shards wait on the cache lock (today's code), so the longest R fine-tune comes first;
    sampling and scoring then spread over every GPU. The runs: each holds one GPU for its
    whole length, placed longest first on the GPU that frees first (LPT).
    """
    stages = stage_gpu_s(g, inp, engine)
    longest_r = max(reward_finetune_s(g, inp, d) for d in g.reward_builds)
    spread = sum(stages[k] for k in PREP if k != "R fine-tune") / inp.gpus
    lengths = []
    for shape, n in g.runs:
        lengths += [sum(run_stage_s(g, shape, inp).values())] * n
    gpus = [0.0] * inp.gpus
    for length in sorted(lengths, reverse=True):
        heapq.heapreplace(gpus, gpus[0] + length)
    runs = max(gpus)
    return {
        "R fine-tune": longest_r / 3600,
        "β stage": (longest_r + spread) / 3600,
        "runs": runs / 3600,
        "total": (longest_r + spread + runs) / 3600,
        "total, R cached": (spread + runs) / 3600,
    }


@dataclass(frozen=True)
class Projection:
    grid: Grid
    engine: str
    gpu_hours: dict[str, float]  # per stage
    hours: dict[str, float]  # wall clock: β stage, runs, total

    @property
    def dominant(self) -> str:
        return max(self.gpu_hours, key=self.gpu_hours.get)

    @property
    def share(self) -> dict[str, float]:
        total = sum(self.gpu_hours.values())
        return {k: v / total for k, v in self.gpu_hours.items()}


def project(g: Grid, inp: Inputs, engine: str) -> Projection:
    gpu = {k: v / 3600 for k, v in stage_gpu_s(g, inp, engine).items()}
    return Projection(g, engine, gpu, node_hours(g, inp, engine))


# OUTPUT ----------------------------------------------------------------------------------------


def format_projection(ps: list[Projection], gpus: int) -> str:
    """Stage rows × (grid, engine) columns: hours on the node (GPU-hours ÷ N) and share."""
    cols = [f"{p.grid.name} {p.engine}" for p in ps]
    head = [f"stage (h on {gpus} GPUs, share of GPU-h)", *cols]
    rows = [[k, *(f"{p.gpu_hours[k] / gpus:7.3f} h {p.share[k]:6.1%}" for p in ps)] for k in STAGES]
    rows.append(["GPU-hours, all stages", *(f"{sum(p.gpu_hours.values()):7.1f} GPU-h" for p in ps)])
    for key in ("β stage", "runs", "total", "total, R cached"):
        rows.append([f"wall clock: {key}", *(f"{p.hours[key]:7.2f} h" for p in ps)])
    rows.append(["dominant stage", *(p.dominant for p in ps)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def figures(ps: list[Projection], inp: Inputs) -> list[Figure]:
    """One row per (grid, engine): the wall clock on the node; Table 1 against the goal."""
    out = []
    gpu = [f.name for f in dataclasses.fields(Inputs) if f.name.startswith("gpu_")]
    measured = any(getattr(inp, name) is not None for name in gpu)
    source = "GPU figures from gpu-check" if measured else "CPU-scaled inputs, no GPU figure yet"
    for p in ps:
        g = p.grid
        note = (
            f"{g.n_runs} runs, {len(g.beta_builds)} β builds × {g.sample_sets} sets × "
            f"{g.set_rows:,} rows, {g.runs[0][0].steps_per_epoch} steps/epoch; "
            f"β stage {p.hours['β stage']:.2f} h + runs {p.hours['runs']:.2f} h; "
            f"{sum(p.gpu_hours.values()):.1f} GPU-h, most in {p.dominant} "
            f"({p.share[p.dominant]:.0%}); {source}"
        )
        goal = f"<= {GOAL_HOURS:g} h" if g.name == "Table 1" and inp.gpus == 8 else None
        out.append(
            Figure(
                f"{g.name} at paper scale, {p.engine}, one {inp.gpus}×H100 node (projected)",
                p.hours["total"],
                "h",
                goal=goal,
                note=note,
            )
        )
    return out


def goal_line(ps: list[Projection], inp: Inputs) -> str:
    t1 = [p for p in ps if p.grid.name == "Table 1"]
    met = [p.engine for p in t1 if p.hours["total"] <= GOAL_HOURS]
    figs = ", ".join(f"{p.engine} {p.hours['total']:.2f} h" for p in t1)
    verdict = f"met with {', '.join(met)}" if met else "NOT met"
    if inp.gpus != 8:
        verdict = f"not checked: projected on {inp.gpus} GPUs, not 8"
    return f"goal: Table 1 ≤ {GOAL_HOURS:g} h on one 8-GPU H100 node: {verdict} ({figs})"


def _host_calls(layers: int) -> dict:
    """rdx's calls at width 64 and 1 row, `layers` deep: their time is the host's."""
    import torch

    from benchmarks.compute import PretokenizedBatches, train_step
    from rdx.lm.models import tiny_bert, tiny_gpt2
    from rdx.lm.sampling import classifier_logits, sample, sequence_prob
    from rdx.lm.sequences import Sequences

    lm = tiny_gpt2(512, layers, 64, 4, seed=0).eval()
    bert = tiny_bert(512, layers, 64, 4, num_labels=2, seed=0).eval()
    pre = torch.randint(1, 512, (1, 5))
    seqs = Sequences.from_samples(torch.randint(1, 512, (1, 31)), 5, None)
    tok = PretokenizedBatches(torch.randint(1, 512, (1, 30)))
    step = train_step(tiny_gpt2(512, layers, 64, 4, seed=0), batch=1, seq_len=30, precision="fp32")
    decoding = {"stop_at_eos": False, "eos_id": 0}
    return {
        "decode": lambda: sample(
            lm,
            pre,
            26,
            temperature=1.0,
            generator=torch.Generator().manual_seed(0),
            top_k=50,
            repetition_penalty=1.2,
            **decoding,
        ),
        "greedy": lambda: sample(lm, pre, 26, temperature=0, **decoding),
        "forward": lambda: sequence_prob(lm, seqs, batch_size=64),
        "classifier": lambda: classifier_logits(bert, tok, [0], batch_size=64, max_length=30),
        "train": step,
    }


def measure_host(reps: int = 15) -> dict[str, tuple[float, float]]:
    """HOST_CPU again, on this machine: (base, per layer) seconds per call, from 1 and 7
    layers, median thread CPU time (a decode call is 26 steps)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    per: dict[int, dict[str, float]] = {}
    try:
        for layers in (1, 7):
            fns = _host_calls(layers)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(reps):
                for k, fn in fns.items():
                    t0 = time.thread_time()
                    fn()
                    times[k].append(time.thread_time() - t0)
            per[layers] = {k: statistics.median(v[2:]) for k, v in times.items()}
            per[layers]["decode"] /= 26
            per[layers]["greedy"] /= 26
    finally:
        torch.set_num_threads(threads)
    out = {}
    for k in per[1]:
        slope = (per[7][k] - per[1][k]) / 6
        out[k] = (max(per[1][k] - slope, 0.0), slope)
    return out


# make bench's rows whose ratio (achieved / the CPU's peak) is the CPU MFU an input carries
MEASURED_MFU = {
    "mfu_forward_cpu": "score β sequence_prob",
    "mfu_train_cpu": "train π GPT2-124M fp32",
}


def inputs(
    gpu_json: Path | None = None,
    gpus: int = 8,
    measure: bool = False,
    measured: list[Figure] | None = None,
) -> Inputs:
    """The inputs: the recorded CPU figures, or this run's (`measure`: the host costs;
    `measured`: make bench's MFU rows), then gpu-check's JSON where it exists."""
    inp = Inputs(gpus=gpus)
    if measure:
        inp = dataclasses.replace(inp, host=measure_host())
    by_name = {f.name: f for f in measured or []}
    for key, name in MEASURED_MFU.items():
        f = by_name.get(name)
        if f is not None and f.ratio is not None:
            inp = dataclasses.replace(inp, **{key: f.ratio})
    sources = default_sources(inp)
    if measure:
        sources["host"] = f"re-measured in this run: {sources['host']}"
    inp = dataclasses.replace(inp, sources=sources)
    data = load_gpu_json(gpu_json) if gpu_json is not None else None
    return with_gpu(inp, data) if data is not None else inp


def run(
    gpu_json: Path | None = None,
    gpus: int = 8,
    measure: bool = False,
    measured: list[Figure] | None = None,
) -> list[Figure]:
    """make bench's part: both grids, both engines; prints the stage table and the goal."""
    inp = inputs(gpu_json, gpus, measure, measured)
    grids = [table1_grid(), table2_grid()]
    ps = [project(g, inp, e) for g in grids for e in ENGINES]
    print(format_projection(ps, gpus))
    print(goal_line(ps, inp))
    print("inputs: " + "; ".join(f"{k}: {v}" for k, v in inp.sources.items()))
    return figures(ps, inp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--gpu-json", type=Path, default=ROOT / "benchmarks" / "gpu.json")
    ap.add_argument("--measure", action="store_true", help="re-measure the host costs here")
    args = ap.parse_args()
    from benchmarks.common import format_table

    print(format_table(run(args.gpu_json, args.gpus, args.measure)))


if __name__ == "__main__":
    main()
