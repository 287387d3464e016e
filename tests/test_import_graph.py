"""No import cycle among the modules of worker/ (papertrader) and operator/ (papertrader_operator).

Every ``import x`` / ``from x import y`` counts, also those inside functions and ``if TYPE_CHECKING:`` blocks (a
cycle there still means two modules that cannot be understood apart). ``from pkg import name`` counts as an edge
to ``pkg.name`` when that is a module, else to ``pkg``; importing a submodule does not count as importing its
parent packages' ``__init__`` (Python runs them, but they hold no wiring here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"papertrader": ROOT / "worker" / "papertrader", "papertrader_operator": ROOT / "operator" /
            "papertrader_operator"}


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for name, folder in packages.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([name, *parts])] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in modules else base)
            edges.update(t for t in targets if t in modules and t != module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_deferred_back_import(tmp_path):
    """The way the old runner imported the observability wiring at its bottom is found."""
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "runner.py").write_text("X = 1\n\nfrom demo.wiring import start  # noqa: E402\n")
    (pkg / "wiring.py").write_text("def start():\n    from demo import runner\n    return runner.X\n")
    (pkg / "alone.py").write_text("from . import wiring\n")
    graph = import_graph(module_files({"demo": pkg}))
    assert graph["demo.alone"] == {"demo.wiring"}
    assert cycles(graph) == [["demo.runner", "demo.wiring"]]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    modules = module_files({package: PACKAGES[package]})
    graph = import_graph(modules)
    assert len(graph) > 20
    assert cycles(graph) == []
