"""Train a target LM with reward dropout: the one entrypoint of rdx.

    python -m rdx.train                                   # embedded default: synthetic, tiny, quantile γ=0.8
    python -m rdx.train dropout=none                      # the paper's N/A baseline
    python -m rdx.train dropout=random gamma=0.4 attribute=sport seed=3
    python -m rdx.train experiment=smoke                  # whole pipeline in < 60 s
    python -m rdx.train -m dropout=quantile gamma=0.2,0.4,0.8
    python -m rdx.train stage=prepare                     # build the cached artifacts only

Hydra composes conf/; the config is validated here, at the edge, before torch is imported,
so a bad value fails in about a second with one line and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rdx.config import ConfigError, validate


CONF = Path(__file__).resolve().parents[1] / "conf"
SEARCH = (CONF, CONF.parent)  # conf/ groups, and sweeps/ at the top level


def check_group_choices(argv: list[str]) -> None:
    """One-line errors for a mistyped group option (`dropout=quantil`), sweep lists included.

    Hydra reports these itself, but over a dozen lines with its search path; a researcher
    launching a grid wants the key, the value and the choices.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith(("-", "+", "~", "hydra")) or "." in key:
            continue
        dirs = [root / key for root in SEARCH if (root / key).is_dir()]
        if not dirs:
            continue
        options = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
        for choice in value.split(","):
            if choice not in options and choice != "null":
                print(f"rdx: config error: {key}={choice!r}: expected one of {', '.join(options)}",
                      file=sys.stderr)
                sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        config = validate(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as err:
        print(f"rdx: config error: {err}", file=sys.stderr)
        sys.exit(2)
    from rdx.run import execute

    return execute(config, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
