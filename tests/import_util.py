"""Reading a module's imports from its source, for the layering tests (tests/services/test_layering.py,
tests/dragon/test_tools_layering.py; importable from every test directory, as proc_util is)."""

from __future__ import annotations

import ast


def imported_modules(tree: ast.AST) -> set[str]:
    """Absolute module names of `tree`'s imports, also those inside functions; `from dragon import
    _log` counts as dragon._log too (the floor modules are imported that way)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == "dragon":
                found.update(f"dragon.{alias.name}" for alias in node.names)
    return found
