"""A ZeroMQ socket waited on by trio, with no thread per socket (multi-node runtime, MULTINODE.md §2).

Only the multi-node actors (frontend, backends, transport agents) import this module: it imports zmq,
which a single-node run never loads (a test checks `import dragon, dragon.transport, dragon.mp`).

How waiting works. libzmq gives each socket one file descriptor (`FD`) that is *edge-triggered*: it
becomes readable when the socket's state may have changed, and it is reset by any call that lets the
socket process its commands (`send`, `recv`, reading `EVENTS`). So the truth is `EVENTS`, and it must
be re-read before every sleep on the fd; and an operation made by one task may swallow the edge another
task is sleeping for (a `send` that processes the command "a message arrived"). trio also lets only
one task at a time wait on an fd. Hence, per socket:
- one task, the *watcher*, sleeps on the fd (in a cancel scope of its own); every other waiting task
  parks on a `ParkingLot`;
- whenever the watcher wakes (or leaves: served, cancelled), it unparks every parked task, and each
  re-reads `EVENTS`: the one that still has to wait and finds no watcher becomes the next one;
- the edge the watcher sleeps for may be consumed by another task's call (a `send`, a `recv`, a read
  of `EVENTS`): after each such call the task reads `EVENTS` and, if they show what the watcher waits
  for, *kicks* it (cancels its sleep) so it looks again. (A kick on every call would make two waiting
  tasks of opposite directions kick each other forever.)
Waiting tasks are few (a receiver and a sender, typically), so waking them all costs little.

Cancellation loses nothing: a message is taken from, or handed to, libzmq only in a synchronous step
(`NOBLOCK`) with no checkpoint between that step and the return; a cancelled `recv_multipart` leaves
its message in the socket, a cancelled `send_multipart` has not queued its message. A multipart
message is queued whole or not at all (libzmq checks the high-water mark at the first part only).

Checkpoints. Every call is a cancel point (`checkpoint_if_cancelled` first). A call that has to wait
is a schedule point too; one that does not (the message was there, the socket had room) is a schedule
point only once in `YIELD_EVERY` calls per socket: a trio schedule point costs about 2.7 µs here, ten
times a 64 B `recv`, and a schedule point per call cut a task's small-message rate to a third. So a task
that only moves messages through a busy socket lets other tasks run every 16 messages, not after each.

Speed (tools/bench_zsock.py, 64 B PUSH/PULL between two processes): one call per message reaches about
0.3x plain blocking pyzmq's rate, the Python cost of the call and of trio's bookkeeping; `recv_many`
(everything queued, up to a count, for one wake-up) and `try_send_many` (as many as the socket takes
now, no schedule point) reach 0.6-0.8x. At 1 MiB one call per message is as fast as blocking pyzmq,
and copy=False (no copy into and out of libzmq) faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, TypeAlias, cast, overload

import trio
import zmq

YIELD_EVERY: Final = 16
"""A call that did not have to wait lets other tasks run once in this many calls (module docstring)."""
_NOBLOCK_MORE: Final = zmq.NOBLOCK | zmq.SNDMORE

Frame: TypeAlias = bytes | memoryview | zmq.Frame
"""What a part of an outgoing message may be."""


class AsyncSocket:
    """A pyzmq socket for trio tasks; owns `sock` (closed by `close`).

    Any number of tasks may send and receive at once. `send_multipart`/`recv_multipart` wait while the
    socket cannot send (high-water mark) or has nothing to receive. After `close`, every operation
    (and every task waiting in one) raises `trio.ClosedResourceError`. libzmq's own errors
    (`zmq.ZMQError`, e.g. EHOSTUNREACH of a ROUTER with ROUTER_MANDATORY) pass through unchanged.
    """

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self._fd = sock.fileno()
        self._lot = trio.lowlevel.ParkingLot()
        self._watch_scope: trio.CancelScope | None = None
        self._watch_flag = 0
        self._closed = False
        self._unyielded = 0

    # -- receiving

    @overload
    async def recv_multipart(self, *, copy: Literal[True] = True) -> list[bytes]: ...
    @overload
    async def recv_multipart(self, *, copy: Literal[False]) -> list[zmq.Frame]: ...
    async def recv_multipart(self, *, copy: bool = True) -> list[bytes] | list[zmq.Frame]:
        """The next message (its frames as bytes, or as `zmq.Frame`s with copy=False: no copy of a large
        message, whose bytes are `frame.buffer`). Waits until one is there."""
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = False
        while True:
            self._check_open()
            try:
                msg = self._recv_now(copy)
            except zmq.Again:
                slept |= await self._wait(zmq.POLLIN)
                continue
            self._kick()
            if not slept:
                await self._fair_checkpoint()
            return msg

    def can_recv(self) -> bool:
        """Whether a message is there to take now (`EVENTS`), without waiting: what a task that spins
        before it sleeps (`dragon.transport.hot_wait`) looks at."""
        self._check_open()
        return bool(self._events() & zmq.POLLIN)

    @overload
    async def recv_many(self, max_n: int, *, copy: Literal[True] = True) -> list[list[bytes]]: ...
    @overload
    async def recv_many(self, max_n: int, *, copy: Literal[False]) -> list[list[zmq.Frame]]: ...
    async def recv_many(self, max_n: int, *, copy: bool = True) -> list[list[bytes]] | list[list[zmq.Frame]]:
        """At least one and at most `max_n` messages, in order: waits for the first, then takes
        whatever else is queued already, all for one wake-up (see the module docstring, "Speed")."""
        if max_n < 1:
            raise ValueError(f"recv_many: max_n must be at least 1, got {max_n}")
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = False
        msgs: list[list[bytes]] | list[list[zmq.Frame]] = []
        while True:
            self._check_open()
            try:
                while len(msgs) < max_n:
                    msgs.append(self._recv_now(copy))  # type: ignore[arg-type]
            except zmq.Again:
                if not msgs:
                    slept |= await self._wait(zmq.POLLIN)
                    continue
            self._kick()
            if not slept:
                await self._fair_checkpoint()
            return msgs

    def _recv_now(self, copy: bool) -> list[bytes] | list[zmq.Frame]:
        """The next message if one is there (zmq.Again if not). Received as frames, whose `more` is cheap to
        read: pyzmq's `recv_multipart` asks the socket for RCVMORE after each part, which costs twice
        a small message's `recv`."""
        recv = self.sock.recv
        frame = recv(zmq.NOBLOCK, copy=False)
        frames = [frame]
        while frame.more:
            frame = recv(zmq.NOBLOCK, copy=False)
            frames.append(frame)
        return [f.bytes for f in frames] if copy else frames

    # -- sending

    async def send_multipart(self, frames: Sequence[Frame], *, copy: bool = True) -> None:
        """Queue one message (its frames in order); waits while the socket cannot take it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = False
        while not self.try_send_multipart(frames, copy=copy):
            slept |= await self._wait(zmq.POLLOUT)
        if not slept:
            await self._fair_checkpoint()

    def try_send_multipart(self, frames: Sequence[Frame], *, copy: bool = True) -> bool:
        """Queue one message if the socket can take it now; False (nothing queued) if it cannot."""
        return self.try_send_many((frames,), copy=copy) == 1

    def try_send_many(self, messages: Sequence[Sequence[Frame]], *, copy: bool = True) -> int:
        """Queue messages in order as long as the socket takes them, without waiting or a schedule
        point; returns how many were queued (the rest were not). A pump sends a batch with
        `n = s.try_send_many(batch)` and, for `batch[n]`, `await s.send_multipart(...)` (which waits)."""
        self._check_open()
        n = 0
        for frames in messages:
            if not self._send_now(frames, copy):
                break
            n += 1
        if n:
            self._kick()
        return n

    def _send_now(self, frames: Sequence[Frame], copy: bool) -> bool:
        """Queue one message now, or nothing (False). libzmq checks the high-water mark only at a message's
        first part, so once that is taken the others are too (pyzmq's `send_multipart` relies on it as
        well; calling `send` per part saves its checks, a third of the cost of a small message)."""
        if not frames:
            raise ValueError("AsyncSocket: a message needs at least one frame")
        send, last = self.sock.send, len(frames) - 1
        try:
            send(frames[0], _NOBLOCK_MORE if last else zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return False
        for i in range(1, last + 1):
            send(frames[i], _NOBLOCK_MORE if i < last else zmq.NOBLOCK, copy=copy)
        return True

    # -- closing

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket (pending outgoing messages are kept for up to `linger_ms`); tasks waiting
        on it get `trio.ClosedResourceError`. Idempotent. Call it from trio code (or with no task of
        this socket waiting)."""
        if self._closed:
            return
        self._closed = True
        if self._watch_scope is not None:
            trio.lowlevel.notify_closing(self._fd)
        self._lot.unpark_all()
        self.sock.close(linger=linger_ms)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- waiting (see the module docstring)

    async def _fair_checkpoint(self) -> None:
        """The schedule point of a call that did not wait: one in `YIELD_EVERY` (see the module docstring)."""
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this ZeroMQ socket was closed")

    def _events(self) -> int:
        """`EVENTS` now; kicks the watcher if they show what it waits for (see the module docstring)."""
        events = cast(int, self.sock.get(zmq.EVENTS))
        if self._watch_scope is not None and events & self._watch_flag:
            self._watch_scope.cancel()
        return events

    def _kick(self) -> None:
        """A call just let libzmq process the socket's commands: wake the watcher if it has to look."""
        if self._watch_scope is not None:
            self._events()

    async def _wait(self, flag: int) -> bool:
        """Return once `EVENTS` has `flag` (POLLIN/POLLOUT); True if this task slept on the way."""
        slept = False
        while True:
            self._check_open()
            if self._events() & flag:
                return slept
            slept = True
            if self._watch_scope is None:
                with trio.CancelScope() as scope:
                    self._watch_scope, self._watch_flag = scope, flag
                    try:
                        await trio.lowlevel.wait_readable(self._fd)
                    finally:
                        self._watch_scope = None
                        self._lot.unpark_all()
            else:
                await self._lot.park()
