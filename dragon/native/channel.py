"""GS-managed channels (`dragon.native.Channel`): GS names and counts them and Local Services makes
the shared memory; `send`/`recv` then go through this process's own handle on it
(`dragon.transport.Channel`), without GS.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgspec

from dragon.client import requests as gs
from dragon.client.handles import ChannelHandle
from dragon.client.remote import RemoteChannel
from dragon.client.requests import run
from dragon.descriptors import ChannelDescriptor
from dragon.ids import DEFAULT_POOL_MUID, LaunchParameters
from dragon.transport import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, Buffer, ChannelStatistics
from dragon.transport import Channel as ShmChannel


class Channel(ChannelHandle):
    """A handle on a GS-managed channel: an ordered, bounded, many-to-many message queue (spec §6).

    Make one with `Channel.create`, or reach an existing one with `Channel.attach` (by c_uid or name)
    or `Channel.wait_created` (by name, waiting for its creation). Pickled, a handle re-attaches in
    the other process by descriptor. Thread-safe, like the transport handle underneath.
    `close()` drops this handle; `destroy()` ends the channel for everybody.
    """

    def __init__(self, desc: ChannelDescriptor) -> None:
        """Internal: attach to the channel `desc` describes (use the classmethods).

        Raises ChannelDestroyed if the channel is dead or gone.
        """
        super().__init__(desc)
        here = LaunchParameters.from_env()
        self._chan: ShmChannel | RemoteChannel
        if here.nodes > 1 and desc.node != here.index:  # a channel of another node: through the agents
            self._chan = RemoteChannel(desc.node, desc.sdesc)
        else:
            self._chan = ShmChannel.attach(desc.sdesc)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_channel_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    @classmethod
    def create(
        cls,
        *,
        capacity: int = DEFAULT_CAPACITY,
        block_size: int = DEFAULT_BLOCK_SIZE,
        name: str = "",
        m_uid: int = DEFAULT_POOL_MUID,
        soft: bool = False,
    ) -> Channel:
        """Create a channel through GS (GSChannelCreate) and attach to it.

        Args:
          capacity: messages it holds before a send blocks (>= 1).
          block_size: bytes per message block (>= 256); larger messages take several blocks.
          name: a unique name ("" = `dragon_channel_<c_uid>`).
          m_uid: the pool it belongs to (default pool, or one made with `Pool.create`).
          soft: with a name, attach to a live channel of that name instead of failing (get-or-create).
        Raises:
          InvalidArgument: a capacity or block size out of range, or soft without a name.
          ChannelNameInUse: a live channel has that name (not soft).
          ChannelCreateFailed: GS or Local Services could not make it (e.g. an unknown m_uid).
        """
        return cls(run(gs.channel_create(capacity=capacity, block_size=block_size, name=name, m_uid=m_uid, soft=soft)))

    @classmethod
    def attach(cls, c_uid: int | None = None, *, name: str = "") -> Channel:
        """Attach to an existing channel by c_uid or by name (GSChannelQuery).

        Raises:
          UnknownChannel: GS knows no such channel.
          ChannelDestroyed: it was destroyed.
          InvalidArgument: neither or both of c_uid and name.
        """
        return cls(run(gs.channel_attach(c_uid, name)))

    @classmethod
    def wait_created(cls, name: str, timeout: float | None = None) -> Channel:
        """Attach to the channel `name` as soon as it exists: waits up to `timeout` s (None: no limit)
        for somebody to create it (GSChannelJoin).

        Raises:
          ChannelWaitTimeout: none appeared in time.
          ChannelDestroyed: a channel of that name existed and was destroyed.
        """
        return cls(run(gs.channel_wait_created(name, timeout)))

    @staticmethod
    def list() -> list[int]:
        """The c_uid of every channel GS knows in this runtime, destroyed ones included."""
        return run(gs.channel_list())

    # ----------------------------------------------------------------------------- messages

    def send_bytes(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one message of any size; blocks while the channel is full, at most `timeout` s.

        Raises ChannelFull on timeout, ChannelDestroyed if the channel is (or gets) destroyed,
        ChannelError if this handle was closed.
        """
        self._chan.send(data, timeout)

    def recv_bytes(self, timeout: float | None = None) -> bytes:
        """Receive the oldest message; blocks while the channel is empty, at most `timeout` s.

        Raises ChannelEmpty on timeout, ChannelDestroyed if the channel is (or gets) destroyed.
        """
        return self._chan.recv(timeout)

    def send(self, obj: object, timeout: float | None = None) -> None:
        """Pickle `obj` and send it as one message (see `send_bytes`)."""
        self._chan.send(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), timeout)

    def recv(self, timeout: float | None = None) -> Any:
        """Receive one message and unpickle it (see `recv_bytes`)."""
        return pickle.loads(self._chan.recv(timeout))

    def statistics(self) -> ChannelStatistics:
        """Depth, capacity and waiters right now (from the shared memory, not from GS)."""
        return self._chan.statistics()

    # ----------------------------------------------------------------------------- end

    def close(self) -> None:
        """Drop this process's handle; the channel lives on. Idempotent."""
        self._chan.close()

    def destroy(self) -> None:
        """Destroy the channel for everybody (GSChannelDestroy): queued messages are dropped and
        every blocked sender or receiver wakes with ChannelDestroyed. Closes this handle (unless BUSY).

        Raises:
          UnknownChannel: it was destroyed already (or GS does not know it).
          ChannelBusy: another request is creating or destroying it right now.
        """
        err = run(gs.channel_destroy(self._desc))  # ChannelBusy: still there, keep the handle
        self._chan.close()
        if err is not None:
            raise err
        self._destroyed()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _channel_from_msgpack(data: bytes) -> Channel:
    return Channel(msgspec.msgpack.decode(data, type=ChannelDescriptor))
