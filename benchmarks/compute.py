"""Compute benchmarks of rdx's hot paths: π's training step, β's sampler, β's and R's scorers.

    .venv/bin/python -m benchmarks.compute --quick   # ≤ ~90 s on 2 cores
    .venv/bin/python -m benchmarks.compute           # a few minutes: batch 64, GPT2-124M sampling

Every figure is a ratio to a reference measured in the same process run: MFU is model FLOP/s
over the measured matmul peak (benchmarks.peak), a speedup is tokens/s over the reference
implementation's tokens/s, timed round-robin with it (benchmarks.common.timeit_many).

FLOPs per token follow nanoGPT's estimate_mfu (PaLM appendix B): forward 2N + 4·L·T·d, a
training step three times that (6N + 12·L·T·d), with T the positions a row runs through.
N (`matmul_params`) counts the parameters that multiply every token's activations: for
GPT-2 all parameters but the position embeddings (nanoGPT's non_embedding count: the token
embedding stays in, since the tied output head is a V×d matmul per token; at vocab 2048 and
width 128 it is a quarter of the tiny model's N); for BERT the encoder only (its embeddings
are lookups, its pooler and classifier run once per row).

Reading the MFUs: where MKL takes a slow path (AMD CPUs: its fp32 GEMM runs at about half
of oneDNN's rate), the peak is oneDNN's and torch's own fp32 matmuls cannot reach much more
than half of it, so each MFU note also gives the figure against MKL's peak (what fp32 model
code runs). The MFU goals are kept as stated: a figure that misses one says so.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
from functools import partial
from pathlib import Path

import torch
from transformers import BatchEncoding, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from benchmarks.common import Figure, format_table, timeit_many
from rdx.config import BehaviorConfig, Config, RewardConfig, SamplingConfig, TrainerConfig
from rdx.lm.draw import categorical
from rdx.lm.kernels import use_kernels
from rdx.lm.models import tiny_bert, tiny_gpt2
from rdx.lm.sampling import classifier_logits, sample, sample_sequences, sequence_prob
from rdx.lm.sequences import Sequences
from rdx.method.dropout import keep_mask
from rdx.method.objective import bi_objective_reward
from rdx.pipeline.offpolicy.trainer import compute_gradient

ROOT = Path(__file__).resolve().parents[1]

# The embedded default run's shapes, read from rdx.config (their one source): β's p, T,
# temperature and sampling/scoring batch; π's batch, importance-weight clip, entropy term
# and lr; quantile dropout's γ.
_S, _T = SamplingConfig(), TrainerConfig()
PREFIX_LEN, TOTAL_LEN, TEMPERATURE, SCORE_BATCH = (
    _S.prefix_len,
    _S.total_len,
    _S.temperature,
    _S.batch_size,
)
TRAIN_BATCH, IS_CLIP, ENTROPY, LR = _T.batch_size, _T.is_clip, _T.entropy, _T.lr
GAMMA = Config().gamma


# MODELS: the default tiny sizes read from rdx.config (their one source), so they cannot drift.


def tiny_sizes(group: str) -> dict:
    """vocab_size, n_layer, n_embd, n_head of the tiny behavior or reward (rdx.config)."""
    cfg = {"behavior": BehaviorConfig, "reward": RewardConfig}[group]()
    sizes = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head}
    vocab = BehaviorConfig().vocab_size  # one tokenizer
    return {"vocab_size": int(vocab), **{k: int(v) for k, v in sizes.items()}}


def tiny_behavior(**sizes) -> GPT2LMHeadModel:
    """rdx's tiny GPT-2 (β, and π's architecture), default sizes unless overridden."""
    s = {**tiny_sizes("behavior"), **sizes}
    return tiny_gpt2(s["vocab_size"], s["n_layer"], s["n_embd"], s["n_head"], seed=0).eval()


def tiny_reward(**sizes):
    """rdx's tiny BERT classifier R (two labels), default sizes unless overridden."""
    s = {**tiny_sizes("reward"), **sizes}
    return tiny_bert(
        s["vocab_size"], s["n_layer"], s["n_embd"], s["n_head"], num_labels=2, seed=0
    ).eval()


def gpt2_124m() -> GPT2LMHeadModel:
    """The GPT-2 small architecture (GPT2Config() defaults), random init: nothing downloaded.
    eval() turns dropout off, as rdx.pipeline.offpolicy.trainer.build_policy does for every π."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


# FLOPs


def matmul_params(model: PreTrainedModel) -> int:
    """N of the 6N estimate (see the module docstring for which parameters count)."""
    if hasattr(model, "bert"):
        return sum(p.numel() for p in model.bert.encoder.parameters())
    # Position embeddings are lookups added to the input: not in N (GPT-2: transformer.wpe).
    return sum(
        p.numel() for name, p in model.named_parameters() if not re.search("wpe|position", name)
    )


def flops_per_token(model: PreTrainedModel, positions: int, *, training: bool) -> float:
    """2N + 4·L·T·d per token forward (attention at full T, as nanoGPT); ×3 for a step."""
    c = model.config
    fwd = 2 * matmul_params(model) + 4 * c.num_hidden_layers * positions * c.hidden_size
    return 3 * fwd if training else fwd


def _mfu_note(flops_tok: float, tok_s: float, peak: dict) -> str:
    achieved = flops_tok * tok_s / 1e9
    return (
        f"{tok_s:,.0f} tok/s × {flops_tok / 1e6:.2f} MFLOP/tok = {achieved:.1f} GFLOP/s; "
        f"vs torch.matmul's own fp32 peak ({peak['fp32_matmul_gflops']:.0f} GFLOP/s, MKL) "
        f"{100 * achieved / peak['fp32_matmul_gflops']:.0f}%"
    )


# 1. TRAINING STEP of π: the trainer's own code path.


def train_step(model: PreTrainedModel, *, batch: int, seq_len: int, precision: str, seed=0):
    """One optimisation step exactly as rdx.pipeline.offpolicy.trainer.train takes it: quantile keep
    mask, compute_gradient (forward under the precision's autocast, reward_dropout_loss,
    backward) and Adam. Rows of random token ids; every position scored (mask of ones)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=g)
    mask = torch.ones(batch, seq_len - 1)
    reward = torch.randn(batch, generator=g)
    beta = torch.rand(batch, generator=g) * 0.5 + 0.01
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    cpu = torch.device("cpu")

    def step() -> None:
        keep = keep_mask("quantile", bi_objective_reward(reward, beta), gamma=GAMMA)
        optimizer.zero_grad(set_to_none=True)
        compute_gradient(
            model,
            x,
            mask,
            reward,
            beta,
            keep,
            device=cpu,
            precision=precision,
            is_clip=IS_CLIP,
            entropy=ENTROPY,
        )
        optimizer.step()

    return step


def bench_train(
    model: PreTrainedModel,
    *,
    batch: int,
    seq_len: int,
    precisions: tuple[str, ...],
    warmup: int,
    min_time: float,
    min_reps: int,
) -> dict[str, float]:
    """Seconds per training step for each precision (each on its own copy of π, own Adam)."""
    steps = {  # copies: the steps train them, and `model` is also benchmarked as β
        prec: train_step(copy.deepcopy(model), batch=batch, seq_len=seq_len, precision=prec)
        for prec in precisions
    }
    return timeit_many(steps, warmup=warmup, min_time=min_time, min_reps=min_reps)


def train_figures(
    label: str,
    model: PreTrainedModel,
    peak: dict,
    *,
    batch: int = TRAIN_BATCH,
    seq_len: int = TOTAL_LEN,
    bf16: bool = True,
    bf16_skipped: str | None = None,
    mfu_goal: str | None = None,
    note: str = "",
    warmup: int = 1,
    min_time: float = 1.0,
    min_reps: int = 3,
) -> list[Figure]:
    """fp32 MFU of π's training step, and bf16 autocast's tokens/s over fp32's (a row
    without a number, saying why, when the CPU has no bf16 or `bf16_skipped` gives a reason)."""
    run_bf16 = bf16 and peak["bf16_supported"] and bf16_skipped is None
    secs = bench_train(
        model,
        batch=batch,
        seq_len=seq_len,
        precisions=("fp32", "bf16") if run_bf16 else ("fp32",),
        warmup=warmup,
        min_time=min_time,
        min_reps=min_reps,
    )
    positions = seq_len - 1  # π reads x[:, :-1]
    tokens = batch * positions
    flops_tok = flops_per_token(model, positions, training=True)
    tok_s = tokens / secs["fp32"]
    shape = f"B={batch}×{positions} positions, N={matmul_params(model) / 1e6:.2f}M"
    figs = [
        Figure(
            f"train {label} fp32",
            flops_tok * tok_s / 1e9,
            "GFLOP/s",
            peak["fp32_gflops"],
            "fp32 peak",
            goal=mfu_goal,
            note=f"{shape}; {_mfu_note(flops_tok, tok_s, peak)}" + (f"; {note}" if note else ""),
        )
    ]
    if not bf16:
        return figs
    name = f"train {label} bf16 autocast vs fp32"
    if not run_bf16:
        why = bf16_skipped if peak["bf16_supported"] else f"no bf16: {peak['bf16_reason']}"
        figs.append(Figure(name, math.nan, "tok/s", tok_s, "fp32", ">= 1.6x", note=why))
        return figs
    bf16_tok_s = tokens / secs["bf16"]
    bf16_mfu = 100 * flops_tok * bf16_tok_s / 1e9 / peak["bf16_gflops"]
    figs.append(
        Figure(
            name,
            bf16_tok_s,
            "tok/s",
            tok_s,
            "fp32",
            ">= 1.6x",
            note=f"{shape}; bf16 at {bf16_mfu:.0f}% of the bf16 matmul peak "
            f"({peak['bf16_gflops']:.0f} GFLOP/s)" + (f"; {note}" if note else ""),
        )
    )
    return figs


# 2. SAMPLING by β: rdx's cached sampler against generate() and a no-cache loop.


@torch.no_grad()
def nocache_sample(
    model: PreTrainedModel,
    prefixes: torch.Tensor,
    new_tokens: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The straightforward sampler: the whole sequence through the model at every step, no
    cache; the same arithmetic and random stream as rdx.lm.sampling.sample without an EOS."""
    x = prefixes
    for _ in range(new_tokens):
        logits = model(input_ids=x).logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = categorical(logits / temperature, generator)[:, None]
        x = torch.cat([x, nxt], dim=1)
    return x


def hf_generate(
    model: PreTrainedModel, prefixes: torch.Tensor, new_tokens: int, *, temperature: float
) -> torch.Tensor:
    """transformers' generate() with rdx's sampling distribution: temperature only (top_k=0
    and top_p=1 switch off the default truncation), exactly `new_tokens` tokens per row
    (min_new_tokens masks EOS, so no row stops early), KV cache on."""
    return model.generate(
        prefixes,
        attention_mask=torch.ones_like(prefixes),
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        use_cache=True,
        pad_token_id=model.config.eos_token_id,
    )


def bench_sampling(
    model: PreTrainedModel,
    *,
    batch: int,
    reference: PreTrainedModel | None = None,
    prefix_len: int = PREFIX_LEN,
    new_tokens: int = TOTAL_LEN - PREFIX_LEN,
    temperature: float = TEMPERATURE,
    nocache: bool = True,
    warmup: int = 1,
    min_time: float = 1.0,
    min_reps: int = 3,
) -> dict[str, float]:
    """Seconds per batch for rdx, generate() and (if `nocache`) the no-cache loop: same
    weights, dtype, threads, prefixes, lengths and temperature; every row decodes all new
    tokens. generate() runs on `reference` (default `model`): the stock model, to compare
    with what a researcher gets without rdx, or rdx's (`same_kernels`), to isolate the
    sampler's own share."""
    reference = model if reference is None else reference
    prefixes = torch.randint(
        1, model.config.vocab_size, (batch, prefix_len), generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator()
    fns = {
        "rdx": lambda: sample(
            model,
            prefixes,
            new_tokens,
            temperature=temperature,
            generator=g.manual_seed(1),
            eos_id=None,  # no early stop: every row decodes new_tokens, as in generate()
            batch_size=batch,
        ),
        "generate": lambda: hf_generate(reference, prefixes, new_tokens, temperature=temperature),
    }
    if nocache:
        fns["nocache"] = lambda: nocache_sample(
            model, prefixes, new_tokens, temperature=temperature, generator=g.manual_seed(1)
        )
    return timeit_many(fns, warmup=warmup, min_time=min_time, min_reps=min_reps)


def sampling_figures(
    label: str,
    model: PreTrainedModel,
    *,
    batch: int,
    new_tokens: int = TOTAL_LEN - PREFIX_LEN,
    note: str = "",
    **kw,
) -> list[Figure]:
    same = kw.get("reference") is None
    secs = bench_sampling(model, batch=batch, new_tokens=new_tokens, **kw)
    tok = batch * new_tokens
    rate = {k: tok / s for k, s in secs.items()}
    shape = f"B={batch}, p={kw.get('prefix_len', PREFIX_LEN)}, {new_tokens} new tokens, fp32"
    extra = f"; {note}" if note else ""
    figs = [
        Figure(
            f"sample {label} rdx vs generate()" + (" on rdx's kernels" if same else ""),
            rate["rdx"],
            "new tok/s",
            rate["generate"],
            "generate",
            None if same else ">= 2x",
            note=shape
            + (
                "; both on the oneDNN model: the sampler's own share"
                if same
                else "; generate() on the stock model (torch's kernels)"
            )
            + extra,
        )
    ]
    if "nocache" in rate:
        figs.append(
            Figure(
                f"sample {label} rdx vs no-cache loop",
                rate["rdx"],
                "new tok/s",
                rate["nocache"],
                "no cache",
                note=shape + extra,
            )
        )
    return figs


# 2b. π's GREEDY METRIC DECODE (train/reward, the authors' text metrics) at mixed prefix
# lengths, as when π re-tokenises β's prefixes: one left-padded batch against one batch per
# prefix length (rdx.lm.sampling.sample_sequences, left_pad=True vs False).


def mixed_prefixes(vocab: int, rows: int, lengths: range, seed: int = 0) -> Sequences:
    """`rows` prefixes with lengths drawn uniformly from `lengths` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lengths.start, lengths.stop, (rows,), generator=g)
    tokens = torch.randint(1, vocab, (rows, lengths.stop), generator=g)
    return Sequences(tokens, lens, lens.clone())


def greedy_figures(
    model: PreTrainedModel,
    *,
    rows: int = TRAIN_BATCH,
    lengths: range = range(3, 9),
    new_tokens: int = TOTAL_LEN - PREFIX_LEN,
    repetition_penalty: float = 1.2,
    **reps,
) -> list[Figure]:
    """One training batch's greedy decode (the per-step train/reward), β's decoding options
    (eval.greedy=sampling: repetition penalty 1.2), every row decoding all new tokens; the
    two paths give the same tokens (checked here too: tests/lm/test_sampling.py)."""
    prefixes = mixed_prefixes(model.config.vocab_size, rows, lengths)
    fns = {
        way: partial(
            sample_sequences,
            model,
            prefixes,
            new_tokens,
            temperature=0,
            repetition_penalty=repetition_penalty,
            left_pad=way == "padded",
        )
        for way in ("padded", "per_length")
    }
    if not torch.equal(fns["padded"]().tokens, fns["per_length"]().tokens):
        raise AssertionError("greedy decode: the padded batch and the per-length path differ")
    secs = timeit_many(fns, **reps)
    groups = len(set(prefixes.prefix_lens.tolist()))
    return [
        Figure(
            f"greedy decode B={rows} one padded batch vs per prefix length",
            rows * new_tokens / secs["padded"],
            "new tok/s",
            rows * new_tokens / secs["per_length"],
            "per length",
            note=f"prefix lengths {lengths.start}-{lengths.stop - 1} ({groups} groups), "
            f"{new_tokens} new tokens, repetition penalty {repetition_penalty}, fp32",
        )
    ]


# 1b. KERNELS: rdx's oneDNN route (trainer.kernels=onednn) against torch's own (=torch).


def kernel_figures(
    beta: PreTrainedModel,
    beta_stock: PreTrainedModel,
    reward: PreTrainedModel,
    reward_stock: PreTrainedModel,
    *,
    rows: int = 1024,
    warmup: int = 1,
    min_time: float = 1.0,
    min_reps: int = 3,
) -> list[Figure]:
    """The same training step and the same β / R scoring with each kernel route, timed
    round-robin: tokens/s of trainer.kernels=onednn over =torch."""
    reps = {"warmup": warmup, "min_time": min_time, "min_reps": min_reps}
    steps = {
        "onednn": train_step(
            copy.deepcopy(beta), batch=TRAIN_BATCH, seq_len=TOTAL_LEN, precision="fp32"
        ),
        "torch": train_step(
            copy.deepcopy(beta_stock), batch=TRAIN_BATCH, seq_len=TOTAL_LEN, precision="fp32"
        ),
    }
    secs = timeit_many(steps, **reps)
    tokens = TRAIN_BATCH * (TOTAL_LEN - 1)
    figs = [
        Figure(
            "train π tiny kernels onednn vs torch",
            tokens / secs["onednn"],
            "tok/s",
            tokens / secs["torch"],
            "torch kernels",
            note=f"B={TRAIN_BATCH}; the same compute_gradient + Adam step",
        )
    ]
    fast = bench_scoring(beta, reward, rows=rows, **reps)
    slow = bench_scoring(beta_stock, reward_stock, rows=rows, **reps)
    for key, what in (("beta", "β sequence_prob"), ("reward", "R classifier forward")):
        figs.append(
            Figure(
                f"score {what} kernels onednn vs torch",
                rows / fast[key],
                "rows/s",
                rows / slow[key],
                "torch kernels",
                note=f"{rows} rows × {TOTAL_LEN} tokens",
            )
        )
    return figs


# 3. SCORING of stored trajectories: β's mean token probability, R's class logits.


class PretokenizedBatches:
    """Stands in for R's tokenizer in rdx.lm.sampling.classifier_logits: the "texts" are row
    numbers of already-tokenised rows, so the benchmark times R's forward pass through
    rdx's own loop, without the tokenizer's string work."""

    def __init__(self, input_ids: torch.Tensor):
        self.input_ids = input_ids

    def __call__(self, rows, **_) -> BatchEncoding:
        ids = self.input_ids[list(rows)]
        return BatchEncoding(
            {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids),
            }
        )


def bench_scoring(
    behavior: PreTrainedModel,
    reward: PreTrainedModel,
    *,
    rows: int,
    seq_len: int = TOTAL_LEN,
    batch_size: int = SCORE_BATCH,
    warmup: int = 1,
    min_time: float = 1.0,
    min_reps: int = 3,
) -> dict[str, float]:
    """Seconds to score `rows` stored trajectories with β (sequence_prob) and R."""
    g = torch.Generator().manual_seed(2)
    traj = torch.randint(1, behavior.config.vocab_size, (rows, seq_len), generator=g)
    r_ids = torch.randint(1, reward.config.vocab_size, (rows, seq_len), generator=g)
    tok = PretokenizedBatches(r_ids)
    eos = behavior.config.eos_token_id
    fns = {
        "beta": lambda: sequence_prob(
            behavior, Sequences.from_samples(traj, PREFIX_LEN, eos), batch_size=batch_size
        ),
        "reward": lambda: classifier_logits(
            reward, tok, list(range(rows)), batch_size=batch_size, max_length=seq_len
        ),
    }
    return timeit_many(fns, warmup=warmup, min_time=min_time, min_reps=min_reps)


def scoring_figures(
    behavior: PreTrainedModel,
    reward: PreTrainedModel,
    peak: dict,
    *,
    rows: int,
    seq_len: int = TOTAL_LEN,
    **kw,
) -> list[Figure]:
    secs = bench_scoring(behavior, reward, rows=rows, seq_len=seq_len, **kw)
    figs = []
    for key, model, positions, what in (
        ("beta", behavior, seq_len - 1, "β sequence_prob"),
        ("reward", reward, seq_len, "R classifier forward"),
    ):
        tok_s = rows * positions / secs[key]
        flops_tok = flops_per_token(model, positions, training=False)
        figs.append(
            Figure(
                f"score {what}",
                flops_tok * tok_s / 1e9,
                "GFLOP/s",
                peak["fp32_gflops"],
                "fp32 peak",
                ">= 60% MFU",
                note=f"{rows} rows × {positions} positions, N={matmul_params(model) / 1e6:.2f}M; "
                + _mfu_note(flops_tok, tok_s, peak),
            )
        )
    return figs


# THE SUITE


def run(quick: bool, peak: dict) -> list[Figure]:
    """Every compute figure; quick: ≤ ~90 s on 2 cores, full: a few minutes.

    Quick mode keeps the rows but measures less: GPT2-124M trains on batch 16 (its rows say
    so) and is not sampled from, and the no-cache loop (~10x the sampler's time) runs at
    batch 64 only."""
    reps = {"warmup": 1, "min_time": 1.0 if quick else 4.0, "min_reps": 3}
    big_reps = {"warmup": 1, "min_time": 0.0, "min_reps": 2 if quick else 3}
    # The models as the pipeline runs them (trainer.kernels=onednn), and stock copies.
    stock = {"beta": tiny_behavior(), "reward": tiny_reward(), "big": gpt2_124m()}
    beta, reward, big = (use_kernels(copy.deepcopy(m), "onednn") for m in stock.values())

    figs = train_figures("π tiny", beta, peak, mfu_goal=">= 60% MFU", **reps)
    figs += kernel_figures(beta, stock["beta"], reward, stock["reward"], **reps)
    figs += train_figures(
        "π GPT2-124M",
        big,
        peak,
        batch=16 if quick else TRAIN_BATCH,
        mfu_goal=">= 50% MFU",
        note="quick mode: batch 16, not 64 (a quarter of the tokens per step; Adam's "
        "per-step cost weighs 4x more per token)"
        if quick
        else "",
        **big_reps,
    )
    figs += sampling_figures(
        f"β tiny B={SCORE_BATCH}",
        beta,
        batch=SCORE_BATCH,
        nocache=not quick,
        reference=stock["beta"],
        **reps,
    )
    figs += sampling_figures(
        f"β tiny B={SCORE_BATCH}", beta, batch=SCORE_BATCH, nocache=False, **reps
    )
    figs += sampling_figures(
        "β tiny B=64",
        beta,
        batch=64,
        reference=stock["beta"],
        note="batch 64: per-step overhead weighs more",
        **reps,
    )
    if not quick:
        figs += sampling_figures(
            "β GPT2-124M B=64",
            big,
            batch=64,
            nocache=False,
            reference=stock["big"],
            note="no-cache loop skipped: ~16x the cached sampler's FLOPs at this size",
            **big_reps,
        )
    figs += greedy_figures(beta, **reps)
    figs += scoring_figures(beta, reward, peak, rows=1024 if quick else 4096, **reps)
    return figs


if __name__ == "__main__":
    from benchmarks.peak import measure_peak

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    print(format_table(run(quick, measure_peak(quick))))
