"""`dragon.native`'s synchronization objects: `Lock`, `Semaphore`, `Event`, `Barrier`, with the
reference runtime's names and arguments, on the start method's runtime-backed objects.

Each is the "dragon" start method's object (`dragon.mp.locks`, `dragon.mp.events`: a record made
through Global Services, listed by `dragon status`, given back by the runtime when a holder dies, a
Barrier broken when a party dies), under the reference's API: `Lock(recursive=...)` with
`is_recursive`, `is_mine` and `count`; `Semaphore(value, bounded=...)` with `release(n)`; `Event` and
`Barrier` with `destroy()`. They pickle to any process (a `Process` argument, a `Channel` or `Queue`
message), where the reference's must be serialized.

`m_uid` is accepted for the reference's signatures and ignored: an object's home is a record in its
node's shared memory, never in a user pool. `destroy()` ends the object for every process now (it
works only in the process that made it; elsewhere it only drops this handle), where letting go of
every handle does so at the last one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dragon.errors import ChannelDestroyed
from dragon.ids import DEFAULT_POOL_MUID
from dragon.mp import events, locks

BrokenBarrierError = threading.BrokenBarrierError


class Lock:
    """`Lock(m_uid=..., recursive=False)`: a lock between processes; a recursive one must be released
    by the thread that took it, once per acquire. Any process may release a non-recursive one."""

    def __init__(self, m_uid: int = DEFAULT_POOL_MUID, recursive: bool = False) -> None:
        self._recursive = recursive
        self._adopt(locks.RLock() if recursive else locks.Lock())

    def _adopt(self, impl: locks.Lock | locks.RLock) -> None:
        self._impl = impl
        self.acquire: Callable[..., bool] = impl.acquire
        """`acquire(block=True, timeout=None)`: True once held; False if not within `timeout` s."""
        self.release: Callable[[], None] = impl.release

    def __reduce__(self) -> tuple[Callable[..., Lock], tuple[Any, ...]]:
        return (_rebuild_lock, (self._impl, self._recursive))

    def is_recursive(self) -> bool:
        return self._recursive

    def is_mine(self) -> bool:
        """Whether this thread holds it."""
        return self._impl._is_mine()

    def count(self) -> int:
        """How many times this process holds it (0 or 1 for a non-recursive lock)."""
        return self._impl._count()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<dragon.native.Lock recursive={self._recursive} {self._impl!r}>"


def _rebuild_lock(impl: locks.Lock | locks.RLock, recursive: bool) -> Lock:
    obj = Lock.__new__(Lock)
    obj._recursive = recursive
    obj._adopt(impl)
    return obj


class Semaphore:
    """`Semaphore(value=1, *, m_uid=..., bounded=False)`: a counter between processes; `bounded`
    refuses a release above `value` (ValueError)."""

    def __init__(self, value: int = 1, *, m_uid: int = DEFAULT_POOL_MUID, bounded: bool = False) -> None:
        self._adopt(locks.BoundedSemaphore(value) if bounded else locks.Semaphore(value))

    def _adopt(self, impl: locks.Semaphore) -> None:
        self._impl = impl
        self._release = impl.release

    def __reduce__(self) -> tuple[Callable[..., Semaphore], tuple[Any, ...]]:
        return (_rebuild_semaphore, (self._impl,))

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one from the count, waiting while it is 0 (at most `timeout` s): False if not taken."""
        return self._impl.acquire(blocking, timeout)

    def release(self, n: int = 1) -> None:
        """Add `n` to the count, letting up to `n` waiters through."""
        for _ in range(n):
            self._release()

    def get_value(self) -> int:
        return self._impl.get_value()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<dragon.native.Semaphore {self._impl!r}>"


def _rebuild_semaphore(impl: locks.Semaphore) -> Semaphore:
    obj = Semaphore.__new__(Semaphore)
    obj._adopt(impl)
    return obj


class _Destroyed:
    """The words of an object this process destroyed: any use says so (rather than a released view's
    "operation forbidden on released memoryview object")."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getitem__(self, index: object) -> int:
        raise ChannelDestroyed(f"this {self._what} was destroyed (destroy()): make a new one")

    __setitem__ = __getitem__


def _destroy(obj: events.Event | events.Barrier) -> None:
    obj._home.hold.destroy()
    obj._w = _Destroyed(type(obj).__name__)  # type: ignore[assignment]  # any use raises ChannelDestroyed


class Event(events.Event):
    """`Event(m_uid=...)`: a flag between processes: `set`, `clear`, `is_set`, `wait(timeout=None)`."""

    def __init__(self, m_uid: int = DEFAULT_POOL_MUID) -> None:
        super().__init__()

    def destroy(self) -> None:
        """End the Event for every process now (see the module docstring)."""
        _destroy(self)


class Barrier(events.Barrier):
    """`Barrier(parties=2, action=None, timeout=None, m_uid=...)`: `parties` processes meet at each
    `wait()`; `abort`, `reset`, `parties`, `n_waiting`, `broken`; BrokenBarrierError when broken (a
    party died, a timeout, `abort`)."""

    def __init__(
        self,
        parties: int = 2,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        m_uid: int = DEFAULT_POOL_MUID,
    ) -> None:
        super().__init__(parties, action, timeout)

    def destroy(self) -> None:
        """End the Barrier for every process now (see the module docstring)."""
        _destroy(self)
