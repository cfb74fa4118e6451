"""The services depend only on the catalog, the floor modules and the transport (issue 14 item 6).

A service that imports the client (dragon.client, dragon.mp, dragon.native ...) or multiprocessing
ties the runtime's servers to code that changes for other reasons, and loads it into every service
process. Read from the source (every import statement, also those inside functions), no process needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

from import_util import imported_modules

SERVICES = Path(__file__).resolve().parents[2] / "services"
ALLOWED = {
    "dragon.messages",
    "dragon.ids",
    "dragon.descriptors",
    "dragon.errors",
    "dragon._rundir",
    "dragon._log",
    "dragon._pool_sizes",
    "dragon._faults",
    "dragon._runs",
    "dragon.wlm",  # how nodes are started (the frontend): stdlib and msgspec only
    "dragon.transport",
    "dragon.services",
    # [interim, issue 17] the home side of a synchronization object used from another node: the
    # transport agent (and GS, for the reclaim request) runs the object's own steps at its home. The
    # steps are to move under dragon.transport with the objects' state, and this entry to go.
    "dragon.mp.at_home",
}


def allowed(module: str) -> bool:
    if module == "dragon":
        return True
    if module.startswith("dragon."):
        return any(module == a or module.startswith(a + ".") for a in ALLOWED)
    return not module.startswith("multiprocessing")


def test_services_import_no_client_and_no_multiprocessing() -> None:
    bad = {
        f"{path.name}: {module}"
        for path in sorted(SERVICES.glob("*.py"))
        for module in imported_modules(ast.parse(path.read_text(), str(path)))
        if not allowed(module)
    }
    assert not bad, f"services import what they must not: {sorted(bad)}"


def test_the_check_sees_a_client_import() -> None:
    tree = ast.parse("from dragon.mp import child\nfrom dragon import native\nimport multiprocessing.spawn")
    assert {m for m in imported_modules(tree) if not allowed(m)} == {
        "dragon.mp",
        "dragon.native",
        "multiprocessing.spawn",
    }


def test_a_single_node_run_never_imports_zmq() -> None:
    """The `dragon` command and the single-node services load no ZeroMQ (issue 16: its bringup time is
    unchanged); only the frontend, backend and transport agent of a run of many nodes do."""
    import subprocess
    import sys

    code = (
        "import sys; import dragon.cli, dragon.services.launcher, dragon.services.local_services, "
        "dragon.services.global_services, dragon.mp, dragon.native; print('zmq' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
