"""Hub presets and hub architectures, offline: β, π and R with their own tokenizers.

No test downloads anything. Every preset's architecture (GPT-2, OPT, XGLM, BERT) is built
tiny with random weights and saved, with a tokenizer trained here, to a temp dir that is
passed as model.hub / behavior.hub / reward.hub (from_pretrained takes a local dir).
"""

import functools
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
    XGLMConfig,
    XGLMForCausalLM,
)

from rdx.artifacts import prepare
from rdx.codec import Codec
from rdx.config import ConfigError
from rdx.models import HubUnavailable, freeze_all_but_last_layer, load_hub
from rdx.records import RunRecords
from rdx.run import execute
from rdx.sampling import Sequences, sample, sample_sequences, sequence_prob
from rdx.synthetic import generate
from rdx.trainer import _gradient
from tests.test_config import CONF, ROOT, compose_cfg

# the paper's models: presets and what they must say
PRESETS = {
    ("model", "gpt2"): ("gpt2", "pretrained", "all"),
    ("model", "gpt2-large"): ("gpt2-large", "pretrained", "all"),
    ("model", "xglm-1.7b"): ("facebook/xglm-1.7B", "pretrained", "last_layer"),
    ("model", "opt-6.7b"): ("facebook/opt-6.7b", "pretrained", "last_layer"),
    ("behavior", "gpt2"): ("gpt2", None, None),
    ("behavior", "opt-6.7b"): ("facebook/opt-6.7b", None, None),
    ("reward", "bert"): ("bert-base-uncased", None, None),
}


# ------------------------------------------------------------------ local "hub" dirs


def _texts() -> list[str]:
    corpus = generate(200, 20, seed=0)
    return [e.text for e in corpus.train]


def _bpe(texts, vocab: int, *, bos: bool, metaspace: bool) -> PreTrainedTokenizerFast:
    """A causal LM tokenizer: byte-level BPE like GPT-2/OPT, or SentencePiece-style
    (Metaspace, like XGLM: a word's leading space is part of its first token); with a BOS
    before every text like OPT and XGLM (`</s>`, which is also their EOS)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<unk>", "</s>"]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=specials,
            initial_alphabet=[] if metaspace else pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if bos:
        eos = tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="</s> $A", special_tokens=[("</s>", eos)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        bos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _wordpiece(texts, vocab: int) -> PreTrainedTokenizerFast:
    """BERT's kind: lower-cased WordPiece, [CLS] text [SEP]."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False),
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _save(model, tokenizer, out: Path) -> str:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, str]:
    """Tiny random-weight models of every preset's class, each with its own tokenizer."""
    root = tmp_path_factory.mktemp("hub")
    texts = _texts()
    torch.manual_seed(0)
    gpt2_tok = _bpe(texts, 300, bos=False, metaspace=False)
    opt_tok = _bpe(texts, 400, bos=True, metaspace=False)
    xglm_tok = _bpe(texts, 350, bos=True, metaspace=True)
    bert_tok = _wordpiece(texts, 250)
    eos = {t: t.eos_token_id for t in (gpt2_tok, opt_tok, xglm_tok)}
    small = {"n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2}
    return {
        "gpt2": _save(
            GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=len(gpt2_tok),
                    **small,
                    bos_token_id=eos[gpt2_tok],
                    eos_token_id=eos[gpt2_tok],
                )
            ),
            gpt2_tok,
            root / "gpt2",
        ),
        "opt": _save(
            OPTForCausalLM(
                OPTConfig(
                    vocab_size=len(opt_tok),
                    hidden_size=32,
                    word_embed_proj_dim=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    ffn_dim=64,
                    max_position_embeddings=64,
                    pad_token_id=opt_tok.pad_token_id,
                    bos_token_id=eos[opt_tok],
                    eos_token_id=eos[opt_tok],
                )
            ),
            opt_tok,
            root / "opt",
        ),
        "xglm": _save(
            XGLMForCausalLM(
                XGLMConfig(
                    vocab_size=len(xglm_tok),
                    d_model=32,
                    num_layers=2,
                    attention_heads=2,
                    ffn_dim=64,
                    max_position_embeddings=64,
                    pad_token_id=xglm_tok.pad_token_id,
                    bos_token_id=eos[xglm_tok],
                    eos_token_id=eos[xglm_tok],
                )
            ),
            xglm_tok,
            root / "xglm",
        ),
        "bert": _save(
            BertModel(
                BertConfig(
                    vocab_size=len(bert_tok),
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=64,
                    max_position_embeddings=64,
                )
            ),
            bert_tok,
            root / "bert",
        ),
    }


# ------------------------------------------------------------------ presets, offline failure


@pytest.mark.parametrize("group, name", sorted(PRESETS))
def test_presets_name_the_papers_models(group, name, monkeypatch):
    monkeypatch.setenv("RDX_HUB", "1")  # downloads allowed, and the hub answers:
    monkeypatch.setattr("rdx.corpus._hub_reachable", lambda: True)
    cfg = compose_cfg(f"{group}={name}")
    hub, init, trainable = PRESETS[(group, name)]
    node = getattr(cfg, group)
    assert (node.name, node.hub) == (name, hub)
    if group == "model":
        assert (node.init, node.trainable) == (init, trainable)
    if group == "reward":
        assert node.train_epochs >= 1 and node.train_lr == pytest.approx(2e-5)


def test_every_hub_preset_file_is_tested():
    files = {
        (g, p.stem) for g in ("model", "behavior", "reward") for p in (CONF / g).glob("*.yaml")
    }
    assert files - {("model", "tiny"), ("behavior", "tiny"), ("reward", "tiny")} == set(PRESETS)


@pytest.mark.parametrize("group, name", sorted(PRESETS))
def test_hub_preset_fails_fast_offline_with_one_line(group, name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RDX_HUB"}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty HF cache
    tic = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rdx.train", f"{group}={name}", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert time.monotonic() - tic < 15
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    hub = PRESETS[(group, name)][0]
    assert lines == [
        f"rdx: config error: {group}.hub={hub!r}: not a local directory and not in the Hugging "
        "Face cache, and downloads are off; save it where there is hub access (huggingface-cli "
        f"download {hub} --local-dir DIR) and pass {group}.hub=DIR, or set RDX_HUB=1 to "
        "download it"
    ], proc.stderr
    assert not (tmp_path / "run" / "status.json").exists()


def test_opted_in_hub_that_does_not_answer_is_a_config_error(monkeypatch):
    monkeypatch.setenv("RDX_HUB", "1")
    monkeypatch.setattr("rdx.corpus._hub_reachable", lambda: False)
    with pytest.raises(ConfigError, match="model.hub='gpt2': RDX_HUB=1 but the Hugging Face hub"):
        compose_cfg("model=gpt2")


def test_load_hub_fails_in_seconds_without_the_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("RDX_HUB", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    tic = time.monotonic()
    with pytest.raises(HubUnavailable) as err:
        load_hub("causal", "facebook/opt-6.7b")
    assert time.monotonic() - tic < 5  # not ~30 s of retries
    assert "\n" not in str(err.value) and "--local-dir DIR" in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.hub=/no/such/model"], "model.hub='/no/such/model': directory not found"),
        (["trainer.micro_batch=0"], "trainer.micro_batch=0: expected a number > 0"),
        (["reward.train_epochs=0"], "reward.train_epochs=0: expected >= 1"),
    ],
)
def test_bad_hub_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        compose_cfg(*overrides)


# ------------------------------------------------------------------ architectures


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
def test_cached_sampler_matches_full_recompute(hub, arch):
    """The KV-cache sampler is exact for each preset's architecture (OPT and XGLM compute
    positions their own way), BOS-led prefixes included."""
    model = load_hub("causal", hub[arch]).eval()
    codec = Codec(load_hub("tokenizer", hub[arch]))
    prefixes = torch.tensor(codec.prefix_ids(["the food was good", "the team won the"], 3))
    fast = sample(model, prefixes, 8, temperature=0)
    x = prefixes
    with torch.no_grad():
        for _ in range(8):
            x = torch.cat([x, model(input_ids=x).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(fast, x)


@pytest.mark.parametrize(
    "arch, trainable",
    [
        ("gpt2", {"transformer.h.1.", "transformer.wte.weight"}),
        ("opt", {"model.decoder.layers.1.", "model.decoder.embed_tokens.weight"}),
        ("xglm", {"model.layers.1.", "model.embed_tokens.weight"}),
    ],
)
def test_last_layer_trains_the_last_block_and_the_head(hub, arch, trainable):
    model = load_hub("causal", hub[arch])
    freeze_all_but_last_layer(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(any(n.startswith(t) for t in trainable) for n in names)
    assert any(n.startswith(sorted(trainable)[0]) for n in names)
    assert sum(p.numel() for n, p in model.named_parameters() if n not in names) > 0


# ------------------------------------------------------------------ codec: re-tokenisation


@pytest.mark.parametrize("arch", ["gpt2", "opt", "xglm"])
def test_encode_scores_exactly_the_continuation(hub, arch):
    codec = Codec(load_hub("tokenizer", hub[arch]))
    prefixes = ["the food", "the team won"]
    continuations = [" was good and the staff", " the final"]
    seqs = codec.encode(prefixes, continuations, [True, False])
    tok = codec.tokenizer
    for i, (p, c) in enumerate(zip(prefixes, continuations, strict=True)):
        want_cont = tok(c, add_special_tokens=False)["input_ids"] + (
            [codec.eos_id] if i == 0 else []
        )
        scored = seqs.tokens[i, 1:][seqs.mask()[i].bool()].tolist()
        assert scored == want_cont
        assert (
            seqs.tokens[i, : seqs.prefix_lens[i]].tolist()
            == codec.bos + tok(p, add_special_tokens=False)["input_ids"]
        )
    assert codec.decode(seqs) == (prefixes, continuations, [True, False])
    assert codec.bos == ([] if arch == "gpt2" else [codec.eos_id])


def test_decode_keeps_the_space_before_a_sentencepiece_continuation(hub):
    codec = Codec(load_hub("tokenizer", hub["xglm"]))
    tok = codec.tokenizer
    pre = tok("the food", add_special_tokens=False)["input_ids"]
    cont = tok(" was good", add_special_tokens=False)["input_ids"]
    assert tok.decode(cont) == "was good"  # decoded alone, the space is gone
    rows = torch.tensor([codec.bos + pre + cont])
    seqs = Sequences.from_samples(rows, len(codec.bos) + len(pre), codec.eos_id)
    assert codec.decode(seqs) == (["the food"], [" was good"], [False])


def test_sample_sequences_groups_prefix_lengths(hub):
    """Ragged prefixes decode per length; with one length it is `sample` itself."""
    model = load_hub("causal", hub["opt"]).eval()
    codec = Codec(load_hub("tokenizer", hub["opt"]))
    prefixes = codec.prefixes(["the food", "the team won the", "a"])
    assert prefixes.prefix_lens.unique().numel() > 1  # really ragged: groups are exercised
    got = sample_sequences(model, prefixes, 6, temperature=0, eos_id=codec.eos_id)
    for i in range(3):
        p = int(prefixes.prefix_lens[i])
        alone = sample(model, prefixes.tokens[i : i + 1, :p], 6, temperature=0)[0]
        end = int(got.lengths[i])
        assert got.tokens[i, :end].tolist() == alone[:end].tolist()
    # Two prefixes of one length whatever the trained tokenizer's merges: one text, twice.
    same = codec.prefixes(["the food", "the food"])
    assert same.prefix_lens.unique().numel() == 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sample_sequences(model, same, 6, temperature=1.0, generator=g1, eos_id=codec.eos_id)
    b = sample(model, same.tokens, 6, temperature=1.0, generator=g2, eos_id=codec.eos_id)
    assert torch.equal(a.tokens, b)


# ------------------------------------------------------------------ end to end


def _cfg(cache, *overrides):
    return compose_cfg(
        "experiment=smoke",
        f"cache_dir={cache}",
        "trainer.threads=1",
        "trainer.epochs=1",
        *overrides,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_three_tokenizers_end_to_end(hub, cache, tmp_path, caplog):
    """β tiny (corpus BPE), π an OPT (BOS, own BPE, random init), R a fine-tuned BERT
    (WordPiece): π trains on β's trajectories re-tokenised, and β scores π's samples in
    β's tokens."""
    cfg = _cfg(
        cache,
        f"model.hub={hub['opt']}",
        "model.name=opt",
        f"reward.hub={hub['bert']}",
        "reward.name=bert",
        "reward.train_lr=1e-3",
    )
    prep = prepare(cfg)
    assert not prep.shared_tokens
    # π's rows hold β's trajectories: the same text, in π's tokens, BOS first
    b_pre, b_cont, b_end = prep.behavior_codec.decode(
        Sequences.from_samples(
            torch.load(Path(prep.paths["trajectories"]) / "trajectories.pt")["train"]["tokens"],
            4,
            prep.behavior_codec.eos_id,
        )
    )
    assert prep.policy_codec.decode(prep.train) == (b_pre, b_cont, b_end)
    assert (prep.train.tokens[:, 0] == prep.policy_codec.eos_id).all()  # OPT's BOS
    assert prep.mask.shape == (len(prep.train), prep.train.tokens.shape[1] - 1)
    assert prep.mask.sum(1).tolist() == (prep.train.lengths - prep.train.prefix_lens).tolist()
    metrics = json.loads((Path(prep.paths["reward"]) / "metrics.json").read_text())
    assert metrics["heldout_accuracy"] == prep.reward_accuracy and metrics["n_test"] > 0
    with caplog.at_level(logging.INFO, logger="rdx"):
        result = execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result == pytest.approx(summary["acc"] + summary["reward"])
    assert summary["model_hub"] == hub["opt"] and summary["reward_model"] == "bert"
    assert 0 < summary["eval/likelihood"] < 1 and 0 < summary["eval/reward"] < 1
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["prefix"] for s in samples] == prep.eval_prefix_texts
    # eval/likelihood: β's probability of π's text, re-tokenised for β
    in_behavior = prep.behavior_codec.encode(
        prep.eval_prefix_texts, [s["generation"] for s in samples], [s["ended"] for s in samples]
    )
    want = sequence_prob(prep.behavior, in_behavior)
    assert [s["likelihood"] for s in samples] == pytest.approx(want.tolist(), abs=1e-6)
    assert summary["eval/likelihood"] == pytest.approx(want.mean().item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "behavior, model, init, shared",
    [("gpt2", "xglm", "random", False), ("xglm", "xglm", "behavior", True)],
)
def test_hub_behavior_with_hub_target(hub, cache, tmp_path, behavior, model, init, shared):
    """A hub β (not trained; its own tokenizer) with a hub π: different tokenizers, or π a
    copy of β reading β's own tokens."""
    cfg = _cfg(
        cache,
        f"behavior.hub={hub[behavior]}",
        f"model.hub={hub[model]}",
        f"model.init={init}",
    )
    prep = prepare(cfg)
    assert prep.shared_tokens is shared
    assert prep.paths["behavior"] == hub[behavior]  # used as is, not trained and cached
    execute(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["init"] == init and 0 <= summary["acc"] <= 1


def test_hub_random_init_is_seeded_and_not_the_checkpoint(hub, cache):
    from rdx.models import hub_causal_lm

    a = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    b = hub_causal_lm(hub["gpt2"], "random", seed=1).state_dict()
    c = hub_causal_lm(hub["gpt2"], "pretrained", seed=1).state_dict()
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


# ------------------------------------------------------------------ memory: OOM and precision


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=50,
            n_positions=16,
            n_embd=16,
            n_layer=1,
            n_head=2,
            resid_pdrop=0,
            embd_pdrop=0,
            attn_pdrop=0,
        )
    )
    x = torch.randint(0, 50, (16, 10), generator=g)
    seqs = Sequences(x, torch.full((16,), 3), torch.randint(5, 11, (16,), generator=g))
    r = torch.randn(16, generator=g)
    bp = torch.rand(16, generator=g) * 0.5
    keep = torch.rand(16, generator=g) > 0.3
    return policy, x, seqs.mask(), r, bp, keep


def test_micro_batches_give_the_same_gradient():
    t = compose_cfg().trainer
    grads = {}
    for micro in (16, 5):
        policy, x, mask, r, bp, keep = _batch()
        out, acc = _gradient(policy, x, mask, r, bp, keep, t, torch.device("cpu"), micro)
        grads[micro] = (torch.cat([p.grad.flatten() for p in policy.parameters()]), out, acc)
    (g16, o16, a16), (g5, o5, a5) = grads[16], grads[5]
    assert torch.allclose(g16, g5, atol=1e-6, rtol=1e-4) and g16.abs().max() > 0
    assert torch.allclose(o16.coef, o5.coef, atol=1e-6) and torch.allclose(a16, a5)


def test_bf16_autocast_keeps_coefficients_float32():
    t = compose_cfg("trainer.precision=bf16").trainer
    policy, x, mask, r, bp, keep = _batch()
    out, _ = _gradient(policy, x, mask, r, bp, keep, t, torch.device("cpu"), 16)
    assert out.coef.dtype == torch.float32 and out.r_hat.dtype == torch.float32
    assert torch.isfinite(out.loss) and all(p.grad is not None for p in policy.parameters())


@pytest.mark.slow
def test_cuda_oom_halves_the_micro_batch_and_retries(cache, tmp_path, monkeypatch, caplog):
    """An injected CUDA OOM for more than 8 rows: the step is retried in micro-batches of 8
    (32 → 16 → 8), logged, and the run ends as an unconstrained one does."""
    full = tmp_path / "full"
    execute(_cfg(cache), full)
    original = GPT2LMHeadModel.forward

    @functools.wraps(original)  # the sampler reads forward's signature
    def forward(self, input_ids=None, **kwargs):
        if torch.is_grad_enabled() and input_ids is not None and len(input_ids) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "forward", forward)
    with caplog.at_level(logging.WARNING, logger="rdx"):
        execute(_cfg(cache), tmp_path / "oom")
    assert "retrying with micro-batches of 16" in caplog.text
    assert "retrying with micro-batches of 8" in caplog.text
    steps = [r for r in RunRecords(tmp_path / "oom").read_metrics() if r["kind"] == "step"]
    assert {r["perf/micro_batch"] for r in steps} == {8}
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((tmp_path / "oom" / "summary.json").read_text())
    losses = [
        [r["train/loss"] for r in RunRecords(d).read_metrics() if r["kind"] == "step"]
        for d in (full, tmp_path / "oom")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-6)
    assert b["acc_plus_reward"] == pytest.approx(a["acc_plus_reward"], abs=1e-3)
