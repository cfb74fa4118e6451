"""A record: a channel whose spare header words hold the state of one synchronization object.

The runtime's synchronization objects (a Lock's holder, an Event's flag, a Barrier's count and
generation, a Pipe end's holders) need three things a channel already has: shared memory that every
process of the node maps and the runtime registers, names and cleans up (Global Services makes,
ref-counts and lists it like any channel); a lock between processes that the kernel releases when its
holder dies (the receive lock, a flock); and a way to sleep until another process changes something,
without losing a wake-up (the receivers' waiter table and doorbell, `_waiting`). So a record is a
channel: its state is `OBJ_WORDS` signed 64-bit words after the control words in the header's 4 KiB
(`words`), changed only under `lock()`, and a waiter runs `wait_for(step)`: `step` runs under the
lock and either finishes the operation (returns a value) or registers the caller as a waiter in the
same lock hold; whoever changes the state later (under the lock) calls `wake`, which rings the
doorbell for the registered waiters. One lock hold covers both the look and the registration, so a
change is either seen by the look or followed by a ring: no wake-up is lost. The ring itself stays
free for messages (a Pipe's data; unused by a Lock).

A waiter first spins on an optional lock-free `peek` (adaptively, up to `SPIN_MAX_S`, as a channel
receiver does): a partner on the other CPU often answers within microseconds, and a sleep and a
wake-up cost each side a context switch. Spinning halves when it fails, so a waiter under load
gives the CPU up after a few microseconds. Every sleep is capped at SAFETY_WAKE_S, after which the
step runs again: a step can notice a dead holder or party (`pid_alive`) itself.

A process of another node uses a record through its home (the node whose /dev/shm holds it): each
operation travels to the home's transport agent, which carries it out there, in a thread of its own
(`dragon.mp.at_home`), and answers; a wait is the home thread's wait, and its wake-up is the answer.
In the record's words such a user is named by `remote_holder(node, pid)`, a number no process id
can be (above `REMOTE_BASE`), so that holds and parties of two nodes never collide; the runtime tells
the home when that process ends (`reclaim` with the same number). `holder_alive` is the one liveness
rule for both: a remote holder counts as alive until then.

A record can hold bytes too: `data()` is its ring (a `dragon.native` Value or Array lives there), which
a record made for that has sized to the object.
"""

from __future__ import annotations

import mmap
import os
import select
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec

from ._channel import SPIN_MAX_S, SPIN_MIN_S, Channel
from ._errors import ChannelDestroyed
from ._layout import HEADER_BYTES, W_CLOSED, W_OBJ, W_RTABLE, W_RWAIT
from ._procs import pid_alive
from ._waiting import SAFETY_WAKE_S

OBJ_WORDS: Final = HEADER_BYTES // 8 - W_OBJ
"""How many state words a record has (signed 64-bit each)."""

T = TypeVar("T")


class Record(Channel):
    """A channel used as the home of a synchronization object (see the module docstring).

    Make it through Global Services like any channel (or with `Record.create` in tests) and attach by
    name. `words` are the object's state; change them only between `lock()` and `unlock()`."""

    __slots__ = ("_wspin", "words")

    words: memoryview  # OBJ_WORDS signed 64-bit words, zero in a new record

    def __init__(self, name: str, mm: mmap.mmap, rbell: int, sbell: int) -> None:
        super().__init__(name, mm, rbell, sbell)
        self.words = self._mv[W_OBJ * 8 : HEADER_BYTES].cast("q")
        self._wspin = SPIN_MAX_S

    def _release_views(self) -> None:
        words = getattr(self, "words", None)
        if words is not None:
            words.release()
        super()._release_views()

    def lock(self) -> None:
        """Take the record's lock (the receive lock: released by the kernel if this process dies)."""
        self._rlock.acquire()
        try:
            self.check_open()
            self._lock(self.rbell, True)
        except BaseException:
            self._rlock.release()
            raise

    def unlock(self) -> None:
        self._unlock(self.rbell)
        self._rlock.release()

    def locked(self, step: Callable[[], T]) -> T:
        """Run `step` under the lock, and return what it returns."""
        self.lock()
        try:
            return step()
        finally:
            self.unlock()

    def data(self) -> memoryview:
        """The ring as a writable view (`ring_bytes`, zero in a new record), for an object whose state
        is bytes rather than words (a `dragon.native` Value or Array: a ctypes object on it). Release
        the view, and every object made on it, before `close()`: a view still exported makes the
        close fail (BufferError)."""
        self.check_open()
        return self._mv[HEADER_BYTES : HEADER_BYTES + self.ring_bytes]

    @property
    def destroyed(self) -> bool:
        """Whether the record was destroyed (by its last user, or by the runtime's teardown)."""
        return bool(self._w[W_CLOSED])

    def wait_for(
        self, step: Callable[[], T | None], timeout: float | None, peek: Callable[[], bool] | None = None
    ) -> T | None:
        """Run `step` under the lock until it returns something else than None, and return that; None
        if `timeout` seconds (None: no limit) pass first. Between tries the caller is a registered
        waiter and sleeps until `wake`, at most SAFETY_WAKE_S at a time. `peek` (lock-free, no side
        effect) says when a try is worth making: it is spun on briefly before the first sleep.
        Raises ChannelDestroyed if the record is destroyed meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if peek is not None and timeout != 0:
            spin_end = time.perf_counter() + self._wspin
            while not (seen := peek()) and time.perf_counter() < spin_end:
                pass
            self._wspin = min(SPIN_MAX_S, self._wspin * 2) if seen else max(SPIN_MIN_S, self._wspin / 2)
        registered = False
        try:
            while True:
                self.lock()
                try:
                    if self._w[W_CLOSED]:
                        self._raise_destroyed()
                    done = step()
                    if done is not None:
                        if registered:
                            self._register(W_RTABLE, W_RWAIT, -1)
                            registered = False
                        return done
                    if deadline is not None and time.monotonic() >= deadline:
                        return None  # (a poll, timeout 0, never registers)
                    if not registered:
                        self._register(W_RTABLE, W_RWAIT, 1)
                        registered = True
                finally:
                    self.unlock()
                wait_s = SAFETY_WAKE_S
                if deadline is not None:
                    wait_s = min(wait_s, deadline - time.monotonic())
                    if wait_s <= 0:
                        return None
                poller = select.poll()
                poller.register(self.rbell, select.POLLIN)
                if poller.poll(wait_s * 1000):
                    self.drain_bell(self.rbell)
        finally:
            if registered and not self._closed:
                self.lock()
                try:
                    self._register(W_RTABLE, W_RWAIT, -1)
                finally:
                    self.unlock()

    def wake(self, waiters: int = 1) -> None:
        """After a change of state (the lock held): wake up to `waiters` registered waiters (-1: all).
        A waiter woken for nothing runs its step, finds nothing, and sleeps again."""
        count = int(self._w[W_RWAIT])
        if count > 0:
            self._ring_bells(count if waiters < 0 else min(waiters, count))

    def waiting(self) -> int:
        """How many processes' waiters are registered now (dead ones left out); lock-free."""
        return self._live_waiters(W_RTABLE)

    def _ring_bells(self, n: int) -> None:
        try:
            os.write(self.rbell, b"\1" * n)
        except BlockingIOError:  # the FIFO is full of wake-ups already
            pass

    def _raise_destroyed(self) -> None:
        raise ChannelDestroyed(f"the object of record {self.name} was destroyed")


REMOTE_BASE: Final = 1 << 32
"""Every number at or above this in a pid word names a process of another node (`remote_holder`):
Linux process ids stay below 2**22."""


def remote_holder(node: int, pid: int) -> int:
    """How a record names process `pid` of node `node` when it is used from a node other than its
    home: never a process id of the home's (or of any node's)."""
    return ((node + 1) << 32) | pid


def holder_of(who: int) -> tuple[int, int | None]:
    """The process a pid word names, as (pid, node): node None for a process of the record's home,
    else the node `remote_holder` encoded."""
    if who < REMOTE_BASE:
        return who, None
    return who & 0xFFFFFFFF, (who >> 32) - 1


def holder_name(who: int) -> str:
    """`who` as a user reads it: "process 123", or "process 123 of node 1" for a remote holder."""
    pid, node = holder_of(who)
    return f"process {pid}" if node is None else f"process {pid} of node {node}"


def holder_alive(who: int) -> bool:
    """Whether the process a pid word names is alive: a process of this node by its pid; one of another
    node (`remote_holder`) until the runtime says it ended (`reclaim` clears its words)."""
    return who >= REMOTE_BASE or pid_alive(who)


def add_pid(words: memoryview, table: int, slots: int, pid: int) -> bool:
    """Add `pid` to the table of `slots` pids at word `table` (the lock held): into an empty slot, or,
    only if there is none, the slot of a dead process; False if the table is full of live ones. A dead
    process's entry is left while there is room: Global Services' `reclaim` may not have seen its exit
    yet, and needs it (a Barrier party that died with an error breaks the barrier; taking its slot
    first lost that: the others waited out their timeouts)."""
    empty = dead = -1
    for i in range(table, table + slots):
        owner = words[i]
        if owner == pid:
            return True
        if empty < 0 and owner == 0:
            empty = i
        elif dead < 0 and owner != 0 and not holder_alive(owner):
            dead = i
    slot = empty if empty >= 0 else dead
    if slot < 0:
        return False
    words[slot] = pid
    return True


def remove_pid(words: memoryview, table: int, slots: int, pid: int) -> None:
    """Take `pid` out of a pid table (the lock held)."""
    for i in range(table, table + slots):
        if words[i] == pid:
            words[i] = 0


def live_pids(words: memoryview, table: int, slots: int) -> list[int]:
    """The pids of a table whose processes are alive."""
    return [pid for pid in words[table : table + slots].tolist() if pid and holder_alive(pid)]


# ------------------------------------------------------------------------------------------------
# The words every record of a synchronization object shares (indices into `Record.words`), so that
# the runtime can act on any of them when a process dies (`reclaim`) and `dragon status` can show
# them, without knowing each kind's own words (from `OWN` on).

KIND: Final = 0
"""What the object is: one of `KINDS` (0 in a record that is not a synchronization object)."""
SEM: Final = 1
"""1 if the object's count is the named POSIX semaphore ``sem.<record name>`` (the Lock family's fast
path): the record's destroy unlinks it, `reclaim` posts it."""
SEM_MAX: Final = 2
"""That semaphore's largest value (1 for a Lock; 0: unbounded)."""
BROKEN: Final = 3
"""Nonzero once the object is broken (a Barrier whose party died, or aborted): waiters raise."""
RECLAIMED: Final = 4
"""The pid of the last dead process whose holds `reclaim` gave back (0: none)."""
RECLAIMS: Final = 5
"""How many holds `reclaim` has given back in all."""
SHOWN: Final = 6
"""The number `dragon status` shows as the object's value when it has no semaphore (an Event's flag, a
Barrier's arrivals, a Condition's sleepers): kept current by the kind."""
HOLDS: Final = 8
"""HOLD_SLOTS pairs (pid, count): which processes hold how much of the object's count. A Lock or
RLock uses the first pair only: its holder's pid (the count is then not kept: 1); -1 when it was
released, 0 when `reclaim` took it back from a dead holder (or never held)."""
HOLD_SLOTS: Final = 16
PARTIES: Final = HOLDS + 2 * HOLD_SLOTS + 8
"""PARTY_SLOTS pids: the processes that hold the object (made it or unpickled it), for the kinds a
party's death breaks (`BREAKS_ON_DEATH`)."""
PARTY_SLOTS: Final = 48
OWN: Final = PARTIES + PARTY_SLOTS
"""The first word a kind may use for itself."""

KINDS: Final = (
    "",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Connection",
    "Value",
    "Array",
    "QueueTasks",
)
"""The kind codes (the index) and the names `dragon status` shows."""
SINGLE_HOLDER: Final = frozenset({KINDS.index("Lock"), KINDS.index("RLock")})
BREAKS_ON_DEATH: Final = frozenset({KINDS.index("Barrier")})
RECLAIMED_KINDS: Final = SINGLE_HOLDER | BREAKS_ON_DEATH | {KINDS.index("Semaphore"), KINDS.index("BoundedSemaphore")}
"""The kinds `reclaim` can change: of any other (an Event, a Value, a Pipe's ends) a death needs nothing."""
CHANGED_ACROSS: Final = frozenset({KINDS.index("Condition"), KINDS.index("Connection")})
"""The kinds a death changes only in a run of several nodes: a Condition's sleepers of another node are
counted out at its home when their process ends (`dragon.mp.at_home`), a Pipe's holders of another node
taken out of its tables (`dragon.mp.pipe_home.reclaim`); a dead local sleeper or holder is seen by
liveness, so on one node they need no news of deaths."""


class ObjectStatistics(msgspec.Struct, frozen=True):
    """What a synchronization object looks like right now (for `dragon status`), read without its lock."""

    kind: str  # one of KINDS ("" for a record that is not one)
    waiters: int  # processes registered as waiting (live ones)
    holders: list[int]  # pids holding a count (a Lock's holder); [] when free or not kept
    value: int | None  # the semaphore's value (Lock family: 1 free, 0 held), else the SHOWN word
    broken_by: int  # BROKEN: the pid whose death broke it (or -1: aborted), 0: not broken
    reclaimed_from: int  # RECLAIMED: the last dead process whose holds were given back, 0: none


def statistics(rec: Record) -> ObjectStatistics:
    """A snapshot of the object in record `rec`."""
    w = rec.words
    kind = int(w[KIND])
    pairs = w[HOLDS : HOLDS + 2 * HOLD_SLOTS].tolist()
    if kind in SINGLE_HOLDER:
        pairs = pairs[:2]
    holders = [
        pid
        for pid, count in zip(pairs[::2], pairs[1::2], strict=True)
        if pid > 0 and (count > 0 or kind in SINGLE_HOLDER)
    ]
    return ObjectStatistics(
        kind=KINDS[kind] if 0 <= kind < len(KINDS) else str(kind),
        waiters=rec.waiting(),
        holders=[pid for pid in holders if holder_alive(pid)],
        value=_sem_value(rec.name, int(w[SEM_MAX])) if w[SEM] else int(w[SHOWN]),
        broken_by=int(w[BROKEN]),
        reclaimed_from=int(w[RECLAIMED]),
    )


def never_reclaimed(rec: Record, several_nodes: bool = False) -> bool:
    """Whether no death can change this record: its kind is set (once, by its maker, before the object
    is used) and not one of RECLAIMED_KINDS (nor, in a run of `several_nodes`, of CHANGED_ACROSS). The
    runtime need not tell it of process exits. A record whose kind is not set yet may still become a
    Lock: False."""
    kind = int(rec.words[KIND])
    return kind != 0 and kind not in RECLAIMED_KINDS and not (several_nodes and kind in CHANGED_ACROSS)


def reclaim(rec: Record, pid: int, abnormal: bool) -> str | None:
    """What the runtime does to a record when process `pid` has exited (`abnormal`: killed, or an
    error exit): give back whatever count it held (posting the semaphore, the next waiter proceeds)
    and, for a kind a party's death breaks, break the object if the exit was abnormal (every waiter
    wakes and raises). Returns a warning for the user when holds were given back, else None."""
    rec.lock()
    try:
        w = rec.words
        kind = int(w[KIND])
        given = 0
        if kind in SINGLE_HOLDER:
            if w[HOLDS] == pid:
                w[HOLDS] = w[HOLDS + 1] = 0
                given = 1
        else:
            for i in range(HOLDS, HOLDS + 2 * HOLD_SLOTS, 2):
                if w[i] == pid:
                    given += max(0, int(w[i + 1]))
                    w[i] = w[i + 1] = 0
        if given:  # counted before the posts: a process the post wakes finds the count changed
            w[RECLAIMED] = pid
            w[RECLAIMS] += given
        if given and w[SEM]:
            posted = _post(rec.name, int(w[SEM_MAX]), given)
            w[RECLAIMS] -= given - posted
            given = posted
        party = pid in w[PARTIES : PARTIES + PARTY_SLOTS].tolist()
        remove_pid(w, PARTIES, PARTY_SLOTS, pid)
        if party and abnormal and kind in BREAKS_ON_DEATH and not w[BROKEN]:
            w[BROKEN] = pid
            rec.wake(-1)
        if given and not w[SEM]:
            rec.wake(given)
    finally:
        rec.unlock()
    if not given:
        return None
    what = KINDS[kind] if 0 < kind < len(KINDS) else "object"
    held = "it" if kind in SINGLE_HOLDER else f"{given} of its count"
    return (
        f"{holder_name(pid)} died holding {what} {rec.name}; the runtime gave {held} back, and the next waiter "
        "proceeds: the data it protected may be half-written"
    )


def sem_name(record_name: str) -> str:
    """The POSIX name of the semaphore of record `record_name` (its /dev/shm entry is ``sem.<name>``)."""
    return "/" + record_name


def _open_sem(record_name: str, maxvalue: int) -> Any:
    """The record's semaphore (a `_multiprocessing.SemLock` of kind SEMAPHORE); None if it is gone."""
    import _multiprocessing  # type: ignore[import-not-found]  # no stubs in typeshed

    try:
        return _multiprocessing.SemLock._rebuild(
            0, 1, maxvalue or _multiprocessing.SemLock.SEM_VALUE_MAX, sem_name(record_name)
        )
    except OSError:
        return None


def _sem_value(record_name: str, maxvalue: int) -> int | None:
    sem = _open_sem(record_name, maxvalue)
    return None if sem is None else int(sem._get_value())


def _post(record_name: str, maxvalue: int, times: int) -> int:
    """Post the record's semaphore `times` times (never above `maxvalue`); how many posts were made."""
    sem = _open_sem(record_name, maxvalue)
    if sem is None:
        return 0
    posted = 0
    for _ in range(times):
        try:
            sem.release()
        except ValueError:  # at its bound already
            break
        posted += 1
    return posted
