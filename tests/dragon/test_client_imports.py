"""What a process imports to use the runtime: the blocking client and the start method's child.

Every child of the multiprocessing start method "dragon" imports these modules before it runs user
code (the fork server preloads them), and a program pays for them at its first start; each module
they pull in costs a fresh interpreter about 1-4 ms here (issue #12 item 4: the first start as fast
as spawn's). So they stay off: trio (0.25 s), logging, secrets (hmac, hashlib), shutil, the pools
of dragon.transport, and the native API (its handles, dragon.client.handles), which a start needs none of.
The start method's parent builds its requests with dragon.client.requests (light: it imports nothing the
connection does not); a child that only runs its target does not even import that.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "trio",
    "logging",
    "secrets",
    "shutil",
    "dragon.transport._pool",
    "dragon.transport._alloc",
    "dragon.client.handles",
    "dragon.native",
)


def test_the_client_and_the_start_method_import_nothing_heavy() -> None:
    client = ["dragon.mp.popen", "dragon.mp.child", "dragon.client.gs_client", "multiprocessing.spawn"]
    code = (
        f"import sys\nfor name in {client!r}:\n    __import__(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_child_of_the_start_method_imports_no_request_builders() -> None:
    child = ["dragon.mp.child", "dragon.client.gs_client", "multiprocessing.spawn"]
    code = f"import sys\nfor name in {child!r}:\n    __import__(name)\nprint('dragon.client.requests' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_single_node_run_imports_no_zeromq() -> None:
    """ZeroMQ (pyzmq) serves only the multi-node actors (MULTINODE.md §1: a single-node run has no extra
    cost): neither the client, the start method nor the single-node services may load it."""
    single_node = [
        "dragon",
        "dragon.transport",
        "dragon.mp",
        "dragon.cli",
        "dragon.services.launcher",
        "dragon.services.local_services",
        "dragon.services.global_services",
        "dragon.services.background",
    ]
    code = (
        f"import sys\nfor name in {single_node!r}:\n    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m == 'zmq' or m.startswith(('zmq.', 'dragon.transport.z'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
