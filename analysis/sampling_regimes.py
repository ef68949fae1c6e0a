"""How β's trajectories look under each sampling regime, and whether R can read them.

    python -m analysis.sampling_regimes dataset=yelp dataset.path=../shared/data/yelp \\
        attribute=positive --regime "stop_at_eos=true" --regime "stop_at_eos=false" ...

Each --regime is a space-separated list of `sampling.` overrides on top of the given run
overrides. For each it builds (or reuses) the run's cached artifacts and prints one row:
continuation length, the share of continuations holding an EOS (where β would have
stopped), β's mean likelihood, R's mean probability of the attribute and its spread, and
how much of R's verdict the continuation carries: the mean |R(prefix + continuation) −
R(prefix alone)| and the share of samples whose R probability moves by more than 0.1. A
regime where R only reads the prefix cannot test reward dropout: π can only change the
continuation (docs/reproduction.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rdx
from rdx.config import validate
from rdx.lm.sampling import classifier_logits
from rdx.pipeline.offpolicy.artifacts import prepare

# conf/ beside the rdx package, as rdx.train composes it (the CLI is not imported here: an
# analysis script reads the config, it does not launch runs)
CONF = Path(rdx.__file__).resolve().parents[1] / "conf"


def measure(overrides: list[str]) -> dict[str, float]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        raw = compose(config_name="train", overrides=overrides)
    cfg = validate(OmegaConf.to_container(raw, resolve=True))
    prep = prepare(cfg)
    seqs = prep.train
    prob = torch.softmax(prep.reward_logits, -1)[:, prep.label]
    prefixes, _, _ = prep.policy_codec.decode(seqs)
    cont = seqs.tokens[:, 1:] == prep.eos_id
    has_eos = (cont.float() * seqs.mask()).sum(1) > 0  # an EOS among the scored tokens
    prefix_logits = classifier_logits(prep.reward_model, prep.reward_tokenizer, prefixes)
    prefix_prob = torch.softmax(prefix_logits, -1)[:, prep.label]
    moved = (prob - prefix_prob).abs()
    return {
        "cont_tokens": (seqs.lengths - seqs.prefix_lens).float().mean().item(),
        "with_eos": has_eos.float().mean().item(),
        "beta_mean": prep.behavior_prob.mean().item(),
        "R_mean": prob.mean().item(),
        "R_std": prob.std().item(),
        "R_moved_by_cont": moved.mean().item(),
        "share_moved_gt_0.1": (moved > 0.1).float().mean().item(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="run overrides (dataset=..., attribute=...)")
    ap.add_argument("--regime", action="append", required=True, help="sampling overrides")
    args = ap.parse_args(argv)
    rows = []
    for regime in args.regime:
        extra = [f"sampling.{kv}" for kv in regime.split()]
        rows.append({"regime": regime, **measure(args.overrides + extra)})
    import pandas as pd

    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"), file=sys.stdout)


if __name__ == "__main__":
    main()
