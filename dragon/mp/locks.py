"""`Lock`, `RLock`, `Semaphore` and `BoundedSemaphore` of the "dragon" start method: the standard
library's semantics, a home in the runtime, and a dead holder's count given back (issue #15).

**The count** is a named POSIX semaphore, as in the standard library, so that an uncontended acquire
stays one C call that does not enter the kernel and a blocked acquire is the semaphore's own futex
sleep (no spinning: under load a waiter gives its CPU up at once). Its name is the record's
(`records.sem_name`): the maker creates it (`_multiprocessing.SemLock`, kind RECURSIVE_MUTEX for an
RLock, SEMAPHORE otherwise) and marks the record's words SEM and SEM_MAX, so destroying the record
unlinks it and the runtime's teardown removes any left over; an unpickled copy opens it by name.

**The home** is a `Record` (`dragon.mp.homes.Home`): made through Global Services, ref-counted there
(pickling takes a reference the copy inherits), listed by `dragon status`. The objects pickle
anywhere (a `Process` argument, an item of a Queue), where the standard library's pickle only while
spawning. A Lock made before any process in a plain `python` program brings the background runtime
up, like a Queue.

**The holder** is written in the record's words, so that the runtime can give the count back when
the holder dies (`records.reclaim`, which Global Services runs on every record at every process exit:
it posts the semaphore, so a blocked waiter proceeds):
* Lock, RLock: `words[HOLDS]` = the holder's pid, stored after a successful acquire; NOBODY (-1),
  stored before the release's post (an RLock's last level), whoever releases (any process may release
  a Lock, as in the standard library: the one hold ends). `reclaim` of an exited process whose pid
  is there clears the word (0) and posts the semaphore. The release must store: a free lock naming
  its last holder would be given back when that process exits, after another one took it.
* Semaphore, BoundedSemaphore: this process's (pid, count) pair in the HOLDS table, count = this
  handle's acquires minus its releases, floored at 0 (the C object's own count: a producer, which only
  releases, holds nothing); stored after the acquire, and before the release's post. The pair is
  taken under the record's lock the first time the count is positive; after that only this process
  writes its count word, so it is stored without the record's lock (a thread lock orders this
  process's threads). `reclaim` reads the pair under the record's lock, and acts on it only once the
  process is dead, when its stores are done: it never sees a half-made update. A process exiting
  normally (or closing or dropping its handle) frees its pair without giving the count back
  **[choice]**: a Semaphore is as often an item counter (a consumer acquires what a producer
  released) as a resource limit, and a consumer that took its items and exited must not make them
  count again. A process **killed** holding a count gets it given back, even for an item counter,
  where the items it took count again **[choice]**: nothing tells the two uses apart, and a waiter
  hanging for ever on a dead process is the worse outcome. At most HOLD_SLOTS (16) handles hold a
  count at once with a pair; a further one's count is not tracked (not given back).
* Two tiny windows stay, as the semaphore operation and the store are two steps: a process killed
  between a successful acquire and its store leaves its hold unrecorded, and one killed between the
  release's store and its post leaves the count taken: lost, as under spawn.

**The next acquirer is told.** `reclaim` counts what it gave back (`words[RECLAIMS]`) and names the dead
process (`words[RECLAIMED]`); the next acquire compares RECLAIMS with `words[TOLD]` (what the last
acquirer was told about) under the record's lock, stores it in TOLD, and warns with
`HolderDiedWarning` (a RuntimeWarning) naming the dead process and the object: the data the object
protected may be half-written. `reclaim` posts before it counts (both under the record's lock), so
the compare must be made under that lock after a wake-up it may have caused: a Lock's or RLock's
acquire makes it when HOLDS is 0 (only `reclaim` stores 0 there: a free lock's is NOBODY), a
Semaphore's after any acquire that waited, and lock-free before (an acquire that did not wait and
came within microseconds of a give-back leaves the telling to the next one). A warning rather than a
line on stderr: it is printed on stderr by default, once per dead holder, and a program can silence
it or make it an error with the `warnings` filters (an acquire that raises it gives back what it
took first). Global Services only logs.

**Cost** (`python tools/bench_mp.py --rows lock lock2 [--load 2]`, 5 runs each, two rounds,
2026-12-05): the acquire and release are closures set on the instance, as the standard library
binds the C methods (`SemLock._make_methods`); a Lock's acquire is the C call, one read and one
store of a record word, its release one store and the C call. Uncontended: about 142 ns per pair,
spawn's 36 ns (7.0-7.1 against 27.1-28.3 M pairs/s: 0.25-0.26x); two processes contending: 3.2-3.7
M pairs/s, spawn's 10.6-20.1 (0.16-0.35x: spawn's figure swings with how much its two loops really
overlap); beside two busy processes (`--load 2`) 0.25-0.28x and 0.21-0.23x. Knowing the holder
costs a store in a Python frame on each side, which no C method of the standard library can make
for us; and two processes contending cannot pass more pairs than one of them alone, so no Lock with
a Python frame in its fast path matches spawn's contended rate (above our uncontended one). A
blocked acquire is the semaphore's futex sleep, as spawn's: under load nothing spins. Making an
object is a Global Services request (about 0.6-0.7 ms here; spawn's 20-40 µs), and so are pickling
it (a reference) and dropping its last handle in a process (about 1.1 ms).

**For a Condition** (`dragon.mp.events`, and the standard library's, which reads `_semlock`): every
object has `_is_mine()` and `_count()` (the C object's), and a Lock and an RLock have
`_release_save()` (release every level, returning them) and `_acquire_restore(levels)`, as
`threading`'s locks do.

**Differences**, by design: a Semaphore's initial value outside 0..SEM_VALUE_MAX raises ValueError
(OSError or OverflowError in the standard library). The standard library's own users of these
objects (its Condition, Event and Barrier, its pipe queues, our queues' counters) keep the standard
library's classes (`dragon.mp.context.STDLIB_LOCK_USERS`).

**Across nodes** (issue 17): a copy unpickled on another node than the record's uses a
`dragon.mp.away.RemoteSemLock` in place of the semaphore: each acquire and release (and
`get_value`) is carried out at the home node (`dragon.mp.at_home`, which also keeps the holder, named
`records.remote_holder(node, pid)`, in the words); an RLock's levels and owner thread stay with the
handle. Users on the home node keep the fast path above, unchanged. A remote Semaphore's pair at the
home is its process's (every handle of that process shares it).
"""

from __future__ import annotations

import _multiprocessing  # type: ignore[import-not-found]  # no stubs in typeshed
import contextlib
import os
import threading
import warnings
from collections.abc import Callable
from multiprocessing import process, util
from typing import Any, ClassVar, Final, TypeVar

from dragon.errors import DragonError
from dragon.mp.away import RemoteSemLock
from dragon.mp.homes import Home
from dragon.transport import ChannelError
from dragon.transport.records import (
    HOLD_SLOTS,
    HOLDS,
    KINDS,
    OWN,
    RECLAIMED,
    RECLAIMS,
    SEM,
    SEM_MAX,
    SINGLE_HOLDER,
    holder_name,
    sem_name,
)

RECURSIVE_MUTEX: Final = 0
SEMAPHORE: Final = 1
SEM_VALUE_MAX: Final[int] = _multiprocessing.SemLock.SEM_VALUE_MAX
TOLD: Final = OWN
"""The value of `words[RECLAIMS]` the last acquirer was told about (see the module docstring)."""
NOBODY: Final = -1
"""The HOLDS of a free Lock or RLock (made so, and stored by each release): only `reclaim` stores 0."""

_T = TypeVar("_T", bound="_SemLock")


class HolderDiedWarning(RuntimeWarning):
    """An acquire succeeded after the runtime gave back what a dead process held: the data the
    object protected may be half-written."""


class _SemLock:
    """What the four classes share: the semaphore, the home, the fast methods, pickling."""

    _KIND: ClassVar[str]
    _SEMKIND: ClassVar[int] = SEMAPHORE
    _home: Home
    _semlock: Any  # the `_multiprocessing.SemLock`; the standard library's Condition reads it
    _maxvalue: int
    acquire: Callable[..., bool]
    release: Callable[[], None]

    def __init__(self, value: int, maxvalue: int) -> None:
        """A new object (a record through Global Services, and its semaphore)."""
        if not 0 <= value <= maxvalue:
            raise ValueError(f"{self._KIND} value must be between 0 and {maxvalue}, not {value}")
        home = Home.create(self._KIND)
        try:
            sl = _multiprocessing.SemLock(self._SEMKIND, value, maxvalue, sem_name(home.rec.name), False)
        except BaseException:
            home.close()
            raise

        def mark() -> None:
            words = home.rec.words
            words[SEM], words[SEM_MAX] = 1, 0 if maxvalue == SEM_VALUE_MAX else maxvalue
            if KINDS.index(self._KIND) in SINGLE_HOLDER:
                words[HOLDS] = NOBODY

        home.locked(mark)
        self._setup(home, sl, maxvalue)

    def _setup(self, home: Home, sl: Any, maxvalue: int) -> None:
        self._home, self._semlock, self._maxvalue = home, sl, maxvalue
        self._bind()
        util.register_after_fork(self, _SemLock._after_fork)

    def _after_fork(self) -> None:
        """In a child forked by multiprocessing: this thread holds nothing; the pid is the child's
        (`Home` has renewed the record's handle first: it registered first)."""
        self._semlock._after_fork()
        self._bind()

    def _bind(self) -> None:
        """Set the fast methods; on another node than the record's, the `RemoteSemLock`'s own (which
        keep the holder at the home)."""
        if self._home.away is None:
            self._make_methods()
        else:
            self.acquire, self.release = self._semlock.acquire, self._semlock.release

    def _make_methods(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *args: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (_rebuild, (type(self), self._home.pickle_refs(), self._maxvalue))

    def _is_mine(self) -> bool:
        """Whether this thread holds it (has acquired it more times than released, in this handle)."""
        return bool(self._semlock._is_mine())

    def _count(self) -> int:
        """How many times this handle's process holds it: an RLock's levels (check `_is_mine` for
        this thread), a Semaphore's acquires minus releases."""
        return int(self._semlock._count())

    def _owner(self) -> str:
        """The standard library's name for the holder (its Lock's and RLock's repr)."""
        sl = self._semlock
        if sl._is_mine():
            name: str = process.current_process().name
            if threading.current_thread().name != "MainThread":
                name += "|" + threading.current_thread().name
            return name
        if sl._get_value() == 1:
            return "None"
        return "SomeOtherThread" if sl._count() > 0 else "SomeOtherProcess"


def _tell(home: Home, kind: str, release: Callable[[], None]) -> None:
    """After an acquire that may follow a give-back: tell it if no acquirer was told yet, once (see
    the module docstring). A function, not a method: the fast methods refer to it, and an object they
    referred to would be in a reference cycle, freed only by the garbage collector."""
    words = home.rec.words
    dead = home.locked(lambda: take_told(words))
    if dead:
        try:
            warnings.warn(
                f"{holder_name(dead)} died holding {kind} {home.rec.name}; the runtime gave it back and this "
                "process now holds it: the data it protected may be half-written",
                HolderDiedWarning,
                stacklevel=3,
            )
        except BaseException:  # the program made the warning an error: the acquire does not hold
            release()
            raise


def take_told(words: memoryview) -> int:
    """Under the record's lock: the dead holder whose give-back no acquirer was told of yet, now
    told (0: none)."""
    if words[RECLAIMS] == words[TOLD]:
        return 0
    words[TOLD] = words[RECLAIMS]
    return int(words[RECLAIMED])


def _rebuild(cls: type[_T], refs: list[tuple[int, str]], maxvalue: int) -> _T:
    """Unpickle: attach to the record with the reference the pickling took, open the semaphore (on
    another node than the record's: reach it through the home, `dragon.mp.away`)."""
    obj = cls.__new__(cls)
    home = Home.rebuild(refs, across=True)
    try:
        if home.away is not None:
            sl: Any = RemoteSemLock(home.away, cls._SEMKIND, maxvalue, cls._KIND, refs[0][1], HolderDiedWarning)
        else:
            sl = _multiprocessing.SemLock._rebuild(0, cls._SEMKIND, maxvalue, sem_name(home.rec.name))
    except BaseException:
        home.close()
        raise
    obj._setup(home, sl, maxvalue)
    return obj


# ------------------------------------------------------------------------------------ Lock, RLock


class Lock(_SemLock):
    """A non-recursive lock: `multiprocessing.Lock` with a home in the runtime (module docstring)."""

    _KIND = "Lock"

    def __init__(self) -> None:
        super().__init__(1, 1)

    def _make_methods(self) -> None:
        sem_release, words = self._semlock.release, self._home.rec.words

        def release() -> None:
            words[HOLDS] = NOBODY  # before the post: after it, the next holder's pid may be there
            sem_release()

        self.acquire, self.release = _holder_acquire(self, release), release

    def _release_save(self) -> int:
        """Release, for a Condition's wait; `_acquire_restore` takes it back."""
        self.release()
        return 1

    def _acquire_restore(self, count: int) -> None:
        self.acquire()

    def __repr__(self) -> str:
        try:
            name = self._owner()
        except Exception:
            name = "unknown"
        return f"<{type(self).__name__}(owner={name})>"


class RLock(_SemLock):
    """A recursive lock: `multiprocessing.RLock` with a home in the runtime (module docstring)."""

    _KIND = "RLock"
    _SEMKIND = RECURSIVE_MUTEX

    def __init__(self) -> None:
        super().__init__(1, 1)

    def _make_methods(self) -> None:
        sem_release, count, words, pid = self._semlock.release, self._semlock._count, self._home.rec.words, os.getpid()

        def release() -> None:
            if count() != 1:  # a level of several: the semaphore is not posted
                sem_release()
                return
            words[HOLDS] = NOBODY
            try:
                sem_release()
            except BaseException:  # AssertionError: another thread of this process holds it
                words[HOLDS] = pid
                raise

        self.acquire, self.release = _holder_acquire(self, release), release

    def _release_save(self) -> int:
        """Release every level, for a Condition's wait; the count for `_acquire_restore`.
        AssertionError if this thread does not hold it."""
        if not self._is_mine():
            raise AssertionError("attempt to release recursive lock not owned by thread")
        count = self._count()
        for _ in range(count):
            self.release()
        return count

    def _acquire_restore(self, count: int) -> None:
        """Take the lock again at the level `_release_save` gave."""
        for _ in range(count):
            self.acquire()

    def __repr__(self) -> str:
        try:
            name = self._owner()
            count: object = "nonzero"
            if self._semlock._is_mine():
                count = self._semlock._count()
            elif name == "None":
                count = 0
        except Exception:
            name, count = "unknown", "unknown"
        return f"<{type(self).__name__}({name}, {count})>"


def _holder_acquire(obj: Lock | RLock, release: Callable[[], None]) -> Callable[..., bool]:
    """The acquire of a Lock or RLock: the semaphore's, then the holder's pid stored in HOLDS. A HOLDS
    of 0 before the store means `reclaim` gave the lock back (the maker and every release store
    NOBODY): tell it."""
    sem_acquire, home, kind, pid = obj._semlock.acquire, obj._home, obj._KIND, os.getpid()
    words = home.rec.words

    def acquire(block: bool = True, timeout: float | None = None) -> bool:
        if sem_acquire(block, timeout):
            if not words[HOLDS]:
                _tell(home, kind, release)
            words[HOLDS] = pid
            return True
        return False

    return acquire


# ---------------------------------------------------------------------- Semaphore, BoundedSemaphore


class _Pair:
    """This handle's pair in the HOLDS table: the index of its pid word, once taken (None: not yet;
    -1: the table was full). Shared by the fast methods and the finalizer that frees the pair."""

    __slots__ = ("index", "lock")

    def __init__(self) -> None:
        self.index: int | None = None
        self.lock = threading.Lock()


class Semaphore(_SemLock):
    """`multiprocessing.Semaphore` with a home in the runtime (see the module docstring)."""

    _KIND = "Semaphore"

    def __init__(self, value: int = 1) -> None:
        super().__init__(value, SEM_VALUE_MAX)

    def _setup(self, home: Home, sl: Any, maxvalue: int) -> None:
        self._pair = _Pair()
        super()._setup(home, sl, maxvalue)
        self._free = util.Finalize(self, _free_pair, (home, self._pair), exitpriority=-5)  # before the Home's

    def _after_fork(self) -> None:
        self._pair = _Pair()  # the parent's pair is the parent's
        super()._after_fork()
        self._free = util.Finalize(self, _free_pair, (self._home, self._pair), exitpriority=-5)

    def _make_methods(self) -> None:
        sl, pair, home = self._semlock, self._pair, self._home
        sem_acquire, sem_release, count = sl.acquire, sl.release, sl._count
        words, pid, kind = home.rec.words, os.getpid(), self._KIND

        def store(held: int) -> None:
            """This handle's count, `held` floored at 0, in its pair (taken the first time)."""
            index = pair.index
            if index is None:
                if held <= 0:
                    return
                index = pair.index = home.locked(lambda: take_pair(words, pid))
            if index >= 0:
                words[index + 1] = max(0, held)

        def acquire(block: bool = True, timeout: float | None = None) -> bool:
            blocked = not sem_acquire(False)
            if blocked and not (block and sem_acquire(True, timeout)):
                return False
            with pair.lock:
                store(count())
            if blocked or words[RECLAIMS] != words[TOLD]:
                _tell(home, kind, release)  # after a wait, always: `reclaim` counts just after its post
            return True

        def release() -> None:
            with pair.lock:
                store(count() - 1)  # before the post: killed in between, the count stays taken
                try:
                    sem_release()
                except BaseException:  # above its bound: nothing was given
                    store(count())
                    raise

        self.acquire, self.release = acquire, release

    def get_value(self) -> int:
        return int(self._semlock._get_value())

    def __repr__(self) -> str:
        try:
            value: object = self._semlock._get_value()
        except Exception:
            value = "unknown"
        bound = f", maxvalue={self._maxvalue}" if isinstance(self, BoundedSemaphore) else ""
        return f"<{type(self).__name__}(value={value}{bound})>"


class BoundedSemaphore(Semaphore):
    """`multiprocessing.BoundedSemaphore`: a release above the initial value raises ValueError."""

    _KIND = "BoundedSemaphore"

    def __init__(self, value: int = 1) -> None:
        _SemLock.__init__(self, value, value)


def take_pair(words: memoryview, pid: int) -> int:
    """A free pair of the HOLDS table for `pid` (the record's lock held): its index, -1 if none is.
    A dead process's pair is not free until `reclaim` gave its count back and cleared it."""
    for index in range(HOLDS, HOLDS + 2 * HOLD_SLOTS, 2):
        if words[index] == 0:
            words[index], words[index + 1] = pid, 0
            return index
    return -1


def _free_pair(home: Home, pair: _Pair) -> None:
    """At close, garbage collection or a normal exit: free this handle's pair, its count not given
    back (see the module docstring)."""
    if home.away is not None:  # this process's pair at the home (its handles share it there)
        with contextlib.suppress(DragonError, ChannelError):
            home.away.call("free")
        return
    with pair.lock:
        index, pair.index = pair.index, -1
    if index is not None and index >= 0 and not home.rec.closed:
        words = home.rec.words

        def free() -> None:
            words[index] = words[index + 1] = 0

        home.locked(free)
