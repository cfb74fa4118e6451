"""`multiprocessing.Manager()` under "dragon" in a run of several nodes: its server reachable from every
node (issue 17 item 2).

The standard library's SyncManager serves on a unix socket in a temporary directory of its machine
(`multiprocessing.connection.default_family`): a process of another node has neither (virtual nodes
on one machine share /tmp, which is the only reason they reach it). `SyncManager` here is the stdlib's
with two changes, in a run of several nodes only (`DragonContext.Manager`; a single node keeps the
stdlib's, whose unix socket costs less):

* its server listens on TCP at its node's address (port 0: the kernel picks one), the address the
  other nodes reach that node at (`Node.ip_addrs`, which the node's backend reports: the one its
  transport agent listens on); it tells the starting process where, as the stdlib's does, and proxies
  carry that address to every process they are passed to. Connections are authenticated with the
  manager's authkey, as ever;
* its server process runs on the node of the process that starts it, whatever place the current
  `dragon.native.Policy` names (its CPUs still apply): the stdlib hands the server the write end of
  a pipe (an fd) to say its address, and an fd cannot cross nodes.

A SyncManager made directly (`multiprocessing.managers.SyncManager()`) is the stdlib's: it serves on
a unix socket, reachable from its own machine only.
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing import managers
from typing import Any

from dragon.policy import Policy


class SyncManager(managers.SyncManager):
    """The stdlib's SyncManager, its server on TCP at its node's address (see the module docstring)."""

    def start(self, initializer: Callable[..., object] | None = None, initargs: Any = ()) -> None:
        """As the stdlib's, with the server process on this process's node."""
        from dragon.client.gs_client import connection

        with Policy(node=connection().params.index):
            super().start(initializer, initargs)

    @classmethod
    def _run_server(
        cls,
        registry: dict[str, Any],
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Callable[..., object] | None = None,
        initargs: Any = (),
    ) -> None:
        """In the server process: the stdlib's server, on this node's address if none was given."""
        if address is None:
            address = node_address()
        super()._run_server(registry, address, authkey, serializer, writer, initializer, initargs)  # type: ignore[misc]


def node_address() -> tuple[str, int] | None:
    """(this node's address, 0) for a TCP listener; None (the stdlib's default) if the node reports none."""
    from dragon.native.machine import current

    addrs = current().ip_addrs
    return (addrs[0], 0) if addrs else None
