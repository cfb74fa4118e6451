"""The ring of a channel and its records: the per-message operations both faces are built on.

The ring holds records ``[u64 length|flags][payload][pad to 8]``; ``head`` and ``tail`` are
ever-increasing byte counters (no ABA), each written by one side only. Every record takes at least
one *slot* of ``8 + block_size`` bytes and the ring has ``capacity`` slots, so the channel holds
``capacity`` messages of up to ``block_size`` bytes (bigger ones take more room); in a *packed*
channel a record takes only its own room, so the same ring holds more small messages. Whether there
is room therefore depends on ``head`` and ``tail`` alone, each published by one aligned store: no
crash between two stores can leave the accounting wrong. The ``sent``/``received`` totals are
statistics only, and may be one off after a process was killed between two stores.

A sender copies the payload into the ring once and publishes it with a single aligned 8-byte store of
``head``; a receiver copies it out once and frees it with a store of ``tail``. A message larger than
the ring travels in a side file (`_side_files`). Order is FIFO across all senders.

Each operation here (`take`, `put`, `take_many`, `put_many`) is one call of a face per message or
batch: it takes the direction's locks, does its work inline, gives them back and rings the other
side's doorbell if anybody waits there. None of them waits for a message or for room; the faces
wait between them (`_waiting`). Without `wait_lock` an operation does not wait for the locks either
(the trio face, a spinning receiver) and reports a busy lock instead.

What a crash leaves: a process SIGKILLed mid-send has not stored ``head``, so its half-written record
is invisible; one killed mid-receive has not stored ``tail``, so the message is still there for the
others.
"""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from typing import Final, Literal, overload

from ._errors import ChannelCorrupted, ChannelDestroyed
from ._heap import BIG, keep_freed_memory
from ._layout import (
    HEADER_BYTES,
    LEN_MASK,
    SIDE,
    W_CLOSED,
    W_HEAD,
    W_RECEIVED,
    W_RSHARED,
    W_RTABLE,
    W_RWAIT,
    W_SENT,
    W_SSHARED,
    W_STABLE,
    W_SWAIT,
    W_SWANT,
    W_TAIL,
    Buffer,
)
from ._side_files import discard_side_file, read_side_file, write_side_file
from ._waiting import _Waiting

_STAGED_LEN: Final = 1 << 62  # the `len` of a `_Staged`: more than any ring holds


class _Staged(bytes):
    """The name suffix of a side file a sender wrote ahead (`stage`): sent as such.

    Its `len` is that of no message a ring holds, so the one size test of every send path routes it
    to `prepare` (which sends the plain name as a side-file record) and the hot paths pay no type
    test per message; its bytes (buffer protocol) are the name."""

    __slots__ = ()

    def __len__(self) -> int:
        return _STAGED_LEN


class _SideName(bytes):
    """A taken record's payload that names a side file (the record's SIDE flag): read the file."""

    __slots__ = ()


class _Ring(_Waiting):
    """The records of the ring, and the operations on them."""

    __slots__ = ()

    @overload
    def take(self, wait_lock: Literal[True] = True, waited: bool = False, wait: bool = False) -> bytes | None: ...
    @overload
    def take(self, wait_lock: bool, waited: bool = False, wait: bool = False) -> bytes | Literal[False] | None: ...

    def take(self, wait_lock: bool = True, waited: bool = False, wait: bool = False) -> bytes | Literal[False] | None:
        """Remove the oldest message and return it, or None if there is none; False (only without
        `wait_lock`) if another thread or process holds the receive lock: then nothing was done.
        Never waits for a message, but with `wait`, None means the caller is registered as a waiter
        and should sleep on `rbell`, then call again with `waited` (which unregisters in the same
        lock hold), or give up with `end_wait` (see `_waiting`).
        Raises ChannelDestroyed, ChannelCorrupted (a record no sender wrote: the tail stays)."""
        # The per-message path of every receive, in one call: each call level saved is a few percent
        # of a receive (about 2 µs, half of it the two flock calls; under 1 µs with the lock kept,
        # `hold_lock` or `lease_lock`). Slicing the mmap itself makes the bytes in one step.
        if self._closed:
            self.check_open()
        rfd, w, tlock = self.rbell, self._w, self._rlock
        if not tlock.acquire(wait_lock):  # not `with`: its exit costs 0.09 µs more than `release`
            return False
        try:
            if rfd not in self._held:
                if w[W_RSHARED] and rfd not in self._lease_wanted:  # the common shared case, inline
                    try:
                        fcntl.flock(rfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        if not self._lock(rfd, wait_lock):
                            return False
                elif not self._lock(rfd, wait_lock):  # first receive of a handle: take a lease, or announce
                    return False
            try:
                if waited:
                    self._register(W_RTABLE, W_RWAIT, -1)
                if w[W_CLOSED]:
                    raise self._destroyed()
                tail, head = w[W_TAIL], w[W_HEAD]
                if head == tail:
                    if not wait or self._enroll("recv"):
                        return None
                    if w[W_CLOSED]:  # a message, or a destroy, came while enrolling: unregistered
                        raise self._destroyed()
                    tail, head = w[W_TAIL], w[W_HEAD]
                rb = self.ring_bytes
                pos = tail % rb
                word = self._ringq[pos >> 3]
                n = word & LEN_MASK
                need = (n + 15) & ~7  # the record's header and payload
                if not need <= head - tail <= rb:  # a record longer than what is published, or a broken head
                    raise self._corrupted(n, head, tail)
                p = pos + 8 if pos + 8 != rb else 0
                end = p + n
                mm = self._mm
                if end <= rb:
                    data = mm[HEADER_BYTES + p : HEADER_BYTES + end]
                else:
                    data = mm[HEADER_BYTES + p : HEADER_BYTES + rb] + mm[HEADER_BYTES : HEADER_BYTES + end - rb]
                w[W_TAIL] = tail + (need if need > self._slot else self._slot)  # free it: a single aligned store
                w[W_RECEIVED] += 1
            finally:
                if rfd not in self._held:
                    fcntl.flock(rfd, fcntl.LOCK_UN)
                # else kept: no system call. The fence `_unlock` would make (our store of tail
                # before our load of the waiting senders below) is the release of `_rlock` just
                # after, a locked instruction as in `fence`.
        finally:
            tlock.release()
        # A producer that ran ahead waits for much room, so every receive meanwhile checks for it.
        if w[W_SWAIT] and self.ring_bytes - (w[W_HEAD] - w[W_TAIL]) >= w[W_SWANT]:
            self._ring_bell(self.sbell)
        if n >= BIG:  # the next large ones reuse this one's memory (`_heap`; once per process)
            keep_freed_memory()
        return read_side_file(self.name, data) if word & SIDE else data

    @overload
    def put(
        self,
        payload: Buffer,
        flags: int = 0,
        wait_lock: Literal[True] = True,
        want: int = 0,
        waited: bool = False,
        wait: bool = False,
    ) -> bool: ...
    @overload
    def put(
        self, payload: Buffer, flags: int, wait_lock: bool, want: int = 0, waited: bool = False, wait: bool = False
    ) -> bool | None: ...

    def put(
        self,
        payload: Buffer,
        flags: int = 0,
        wait_lock: bool = True,
        want: int = 0,
        waited: bool = False,
        wait: bool = False,
    ) -> bool | None:
        """Append one record (from `prepare`) if there is room for it, and for `want` bytes if that
        is more: True, else False; None (only without `wait_lock`) if another thread or process
        holds the send lock: then nothing was done. Never waits for room, but with `wait`, False
        means the caller is registered as a waiter and should sleep on `sbell`, then call again with
        `waited` (which unregisters in the same lock hold), or give up with `end_wait`.
        Raises ChannelDestroyed, ChannelCorrupted."""
        # The per-message path of every send, in one call (the locking written out as in `take`).
        if self._closed:
            self.check_open()
        sfd, w, tlock = self.sbell, self._w, self._slock
        if not tlock.acquire(wait_lock):
            return None
        try:
            if sfd not in self._held:
                if w[W_SSHARED] and sfd not in self._lease_wanted:
                    try:
                        fcntl.flock(sfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        if not self._lock(sfd, wait_lock):
                            return None
                elif not self._lock(sfd, wait_lock):
                    return None
            try:
                if waited:
                    self._register(W_STABLE, W_SWAIT, -1)
                if w[W_CLOSED]:
                    raise self._destroyed()
                n = len(payload)
                rb = self.ring_bytes
                head = w[W_HEAD]
                need = 8 + ((n + 7) & ~7)
                if need < self._slot:
                    need = self._slot
                used = head - w[W_TAIL]
                if not 0 <= used <= rb - (need if need > want else want):
                    if not 0 <= used <= rb:  # not full: broken (a head behind its tail, or past a whole ring)
                        raise self._corrupted(n, head, w[W_TAIL])
                    if not wait or self._enroll("send", min(rb, need if need > want else want)):
                        return False
                    if w[W_CLOSED]:  # the room, or a destroy, came while enrolling: unregistered
                        raise self._destroyed()
                pos = head % rb
                self._ringq[pos >> 3] = n | flags
                p = pos + 8
                if p == rb:
                    p = 0
                end = p + n
                if end <= rb:
                    self._ring[p:end] = payload
                else:
                    k = rb - p
                    mv = memoryview(payload)
                    self._ring[p:] = mv[:k]
                    self._ring[: n - k] = mv[k:]
                w[W_SENT] += 1
                w[W_HEAD] = head + need  # publish: a single aligned store
            finally:
                if sfd not in self._held:
                    fcntl.flock(sfd, fcntl.LOCK_UN)
                # else kept: the release of `_slock` just after fences our store of head before
                # our load of the waiting receivers below (a locked instruction, as in `fence`).
        finally:
            tlock.release()
        if w[W_RWAIT]:
            self._ring_bell(self.rbell)
        return True

    def put_many(self, prepared: Sequence[tuple[Buffer, int]], start: int, wait_lock: bool = True) -> int:
        """Append records from `prepared[start:]` (each from `prepare`) while they fit, under one
        lock; publish `head` once for all of them (one store: a crash before it leaves none of them
        visible). Returns the index of the first record that did not fit (len(prepared) if all did).
        Not `wait_lock`: `start` (nothing done) if another thread or process holds the send lock
        (a transport agent's loop: as `put`)."""
        self.check_open()
        sfd, w, tlock = self.sbell, self._w, self._slock
        if not tlock.acquire(wait_lock):
            return start
        try:
            if not self._lock(sfd, wait_lock):
                return start
            try:
                if w[W_CLOSED]:
                    raise self._destroyed()
                rb, slot, ring, ringq = self.ring_bytes, self._slot, self._ring, self._ringq
                head = w[W_HEAD]
                free = rb - (head - w[W_TAIL])
                if not 0 <= free <= rb:
                    raise self._corrupted(0, head, w[W_TAIL])
                i = start
                for payload, flags in prepared[start:]:
                    n = len(payload)
                    need = 8 + ((n + 7) & ~7)
                    if need < slot:
                        need = slot
                    if free < need:
                        break
                    pos = head % rb
                    ringq[pos >> 3] = n | flags
                    p = pos + 8
                    if p == rb:
                        p = 0
                    end = p + n
                    if end <= rb:
                        ring[p:end] = payload
                    else:
                        k = rb - p
                        mv = memoryview(payload)
                        ring[p:] = mv[:k]
                        ring[: n - k] = mv[k:]
                    head += need
                    free -= need
                    i += 1
                if i > start:
                    w[W_SENT] += i - start
                    w[W_HEAD] = head  # publish them all: a single aligned store
            finally:
                self._unlock(sfd)
        finally:
            tlock.release()
        if w[W_RWAIT]:
            self._ring_bell(self.rbell)
        return i

    def take_many(self, limit: int, wait_lock: bool = True) -> list[bytes]:
        """Remove up to `limit` messages under one lock, oldest first; free them with one store of
        `tail`. Never waits for a message. Not `wait_lock`: none if another thread or process holds
        the receive lock (as `take`)."""
        self.check_open()
        rfd, w, tlock = self.rbell, self._w, self._rlock
        out: list[bytes] = []
        big = False
        if not tlock.acquire(wait_lock):
            return out
        try:
            if not self._lock(rfd, wait_lock):
                return out
            try:
                if w[W_CLOSED]:
                    raise self._destroyed()
                rb, slot, ring, ringq = self.ring_bytes, self._slot, self._ring, self._ringq
                tail, head = w[W_TAIL], w[W_HEAD]
                if not 0 <= head - tail <= rb:
                    raise self._corrupted(0, head, tail)
                while tail < head and len(out) < limit:
                    pos = tail % rb
                    word = ringq[pos >> 3]
                    n = word & LEN_MASK
                    p = pos + 8
                    if p == rb:
                        p = 0
                    end = p + n
                    data = bytes(ring[p:end]) if end <= rb else bytes(ring[p:]) + bytes(ring[: end - rb])
                    out.append(_SideName(data) if word & SIDE else data)
                    big |= n >= BIG
                    tail += max(slot, 8 + ((n + 7) & ~7))
                if tail > head:  # the last record said it was longer than what is published: nothing is taken
                    raise self._corrupted(n, head, tail - max(slot, 8 + ((n + 7) & ~7)))
                if out:
                    w[W_TAIL] = tail  # free them all: a single aligned store
                    w[W_RECEIVED] += len(out)
            finally:
                self._unlock(rfd)
        finally:
            tlock.release()
        if out and w[W_SWAIT]:
            self._wake_senders()
        if big:
            keep_freed_memory()
        return [read_side_file(self.name, data) if data.__class__ is _SideName else data for data in out]

    def pending(self) -> bool:
        """Whether a `take` would find something (a message, or the channel destroyed) right now:
        a lock-free look, for a receiver that spins."""
        w = self._w
        return w[W_HEAD] != w[W_TAIL] or bool(w[W_CLOSED])

    def record_bytes(self, n: int) -> int:
        """The ring bytes a record of an `n`-byte payload takes."""
        return max(self._slot, 8 + ((n + 7) & ~7))

    def stage(self, data: Buffer) -> Buffer:
        """`data` ready to be sent later (by `send` or `send_many`, from any thread of this process):
        itself if it fits the ring, else written to its side file now, and the name of that file.

        For a sender that hands messages to another thread (a queue's feeder): what can fail about a
        large message (a full /dev/shm: NoSharedMemory) then fails in the caller, which learns of it.
        A staged message that is never sent leaves its side file until the channel is destroyed.
        """
        if len(data) <= self.max_inline:
            return data
        self.check_open()
        return _Staged(write_side_file(self.name, data))

    def prepare(self, data: Buffer) -> tuple[Buffer, int]:
        """The record (payload, flags) that sends `data` (any size, or `stage`d): itself, or the
        name of its side file, written now. `discard` it if it is not sent after all."""
        self.check_open()
        if data.__class__ is _Staged:
            return bytes(data), SIDE
        if len(data) > self.max_inline:
            return write_side_file(self.name, data), SIDE
        return data, 0

    def discard(self, payload: Buffer, flags: int) -> None:
        """Let go of a record from `prepare` that was not sent (its side file, if any)."""
        if flags & SIDE:
            discard_side_file(self.name, payload)

    def _count_records(self, tail: int, head: int) -> int:
        """Messages between `tail` and `head`, walking their headers (a snapshot, lock-free)."""
        count, rb = 0, self.ring_bytes
        while tail < head and count <= self.ring_bytes // 8:
            n = self._ringq[(tail % rb) >> 3] & LEN_MASK
            tail += self.record_bytes(n)
            count += 1
        return count

    def _destroyed(self) -> ChannelDestroyed:
        return ChannelDestroyed(f"channel {self.name} was destroyed")

    def _corrupted(self, n: int, head: int, tail: int) -> ChannelCorrupted:
        """What a receive raises for a record no sender wrote (the tail is not moved past it)."""
        return ChannelCorrupted(
            f"channel {self.name} is corrupt: its next record says it is {n} bytes long and {head - tail} bytes "
            f"are published, in a ring of {self.ring_bytes} bytes; something other than the runtime wrote "
            "into its shared memory (destroy the channel)"
        )
