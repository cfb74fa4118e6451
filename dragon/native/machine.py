"""The runtime's nodes (after the reference's `dragon.native.machine`): `System`, `Node`, `current`, `cpu_count`.

What a program asks to size its work to the allocation, not to the machine it runs on: `cpu_count()`
is the sum of the CPUs of every node of the runtime, each node's being the CPUs its Local Services
may use (its affinity, as `os.sched_getaffinity`, not `os.cpu_count`: a Slurm step or a taskset
restricts it). Each query is one GSNodeList request to Global Services (the nodes do not change
while a runtime runs, but a query is rare and cheap: nothing is cached). Blocking; raises
RuntimeNotRunning outside a runtime, as the rest of `dragon.native`.

`multiprocessing.cpu_count()` under the start method "dragon" is `cpu_count()` too (as the
reference's: `dragon.mp.context`).
"""

from __future__ import annotations

from dragon.client.gs_client import connection
from dragon.client.requests import node_list, run
from dragon.descriptors import NodeDescriptor
from dragon.errors import InvalidArgument


class Node:
    """One node of the runtime: `Node(index)`, `Node(host_name)` (one GS request), or `Node(node)`.

    Raises:
      InvalidArgument: no node of the runtime has this index or host name.
    """

    __slots__ = ("_desc",)

    def __init__(self, ident: int | str | Node) -> None:
        if isinstance(ident, Node):
            self._desc: NodeDescriptor = ident._desc
            return
        nodes = _nodes()
        found = next((d for d in nodes if (d.idx if isinstance(ident, int) else d.host_name) == ident), None)
        if found is None:
            known = ", ".join(f"{d.idx} ({d.host_name})" for d in nodes)
            raise InvalidArgument(f"the runtime has no node {ident!r}: its nodes are {known}")
        self._desc = found

    @classmethod
    def _of(cls, desc: NodeDescriptor) -> Node:
        node = cls.__new__(cls)
        node._desc = desc
        return node

    @property
    def idx(self) -> int:
        """The node's index (0 = the primary node, where the head process and Global Services run);
        what `Policy(node=...)` takes."""
        return self._desc.idx

    @property
    def hostname(self) -> str:
        """The node's host name; what `Policy(host=...)` takes."""
        return self._desc.host_name

    @property
    def ip_addrs(self) -> list[str]:
        """The node's addresses, as its Local Services reported them."""
        return list(self._desc.ip_addrs)

    @property
    def num_cpus(self) -> int:
        """How many CPUs the runtime may use on this node (its Local Services' affinity)."""
        return self._desc.num_cpus

    @property
    def physical_mem(self) -> int:
        """The node's physical memory, in bytes."""
        return self._desc.physical_mem_bytes

    @property
    def is_primary(self) -> bool:
        """Whether this is the primary node (index 0)."""
        return self._desc.is_primary

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other._desc.idx == self._desc.idx

    def __hash__(self) -> int:
        return hash(self._desc.idx)

    def __repr__(self) -> str:
        return f"Node(idx={self.idx}, hostname={self.hostname!r}, num_cpus={self.num_cpus})"


class System:
    """The runtime's nodes as they are now (one GS request): `nodes`, `nnodes`."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: list[Node] = [Node._of(d) for d in _nodes()]
        """Every node, by index."""

    @property
    def nnodes(self) -> int:
        """How many nodes the runtime has."""
        return len(self.nodes)

    @property
    def primary_node(self) -> Node:
        """The primary node (index 0)."""
        return self.nodes[0]


def current() -> Node:
    """The node the calling process runs on (its launch parameters' index, DRAGON_INDEX)."""
    return Node(connection().params.index)


def cpu_count() -> int:
    """How many CPUs the runtime may use, over all its nodes (the allocation, not this machine)."""
    return sum(d.num_cpus for d in _nodes())


def _nodes() -> list[NodeDescriptor]:
    nodes: list[NodeDescriptor] = run(node_list())
    return sorted(nodes, key=lambda d: d.idx)
