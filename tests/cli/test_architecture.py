"""The package's shape: one direction of imports, the paper's code importing nothing of the
pipeline, no private name used across modules, and a torch-free config check."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rdx"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every rdx module that `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rdx"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "rdx":
                found.add(node.module)
                # `from rdx.data import corpus` imports the module rdx.data.corpus
                for alias in node.names:
                    sub = PACKAGE.parent / (node.module + "." + alias.name).replace(".", "/")
                    if sub.with_suffix(".py").exists():
                        found.add(f"{node.module}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # importing a.b.c runs a/__init__ and a/b/__init__ too, which import nothing here
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_known_imports():
    graph = _graph()
    assert "rdx.method.objective" in graph["rdx.lm.sampling"]
    assert "rdx.data.corpus" in graph["rdx.data.loaders"]
    assert "rdx.pipeline.algos" in graph["rdx.run"]  # a lazy import, inside a function


def test_no_import_cycles():
    assert _cycle(_graph()) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_method_imports_nothing_of_the_pipeline():
    graph = _graph()
    method = [m for m in graph if m.startswith("rdx.method")]
    # the package, dropout, objective, distributed, ppo, dpo, bradley_terry
    assert len(method) == 7
    for name in method:
        assert all(m.startswith("rdx.method") for m in graph[name]), (name, graph[name])


def test_layers_import_downwards_only():
    """method ← lm, data ← pipeline ← the run's top level (train, run, prepare, sweep)."""
    order = {"rdx.method": 0, "rdx.data": 1, "rdx.lm": 1, "rdx.pipeline": 2}
    graph = _graph()
    for name, deps in graph.items():
        layer = next((v for k, v in order.items() if name.startswith(k)), None)
        if layer is None:
            continue
        for dep in deps:
            dep_layer = next((v for k, v in order.items() if dep.startswith(k)), None)
            if dep_layer is not None and dep.split(".")[1] != name.split(".")[1]:
                assert dep_layer < layer, f"{name} imports {dep}"


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for root in ("rdx", "tests", "benchmarks", "analysis", "hydra_plugins"):
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    offenders += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert offenders == []


def test_every_module_imports_in_a_fresh_interpreter_and_config_needs_no_torch():
    modules = sorted(_graph())
    code = (
        "import sys, importlib\n"
        "import rdx.config\n"
        "assert 'torch' not in sys.modules, 'rdx.config imported torch'\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(len(sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
