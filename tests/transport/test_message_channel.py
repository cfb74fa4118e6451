"""MessageChannel over a shared-memory channel: send_nowait, which the services' replies use."""

from __future__ import annotations

import pytest
import trio

from dragon import messages as m
from dragon.transport import MessageChannel, TrioChannel


class NoFrames(trio.abc.Channel[bytes]):
    """A channel of frames that is not a shared-memory channel (a pipe's FrameStream, say)."""

    async def send(self, value: bytes) -> None:
        raise AssertionError("not used")

    async def receive(self) -> bytes:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


def test_send_nowait_says_it_needs_a_shared_memory_channel() -> None:
    with pytest.raises(TypeError, match="LS stdout is not a shared-memory channel"):
        MessageChannel[m.AnyMsg](NoFrames(), m.AnyMsg, name="LS stdout").send_nowait(m.BEHalted())


async def test_send_nowait_on_a_shared_memory_channel_sends_or_would_block(name: str) -> None:
    with trio.fail_after(30):
        shm = TrioChannel.create(name, capacity=1)
        chan = MessageChannel[m.GSInbound](shm, m.GSInbound, name="GS channel")
        try:
            chan.send_nowait(m.GSTeardown(tag=1))
            with pytest.raises(trio.WouldBlock):
                chan.send_nowait(m.GSTeardown(tag=2))
            assert await chan.receive() == m.GSTeardown(tag=1)
        finally:
            await shm.destroy()
