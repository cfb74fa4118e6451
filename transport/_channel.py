"""The blocking face of a shared-memory channel (spec §6 "Channel"), for plain Python code.

`Channel` is a `ChannelCore` (see `_core` for what a channel is) that waits by blocking the calling
thread: it calls the core's `take`/`put` once per operation and, when it must wait, sleeps in
poll(2) on a doorbell between the steps of a wait (`_waiting`). A receiver first spins
briefly (adaptively, a few tens of µs at most), which removes the sleeps and wake-ups from a
ping-pong between two busy processes. It yields its CPU between looks (`sched_yield`): a thread
with work on that CPU (its partner, another node's transport agent, one of its own process's
threads) runs at once instead of after the spin. Measured (2026-12-05, five and four alternate
runs): a Pipe round trip between two isolated nodes 208 -> 165 µs and a Queue's 167 -> 145 µs
(medians), and on one node (tools/bench_mp.py, pinned to two CPUs) a Pipe's 6.9-8.0 -> 6.3-6.4 µs
and a Queue's 6.4-7.5 -> 4.9-5.1 µs.
"""

from __future__ import annotations

import mmap
import os
import select
import time
from collections.abc import Callable, Sequence
from typing import Final

from ._core import ChannelCore
from ._errors import ChannelEmpty, ChannelError, ChannelFull
from ._layout import Buffer
from ._waiting import SAFETY_WAKE_S

SPIN_MAX_S: Final = 50e-6  # longest adaptive spin of a blocking receive before it sleeps
SPIN_MIN_S: Final = 2e-6
PUBLISH_EVERY: Final = 256
"""`send_many` publishes what it wrote (and wakes a sleeping receiver) at least every this many
messages: a receiver starts on a long batch while it is being written, instead of waiting for all of
it (a queue's feeder may hand over tens of thousands of messages at once, milliseconds of writing)."""


class Channel(ChannelCore):
    """A handle on a shared-memory channel, with the blocking face for plain Python code.

    Make one with `Channel.create` (which makes the channel) or `Channel.attach` (by name, from any
    process of the same user). A handle is thread-safe. `close` drops only this handle; `destroy` ends
    the channel for everybody. The trio face (`TrioChannel`) wraps a handle and shares its core.
    """

    __slots__ = ("_spin_cap", "_spin_s")

    def __init__(self, name: str, mm: mmap.mmap, rbell: int, sbell: int) -> None:
        super().__init__(name, mm, rbell, sbell)
        self._spin_s = self._spin_cap = SPIN_MAX_S

    def limit_spin(self, max_s: float) -> None:
        """Spin at most `max_s` seconds (0: not at all) before a blocking receive on this handle
        sleeps. A thread spins holding the GIL, so a receiver whose process has other busy threads
        (a Pool's result thread) should not: they would wait for it instead of working."""
        self._spin_cap = max(0.0, min(max_s, SPIN_MAX_S))
        self._spin_s = min(self._spin_s, self._spin_cap)

    # ----------------------------------------------------------------------------- send

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one message (any size) and return once it is in the channel.

        Blocks while the channel is full, without using CPU, for at most `timeout` seconds (None:
        forever; 0: do not block). Raises ChannelFull on timeout, ChannelDestroyed if the channel is
        destroyed before or while waiting. The message is either in the channel or not sent at all.
        """
        payload, flags = self.prepare(data)
        try:
            self._send_blocking(payload, flags, timeout)
        except BaseException:
            self.discard(payload, flags)
            raise

    def send_nowait(self, data: Buffer) -> None:
        """Send without blocking; ChannelFull if there is no room."""
        self.send(data, 0)

    def try_send(self, data: Buffer) -> bool:
        """Send `data` if there is room now: True, or False with nothing sent (no room, the send lock
        busy, or a message too large for the ring, which is left to `send` so that its side file is
        written once). Never waits, not even for the send lock.

        The lean form of `send_nowait` for a caller with a fallback (a Queue's `put` hands the
        message to its feeder thread): no exception, deadline or waiter registration."""
        if len(data) > self.max_inline:  # a `_Staged` too (its `len`)
            self.check_open()
            return False
        return self.put(data, 0, False) is True

    def _send_blocking(self, payload: Buffer, flags: int, timeout: float | None, want: int = 0) -> None:
        """Send one record, waiting for room as `send` says. A full channel is left alone until it
        has room for the message, or for `want` bytes (at most the ring) if that is more (a batch
        waits for room for many: the receivers then wake it once, not once per message taken)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        want = min(self.ring_bytes, max(want, self.record_bytes(len(payload))))
        waited = False
        while True:
            # Room for the message but not `want` yet: wait on (a batch gains nothing from sending
            # one message at a time, each costing the receiver a wake-up call).
            if self.put(payload, flags, True, want if timeout != 0 else 0, waited, timeout != 0):
                return
            if timeout == 0:
                raise self._full(timeout)
            waited = True  # registered as a waiting sender: sleep, then put again
            try:
                self._sleep(self.sbell, deadline, lambda: self._full(timeout))
            except BaseException:
                self.end_wait("send")
                raise

    def _full(self, timeout: float | None) -> ChannelFull:
        return ChannelFull(
            f"channel {self.name} stayed full for {timeout} s ({self.capacity} messages / {self.ring_bytes} bytes)"
        )

    def send_many(self, messages: Sequence[Buffer], timeout: float | None = None) -> None:
        """Send several messages, in order, taking the send lock once per run of messages that fit
        (at most PUBLISH_EVERY).

        The batch form of `send` (the same guarantees for each message, the same errors): when the
        channel is full it waits as `send` does, at most `timeout` seconds for each message that has
        to wait. On an error, the messages before the failing one were sent, the rest were not.
        """
        self.check_open()
        inline = self.max_inline
        start, total = 0, len(messages)
        while start < total:
            # `prepare` written out for messages that fit the ring (all but huge ones)
            chunk = [
                (data, 0) if len(data) <= inline else self.prepare(data)
                for data in messages[start : start + PUBLISH_EVERY]
            ]
            i = 0
            try:
                while i < len(chunk):
                    i = self.put_many(chunk, i)
                    if i < len(chunk):  # full: wait for room as `send` does, for this one message
                        # Without a timeout, for room for the rest too (as much as this one each,
                        # an estimate), up to half the ring: one wake-up per half ring instead of
                        # one per message taken. With one, only for this message's room, which the
                        # timeout is about.
                        want = (
                            0
                            if timeout is not None
                            else min(self.ring_bytes // 2, (total - start - i) * self.record_bytes(len(chunk[i][0])))
                        )
                        self._send_blocking(*chunk[i], timeout, want)
                        i += 1
            except BaseException:
                for payload, flags in chunk[i:]:
                    self.discard(payload, flags)
                raise
            start += len(chunk)

    # ----------------------------------------------------------------------------- receive

    def recv(self, timeout: float | None = None) -> bytes:
        """Receive the oldest message, blocking while the channel is empty.

        Waits at most `timeout` seconds (None: forever; 0: do not block) without busy-waiting beyond
        a short adaptive spin. Raises ChannelEmpty on timeout, ChannelDestroyed if the channel is
        destroyed before or while waiting.
        """
        data = self.take()  # most receives end here
        if data is not None:
            return data
        if timeout == 0:
            raise ChannelEmpty(f"channel {self.name} is empty")
        # Spin a little: a partner on the other CPU often answers within microseconds. A receiver
        # that finds the lock taken spins on rather than sleep in the kernel until the holder is done.
        spin_end = time.perf_counter() + self._spin_s
        while time.perf_counter() < spin_end:
            if self.pending():
                got = self.take(False)
                if got is not None and got is not False:
                    self._spin_s = min(self._spin_cap, self._spin_s * 2)
                    return got
            os.sched_yield()  # see the module docstring: a spinner steps aside for any thread with work
        self._spin_s = max(min(SPIN_MIN_S, self._spin_cap), self._spin_s / 2)
        return self._recv_sleeping(timeout)

    def recv_nowait(self) -> bytes:
        """Receive without blocking; ChannelEmpty if there is no message."""
        return self.recv(0)

    def recv_many(self, max_messages: int, timeout: float | None = None) -> list[bytes]:
        """Receive up to `max_messages` messages at once: waits (as `recv`) for the first one, then
        takes whatever else is waiting under one lock. Returns them oldest first."""
        out = [self.recv(timeout)]
        out.extend(self.take_many(max_messages - 1))
        return out

    def _recv_sleeping(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            data = self.take(True, waited, True)
            if data is not None:
                return data
            waited = True  # registered as a waiting receiver: sleep, then take again
            try:
                self._sleep(
                    self.rbell,
                    deadline,
                    lambda: ChannelEmpty(f"no message arrived on channel {self.name} within {timeout} s"),
                )
            except BaseException:
                self.end_wait("recv")
                raise

    def _sleep(self, fd: int, deadline: float | None, timed_out: Callable[[], ChannelError]) -> None:
        """Sleep until the doorbell `fd` rings (consuming one ring), the deadline, or SAFETY_WAKE_S."""
        wait_s = SAFETY_WAKE_S
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise timed_out()
            wait_s = min(wait_s, left)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(wait_s * 1000):
            self.drain_bell(fd)
