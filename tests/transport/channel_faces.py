"""The two faces of a channel handle behind one interface, for the conformance tests
(test_channel_conformance.py), in the manner of trio's own stream conformance checks
(trio/testing/_check_streams.py): each semantic test is written once and run on every face.

Tests run under trio. The trio face is called directly; the blocking face's waiting calls run in a
worker thread (`trio.to_thread`), so that the test can do other things (send, destroy) while they
wait, as another thread or process would. What differs between the faces is only what they raise,
given by each adapter's class attributes.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import trio

from dragon.transport import (
    Channel,
    ChannelCore,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    ChannelStatistics,
    TrioChannel,
)


class Face(abc.ABC):
    """A handle on a channel, seen through one face."""

    kind: ClassVar[str]
    FULL: ClassVar[type[BaseException]]  # a send without waiting found no room
    EMPTY: ClassVar[type[BaseException]]  # a receive without waiting found no message
    SEND_TIMED_OUT: ClassVar[type[BaseException]]  # a send that waited `timeout` seconds in vain
    RECV_TIMED_OUT: ClassVar[type[BaseException]]
    CLOSED: ClassVar[type[BaseException]]  # any operation on a closed handle

    def __init__(self, core: ChannelCore) -> None:
        self.core = core  # geometry (ring_bytes, block_size) and the name

    @classmethod
    @abc.abstractmethod
    def create(cls, name: str, *, capacity: int = 100, block_size: int = 1024) -> Face: ...

    @classmethod
    @abc.abstractmethod
    def attach(cls, name: str) -> Face: ...

    @property
    def ring_bytes(self) -> int:
        return self.core.ring_bytes

    @property
    def block_size(self) -> int:
        return self.core.block_size

    @abc.abstractmethod
    async def send(self, data: bytes, timeout: float | None = None) -> None: ...

    @abc.abstractmethod
    async def recv(self, timeout: float | None = None) -> bytes: ...

    @abc.abstractmethod
    def send_nowait(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def recv_nowait(self) -> bytes: ...

    @abc.abstractmethod
    def statistics(self) -> ChannelStatistics: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def destroy(self) -> None: ...


class BlockingFace(Face):
    kind = "blocking"
    FULL = SEND_TIMED_OUT = ChannelFull
    EMPTY = RECV_TIMED_OUT = ChannelEmpty
    CLOSED = ChannelError

    def __init__(self, ch: Channel) -> None:
        super().__init__(ch)
        self.ch = ch

    @classmethod
    def create(cls, name: str, *, capacity: int = 100, block_size: int = 1024) -> BlockingFace:
        return cls(Channel.create(name, capacity=capacity, block_size=block_size))

    @classmethod
    def attach(cls, name: str) -> BlockingFace:
        return cls(Channel.attach(name))

    async def send(self, data: bytes, timeout: float | None = None) -> None:
        await trio.to_thread.run_sync(self.ch.send, data, timeout)

    async def recv(self, timeout: float | None = None) -> bytes:
        return await trio.to_thread.run_sync(self.ch.recv, timeout)

    def send_nowait(self, data: bytes) -> None:
        self.ch.send_nowait(data)

    def recv_nowait(self) -> bytes:
        return self.ch.recv_nowait()

    def statistics(self) -> ChannelStatistics:
        return self.ch.statistics()

    async def close(self) -> None:
        self.ch.close()

    async def destroy(self) -> None:
        self.ch.destroy()


class TrioFace(Face):
    kind = "trio"
    FULL = EMPTY = trio.WouldBlock
    SEND_TIMED_OUT = RECV_TIMED_OUT = trio.TooSlowError
    CLOSED = trio.ClosedResourceError

    def __init__(self, ch: TrioChannel, core: ChannelCore) -> None:
        super().__init__(core)
        self.ch = ch

    @classmethod
    def create(cls, name: str, *, capacity: int = 100, block_size: int = 1024) -> TrioFace:
        core = ChannelCore.create(name, capacity=capacity, block_size=block_size)
        return cls(TrioChannel(core), core)

    @classmethod
    def attach(cls, name: str) -> TrioFace:
        core = ChannelCore.attach(name)
        return cls(TrioChannel(core), core)

    async def send(self, data: bytes, timeout: float | None = None) -> None:
        if timeout is None:
            await self.ch.send(data)
        else:
            with trio.fail_after(timeout):
                await self.ch.send(data)

    async def recv(self, timeout: float | None = None) -> bytes:
        if timeout is None:
            return await self.ch.receive()
        with trio.fail_after(timeout):
            return await self.ch.receive()

    def send_nowait(self, data: bytes) -> None:
        self.ch.send_nowait(data)

    def recv_nowait(self) -> bytes:
        return self.ch.receive_nowait()

    def statistics(self) -> ChannelStatistics:
        return self.ch.statistics()

    async def close(self) -> None:
        await self.ch.aclose()

    async def destroy(self) -> None:
        await self.ch.destroy()


FACES: dict[str, type[Face]] = {"blocking": BlockingFace, "trio": TrioFace}
