"""Which node a channel lives on (`home_of`), and the error a process gets when it reaches for an object
of another node that cannot be used across nodes yet (`explain`).

A channel lives in its home node's shared memory (MULTINODE §5); a process of another node reaches
it through the transport agents (`dragon.client.remote`). What does not work that way (a channel
reached by a handle that needs its node's memory: a `dragon.aio` face of a queue) raises
ChannelOnAnotherNode, which names both nodes and says what to do. Each node names its /dev/shm
entries with its own run id, so the entry name says whose it is; one GSNodeList request per process
maps the run id to the node.
"""

from __future__ import annotations

import os

from dragon import _runs
from dragon.descriptors import NodeDescriptor
from dragon.errors import DragonError

_nodes_by_run: dict[str, NodeDescriptor] = {}


def several_nodes() -> bool:
    """Whether this process runs in a runtime of several nodes."""
    return int(os.environ.get("DRAGON_NODES", "1") or 1) > 1


def _other_run(sdesc: str) -> str | None:
    """The run id in channel `sdesc`'s entry name if it is another node's than this process's (a run
    of several nodes names each node's entries with its own run id), else None."""
    own = os.environ.get("DRAGON_RUN_ID", "")
    theirs = _runs.run_id_of_entry(sdesc)
    if not several_nodes() or not own or theirs in (None, own):
        return None
    return theirs


def _node_of_run(run_id: str) -> NodeDescriptor | None:
    """The node whose run id is `run_id` (GS asked once per process)."""
    if run_id not in _nodes_by_run:
        from dragon.client.requests import node_list, run

        _nodes_by_run.update({n.run_id: n for n in run(node_list(), timeout_s=10)})
    return _nodes_by_run.get(run_id)


def home_of(sdesc: str) -> int | None:
    """The node index of channel `sdesc` if it is another node's than this process's, else None
    (a single-node run, or a channel of this node)."""
    theirs = _other_run(sdesc)
    node = _node_of_run(theirs) if theirs is not None else None
    return node.idx if node is not None else None


class ChannelOnAnotherNode(DragonError):
    """An object of another node that cannot be used across nodes yet was unpickled (see the module
    docstring)."""


def explain(sdesc: str, exc: Exception) -> Exception:
    """`exc`, or a ChannelOnAnotherNode naming both nodes if channel `sdesc` is another node's."""
    theirs = _other_run(sdesc)
    if theirs is None:
        return exc
    here = os.environ.get("DRAGON_INDEX", "?")
    try:
        node = _node_of_run(theirs)
    except DragonError:
        node = None
    there = f"node {node.idx} ({node.host_name})" if node is not None else "another node"
    return ChannelOnAnotherNode(
        f"this process runs on node {here} and reached for a channel of {there} through a handle that works "
        f"on its node only; start the processes that use it that way on one node (dragon.native.Policy(node=...))"
    )
