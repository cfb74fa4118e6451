"""Frames for a channel on another node, handed to this node's transport agent (many nodes).

A channel lives on its home node (MULTINODE §5). A service that must put a message into a channel of
another node (Global Services answering a process there, or asking that node's Local Services)
writes the frame, unchanged, into its own node's transport-agent channel, behind a small header that
names the destination: the node index and the channel's attach descriptor, which only that node can
attach. The agent sends header and frame to the agent of that node, which attaches the descriptor
and puts the frame in. The frame is encoded once, by the sender; nobody on the way decodes it.

`RemoteFrames` is that path as a `trio.abc.Channel[bytes]`, so `MessageChannel(RemoteFrames(...))`
sends typed messages to a remote channel exactly as to a local one. It only sends: a channel is
received from on its home node. No ZeroMQ here: this module is used on every node, ZeroMQ only by
the agent.
"""

from __future__ import annotations

import struct
from typing import Final

import trio

from ._trio_channel import TrioChannel

_HEADER: Final = struct.Struct("<II")  # node index, length of the attach descriptor


def pack_forward(node: int, sdesc: str, frame: bytes | bytearray | memoryview) -> bytes:
    """One transport-agent frame: deliver `frame` into channel `sdesc` of node `node`."""
    target = sdesc.encode()
    return b"".join((_HEADER.pack(node, len(target)), target, frame))


def unpack_forward(buf: bytes | bytearray | memoryview) -> tuple[int, str, memoryview]:
    """(node, attach descriptor, frame) of a `pack_forward` frame.

    Raises ValueError naming what is wrong if `buf` is not one (a transport agent logs and drops it).
    """
    view = memoryview(buf)
    if len(view) < _HEADER.size:
        raise ValueError(f"a forwarded frame of {len(view)} bytes is shorter than its header")
    node, n = _HEADER.unpack_from(view)
    end = _HEADER.size + n
    if len(view) < end:
        raise ValueError(f"a forwarded frame of {len(view)} bytes is too short for its {n}-byte descriptor")
    try:
        sdesc = bytes(view[_HEADER.size : end]).decode()
    except UnicodeDecodeError:
        raise ValueError("the descriptor of a forwarded frame is not text") from None
    return node, sdesc, view[end:]


class RemoteFrames(trio.abc.Channel[bytes]):
    """Frames for channel `sdesc` of node `node`, through this node's transport agent (`gateway`, its
    input channel, shared by every RemoteFrames of a process)."""

    def __init__(self, gateway: TrioChannel, node: int, sdesc: str) -> None:
        self._gateway, self.node, self.sdesc = gateway, node, sdesc
        self._closed = False

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"the link to a channel of node {self.node} is closed")
        await self._gateway.send(pack_forward(self.node, self.sdesc, value))

    async def receive(self) -> bytes:
        raise trio.BrokenResourceError(f"a channel of node {self.node} is received from on that node only")

    async def aclose(self) -> None:
        """Close this link only: the gateway is shared (its owner closes it)."""
        self._closed = True
        await trio.lowlevel.checkpoint()
