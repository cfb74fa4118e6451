"""Frames for a channel on another node, as a trio channel for the services (Global Services): see
`transport.forward`."""

from __future__ import annotations

import trio

from ._trio_channel import TrioChannel
from .forward import pack_forward


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
