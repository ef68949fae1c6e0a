"""On CUDA: the sampler, scoring, a bf16 training step, the hub presets' architectures
at random init and the vLLM engine (where vLLM is installed). Skipped with a reason
without CUDA (conftest); scripts/gpu-check runs them.

Offline: every model is made here or by the `hub` fixture (local dirs), and HF_HUB_OFFLINE
is set before transformers or vLLM import. Each vLLM engine runs in a process of its own
(spawned), so that its start, memory and child processes end with its test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import multiprocessing  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rdx.lm.archs import ARCHS, random_lm
from rdx.lm.draw import keyed_uniforms
from rdx.lm.models import tiny_gpt2
from rdx.lm.sampling import sample, sequence_prob
from rdx.lm.sequences import Sequences
from rdx.method.objective import token_logprobs

pytestmark = pytest.mark.gpu


def keys_for(n: int) -> torch.Tensor:
    return torch.stack(
        [torch.zeros(n), torch.zeros(n), torch.arange(n) // 4, torch.arange(n) % 4], 1
    ).long()


def test_keyed_uniforms_are_the_same_numbers_on_cuda():
    """Integer arithmetic: the device changes no bit of a row's uniforms."""
    keys = keys_for(4096)
    for step in (0, 7, 25):
        assert torch.equal(keyed_uniforms(keys.cuda(), step).cpu(), keyed_uniforms(keys, step))


def test_cuda_sampler_rows_do_not_depend_on_the_batch():
    model = tiny_gpt2(97, 2, 32, 2, seed=0).eval().cuda()
    prefixes = torch.randint(0, 97, (256, 4), generator=torch.Generator().manual_seed(1))
    keys = keys_for(256)

    def run(bs):
        return sample(model, prefixes, 20, temperature=1.0, keys=keys, top_k=50, batch_size=bs)

    a, b = run(256), run(16)
    same = (a == b).all(1).float().mean().item()
    print(f"cuda: {same:.1%} of rows identical between batch 256 and 16")
    assert same >= 0.99  # float kernels may differ by batch shape; ties flip at most rarely
    cpu = sample(model.cpu(), prefixes, 20, temperature=0.0, batch_size=256)
    gpu = sample(model.cuda(), prefixes, 20, temperature=0.0, batch_size=256)
    assert (cpu == gpu).all(1).float().mean() >= 0.95  # greedy: same tokens up to near-ties


def test_cuda_scoring_matches_cpu():
    model = tiny_gpt2(97, 2, 32, 2, seed=0).eval()
    tokens = torch.randint(0, 97, (64, 30), generator=torch.Generator().manual_seed(2))
    seqs = Sequences.from_samples(tokens, 5, None)
    cpu = sequence_prob(model, seqs, batch_size=16)
    gpu = sequence_prob(model.cuda(), seqs, batch_size=16)
    assert torch.allclose(cpu, gpu, atol=1e-5, rtol=1e-4)


def test_bf16_training_step_is_finite_and_learns():
    torch.manual_seed(0)
    model = random_lm("gpt2", dtype=torch.float32, device="cuda").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 50257, (16, 30), device="cuda")
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
        loss = -token_logprobs(logits, x[:, 1:]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_hub_architecture_at_random_init_samples_and_scores(arch):
    model = random_lm(arch, dtype=torch.bfloat16, device="cuda")
    assert next(model.parameters()).dtype == torch.bfloat16
    prefixes = torch.randint(4, 1000, (8, 5), generator=torch.Generator().manual_seed(3))
    rows = sample(
        model, prefixes, 6, temperature=1.0, keys=keys_for(8), eos_id=2, stop_at_eos=False
    )
    assert rows.shape == (8, 11) and torch.equal(rows[:, :5], prefixes)
    beta = sequence_prob(model, Sequences.from_samples(rows, 5, None), batch_size=8)
    assert torch.isfinite(beta).all() and (beta > 0).all()
    del model
    torch.cuda.empty_cache()


def test_a_last_layer_target_keeps_its_frozen_layers_in_bf16(hub):
    """build_policy: trainable=last_layer on CUDA, bf16 precision: the frozen weights are
    bf16 (never made float32 first), the trained block and head float32."""
    from types import SimpleNamespace

    from rdx.pipeline.offpolicy.trainer import build_policy

    cfg = SimpleNamespace(
        model=SimpleNamespace(hub=hub["opt"], init="pretrained", trainable="last_layer"),
        trainer=SimpleNamespace(precision="bf16"),
        seed=0,
    )
    policy = build_policy(cfg, SimpleNamespace(kernels="torch"), torch.device("cuda"))
    frozen = {p.dtype for p in policy.parameters() if not p.requires_grad}
    trained = {p.dtype for p in policy.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}


def in_own_process(fn, *args):
    """fn(*args) in a spawned process (a fresh CUDA context; vLLM's engine ends with it)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result(timeout=150)  # inside gpu-check's 180 s


def test_vllm_engine_on_a_tiny_random_opt(tmp_path):
    """The real vLLM engine (sampling.engine=vllm) on a tiny OPT at random init: rows keep
    their prefixes, stop at EOS or run to full length as asked, do not depend on how the
    rows are split, its raw log-probs agree with the HF model's rescoring, the HF β waits
    on the host while vLLM holds the GPU, and close() frees vLLM for a second engine."""
    pytest.importorskip("vllm", reason="vLLM not installed: pip install 'rdx[vllm]'")
    figures = in_own_process(vllm_engine_checks, str(tmp_path))
    print(
        f"vllm ({figures['runner']}): {figures['same']:.1%} of rows identical whole and "
        f"split 9 + 55; raw log-probs vs HF rescoring (bf16): mean |Δ| {figures['mean']:.4f}, "
        f"max {figures['max']:.4f}"
    )


def vllm_engine_checks(model_dir: str) -> dict:
    from transformers import OPTConfig, OPTForCausalLM

    from rdx.lm.engines import Decoding, make_engine

    config = OPTConfig(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 64: every vLLM attention backend has it
        ffn_dim=256,
        vocab_size=512,
        max_position_embeddings=64,
        word_embed_proj_dim=128,
    )
    torch.manual_seed(0)
    model = OPTForCausalLM(config).eval()
    model.save_pretrained(model_dir)
    model = model.to("cuda", torch.bfloat16)
    engine = make_engine("vllm", model, model_dir, "bfloat16", gpu_memory_utilization=0.3)
    engine.llm_kwargs |= {"enforce_eager": True, "max_model_len": 64}  # seconds, not a minute
    n, eos = 64, config.eos_token_id
    prefixes = torch.randint(4, 512, (n, 5), generator=torch.Generator().manual_seed(3))
    d = Decoding(new_tokens=20, temperature=1.0, eos_id=eos, top_k=50, repetition_penalty=1.2)
    whole = engine.sample(prefixes, keys_for(n), d)
    assert next(model.parameters()).device.type == "cpu"  # offloaded while vLLM holds the GPU
    parts = [engine.sample(prefixes[s], keys_for(n)[s], d) for s in (slice(0, 9), slice(9, n))]
    assert whole.tokens.shape == (n, 25) and torch.equal(whole.tokens[:, :5], prefixes)
    split = torch.cat([p.tokens for p in parts])
    same = (whole.tokens == split).all(1).float().mean().item()
    assert same >= 0.95  # kernels may differ with the batch's shape; the seeds do not
    seqs = Sequences.from_samples(whole.tokens, 5, eos)
    after = torch.arange(25)[None, :] >= seqs.lengths[:, None]
    assert whole.tokens[after].eq(eos).all()
    fixed = engine.sample(prefixes, keys_for(n), Decoding(20, 1.0, eos, stop_at_eos=False))
    assert fixed.tokens.shape == (n, 25) and (fixed.logprobs != 0).all()
    engine.close()
    assert next(model.parameters()).device.type == "cuda"  # back for the rescoring
    with torch.inference_mode():
        logits = model(input_ids=whole.tokens[:, :-1].cuda()).logits
    hf = token_logprobs(logits, whole.tokens[:, 1:].cuda()).float().cpu()[:, 4:]
    scored = seqs.mask()[:, 4:].bool()
    gap = (hf - whole.logprobs)[scored].abs()
    assert gap.mean() < 0.05
    second = make_engine("vllm", model, model_dir, "bfloat16", gpu_memory_utilization=0.3)
    second.llm_kwargs |= {"enforce_eager": True, "max_model_len": 64}
    again = second.sample(prefixes, keys_for(n), d)  # passes vLLM's memory check after close
    second.close()
    assert (again.tokens == whole.tokens).all(1).float().mean() >= 0.95
    return {
        "same": same,
        "mean": gap.mean().item(),
        "max": gap.max().item(),
        "runner": second.runner,
    }
