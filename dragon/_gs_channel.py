"""Channels registered with Global Services, for plain Python code (spec §4.3, §5.2, §6, §7.2).

GS names and counts channels; Local Services makes the shared-memory channel; every process then
talks through its own handle on it (`dragon.transport.Channel`), without GS. So `create`, `attach`,
`wait_created` and `destroy` are GS requests, and `send`/`recv` are not.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgspec

from dragon._gs_client import connection, timeout_us
from dragon.descriptors import ChannelDescriptor, ChannelLocalOptions, ChannelOptions, ObjectState
from dragon.errors import (
    ChannelBusy, ChannelCreateFailed, ChannelDestroyed, ChannelNameInUse, ChannelWaitTimeout, InvalidArgument,
    UnknownChannel,
)
from dragon.ids import DEFAULT_POOL_MUID
from dragon.messages import (
    ChannelCreateErr, ChannelDestroyErr, ChannelJoinErr, ChannelQueryErr, GSChannelCreate,
    GSChannelCreateResponse, GSChannelDestroy, GSChannelDestroyResponse, GSChannelJoin, GSChannelJoinResponse,
    GSChannelList, GSChannelListResponse, GSChannelQuery, GSChannelQueryResponse,
)
from dragon.transport import Channel as ShmChannel
from dragon.transport import ChannelStatistics
from dragon.transport._channel import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, MIN_BLOCK_SIZE

Buffer = bytes | bytearray | memoryview


class Channel:
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
        if desc.state == ObjectState.DEAD:
            raise ChannelDestroyed(f"channel {desc.name} (c_uid {desc.c_uid}) was destroyed")
        self._desc = desc
        self._chan = ShmChannel.attach(desc.sdesc)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    @classmethod
    def create(cls, *, capacity: int = DEFAULT_CAPACITY, block_size: int = DEFAULT_BLOCK_SIZE, name: str = "",
               m_uid: int = DEFAULT_POOL_MUID, soft: bool = False) -> Channel:
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
        if capacity < 1:
            raise InvalidArgument(f"channel capacity must be at least 1 message, not {capacity}")
        if block_size < MIN_BLOCK_SIZE:
            raise InvalidArgument(f"channel block size must be at least {MIN_BLOCK_SIZE} bytes, not {block_size}")
        if soft and not name:
            raise InvalidArgument("Channel.create(soft=True) needs a name to look up")
        opts = ChannelOptions(local_opts=ChannelLocalOptions(capacity=capacity, block_size=block_size))
        resp = connection().call(GSChannelCreate(p_uid=0, r_c_uid=0, m_uid=m_uid, options=opts, user_name=name),
                                 GSChannelCreateResponse)
        if resp.err == ChannelCreateErr.ALREADY and resp.desc is not None:
            if soft:
                return cls(resp.desc)
            raise ChannelNameInUse(f"{resp.err_info} (c_uid {resp.desc.c_uid})", name, resp.desc.c_uid)
        if resp.err != ChannelCreateErr.SUCCESS or resp.desc is None:
            raise ChannelCreateFailed(f"cannot create channel {name!r}: {resp.err_info or resp.err.name}")
        return cls(resp.desc)

    @classmethod
    def attach(cls, c_uid: int | None = None, *, name: str = "") -> Channel:
        """Attach to an existing channel by c_uid or by name (GSChannelQuery).

        Raises:
          UnknownChannel: GS knows no such channel.
          ChannelDestroyed: it was destroyed.
          InvalidArgument: neither or both of c_uid and name.
        """
        if (c_uid is None) == (not name):
            raise InvalidArgument("Channel.attach needs exactly one of c_uid or name")
        resp = connection().call(GSChannelQuery(p_uid=0, r_c_uid=0, c_uid=c_uid, user_name=name),
                                 GSChannelQueryResponse)
        if resp.err != ChannelQueryErr.SUCCESS or resp.desc is None:
            raise UnknownChannel(resp.err_info or f"no channel {name or c_uid}")
        return cls(resp.desc)

    @classmethod
    def wait_created(cls, name: str, timeout: float | None = None) -> Channel:
        """Attach to the channel `name` as soon as it exists: waits up to `timeout` s (None: no limit)
        for somebody to create it (GSChannelJoin).

        Raises:
          ChannelWaitTimeout: none appeared in time.
          ChannelDestroyed: a channel of that name existed and was destroyed.
        """
        if not name:
            raise InvalidArgument("Channel.wait_created needs a name")
        resp = connection().call(GSChannelJoin(p_uid=0, r_c_uid=0, name=name, timeout=timeout_us(timeout)),
                                 GSChannelJoinResponse)
        if resp.err == ChannelJoinErr.SUCCESS and resp.desc is not None:
            return cls(resp.desc)
        if resp.err == ChannelJoinErr.DEAD:
            raise ChannelDestroyed(resp.err_info or f"channel {name} was destroyed")
        raise ChannelWaitTimeout(f"{resp.err_info or f'no channel named {name}'} within {timeout} s")

    @staticmethod
    def list() -> list[int]:
        """The c_uid of every channel GS knows in this runtime, destroyed ones included."""
        return connection().call(GSChannelList(p_uid=0, r_c_uid=0), GSChannelListResponse).clist

    # ----------------------------------------------------------------------------- identity

    @property
    def c_uid(self) -> int:
        return self._desc.c_uid

    @property
    def name(self) -> str:
        return self._desc.name

    @property
    def m_uid(self) -> int:
        """The pool the channel belongs to."""
        return self._desc.m_uid

    @property
    def descriptor(self) -> ChannelDescriptor:
        """GS's record of the channel when this handle was made (spec §5.2)."""
        return self._desc

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
        resp = connection().call(GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=self._desc.c_uid),
                                 GSChannelDestroyResponse)
        if resp.err == ChannelDestroyErr.BUSY:  # still there: keep the handle
            raise ChannelBusy(f"cannot destroy channel {self.name}: {resp.err_info}")
        self._chan.close()
        if resp.err == ChannelDestroyErr.SUCCESS:
            self._desc = msgspec.structs.replace(self._desc, state=ObjectState.DEAD)
            return
        raise UnknownChannel(f"cannot destroy channel {self.name}: {resp.err_info or resp.err.name}")

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Channel c_uid={self._desc.c_uid} name={self._desc.name!r}>"


def _from_msgpack(data: bytes) -> Channel:
    return Channel(msgspec.msgpack.decode(data, type=ChannelDescriptor))
