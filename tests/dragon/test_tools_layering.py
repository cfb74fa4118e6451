"""The command-line tools import only what lies below them (issue 14 item 6).

`dragon status` and `dragon cleanup` read a runtime from outside: they may use the catalog (messages,
ids, descriptors, errors), the floor modules (_rundir, _log, _runs), the public names of
dragon.transport and each other, never the client (dragon._gs_*, dragon.native, ...), a service's
internals or a private module of the transport. Read from the source (every import statement, also
those inside functions), no process needed.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from import_util import imported_modules

TOOLS = (
    "dragon.tools.status",
    "dragon.tools.status_query",
    "dragon.tools.status_report",
    "dragon.tools.status_render",
    "dragon.tools.cleanup",
    "dragon._runs",
    "dragon._rundir",
)
FLOOR = ("dragon.messages", "dragon.ids", "dragon.descriptors", "dragon.errors", "dragon._log", "dragon.transport")


def allowed(module: str) -> bool:
    """Anything outside dragon (the standard library, msgspec); inside it only the floor and the tools,
    by their exact names (dragon.transport, not dragon.transport._shm)."""
    return module == "dragon" or not module.startswith("dragon.") or module in FLOOR or module in TOOLS


def test_tools_import_only_the_floor_the_transport_s_public_names_and_each_other() -> None:
    bad = set()
    for name in TOOLS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
        bad.update(f"{name}: {module}" for module in imported_modules(tree) if not allowed(module))
    assert not bad, f"tools import what they must not: {sorted(bad)}"


def test_the_check_sees_a_client_a_service_and_a_private_transport_import() -> None:
    tree = ast.parse(
        "from dragon.client.gs_client import connection\nfrom dragon.transport._shm import SHM_DIR\n"
        "import dragon.services.launcher\nfrom dragon import _runs, native\nimport os"
    )
    assert {m for m in imported_modules(tree) if not allowed(m)} == {
        "dragon.client.gs_client",
        "dragon.transport._shm",
        "dragon.services.launcher",
        "dragon.native",
    }
