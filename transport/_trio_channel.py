"""The trio face of a shared-memory channel (spec §6), for the services and for async clients.

It drives the same core as the blocking face (`Channel`), so both faces of one channel interoperate
message for message. Waiting never blocks the event loop: the doorbell FIFO is awaited with
`trio.lowlevel.wait_readable`, and the channel's flocks are tried without blocking in `send` and
`receive` (with a short backoff when another process holds one, which it does only for the length of
a copy); the `*_nowait` forms and the unregistering in cleanup paths take them blocking, which costs
at most the length of another process's copy. The exception is a channel on which a blocking handle
keeps a lock between operations (`Channel.hold_lock`, `Channel.lease_lock`: a multiprocessing Pool's or
Queue's channels, which no trio code of ours uses): a lease is given up within `LEASE_POLL_S`, a hold
only when its handle closes, so trio code should not share such a channel.

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

import threading

import trio

from ._channel import (
    _W_CLOSED,
    _W_HEAD,
    _W_RTABLE,
    _W_RWAIT,
    _W_STABLE,
    _W_SWAIT,
    _W_TAIL,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CAPACITY,
    SAFETY_WAKE_S,
    Buffer,
    Channel,
    ChannelStatistics,
    _fence,
)
from ._errors import ChannelDestroyed

_BACKOFF_MAX_S = 1e-3


class TrioChannel(trio.abc.Channel[bytes]):
    """A `trio.abc.Channel[bytes]` over a shared-memory channel; owns its `Channel` handle.

    `send`/`receive` block as the blocking face does but are trio checkpoints and can be cancelled;
    `send_nowait`/`receive_nowait` raise `trio.WouldBlock`. `aclose` closes this handle (tasks waiting
    on it get `trio.ClosedResourceError`); `destroy` ends the channel for every process.
    Errors: ChannelDestroyed when the channel is destroyed (also in every waiting task),
    trio.ClosedResourceError after this handle was closed.
    """

    def __init__(self, core: Channel) -> None:
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
        """Make a new channel (see `Channel.create`) and return its trio face."""
        return cls(Channel.create(name, capacity=capacity, block_size=block_size))

    @classmethod
    def attach(cls, name: str) -> TrioChannel:
        """The trio face of a new handle on an existing channel (see `Channel.attach`)."""
        return cls(Channel.attach(name))

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def descriptor(self) -> str:
        return self._core.descriptor

    def statistics(self) -> ChannelStatistics:
        self._check_open()
        return self._core.statistics()

    def _check_open(self) -> None:
        if self._destroyed:
            raise ChannelDestroyed(f"channel {self._core.name} was destroyed")
        if self._closing or self._core._closed:
            raise trio.ClosedResourceError(f"this handle on channel {self._core.name} was closed")

    # ------------------------------------------------------------------------ locking

    async def _acquire(self, fd: int, tlock: threading.Lock) -> None:
        """Take the in-process and the cross-process lock of one direction without blocking the loop."""
        backoff = 0.0
        while True:
            if tlock.acquire(blocking=False):
                if self._core._lock(fd, False):
                    return
                tlock.release()
            await trio.sleep(backoff)
            self._check_open()
            backoff = min(max(backoff * 2, 20e-6), _BACKOFF_MAX_S)

    def _release(self, fd: int, tlock: threading.Lock) -> None:
        self._core._unlock(fd)
        tlock.release()

    def _unregister(self, fd: int, tlock: threading.Lock, table: int, count: int) -> None:
        """Drop one waiter registration; a brief blocking lock is fine (runs in cleanup paths)."""
        if self._core._closed:
            return
        with tlock:
            self._core._lock(fd, True)
            try:
                self._core._register(table, count, -1)
            finally:
                self._core._unlock(fd)

    # ------------------------------------------------------------------------ receive

    async def receive(self) -> bytes:
        """The oldest message; waits while the channel is empty. EndOfChannel is never raised."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        parked = slept = False
        try:
            while True:
                await self._acquire(core._rfd, core._rlock)
                try:
                    got = core._op_take()
                finally:
                    self._release(core._rfd, core._rlock)
                if got is None and not self._recv_watching:
                    self._recv_watching = True
                    try:
                        got = await self._watch_receive()
                        slept = True
                    finally:
                        self._recv_watching = False
                        self._recv_lot.unpark()  # hand the watch over (or let a parked task look)
                if got is not None:
                    if parked:  # pass the wake-up on: more messages may be waiting for parked tasks
                        self._recv_lot.unpark()
                    data = core._finish_take(got)
                    if not slept:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                if self._recv_watching:
                    parked = slept = True
                    await self._recv_lot.park()
                    self._check_open()
        except BaseException:
            if parked:  # e.g. ChannelDestroyed: the other parked tasks must find out too
                self._recv_lot.unpark()
            raise

    async def _watch_receive(self) -> bytes | None:
        """Register as a waiting receiver and sleep on the doorbell. Returns a message if one was
        there when registering or on waking (unregistering and taking in one locked step), else None
        (the caller then looks again)."""
        core, rfd = self._core, self._core._rfd
        w = core._w
        await self._acquire(rfd, core._rlock)
        try:
            got = core._op_take()
            if got is not None:
                return got
            core._register(_W_RTABLE, _W_RWAIT, 1)
            _fence()
            if w[_W_HEAD] != w[_W_TAIL] or w[_W_CLOSED]:
                core._register(_W_RTABLE, _W_RWAIT, -1)
                return None
        finally:
            self._release(rfd, core._rlock)
        woke = False
        try:
            with trio.move_on_after(SAFETY_WAKE_S):
                await trio.lowlevel.wait_readable(rfd)
                core._drain_bell(rfd)
            woke = True
        except trio.ClosedResourceError:
            self._check_open()
            raise
        finally:
            if not woke:
                self._unregister(rfd, core._rlock, _W_RTABLE, _W_RWAIT)
        try:
            await self._acquire(rfd, core._rlock)
        except BaseException:  # cancelled (or closed) before we could unregister under the lock
            self._unregister(rfd, core._rlock, _W_RTABLE, _W_RWAIT)
            raise
        try:
            core._register(_W_RTABLE, _W_RWAIT, -1)
            return core._op_take()
        finally:
            self._release(rfd, core._rlock)

    def receive_nowait(self) -> bytes:
        """The oldest message, or trio.WouldBlock if the channel is empty."""
        self._check_open()
        data = self._core._recv_once()
        if data is None:
            raise trio.WouldBlock
        return data

    # ------------------------------------------------------------------------ send

    async def send(self, value: Buffer) -> None:
        """Put one message (any size) into the channel; waits while it is full."""
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        payload, flags = core._prepare(value)
        try:
            await self._send_prepared(payload, flags)
        except BaseException:
            core._discard(payload, flags)
            raise

    async def _send_prepared(self, payload: Buffer, flags: int) -> None:
        core = self._core
        parked = False
        try:
            while True:
                await self._acquire(core._sfd, core._slock)
                try:
                    sent = core._op_put(payload, flags)
                finally:
                    self._release(core._sfd, core._slock)
                if sent:
                    if parked:
                        self._send_lot.unpark()
                    if core._w[_W_RWAIT]:
                        core._ring_bell(core._rfd)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                if self._send_watching:
                    parked = True
                    await self._send_lot.park()
                    self._check_open()
                    continue
                self._send_watching = True
                try:
                    if await self._watch_send(payload, flags):
                        return
                finally:
                    self._send_watching = False
                    self._send_lot.unpark()
        except BaseException:
            if parked:
                self._send_lot.unpark()
            raise

    async def _watch_send(self, payload: Buffer, flags: int) -> bool:
        """Register as a waiting sender and sleep on the doorbell; True if the message was put in
        while registering."""
        core, sfd = self._core, self._core._sfd
        await self._acquire(sfd, core._slock)
        try:
            if core._op_put(payload, flags):
                sent = True
            else:
                sent = False
                core._register(_W_STABLE, _W_SWAIT, 1)
                _fence()
                if core._has_room(len(payload)) or core._w[_W_CLOSED]:
                    core._register(_W_STABLE, _W_SWAIT, -1)
                    return False
        finally:
            self._release(sfd, core._slock)
        if sent:
            if core._w[_W_RWAIT]:
                core._ring_bell(core._rfd)
            return True
        try:
            with trio.move_on_after(SAFETY_WAKE_S):
                await trio.lowlevel.wait_readable(sfd)
                core._drain_bell(sfd)
        except trio.ClosedResourceError:
            self._check_open()
            raise
        finally:
            self._unregister(sfd, core._slock, _W_STABLE, _W_SWAIT)
        return False

    def send_nowait(self, value: Buffer) -> None:
        """Put one message in, or raise trio.WouldBlock if the channel is full."""
        self._check_open()
        core = self._core
        payload, flags = core._prepare(value)
        try:
            with core._slock:
                core._lock(core._sfd, True)
                try:
                    sent = core._op_put(payload, flags)
                finally:
                    core._unlock(core._sfd)
        except BaseException:
            core._discard(payload, flags)
            raise
        if not sent:
            core._discard(payload, flags)
            raise trio.WouldBlock
        if core._w[_W_RWAIT]:
            core._ring_bell(core._rfd)

    # ------------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Close this handle: tasks waiting on it get trio.ClosedResourceError; the channel lives on."""
        if self._closing or self._core._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        core = self._core
        for fd in (core._rfd, core._sfd):
            trio.lowlevel.notify_closing(fd)
        self._recv_lot.unpark_all()
        self._send_lot.unpark_all()
        with trio.CancelScope(shield=True):
            while self._recv_watching or self._send_watching:  # they unregister synchronously
                await trio.lowlevel.checkpoint()
        core.close()

    async def destroy(self) -> None:
        """End the channel for everybody (see `Channel.destroy`), then close this handle.

        Tasks of this handle that were waiting get ChannelDestroyed, like every other waiter."""
        self._check_open()
        self._destroyed = True
        try:
            self._core._mark_destroyed()
        finally:
            await self.aclose()
