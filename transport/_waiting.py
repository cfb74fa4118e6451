"""Waiting for a channel without busy-waiting and without losing a wake-up (an eventcount, see
notes/ipc-costs.md §Sleepers), written once for both faces as steps around a sleep.

A receiver calls `take(wait=True)`: finding the ring empty, it registers in the header's waiter
table under the receive lock (`_enroll`), issues a full fence and looks again; only if the ring is
still empty does it return None, and the face sleeps on the `rbell` FIFO. Its next
`take(waited=True)` unregisters it in the same lock hold as it takes (or registers again); a waiter
that gives up (a timeout, a cancellation) calls `end_wait("recv")` instead. A sender publishes
``head``, leaves its lock (a system call, hence a full barrier; a handle that keeps its lock has the
thread lock's release) and writes one byte to ``rbell`` if any receiver is registered. One of the two
always sees the other, so no wake-up is lost; a byte nobody needed only causes one spurious, harmless
wake. Senders waiting for room (`put(wait=True)`) work the same way on ``sbell``, with one
refinement: a sender waits for a given amount of room (``SWANT``, the least any registered sender
wants), and receivers ring only once there is that much. A batch asks for room for the rest of it, up
to half the ring, so a producer ahead of its consumer is woken once per half ring instead of once
per message taken.

How to sleep between the steps is the face's business (poll(2) in the blocking face, the event loop
in the trio face); every sleep is capped at `SAFETY_WAKE_S`, after which the waiter looks again. The
waiter table records pids, so a dead waiter is pruned by the next process that registers.
"""

from __future__ import annotations

import os
from typing import Final, Literal

from ._layout import (
    W_CLOSED,
    W_HEAD,
    W_RTABLE,
    W_RWAIT,
    W_STABLE,
    W_SWAIT,
    W_SWANT,
    W_TAIL,
    WAITER_SLOTS,
    fence,
)
from ._leases import _Locks
from ._procs import pid_alive

SAFETY_WAKE_S: Final = 1.0  # a sleeper looks again at least this often, whatever happens

Side = Literal["send", "recv"]


class _Waiting(_Locks):
    """The waiter tables, the doorbells, and the steps of a wait."""

    __slots__ = ()

    def _enroll(self, side: Side, want: int = 0) -> bool:
        """Step one of a wait (the direction's lock held), for an operation that found no message
        (no room for `want` bytes): register as a waiter, fence, and look again. True: still
        nothing, registered: the caller sleeps on the doorbell. False: something came meanwhile (a
        message, the room, a destroy): unregistered again, the caller goes on at once."""
        w = self._w
        if side == "recv":
            self._register(W_RTABLE, W_RWAIT, 1)
            fence()
            ready = w[W_HEAD] != w[W_TAIL]
        else:
            self._register(W_STABLE, W_SWAIT, 1, want)
            fence()
            ready = self.ring_bytes - (w[W_HEAD] - w[W_TAIL]) >= want
        if ready or w[W_CLOSED]:
            self._register(*self._table(side), -1)
            return False
        return True

    def enroll(self, side: Side, want: int = 0) -> bool:
        """Register as a waiter of direction `side` without taking or sending anything (for a caller
        that sleeps on the doorbell beside other things, as `multiprocessing.connection.wait` does):
        `_enroll` under that direction's lock. True: registered, sleep on the doorbell (`rbell`,
        `sbell`) then call `end_wait`; False: a message (the room for `want` bytes, a destroy) is
        there already, nothing to undo."""
        fd, tlock = self._side(side)
        with tlock:
            self.check_open()
            self._lock(fd, True)
            try:
                return self._enroll(side, want)
            finally:
                self._unlock(fd)

    def ring_waiters(self, side: Side) -> None:
        """Ring the doorbell of `side` if any waiter of it is registered: after a change of state
        outside the ring that those waiters must look at (a Pipe's other end closed). Call it after
        the change is published (a lock released: a full barrier)."""
        if self._w[W_RWAIT if side == "recv" else W_SWAIT]:
            self._ring_bell(self.rbell if side == "recv" else self.sbell)

    def end_wait(self, side: Side) -> None:
        """The end of a wait, for a waiter that gives up (a timeout, a cancellation) rather than try
        again: unregister (taking the lock, which another process
        holds only for the length of a copy). A closed handle has nothing to undo."""
        fd, tlock = self._side(side)
        with tlock:
            if self._closed:
                return
            self._lock(fd, True)
            try:
                self._register(*self._table(side), -1)
            finally:
                self._unlock(fd)

    def drain_bell(self, fd: int) -> None:
        """After a wake-up on doorbell `fd`: consume one ring (others stay for other sleepers)."""
        try:
            os.read(fd, 1)
        except BlockingIOError:
            pass

    @staticmethod
    def _table(side: Side) -> tuple[int, int]:
        return (W_RTABLE, W_RWAIT) if side == "recv" else (W_STABLE, W_SWAIT)

    def _register(self, table: int, count_word: int, delta: int, want: int = 0) -> None:
        """Add `delta` to this process's entry in a waiter table (its lock held); prune dead pids.

        A sender registering (`delta` > 0) also lowers W_SWANT to the room it waits for (`want`
        bytes; 0: one slot), stored before the count, so a receiver that sees the count sees it too.
        It is not raised when a waiter leaves: a stale low value only costs wake-ups for nothing."""
        w, pid = self._w, os.getpid()
        if count_word == W_SWAIT and delta > 0:
            want = max(want, self._slot)
            w[W_SWANT] = want if not w[W_SWAIT] else min(want, w[W_SWANT])
        owners = w[table : table + 2 * WAITER_SLOTS : 2].tolist()
        if pid in owners:
            slot = table + 2 * owners.index(pid)
            w[slot + 1] += delta
            if w[slot + 1] == 0:
                w[slot] = 0
        elif delta > 0 and not any(owners):  # nobody else is registered (the usual case): no pruning
            w[table], w[table + 1] = pid, delta
        elif delta > 0:
            free = -1
            for i, owner in enumerate(owners):
                if owner and not pid_alive(owner):  # a dead waiter: take it out of the count
                    slot = table + 2 * i
                    w[count_word] -= w[slot + 1]
                    w[slot] = w[slot + 1] = 0
                    owner = 0
                if owner == 0 and free < 0:
                    free = table + 2 * i
            if free >= 0:
                w[free], w[free + 1] = pid, delta
            # With the table full the process waits counted but not in the table, and so is still
            # woken; it only cannot be pruned should it die while waiting.
        w[count_word] += delta

    def _live_waiters(self, table: int) -> int:
        """The waits of live processes in `table`. A snapshot: the table is read once, since a waiter
        may leave (its slot zeroed) between two reads of the shared words."""
        pairs = self._w[table : table + 2 * WAITER_SLOTS].tolist()
        return sum(count for pid, count in zip(pairs[::2], pairs[1::2], strict=True) if pid and pid_alive(pid))

    def _wake_senders(self) -> None:
        """After a take, with senders registered: ring their doorbell if there is the room the least
        demanding one waits for (W_SWANT). Each take looks, and the one that empties the ring sees
        all of it free, so no sender is left asleep with room it waits for."""
        w = self._w
        if self.ring_bytes - (w[W_HEAD] - w[W_TAIL]) >= w[W_SWANT]:
            self._ring_bell(self.sbell)

    def _ring_bell(self, fd: int) -> None:
        try:
            os.write(fd, b"\1")
        except BlockingIOError:  # the FIFO is full of wake-ups already
            pass
