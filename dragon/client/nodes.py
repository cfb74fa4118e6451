"""Which node a channel lives on, for the error a process gets when it reaches for one of another node.

A channel lives in its home node's shared memory (MULTINODE §5); until channels can be reached across
nodes through the transport agents, a process that attaches to a channel of another node (a Queue
made on node 0 and passed to a child on node 1) finds no such shared memory where it runs. The
transport then says only "no channel named ...": `explain` turns that into an error that names both
nodes and says what to do. Each node names its /dev/shm entries with its own run id, so the entry
name says whose it is; one GSNodeList request (only on this error path) maps the run id to the node.
"""

from __future__ import annotations

import os

from dragon import _runs
from dragon.errors import DragonError

_nodes_by_run: dict[str, int] = {}


def home_of(sdesc: str) -> int | None:
    """The node index of channel `sdesc` if it is another node's than this process's, else None
    (a single-node run, or a channel of this node). Asks GS once per process for the nodes' run ids."""
    own = os.environ.get("DRAGON_RUN_ID", "")
    theirs = _runs.run_id_of_entry(sdesc)
    if int(os.environ.get("DRAGON_NODES", "1") or 1) <= 1 or not own or theirs in (None, own):
        return None
    if theirs not in _nodes_by_run:
        from dragon.client.requests import node_list, run

        _nodes_by_run.update({n.run_id: n.idx for n in run(node_list(), timeout_s=10)})
    return _nodes_by_run.get(theirs or "")


class ChannelOnAnotherNode(DragonError):
    """A channel of another node was attached: channels across nodes are not reachable yet."""


def explain(sdesc: str, exc: Exception) -> Exception:
    """`exc`, or a ChannelOnAnotherNode naming both nodes if channel `sdesc` is another node's."""
    own = os.environ.get("DRAGON_RUN_ID", "")
    theirs = _runs.run_id_of_entry(sdesc)
    if int(os.environ.get("DRAGON_NODES", "1") or 1) <= 1 or not own or theirs in (None, own):
        return exc
    here = os.environ.get("DRAGON_INDEX", "?")
    try:
        from dragon.client.requests import node_list, run

        nodes = {n.run_id: n for n in run(node_list(), timeout_s=5)}
    except DragonError:
        nodes = {}
    node = nodes.get(theirs or "")
    there = f"node {node.idx} ({node.host_name})" if node is not None else "another node"
    return ChannelOnAnotherNode(
        f"this process runs on node {here} and reached for a channel of {there} (a queue, pipe, lock or "
        f"other object made there): objects cannot be shared across nodes yet; start the processes that "
        f"share it on one node (dragon.native.Policy(node=...))"
    )
