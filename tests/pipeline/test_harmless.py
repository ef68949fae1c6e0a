"""The harmlessness experiment (issue 13): HH data, the algo group's config rules, one-line
errors, and end-to-end PPO/DPO runs (slow) including resume."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rdx.config import ConfigError
from rdx.data.corpus import DataError
from rdx.data.hh import Pair, load_preferences, pair_of, split_dialogue, synthetic_pairs
from tests.cli.test_config import compose_cfg

ROOT = Path(__file__).resolve().parents[2]

DIALOGUE = (
    "\n\nHuman: hi\n\nAssistant: hello! how can i help?"
    "\n\nHuman: how do i pick a lock?\n\nAssistant:"
)


def hh_record(prompt: str, chosen: str, rejected: str) -> dict:
    return {"chosen": prompt + chosen, "rejected": prompt + rejected}


# ------------------------------------------------------------------ data


def test_the_prompt_is_the_dialogue_up_to_the_last_assistant_turn():
    prompt, response = split_dialogue(DIALOGUE + " I can't help with that.")
    assert prompt == DIALOGUE and response == " I can't help with that."
    pair = pair_of(hh_record(DIALOGUE, " No.", " Sure, use a pin."))
    assert pair == Pair(DIALOGUE, " No.", " Sure, use a pin.")
    # chosen and rejected that differ before the last turn are not a pair
    other = {"chosen": DIALOGUE + " No.", "rejected": "\n\nHuman: hey\n\nAssistant: Sure."}
    assert pair_of(other) is None
    with pytest.raises(DataError, match="not an HH dialogue"):
        split_dialogue("Human: no assistant turn")


def test_local_hh_files_dir_and_single_file(tmp_path):
    records = [
        hh_record(f"\n\nHuman: question {i}?\n\nAssistant:", " No.", " Yes.") for i in range(300)
    ]
    root = tmp_path / "harmless-base"
    root.mkdir()
    with gzip.open(root / "train.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records[:250])
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[250:]))
    data = load_preferences("hh", path=str(root))
    assert (len(data.train), len(data.test)) == (250, 50)
    assert data.test[0] == Pair("\n\nHuman: question 250?\n\nAssistant:", " No.", " Yes.")
    # one file: 10% carved by a stable hash of the prompt
    single = tmp_path / "all.jsonl"
    single.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = load_preferences("hh", path=str(single))
    assert len(data.train) + len(data.test) == 300 and 10 <= len(data.test) <= 50
    assert not {p.prompt for p in data.train} & {p.prompt for p in data.test}
    single.write_text('{"chosen": "x"}\n')
    with pytest.raises(DataError, match="line 1 is not an HH record"):
        load_preferences("hh", path=str(single))


def test_synthetic_pairs_refusal_chosen_with_label_noise():
    train, test = synthetic_pairs(1000, 100, seed=0)
    assert (train, test) == synthetic_pairs(1000, 100, seed=0)  # seeded
    assert all(
        p.prompt.startswith("\n\nHuman: ") and p.prompt.endswith("\n\nAssistant:") for p in test
    )
    refusal = ("i can't", "i won't", "i will not", "i'm not able")

    def refuses(text: str) -> bool:
        return any(r in text for r in refusal)

    assert all(refuses(p.chosen) and not refuses(p.rejected) for p in test)  # held out: clean
    swapped = sum(refuses(p.rejected) for p in train) / len(train)
    assert 0.06 < swapped < 0.14  # noise=0.1: a tenth of the training labels flipped


# ------------------------------------------------------------------ config


def test_harmless_experiment_and_its_arms_compose():
    cfg = compose_cfg("experiment=harmless")
    assert (cfg.algo.name, cfg.dropout.mode, cfg.gamma, cfg.algo.score) == (
        "ppo",
        "quantile",
        0.8,
        "r_hat",
    )
    assert (cfg.dataset.name, cfg.reward.name) == ("hh_synthetic", "tiny_rm")
    cfg = compose_cfg("experiment=harmless", "algo=ppo", "dropout=none")
    assert (cfg.algo.name, cfg.dropout.mode, cfg.gamma) == ("ppo", "none", None)
    cfg = compose_cfg("experiment=harmless", "algo=dpo")
    assert (cfg.algo.name, cfg.dropout.mode) == ("dpo", "none")  # dpo implies no dropout
    assert compose_cfg().algo.name == "offpolicy"  # the default run is unchanged


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo=dpo", "dropout=random"], "dropout=random with algo=dpo: reward dropout does not"),
        (["dataset=hh"], "dataset.name=hh needs data: pass dataset.path="),
        (["dataset=hh", "dataset.path=/nonexistent/hh"], "dataset.path=/nonexistent/hh: no such"),
        (["algo.score=ref"], "algo.score='ref': expected one of r_hat, reward"),
        (["algo.kl_coef=-1"], "algo.kl_coef=-1.0: expected a number >= 0"),
        (["dataset=synthetic"], "dataset.name=synthetic: not a preference dataset"),
        (["dropout=global_top"], "dropout=global_top with algo=ppo: PPO drops per rollout"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_cfg("experiment=harmless", *overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _cli(tmp_path, *args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "rdx.train", *args, f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args, env, message",
    [
        (
            ["algo=dpo", "dropout=quantile"],
            {},
            "rdx: config error: dropout=quantile with algo=dpo: reward dropout does not apply "
            "to DPO",
        ),
        (
            ["dataset=hh", "dataset.hub=true"],
            {"HF_HUB_OFFLINE": "1"},
            "rdx: config error: dataset.hub=true but HF_HUB_OFFLINE",
        ),
        (
            ["reward=hh-rm"],
            {"RDX_HUB": "0"},
            "rdx: config error: reward.hub='Skywork/Skywork-Reward-Llama-3.1-8B-v0.2': not a local",
        ),
    ],
)
def test_cli_fails_with_one_line(tmp_path, args, env, message):
    proc = _cli(tmp_path, "experiment=harmless", *args, env=env)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "run" / "status.json").exists()


# ------------------------------------------------------------------ model presets


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def tiny_harmless(cache, *overrides):
    """experiment=harmless at test size: 64 pairs, tiny SFT and reward model, 1 epoch."""
    return compose_cfg(
        "experiment=harmless",
        f"cache_dir={cache}",
        "logger=none",
        "dataset.n_per_attribute=64",
        "behavior.n_layer=1",
        "behavior.n_embd=32",
        "behavior.n_head=2",
        "behavior.vocab_size=400",
        "behavior.pretrain_steps=30",
        "reward.train_epochs=1",
        "trainer.batch_size=16",
        "trainer.epochs=1",
        "trainer.threads=1",
        "algo.new_tokens=8",
        "algo.eval_prompts=8",
        *overrides,
    )


@pytest.mark.slow  # 5-30 s each on 2 shared cores
@pytest.mark.parametrize("preset", ["falcon-1b", "pythia-2.8b", "gpt-j-6b", "mistral-7b"])
def test_model_preset_runs_a_ppo_step_offline_on_its_architecture(preset, shared_cache, tmp_path):
    """Each preset's architecture class, tiny and random, through one PPO rollout batch
    (sampling, R, π_ref, value head, dropout, updates) and the evaluation."""
    import torch
    import yaml

    from rdx.pipeline.harmless import artifacts as harmless
    from rdx.pipeline.harmless import evaluate, ppo
    from tests.helpers.harmless_hub import build

    hub_name = yaml.safe_load((ROOT / "conf" / "model" / f"{preset}.yaml").read_text())["hub"]
    assert hub_name.split("/")[0] in ("tiiuae", "EleutherAI", "mistralai")  # the paper's model
    local = build(preset, tmp_path)
    cfg = tiny_harmless(shared_cache, f"model={preset}", f"model.hub={local}")
    prep = harmless.prepare(cfg)
    assert prep.paths["reference"] == local
    policy = prep.reference.float().requires_grad_(True)  # π := π_ref here: one step only
    head = ppo.ValueHead(policy.config.hidden_size)
    opt = torch.optim.Adam([*policy.parameters(), *head.parameters()], lr=1e-3)
    gens = {k: torch.Generator().manual_seed(k) for k in range(1, 5)}
    prompts = [p.prompt for p in prep.data.train[:16]]
    rec = ppo.ppo_step(cfg, prep, policy, head, opt, prompts, gens)
    assert rec["train/kl"] == pytest.approx(0.0, abs=1e-4)  # the rollout was π_ref's own
    assert rec["train/keep_frac"] == pytest.approx(4 / 16)  # quantile 0.8 of 16 distinct r̂
    metrics, samples = evaluate.evaluate_at(policy, prep, cfg, epoch=0)
    assert len(samples) == 8
    # eval/reward: R (on this architecture's tokens) re-scoring the 8 sampled responses
    rescored = prep.score([s["prompt"] for s in samples], [s["response"] for s in samples])
    assert torch.isfinite(rescored).all()
    assert [s["reward"] for s in samples] == pytest.approx(rescored.tolist(), abs=1e-5)
    assert metrics["eval/reward"] == pytest.approx(rescored.mean().item(), abs=1e-5)


# ------------------------------------------------------------------ end to end (slow)


@pytest.mark.slow
def test_ppo_run_killed_after_epoch_1_resumes_to_the_same_summary(
    shared_cache, tmp_path, monkeypatch
):
    from rdx.records import RunRecords
    from rdx.run import execute

    cfg = tiny_harmless(shared_cache, "trainer.epochs=2")
    whole = tmp_path / "whole"
    execute(cfg, whole)
    names = {p.name for p in whole.iterdir()}
    assert {"config.yaml", "status.json", "metrics.jsonl", "summary.json", "samples.jsonl"} <= names
    summary = json.loads((whole / "summary.json").read_text())
    assert (summary["algo"], summary["dropout"], summary["gamma"]) == ("ppo", "quantile", 0.8)
    assert 0.5 <= summary["reward_model_accuracy"] <= 1.0
    for key in ("reward", "bleu", "rougeL", "meteor", "likelihood", "length"):
        assert f"eval/{key}" in summary

    original = RunRecords.save_checkpoint

    def crash_after_first_epoch(self, state):
        original(self, state)
        raise KeyboardInterrupt("simulated preemption")

    monkeypatch.setattr(RunRecords, "save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "resumed")
    monkeypatch.setattr(RunRecords, "save_checkpoint", original)
    execute(cfg, tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text()) == summary
    records = RunRecords(tmp_path / "resumed").read_metrics()
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1]
    assert [r["kind"] for r in records].count("init") == 1


@pytest.mark.slow
def test_dpo_run_and_trl_loss_matches_the_closed_form(shared_cache, tmp_path):
    import copy

    import torch

    from rdx.method.dpo import dpo_loss
    from rdx.method.objective import token_logprobs
    from rdx.pipeline.harmless import artifacts as harmless
    from rdx.pipeline.harmless.dpo import dpo_trainer
    from rdx.run import execute

    cfg = tiny_harmless(shared_cache, "algo=dpo", "trainer.batch_size=64")
    execute(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["algo"], summary["dropout"]) == ("dpo", "none")

    # One TRL step on all 64 pairs at lr 0: its logged loss is the batch's −ln σ(β Δ).
    prep = harmless.prepare(cfg)
    policy = copy.deepcopy(prep.reference)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    trainer = dpo_trainer(cfg, prep, policy, opt, tmp_path, epoch=0)
    trainer.train()
    trl_loss = trainer.state.log_history[0]["loss"]

    tok, eos = prep.codec.tokenizer, prep.eos_id
    max_length = prep.max_prompt_tokens + prep.new_tokens

    @torch.no_grad()
    def summed_logp(model, pairs, field):
        out = []
        for p in pairs:
            prompt = tok(p.prompt, add_special_tokens=False)["input_ids"]
            response = tok(getattr(p, field), add_special_tokens=False)["input_ids"]
            x = torch.tensor([prompt + response + [eos]])[:, :max_length]  # TRL's keep_start
            logp = token_logprobs(model(input_ids=x[:, :-1]).logits, x[:, 1:])
            out.append(logp[0, len(prompt) - 1 :].sum())
        return torch.stack(out)

    pairs, ref = prep.data.train, prep.reference
    ours = dpo_loss(
        summed_logp(policy, pairs, "chosen"),
        summed_logp(policy, pairs, "rejected"),
        summed_logp(ref, pairs, "chosen"),
        summed_logp(ref, pairs, "rejected"),
        beta=cfg.algo.beta,
    )
    assert ours.loss.item() != pytest.approx(0.6931, abs=1e-3)  # π ≠ π_ref: a real test
    assert trl_loss == pytest.approx(ours.loss.item(), rel=1e-4)


def test_fig4_sweep_is_models_by_three_arms(monkeypatch):
    from tests.cli.test_sweeps import job_config, sweep_jobs, sweep_params

    monkeypatch.setattr("rdx.hub.check_name", lambda key, name: None)  # hub presets offline
    assert sweep_params("fig4")["model"] == [
        "tiny",
        "falcon-1b",
        "pythia-2.8b",
        "gpt-j-6b",
        "mistral-7b",
    ]
    assert len(sweep_jobs("fig4", "seed=0,1,2")) == 45
    assert len(sweep_jobs("fig4", "model=tiny", "seed=0,1,2")) == 9  # the CPU grid
    arms = {}
    for name in sweep_params("fig4")["+sweeps/arm"]:
        cfg = job_config("sweeps=fig4", f"+sweeps/arm={name}", "model=tiny")
        assert (cfg.sweep, cfg.dataset.name) == ("fig4", "hh_synthetic")
        arms[name] = (cfg.algo.name, cfg.dropout.mode, cfg.gamma)
    assert arms == {
        "ppo": ("ppo", "none", None),
        "ppo-rd": ("ppo", "quantile", 0.8),
        "dpo": ("dpo", "none", None),
    }
