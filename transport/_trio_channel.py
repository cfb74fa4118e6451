"""The trio face of a shared-memory channel (spec §6), for the services and for async clients.

It drives the same core as the blocking face (`ChannelCore`), so both faces of one channel
interoperate message for message. Waiting never blocks the event loop: the doorbell FIFO is awaited
with `trio.lowlevel.wait_readable` between the steps of a wait (`_waiting`), and the channel's
locks are tried without blocking in `send` and `receive` (with a short backoff when another process
holds one, which it does only for the length of a copy); the `*_nowait` forms (unless told not to
wait for a lock: `wait_lock=False`) and the unregistering in cleanup paths take them blocking, which
costs at most the length of another process's copy. The exception is a channel
on which a blocking handle keeps a lock between operations (`Channel.hold_lock`, `Channel.lease_lock`:
a multiprocessing Pool's or Queue's channels): a lease is given up within `LEASE_POLL_S`, a hold only
when its handle closes. Trio code that shares such a channel (a transport agent, for processes of
other nodes) uses the waiting forms and `wait_lock=False` only: a blocking take of a held lock
stopped an agent's whole loop, its heartbeats with it, until its node was taken for lost.

trio lets one task at a time wait on an fd, so per handle and direction one task, the *watcher*, sleeps
on the doorbell while any other waiting tasks of this handle park on a `ParkingLot`; whenever the
watcher leaves (with a message, cancelled, or woken for nothing) it unparks one task, which looks at
the channel and, finding it empty, becomes the next watcher. A burst of messages therefore costs at
most two task wake-ups per message, not one per waiting task.

Cancellation loses nothing: a message is taken from the ring only in a synchronous step with no
checkpoint between taking and returning it, so a cancelled `receive` leaves it in the channel, and a
cancelled `send` has either put its message in or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ._core import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, ChannelCore, ChannelStatistics
from ._errors import ChannelDestroyed
from ._layout import Buffer
from ._waiting import SAFETY_WAKE_S, Side

_BACKOFF_MAX_S = 1e-3


class TrioChannel(trio.abc.Channel[bytes]):
    """A `trio.abc.Channel[bytes]` over a shared-memory channel; owns its handle (`ChannelCore`, or a
    blocking `Channel`).

    `send`/`receive` block as the blocking face does but are trio checkpoints and can be cancelled;
    `send_nowait`/`receive_nowait` raise `trio.WouldBlock`. `aclose` closes this handle (tasks waiting
    on it get `trio.ClosedResourceError`); `destroy` ends the channel for every process.
    Errors: ChannelDestroyed when the channel is destroyed (also in every waiting task),
    trio.ClosedResourceError after this handle was closed.
    """

    def __init__(self, core: ChannelCore) -> None:
        self._core = core
        self._recv_lot = trio.lowlevel.ParkingLot()
        self._send_lot = trio.lowlevel.ParkingLot()
        self._recv_watching = False
        self._send_watching = False
        self._closing = False
        self._destroyed = False

    @classmethod
    def create(
        cls, name: str, *, capacity: int = DEFAULT_CAPACITY, block_size: int = DEFAULT_BLOCK_SIZE
    ) -> TrioChannel:
        """Make a new channel (see `ChannelCore.create`) and return its trio face."""
        return cls(ChannelCore.create(name, capacity=capacity, block_size=block_size))

    @classmethod
    def attach(cls, name: str) -> TrioChannel:
        """The trio face of a new handle on an existing channel (see `ChannelCore.attach`)."""
        return cls(ChannelCore.attach(name))

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def descriptor(self) -> str:
        return self._core.descriptor

    def statistics(self) -> ChannelStatistics:
        self._check_open()
        return self._core.statistics()

    def approximate_depth(self) -> int:
        """`ChannelCore.approximate_depth`: messages waiting, O(1), without a lock."""
        self._check_open()
        return self._core.approximate_depth()

    def _check_open(self) -> None:
        if self._destroyed:
            raise ChannelDestroyed(f"channel {self._core.name} was destroyed")
        if self._closing or self._core.closed:
            raise trio.ClosedResourceError(f"this handle on channel {self._core.name} was closed")

    async def _backoff(self, backoff: float) -> float:
        """Another process holds a lock for the length of a copy: let the loop run, then try again."""
        await trio.sleep(backoff)
        self._check_open()
        return min(max(backoff * 2, 20e-6), _BACKOFF_MAX_S)

    async def _sleep_on(self, side: Side) -> None:
        """Sleep on the doorbell of direction `side` (at most SAFETY_WAKE_S), registered as a waiter
        by a `take` or `put` with `wait`; on an error (a cancellation, a close), unregister."""
        core = self._core
        fd = core.rbell if side == "recv" else core.sbell
        try:
            with trio.move_on_after(SAFETY_WAKE_S):
                await trio.lowlevel.wait_readable(fd)
                core.drain_bell(fd)
        except BaseException as exc:
            core.end_wait(side)
            if isinstance(exc, trio.ClosedResourceError):
                self._check_open()
            raise

    # ------------------------------------------------------------------------ receive

    async def _take(self, waited: bool = False, wait: bool = False) -> bytes | None:
        """`ChannelCore.take`, trying the receive lock without blocking the loop."""
        core = self._core
        backoff = 0.0
        while (got := core.take(False, waited, wait)) is False:
            try:
                backoff = await self._backoff(backoff)
            except BaseException:
                if waited:
                    core.end_wait("recv")
                raise
        return got

    async def receive(self) -> bytes:
        """The oldest message; waits while the channel is empty. EndOfChannel is never raised."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = slept = False
        try:
            while True:
                got = await self._take()
                if got is None and not self._recv_watching:
                    self._recv_watching = True
                    try:  # look again, registering; sleep if there is still nothing
                        got = await self._take(wait=True)
                        if got is None:
                            await self._sleep_on("recv")
                            got = await self._take(waited=True)
                        slept = True
                    finally:
                        self._recv_watching = False
                        self._recv_lot.unpark()  # hand the watch over (or let a parked task look)
                if got is not None:
                    if parked:  # pass the wake-up on: more messages may be waiting for parked tasks
                        self._recv_lot.unpark()
                    if not slept:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return got
                if self._recv_watching:
                    parked = slept = True
                    await self._recv_lot.park()
                    self._check_open()
        except BaseException:
            if parked:  # e.g. ChannelDestroyed: the other parked tasks must find out too
                self._recv_lot.unpark()
            raise

    async def try_receive(self) -> bytes | None:
        """The oldest message if there is one now, else None: waits (without blocking the loop) only
        while another process has the receive lock, not for a message."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        return await self._take()

    def receive_nowait(self, *, wait_lock: bool = True) -> bytes:
        """The oldest message, or trio.WouldBlock if the channel is empty. Not `wait_lock`: also
        trio.WouldBlock (nothing taken) if another process has the receive lock, which it may keep
        for long (`Channel.lease_lock`, `Channel.hold_lock`): a loop that serves others must not
        wait for it (a transport agent)."""
        self._check_open()
        data = self._core.take(wait_lock)
        if data is None or data is False:
            raise trio.WouldBlock
        return data

    def receive_many_nowait(self, limit: int, *, wait_lock: bool = True) -> list[bytes]:
        """Up to `limit` of the messages waiting, oldest first, under one lock (`receive_nowait` for
        many: one lock and one store of the tail for all); none if the channel is empty or, not
        `wait_lock`, another process has the receive lock."""
        self._check_open()
        return self._core.take_many(limit, wait_lock)

    # ------------------------------------------------------------------------ send

    async def send(self, value: Buffer) -> None:
        """Put one message (any size) into the channel; waits while it is full."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        payload, flags = core.prepare(value)
        try:
            await self._send_prepared(payload, flags)
        except BaseException:
            core.discard(payload, flags)
            raise

    async def _put(self, payload: Buffer, flags: int, waited: bool = False, wait: bool = False) -> bool:
        """`ChannelCore.put`, trying the send lock without blocking the loop."""
        core = self._core
        backoff = 0.0
        while (sent := core.put(payload, flags, False, 0, waited, wait)) is None:
            try:
                backoff = await self._backoff(backoff)
            except BaseException:
                if waited:
                    core.end_wait("send")
                raise
        return sent

    async def _send_prepared(self, payload: Buffer, flags: int) -> None:
        parked = False
        try:
            while True:
                sent = await self._put(payload, flags)
                if not sent and not self._send_watching:
                    self._send_watching = True
                    try:  # look again, registering; sleep if there is still no room
                        sent = await self._put(payload, flags, wait=True)
                        if not sent:
                            await self._sleep_on("send")
                            sent = await self._put(payload, flags, waited=True)
                    finally:
                        self._send_watching = False
                        self._send_lot.unpark()
                if sent:
                    if parked:
                        self._send_lot.unpark()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                if self._send_watching:
                    parked = True
                    await self._send_lot.park()
                    self._check_open()
        except BaseException:
            if parked:
                self._send_lot.unpark()
            raise

    async def try_send(self, value: Buffer) -> bool:
        """Put one message in if there is room now (True): waits (without blocking the loop) only
        while another process has the send lock, not for room."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        payload, flags = core.prepare(value)
        try:
            sent = await self._put(payload, flags)
        except BaseException:
            core.discard(payload, flags)
            raise
        if not sent:
            core.discard(payload, flags)
        return sent

    def send_nowait(self, value: Buffer, *, wait_lock: bool = True) -> None:
        """Put one message in, or raise trio.WouldBlock if the channel is full; not `wait_lock`, also
        if another process has the send lock (as `receive_nowait`)."""
        self._check_open()
        core = self._core
        payload, flags = core.prepare(value)
        try:
            sent = core.put(payload, flags, wait_lock)
        except BaseException:
            core.discard(payload, flags)
            raise
        if not sent:
            core.discard(payload, flags)
            raise trio.WouldBlock

    def send_many_nowait(self, values: Sequence[Buffer], *, wait_lock: bool = True) -> int:
        """Put in, under one lock, the leading `values` that fit the ring as they are (no side file)
        while there is room: how many went in (`send_nowait` for many). Not `wait_lock`: none if
        another process has the send lock."""
        self._check_open()
        core = self._core
        inline = core.max_inline
        prepared: list[tuple[Buffer, int]] = []
        for value in values:
            if len(value) > inline:
                break
            prepared.append(core.prepare(value))
        return core.put_many(prepared, 0, wait_lock) if prepared else 0

    # ------------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Close this handle: tasks waiting on it get trio.ClosedResourceError; the channel lives on."""
        if self._closing or self._core.closed:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        core = self._core
        for fd in (core.rbell, core.sbell):
            trio.lowlevel.notify_closing(fd)
        self._recv_lot.unpark_all()
        self._send_lot.unpark_all()
        with trio.CancelScope(shield=True):
            while self._recv_watching or self._send_watching:  # they unregister synchronously
                await trio.lowlevel.checkpoint()
        core.close()

    async def destroy(self) -> None:
        """End the channel for everybody (see `ChannelCore.destroy`), then close this handle.

        Tasks of this handle that were waiting get ChannelDestroyed, like every other waiter."""
        self._check_open()
        self._destroyed = True
        try:
            self._core.mark_destroyed()
        finally:
            await self.aclose()
