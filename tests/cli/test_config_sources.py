"""One source for every default: rdx.config's dataclasses. conf/ YAML only chooses presets,
so a value written there either differs from the dataclass default (a preset's choice) or
is an error here; the composed default run is the dataclasses' defaults exactly; and a
setting an algorithm does not read cannot be set."""

import dataclasses
import os
import typing
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from rdx.config import ALGOS, Config, ConfigError, DPOConfig, PPOConfig, to_dict, validate

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SECTIONS = [k for k, v in typing.get_type_hints(Config).items() if dataclasses.is_dataclass(v)]


def compose_cfg(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return validate(OmegaConf.to_container(cfg, resolve=True))


def _defaults() -> dict:
    plain = dataclasses.asdict(Config())
    plain["logger"]["tags"] = list(plain["logger"]["tags"])  # YAML writes lists
    return plain


def restated_defaults(conf: Path) -> list[str]:
    """`file: key=value` for every value a group option writes that equals the default."""
    defaults, found = _defaults(), []
    for section in SECTIONS:
        for path in sorted((conf / section).glob("*.yaml")):
            data = yaml.safe_load(path.read_text()) or {}
            found += [
                f"{path.relative_to(conf)}: {key}={value!r}"
                for key, value in data.items()
                if key in defaults[section] and value == defaults[section][key]
            ]
    return found


PIN = "# pin:"  # a restated default kept on purpose says why on its line: `key: v  # pin: why`


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _pins(text: str) -> dict[str, str]:
    """The dotted key of each line that carries a `# pin: <reason>` comment, and the reason."""
    pins, path = {}, []  # path: (indent, key) of the mappings the line is inside
    for line in text.splitlines():
        body = line.split("#", 1)[0]
        if not body.strip() or ":" not in body or body.lstrip().startswith("-"):
            continue
        indent = len(body) - len(body.lstrip())
        path = [(i, k) for i, k in path if i < indent]
        key = body.strip().split(":", 1)[0].strip()
        path.append((indent, key))
        if PIN in line:
            pins[".".join(k for _, k in path)] = line.split(PIN, 1)[1].strip()
    return pins


def restated_in_presets(root: Path) -> list[str]:
    """The same check for the `# @package _global_` presets, experiment/ under `root`/conf
    and every file under `root`/sweeps (their `defaults:` and `hydra:` left out: choices
    and swept values): a value equal to its default is found unless pinned with a reason."""
    defaults, found = _flat(_defaults()), []
    paths = [*sorted((root / "conf" / "experiment").glob("*.yaml"))]
    paths += sorted((root / "sweeps").rglob("*.yaml"))
    for path in paths:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        values = _flat({k: v for k, v in data.items() if k not in ("defaults", "hydra")})
        pins = _pins(text)
        found += [
            f"{path.relative_to(root)}: {key}={value!r}"
            for key, value in values.items()
            if key in defaults and value == defaults[key] and not pins.get(key)
        ]
    return found


def test_no_preset_restates_a_default():
    assert len(SECTIONS) == 10  # model ... algo, eval: every section with a settings class
    assert restated_defaults(CONF) == []
    assert restated_in_presets(ROOT) == []


def test_a_restated_default_is_found(tmp_path):
    # The check itself, on a conf/ whose trainer preset restates one default.
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "default.yaml").write_text("epochs: 5\nlr: 1.0e-4\n")
    assert restated_defaults(tmp_path) == ["trainer/default.yaml: epochs=5"]


def test_a_default_restated_in_an_experiment_or_sweep_is_found_unless_pinned(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "sweeps" / "arm").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "x.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /dropout: quantile\n"
        "gamma: 0.8\ntrainer:\n  epochs: 5\n  lr: 1.0e-4\n  batch_size: 64  # pin:\n"
    )
    (tmp_path / "sweeps" / "arm" / "y.yaml").write_text(
        "gamma: 0.8  # pin: the arm's name is its γ\nsampling:\n  top_k: null\n"
        "  temperature: 0.4  # pin: fixed_length's 1.0 is overridden\n"
        "hydra:\n  sweeper:\n    params:\n      seed: 0\n"
    )
    assert restated_in_presets(tmp_path) == [
        "conf/experiment/x.yaml: gamma=0.8",
        "conf/experiment/x.yaml: trainer.epochs=5",
        "conf/experiment/x.yaml: trainer.batch_size=64",  # a pin with no reason is none
        "sweeps/arm/y.yaml: sampling.top_k=None",
    ]


def test_train_yaml_sets_no_value_but_the_cache_lookup():
    data = yaml.safe_load((CONF / "train.yaml").read_text())
    # cache_dir: RDX_CACHE when set, else ~/.cache/rdx, Config's default (a compose-time lookup)
    assert set(data) == {"defaults", "hydra", "cache_dir"}
    assert data["cache_dir"].endswith(",'~/.cache/rdx'}") and Config.cache_dir == "~/.cache/rdx"


def test_the_composed_default_run_is_the_dataclass_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("RDX_CACHE", str(tmp_path))
    composed = to_dict(compose_cfg())
    assert composed == {**to_dict(Config()), "cache_dir": str(tmp_path)}


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_each_algo_option_is_its_settings_class(name):
    """The algo options live only in the ConfigStore, made from ALGOS' classes: no YAML
    copy of them whose defaults could drift (algo.kl_coef was 0.05 in the dataclass and
    0.2 in conf/algo/ppo.yaml)."""
    assert not (CONF / "algo").exists()
    stored = {k.removesuffix(".yaml") for k in ConfigStore.instance().repo["algo"]}
    assert stored == set(ALGOS)
    base = [] if name == "offpolicy" else ["experiment=harmless"]
    cfg = compose_cfg(*base, f"algo={name}")
    assert cfg.algo == ALGOS[name]()
    assert type(cfg.algo) is ALGOS[name]


def test_ppo_and_dpo_keep_their_own_settings():
    assert compose_cfg("experiment=harmless").algo.kl_coef == PPOConfig.kl_coef == 0.2
    dpo = compose_cfg("experiment=harmless", "algo=dpo")
    assert isinstance(dpo.algo, DPOConfig) and not hasattr(dpo.algo, "kl_coef")
    assert dpo.dropout.mode == "none"  # the dpo option picks dropout=none
    with pytest.raises(ConfigError, match="algo.kl_coef: unknown key; allowed: beta, "):
        compose_cfg("experiment=harmless", "algo=dpo", "+algo.kl_coef=0.1")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["algo=ppo", "dropout.random_replacement=true"],
            "dropout.random_replacement=True: algo=ppo does not use it; leave it at False",
        ),
        (["algo=ppo", "trainer.is_clip=0.5"], "trainer.is_clip=0.5: algo=ppo does not use it"),
        (["algo=dpo", "sampling.top_k=5"], "sampling.top_k=5: algo=dpo does not use it"),
        (["algo=ppo", "reward.output=prob"], "reward.output='prob': algo=ppo does not use it"),
    ],
)
def test_a_setting_the_algo_ignores_is_an_error(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_cfg("experiment=harmless", *overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_off_policy_run_reads_those_settings():
    cfg = compose_cfg("dropout=random", "dropout.random_replacement=true", "trainer.is_clip=0.5")
    assert (cfg.dropout.random_replacement, cfg.trainer.is_clip) == (True, 0.5)


def test_a_test_that_names_no_cache_builds_into_the_session_tmp_cache(artifact_cache):
    """tests/conftest.py's artifact_cache: never the user's ~/.cache/rdx, for subprocesses too."""
    assert os.environ["RDX_CACHE"] == str(artifact_cache)
    assert compose_cfg().cache_dir == str(artifact_cache)
    assert not str(artifact_cache).startswith(os.path.expanduser("~/.cache"))
