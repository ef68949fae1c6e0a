"""Hydra search path: rdx's repo root, where `sweeps=table1` finds sweeps/ (docs/design.md §5).

A plugin rather than `hydra.searchpath` in conf/train.yaml: a relative entry there would
depend on the cwd, and this works the same for `python -m rdx.train` from any directory and
for the compose API in tests. Hydra finds it because `hydra_plugins` is a namespace package
shipped by the editable install (pyproject `packages.find`).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ROOT = Path(__file__).resolve().parents[2]


def _is_rdx_conf(path: str) -> bool:
    path = path.removeprefix("file://")
    return "://" not in path and Path(path).resolve() == ROOT / "conf"


class RdxSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # Plugins are global to the environment: touch only apps whose primary config is
        # rdx's conf/, so another Hydra app in the same venv sees no `sweeps` group.
        if any(_is_rdx_conf(element.path) for element in search_path.get_path()):
            search_path.append(provider="rdx", path=f"file://{ROOT}")
