"""`Event`, `Condition` and `Barrier` of the "dragon" start method, on runtime records (issue #15).

The standard library builds all three out of POSIX semaphores: an Event is a Condition and a semaphore,
a Barrier a Condition and two shared ints, and every wake-up is a semaphore post that wakes a sleeping
CPU (about 210 µs per Event round trip on this machine). Here each object's state lives in the words of
one record (`dragon.transport.records`, made through Global Services by `dragon.mp.homes.Home`), every
change is a step under the record's lock, and a waiter runs `Record.wait_for`: it spins briefly on a
lock-free look at the words (a partner on the other CPU often answers within microseconds), then
sleeps on the record's doorbell, registered in the same lock hold as its last look, so no wake-up is
lost; whoever changes the state calls `Record.wake`.

* **Event**: the flag word and a count of sets. `set` stores both and wakes every waiter; `is_set` reads
  the flag without the lock; `wait` returns True at once if the flag is set, else waits for the flag or
  for the count to move: like `threading.Event`, a set during the wait is never missed, even if
  somebody clears the flag before the waiter looks (the stdlib's mp Event can return False then).
* **Condition**: the user's lock (the context's RLock by default) plus three words: sleepers, tickets
  (notifications given and not yet taken) and a count of notifies. `wait` counts itself a sleeper,
  releases the lock fully (every level of an RLock), waits for a ticket, and re-acquires the lock to
  the same level; `notify(n)` hands out min(n, sleepers without a ticket) tickets and wakes that many.
  A waiter takes only a ticket given after it entered (the notify count moved): one that comes back
  to `wait` at once (threading.Barrier's loop does) must not take the ticket of a waiter not yet
  awake; it waits off the doorbell until those are taken (`_look_until`: their rings are theirs too).
  A waiter whose timeout passes takes a ticket that came meanwhile (it was notified: returning False
  would lose that notification) and otherwise leaves the sleepers; so a waiter whose notifier died
  times out as asked. The stdlib's notify waits until the notified have woken instead (holding the
  lock): a dead sleeper blocks it for ever. Each process's sleepers are counted in a pid table: a
  sleeper killed inside `wait` is counted out (with any ticket beyond the live sleepers) at the next
  wait or notify that finds tickets outstanding, so a ticket given to it never holds up the waiters
  after it. A sleeper of another node is counted out by its home when the runtime tells of its end
  (`dragon.mp.at_home`: its pid table entry is a `remote_holder`, alive until then), and a ticket
  its wait took then is put back without a new notify (`_put_back`), so that no waiter that came
  after that notify is woken by it; a notify that finds every sleeper with a ticket lets the later
  ones take one that is nobody's (`_give`).
* **Barrier**: `threading.Barrier`'s state machine (filling, draining, resetting, broken) in words: the
  arrival count, the state, and a table of the pids that are inside `wait`; broken is the record's
  shared BROKEN word (the dead party's pid, or -1: aborted, timed out or the action failed). The last
  arrival runs the action outside the record lock (another state, so that nobody passes meanwhile;
  a waiter's timeout does not break the barrier while it runs, as in threading, where it runs under
  the lock). Every process that holds the Barrier (its maker and every unpickler) is a party of the
  record: when one exits abnormally (killed, an error exit), Global Services sets BROKEN and wakes
  everyone (`records.reclaim`), so the others get BrokenBarrierError instead of waiting for ever; a
  clean exit breaks nothing. `reset` counts out the arrivals of dead processes (the pid table), so a
  barrier reset after a death does not wait for them (the arrival of a party of another node killed
  before its wait: by its home, when the runtime tells of its end: `dragon.mp.at_home`).

All three pickle anywhere (a Process argument, an item of a Queue, a Pool task): pickling takes a GS
reference the unpickled copy inherits (`Home.pickle_refs`); the stdlib's pickle only while spawning. A
Condition pickles its lock with it (the stdlib's locks: while spawning only). In a plain `python`
program the first object brings the background runtime up.

**Across nodes**: each operation is one step on the record's words under its lock (`set`, `clear`, a
ticket taken or given, an arrival, a release), and a wait is "run this step until it answers". A
transport agent can carry a step as a message to the record's node (its /dev/shm holds the record) and
answer with its result; a waiter there registers on the agent's behalf and the agent's wake-up is a
message back. Nothing in a step refers to memory outside the record but the Condition's user lock (its
own object, with its own home) and the Barrier's action (run by the caller, outside any step).

Figures (tools/bench_mp.py --rows event barrier, this 2-CPU machine shared with other test runs,
load average 1.5-3.6 unless said, medians of 3-5 runs; spawn, dragon, reference dragonhpc 0.15.0):
* Event round trip, pinned: 188-199 / 5.8-6.2 µs (load 1.5); with the reference 316 / 56 / 22 µs
  (load rising to 7: dragon's runs 5.7, 131 and 56 µs); unpinned 110-168 / 11-14 µs, or 12-18 /
  15-19 µs (reference 24 µs) when the scheduler puts both on one CPU; `--load 2`: 376 / 24 / 5,859 µs.
  Two record steps per side and no system call but sched_yield while the partner answers within
  the spin.
* Barrier(4), 1,000 rounds, per round: 223 / 29 µs (load 1.5); with the reference 87 / 42 / 33,170
  µs; unpinned 85 / 44 / 32,320 µs; `--load 2`: 99 / 57 / 65,718 µs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from multiprocessing import util
from typing import Any, ClassVar, Final, TypeVar

from dragon.mp.away import Away
from dragon.mp.homes import Home
from dragon.transport import Record
from dragon.transport.records import BROKEN, OWN, SHOWN, holder_alive, holder_name

BrokenBarrierError: Final = threading.BrokenBarrierError

T = TypeVar("T")
_S = TypeVar("_S", bound="_Synced")

# Own words of each kind (indices into `Record.words`, from `records.OWN`).
FLAG: Final = SHOWN
"""Event: 1 while set (the word `dragon status` shows)."""
SETS: Final = OWN
"""Event: how many times it went from clear to set (a waiter that saw it move was set)."""
SLEEPERS: Final = SHOWN
"""Condition: waiters inside `wait` (those holding a ticket included; `dragon status` shows it)."""
TICKETS: Final = OWN
"""Condition: notifications given and not yet taken (never more than SLEEPERS)."""
NOTIFIES: Final = OWN + 1
"""Condition: how many notifies gave tickets; a waiter takes one only if a notify came after it entered."""
SLEEPER_PIDS: Final = OWN + 2
"""Condition: SLEEPER_SLOTS pairs (pid, its sleepers), so that a sleeper killed inside `wait` is counted
out (`_prune`) rather than keep a ticket nobody takes."""
SLEEPER_SLOTS: Final = 32
PARTIES_N: Final = OWN
"""Barrier: its number of parties."""
COUNT: Final = SHOWN
"""Barrier: arrivals inside `wait` (threading.Barrier's `_count`; `dragon status` shows it)."""
STATE: Final = OWN + 1
"""Barrier: FILLING, ACTION, DRAINING or RESETTING (broken is the shared BROKEN word)."""
ARRIVALS: Final = OWN + 2
"""Barrier: ARRIVAL_SLOTS pids, one per arrival inside `wait`, so that `reset` can count out the dead."""
ARRIVAL_SLOTS: Final = 64

QUIET_YIELD_S: Final = 500e-6
"""A wait off the doorbell (`_look_until`) gives the CPU up (sched_yield) and looks again for this
long, then sleeps between looks, QUIET_PAUSE_MIN_S at first, twice as long each time up to the max."""
QUIET_PAUSE_MIN_S: Final = 20e-6
QUIET_PAUSE_MAX_S: Final = 1e-3

FILLING, ACTION, DRAINING, RESETTING = 0, 2, 1, -1
"""Barrier states (threading's numbers; ACTION: the last arrival runs the action)."""
ABORTED: Final = -1
"""BROKEN's value when the barrier was aborted, timed out or its action failed (else: a dead pid)."""


class _Synced:
    """What the three share: the home (this process's hold on the record) and its words; or, on
    another node than the record's, the way there (`_away`: each public method is then carried out
    at the home, on a `_there` copy, by `dragon.mp.at_home`)."""

    _PARTY: ClassVar[bool] = False
    """Whether every holder is a party of the record (`Home.create`): its abnormal exit breaks it."""
    _me: int
    """Who this process is in the record's words: its pid (at the home: the requester's number)."""
    _rec: Record
    _w: memoryview
    _away: Away | None = None

    def __init__(self, home: Home) -> None:
        self._home = home
        self._refresh()
        util.register_after_fork(self, _Synced._refresh)  # after the Home's own (registered first)

    def _refresh(self) -> None:
        self._away = self._home.away
        if self._away is None:
            self._rec = self._home.rec
            self._w = self._rec.words
            self._me = os.getpid()

    @classmethod
    def _there(cls: type[_S], rec: Record, who: int) -> _S:
        """At the record's home: a copy that makes the steps of process `who` of another node."""
        obj = cls.__new__(cls)
        obj._rec, obj._w, obj._me = rec, rec.words, who
        return obj

    def _locked(self, step: Callable[[], T]) -> T:
        """Run `step` under the record's lock."""
        return self._rec.locked(step)

    def _wait_for(self, step: Callable[[], T | None], timeout: float | None, peek: Callable[[], bool]) -> T | None:
        """`Record.wait_for`, its spin giving the CPU up (sched_yield) before each look: a process
        that spins keeps a CPU from the process it waits for whenever there are more runnable
        processes than CPUs (a Barrier of 4 on 2 CPUs: 200 µs per round with a plain spin, 30 µs
        so), and the system call costs little when nobody else wants the CPU (an Event round trip,
        pinned: 6 µs with it, 11 µs without; unpinned 11-14 µs against 27-35 µs)."""

        def look() -> bool:
            os.sched_yield()
            return peek()

        return self._rec.wait_for(step, None if timeout is None else max(0.0, timeout), look)


def _rebuild(cls: type[_S], refs: list[tuple[int, str]], *args: Any) -> _S:
    obj = cls.__new__(cls)
    obj._adopt(Home.rebuild(refs, party=cls._PARTY, across=True), *args)  # type: ignore[attr-defined]
    return obj


def _look_until(ready: Callable[[], bool], deadline: float | None) -> bool:
    """Wait for `ready()` off the record's doorbell; False if `deadline` (monotonic) passes first.

    For a waiter that must not take a ring meant for others: a ring is one byte per registered
    waiter, and a process that takes a byte it has no use for leaves a waiter that needed it asleep
    for `SAFETY_WAKE_S` (a Condition's waiter back in `wait` while others have not yet taken their
    tickets; a Barrier's arrival while the last round drains). Such waits last as long as the others
    take to wake up: short."""
    pause, yield_end = QUIET_PAUSE_MIN_S, time.perf_counter() + QUIET_YIELD_S
    while not ready():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if time.perf_counter() < yield_end:
            os.sched_yield()
        else:
            time.sleep(pause)
            pause = min(2 * pause, QUIET_PAUSE_MAX_S)
    return True


# --------------------------------------------------------------------------------------------- Event


class Event(_Synced):
    """`multiprocessing.Event` on a record (see the module docstring)."""

    def __init__(self, *, ctx: Any = None) -> None:
        """`ctx` as the stdlib's (unused: an Event needs no lock of the context)."""
        super().__init__(Home.create("Event"))

    def _adopt(self, home: Home) -> None:
        _Synced.__init__(self, home)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._home.pickle_refs()))

    def is_set(self) -> bool:
        if self._away is not None:
            return bool(self._away.call("event_is_set"))
        return bool(self._w[FLAG])

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._away is not None:
            self._away.call("event_set")
            return
        rec, w = self._rec, self._w
        rec.lock()
        try:
            if not w[FLAG]:
                w[FLAG] = 1
                w[SETS] += 1
                rec.wake(-1)
        finally:
            rec.unlock()

    def clear(self) -> None:
        if self._away is not None:
            self._away.call("event_clear")
            return
        rec = self._rec
        rec.lock()
        self._w[FLAG] = 0
        rec.unlock()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the flag is set (or was set during the wait); False after `timeout` s."""
        if self._away is not None:
            return bool(self._away.call("event_wait", timeout=None if timeout is None else max(0.0, timeout)))
        w = self._w
        if w[FLAG]:
            return True
        sets = w[SETS]

        def moved() -> bool:
            return bool(w[FLAG]) or w[SETS] != sets

        return self._wait_for(lambda: True if moved() else None, timeout, moved) is not None

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x} {'set' if self.is_set() else 'unset'}>"


# ----------------------------------------------------------------------------------------- Condition


class _Count:
    """A read-only count with the stdlib semaphore's `get_value`: code (CPython's own suite among it)
    checks a Condition's `_sleeping_count`, `_woken_count` and `_wait_semaphore` that way."""

    def __init__(self, get: Callable[[], int]) -> None:
        self.get_value = get


class Condition(_Synced):
    """`multiprocessing.Condition` on a record and a lock (see the module docstring)."""

    def __init__(self, lock: Any = None, *, ctx: Any) -> None:
        """`lock`: a lock of the context (the runtime's, or the stdlib's); None: a new `ctx.RLock()`."""
        self._adopt(Home.create("Condition"), ctx.RLock() if lock is None else lock)

    def _adopt(self, home: Home, lock: Any) -> None:
        owner: Any = lock if hasattr(lock, "_is_mine") else getattr(lock, "_semlock", None)
        if not (hasattr(owner, "_is_mine") and hasattr(owner, "_count")):
            home.close()
            raise TypeError(
                f"a Condition needs a lock of multiprocessing (ctx.Lock() or ctx.RLock()), not {lock!r}: "
                "it must tell whether this thread holds it"
            )
        self._lock = lock
        self._is_mine: Callable[[], bool] = owner._is_mine
        self._levels: Callable[[], int] = owner._count
        self.acquire, self.release = lock.acquire, lock.release
        _Synced.__init__(self, home)

    def _refresh(self) -> None:
        super()._refresh()
        self._sleeping_count = _Count(lambda: self._word(SLEEPERS))
        self._woken_count = _Count(lambda: 0)
        self._wait_semaphore = _Count(lambda: self._word(TICKETS))

    def _word(self, index: int) -> int:
        """One of the Condition's words (read without the lock, at its home)."""
        if self._away is not None:
            return int(self._away.call("cond_word", index))
        return int(self._w[index])

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._home.pickle_refs(), self._lock))

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        self._lock.__exit__(*args)

    def _check_owned(self, what: str) -> None:
        if not self._is_mine():
            raise RuntimeError(f"cannot {what} on un-acquired lock: acquire the Condition first (`with cond:`)")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock (every level), wait for a notification or `timeout` s, re-acquire it to
        the same level; whether notified. RuntimeError if this thread does not hold the lock."""
        self._check_owned("wait")
        levels = self._levels()
        entered = self._locked(self._enter) if self._away is None else int(self._away.call("cond_enter"))
        for _ in range(levels):
            self._lock.release()
        try:
            if self._away is not None:
                wait = None if timeout is None else max(0.0, timeout)
                return bool(self._away.call("cond_wait", entered, timeout=wait))
            return self._await_ticket(entered, timeout)
        finally:
            for _ in range(levels):
                self._lock.acquire()

    def _enter(self) -> int:
        """Step: count this waiter a sleeper; the NOTIFIES it entered at."""
        w = self._w
        if w[TICKETS]:  # tickets nobody took yet: perhaps a sleeper's that died
            _prune(w)
        w[SLEEPERS] += 1
        _count_sleeper(w, self._me, 1)
        return int(w[NOTIFIES])

    def _await_ticket(self, entered: int, timeout: float | None) -> bool:
        """After `_enter` (the user's lock released): wait for a ticket; whether notified."""
        w = self._w
        deadline = None if timeout is None else time.monotonic() + timeout
        notified = False
        try:
            # Tickets given before this waiter came are others' (a waiter back in `wait` at once must
            # not take them), and so are their rings: wait for those to be taken, off the doorbell.
            if _look_until(lambda: not w[TICKETS] or w[NOTIFIES] != entered, deadline):
                notified = (
                    self._wait_for(
                        lambda: self._take_ticket(entered),
                        None if deadline is None else deadline - time.monotonic(),
                        lambda: w[TICKETS] > 0 and w[NOTIFIES] != entered,
                    )
                    is not None
                )
        finally:
            if not notified:
                notified = bool(self._locked(lambda: self._leave(entered)))
        return notified

    def _take_ticket(self, entered: int) -> bool | None:
        """Step: take a ticket if one was given after this waiter `entered` (NOTIFIES then)."""
        w = self._w
        if w[TICKETS] <= 0 or w[NOTIFIES] == entered:
            return None
        w[TICKETS] -= 1
        w[SLEEPERS] -= 1
        _count_sleeper(w, self._me, -1)
        return True

    def _leave(self, entered: int) -> bool:
        """A waiter that timed out (or was interrupted): notified after all if a ticket came meanwhile.
        Leaving without one, it could take none: a ticket beyond the sleepers left is nobody's (one
        given to a sleeper of another node that ended meanwhile: `_count_out`), dropped."""
        if self._take_ticket(entered):
            return True
        w = self._w
        w[SLEEPERS] -= 1
        _count_sleeper(w, self._me, -1)
        w[TICKETS] = min(w[TICKETS], w[SLEEPERS])
        return False

    def _count_out(self, n: int) -> None:
        """Step: `n` sleepers of process `_me`, one of another node that ended between its "cond_enter"
        and its "cond_wait" (`dragon.mp.at_home`), leave the count, with the tickets beyond the
        sleepers left (as `_prune` for a dead local pid)."""
        w = self._w
        w[SLEEPERS] -= n
        _count_sleeper(w, self._me, -n)
        w[TICKETS] = min(w[TICKETS], w[SLEEPERS])

    def _put_back(self) -> None:
        """Step: a ticket that a waiter of another node took after its process ended (`dragon.mp.at_home`)
        goes back (never beyond the sleepers left), without a new notify: only sleepers that entered
        before the last notify may take it, so none that came later is woken by it (`_give` would
        make them all eligible: a waiter that entered after a `notify_all` returned "notified" by
        it). A ticket that no such sleeper is left to take goes when the later ones leave (`_leave`)
        or at the next `_prune`, as a dead local sleeper's does.
        """
        w = self._w
        w[TICKETS] = min(w[TICKETS] + 1, w[SLEEPERS])
        if w[TICKETS]:
            self._rec.wake(1)

    def notify(self, n: int = 1) -> None:
        """Wake up to `n` waiters (those not yet notified). RuntimeError if the lock is not held."""
        self._check_owned("notify")
        self._notify(n)

    def notify_all(self) -> None:
        self._check_owned("notify")
        self._notify(-1)

    def _notify(self, n: int) -> None:
        if self._away is not None:
            self._away.call("cond_give", n)
        else:
            self._locked(lambda: self._give(n))

    def _give(self, n: int) -> None:
        """Step of a notify: a ticket for each of `n` (-1: all) sleepers without one, and a new NOTIFIES.

        When every sleeper seems to hold a ticket already, the notify still moves NOTIFIES (no ticket,
        no ring): if a ticket is nobody's (its sleeper died after that notify, and sleepers came
        since: `_prune`, `_count_out`, `_put_back` keep at most one per sleeper), those that came
        since may take it now, at their next look (within `SAFETY_WAKE_S`), instead of missing this
        notify and every later one while it stays. Otherwise nobody is left to wake and the move
        changes nothing: every sleeper entered before it already."""
        w = self._w
        if w[TICKETS]:  # tickets nobody took yet: perhaps a sleeper's that died
            _prune(w)
        free = int(w[SLEEPERS] - w[TICKETS])
        given = free if n < 0 else min(n, free)
        if given > 0:
            w[TICKETS] += given
            w[NOTIFIES] += 1
            self._rec.wake(given)
        elif w[TICKETS] and n:
            w[NOTIFIES] += 1

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until `predicate()` is true (as `threading.Condition.wait_for`); its last value."""
        result = predicate()
        endtime = None if timeout is None else time.monotonic() + timeout
        while not result:
            waittime = None
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def __repr__(self) -> str:
        waiters = self._word(SLEEPERS) - self._word(TICKETS)
        return f"<{type(self).__name__}({self._lock}, {waiters})>"


def _count_sleeper(w: memoryview, pid: int, delta: int) -> None:
    """Add `delta` to `pid`'s sleepers in the Condition's table (the record lock held). With the table
    full, a process's sleepers are counted in SLEEPERS only (they cannot be counted out if it dies)."""
    pairs = range(SLEEPER_PIDS, SLEEPER_PIDS + 2 * SLEEPER_SLOTS, 2)
    for i in pairs:
        if w[i] == pid:
            w[i + 1] += delta
            if w[i + 1] <= 0:
                w[i] = w[i + 1] = 0
            return
    free = next((i for i in pairs if not w[i]), None)
    if delta > 0 and free is not None:
        w[free], w[free + 1] = pid, delta


def _prune(w: memoryview) -> None:
    """Count out the sleepers of dead processes (the record lock held), and the tickets beyond the
    sleepers left: a ticket given to a dead sleeper would wait for ever to be taken. Called only when
    tickets are outstanding (a process's liveness costs a system call and a /proc read)."""
    for i in range(SLEEPER_PIDS, SLEEPER_PIDS + 2 * SLEEPER_SLOTS, 2):
        if w[i] and not holder_alive(int(w[i])):
            w[SLEEPERS] -= w[i + 1]
            w[i] = w[i + 1] = 0
    w[TICKETS] = min(w[TICKETS], w[SLEEPERS])


# ------------------------------------------------------------------------------------------- Barrier


class Barrier(_Synced):
    """`multiprocessing.Barrier` on a record (see the module docstring)."""

    _PARTY = True

    def __init__(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None, *, ctx: Any = None
    ) -> None:
        """`parties` processes (or threads) meet at each `wait`; the last to arrive runs `action` first;
        `timeout`: the default of `wait`. `ctx` as the stdlib's (unused)."""
        if not isinstance(parties, int) or parties < 1:
            raise ValueError(f"a Barrier needs a whole number of parties, at least 1, not {parties!r}")
        home = Home.create("Barrier", party=True)
        home.locked(lambda: home.rec.words.__setitem__(PARTIES_N, parties))
        self._adopt(home, parties, action, timeout)

    def _adopt(self, home: Home, parties: int, action: Callable[[], object] | None, timeout: float | None) -> None:
        self._parties, self._action, self._timeout = parties, action, timeout
        _Synced.__init__(self, home)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._home.pickle_refs(), self._parties, self._action, self._timeout))

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        """How many wait in the current round (0 while draining, resetting or broken)."""
        if self._away is not None:
            return int(self._away.call("barrier_n_waiting"))
        w = self._w
        return int(w[COUNT]) if w[STATE] in (FILLING, ACTION) and not w[BROKEN] else 0

    @property
    def broken(self) -> bool:
        if self._away is not None:
            return bool(self._away.call("barrier_broken"))
        return bool(self._w[BROKEN])

    def wait(self, timeout: float | None = None) -> int:
        """Wait until all parties have called `wait`; this one's arrival index (0 .. parties - 1).
        BrokenBarrierError if the barrier is or gets broken (aborted, reset, a timeout, the action
        raised, or a party died). `timeout` (default: the barrier's) breaks it when it passes."""
        if timeout is None:
            timeout = self._timeout
        acting = self._action is not None
        index = self._enter(acting) if self._away is None else int(self._away.call("barrier_enter", acting))
        if index + 1 == self._parties:
            if self._action is not None:
                self._run_action()
            return index
        if self._away is not None:
            self._away.call("barrier_wait", timeout=None if timeout is None else max(0.0, timeout))
        else:
            self._await_release(timeout)
        return index

    def _await_release(self, timeout: float | None) -> None:
        """After an arrival that was not the last: wait for the round's release (or raise)."""
        moved = self._moved
        if self._wait_for(self._released, timeout, moved) is None:
            if self._locked(self._timed_out) is None:  # the action runs: wait for it
                self._wait_for(self._released, None, moved)

    def _enter(self, acting: bool, noted: Callable[[int], None] | None = None) -> int:
        """Arrive (`acting`: the barrier has an action): at once while the round fills; while the last
        one drains (or resets), off the doorbell (`_look_until`): its waiters were rung and are leaving.
        `noted(index)` runs in the record step of the arrival (`dragon.mp.at_home` notes a remote one)."""
        w = self._w

        def arrive() -> int | None:
            index = self._arrive(acting)
            if index is not None and noted is not None:
                noted(index)
            return index

        while True:
            index = self._locked(arrive)
            if index is not None:
                return int(index)
            _look_until(lambda: w[STATE] == FILLING or bool(w[BROKEN]), None)

    def _moved(self) -> bool:
        w = self._w
        return w[STATE] not in (FILLING, ACTION) or bool(w[BROKEN])

    def _arrive(self, acting: bool) -> int | None:
        """Step: enter the round (wait while the last one drains or resets); the arrival index."""
        w = self._w
        self._raise_if_broken()
        if w[STATE] != FILLING:
            return None
        index = int(w[COUNT])
        w[COUNT] = index + 1
        table = w[ARRIVALS : ARRIVALS + ARRIVAL_SLOTS].tolist()
        if 0 in table:  # else untracked: counted out by `reset` only if its process died (see there)
            w[ARRIVALS + table.index(0)] = self._me
        if index + 1 == w[PARTIES_N]:
            if not acting:
                self._release_round()
            else:
                w[STATE] = ACTION
        return index

    def _release_round(self) -> None:
        self._w[STATE] = DRAINING
        self._leave()
        self._rec.wake(-1)

    def _leave(self) -> None:
        """Out of `wait` (the lock held): the last one out of a drained or reset round refills it."""
        w = self._w
        table = w[ARRIVALS : ARRIVALS + ARRIVAL_SLOTS].tolist()
        if self._me in table:
            w[ARRIVALS + table.index(self._me)] = 0
        w[COUNT] -= 1
        if w[COUNT] <= 0 and w[STATE] in (RESETTING, DRAINING):
            w[COUNT] = 0
            w[STATE] = FILLING  # arrivals waiting for it look, they are not registered (`_enter`)

    def _released(self) -> bool | None:
        """Step of a waiter: None while the round fills (or its action runs); True once released."""
        if not self._moved():
            return None
        broken_by_reset = self._w[STATE] == RESETTING
        self._leave()
        self._raise_if_broken()
        if broken_by_reset:
            raise BrokenBarrierError("the barrier was reset while this process waited")
        return True

    def _timed_out(self) -> bool | None:
        """A waiter's timeout passed: break a round still filling; None if the action runs."""
        w = self._w
        if not w[BROKEN] and w[STATE] == FILLING:
            w[BROKEN] = ABORTED
            self._rec.wake(-1)
            self._leave()
            raise BrokenBarrierError("the barrier's wait timed out: it is broken (reset() makes it usable)")
        if not w[BROKEN] and w[STATE] == ACTION:
            return None
        return self._released()

    def _run_action(self) -> None:
        assert self._action is not None
        try:
            self._action()
        except BaseException:
            self._after_action("barrier_action_failed", self._action_failed)
            raise
        self._after_action("barrier_action_done", self._action_done)

    def _after_action(self, name: str, step: Callable[[], None]) -> None:
        if self._away is not None:
            self._away.call(name)
        else:
            self._locked(step)

    def _action_failed(self) -> None:
        self._break()
        self._leave()

    def _action_done(self) -> None:
        w = self._w
        if w[BROKEN] or w[STATE] != ACTION:  # aborted, reset or a party died while it ran
            self._released()
            raise BrokenBarrierError("the barrier was broken or reset while its action ran")
        self._release_round()

    def _raise_if_broken(self) -> None:
        broken = int(self._w[BROKEN])
        if broken > 0:
            raise BrokenBarrierError(f"{holder_name(broken)}, a party of the barrier, died: the barrier is broken")
        if broken:
            raise BrokenBarrierError

    def _break(self) -> None:
        w = self._w
        if not w[BROKEN]:
            w[BROKEN] = ABORTED
        self._rec.wake(-1)

    def abort(self) -> None:
        """Break the barrier: every waiter, and every later `wait` until `reset`, raises."""
        if self._away is not None:
            self._away.call("barrier_abort")
        else:
            self._locked(self._break)

    def reset(self) -> None:
        """Back to its first state: waiters in the current round get BrokenBarrierError; a broken
        barrier can be used again. Arrivals of processes that died are counted out."""
        if self._away is not None:
            self._away.call("barrier_reset")
        else:
            self._locked(self._reset)

    def _reset(self) -> None:
        w = self._w
        for i in range(ARRIVALS, ARRIVALS + ARRIVAL_SLOTS):
            if w[i] and not holder_alive(int(w[i])):
                w[i] = 0
                w[COUNT] -= 1
        if w[COUNT] > 0:
            if w[BROKEN] or w[STATE] in (FILLING, ACTION):
                w[STATE] = RESETTING
        else:
            w[COUNT] = 0
            w[STATE] = FILLING
        w[BROKEN] = 0
        self._rec.wake(-1)
