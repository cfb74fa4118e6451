"""Imports between the modules of `dragon/` only go down (issue 14 item 6): no cycle, not even one
hidden behind an import inside a function (which some modules use for start-up cost)."""

from __future__ import annotations

import ast
from pathlib import Path

DRAGON = Path(__file__).resolve().parents[2] / "dragon"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that `path` imports anywhere in it (type-checking-only imports left
    out); `from dragon import x` (or `from dragon.pkg import x`) counts as the module dragon.x if it is one."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    checking_only = {
        id(node)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"
        for node in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in checking_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found & modules


def _graph() -> dict[str, set[str]]:
    """Every module of the dragon/ folder (subpackages included) and the ones of it that it imports."""
    paths = {}
    for path in DRAGON.rglob("*.py"):
        parts = path.relative_to(DRAGON.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    modules = set(paths)
    graph = {name: _imports(path, modules) - {name} for name, path in paths.items()}
    for name in graph:  # a package's __init__ is not a step down from its own modules
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_client_modules_import_each_other_without_a_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
