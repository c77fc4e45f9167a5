"""The codebase's shape, held by tests: no import cycle between llama-bake's modules (imports inside functions
count), and no module longer than a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import llama_bake

PACKAGE = Path(llama_bake.__file__).parent
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_templates" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """Each module -> the llama-bake modules it imports anywhere in its text (at the top, in a function, or
    under ``if TYPE_CHECKING``: a cycle there is still two modules that cannot be read apart)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from llama_bake.buildx import run` imports the module run; `from llama_bake.x import y` a name.
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name and modules[t].name != "__init__.py")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901 - Tarjan's algorithm, kept in one piece as it is usually read
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_is_longer_than_400_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_cli_imports_no_stage_at_import_time() -> None:
    """The command modules import the stages inside each command (so `--help` stays fast): at the top they
    import click, their shared options and the errors only."""
    allowed = {
        "llama_bake.errors",
        "llama_bake.cli.options",
        "llama_bake.render.ci_options",
        "llama_bake.catalog.constants",
    }
    for name, path in _modules().items():
        if not name.startswith("llama_bake.cli") or name.endswith("console"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        stages = {m for m in top if m.startswith("llama_bake") and not m.startswith("llama_bake.cli")}
        assert stages <= allowed, name
