"""The unfinished tasks of a joinable queue: one word of a runtime record (kind "QueueTasks",
`dragon.mp.homes.Home`), its two steps, and `Tasks`, a queue's handle on it. A joinable
`dragon.native.Queue` counts its tasks so, and so does `multiprocessing.JoinableQueue` in a run of
several nodes (`dragon.mp.queues`).

`add` changes the count under the record's lock (a put adds one before its item can be seen, a
`task_done` takes one off, refused below zero) and wakes every joiner when it reaches zero; `wait_done`
waits for zero (`Record.wait_for`). A user on the record's node makes them on the record directly; a
user of another node has the home node's transport agent make the same steps there
(`dragon.mp.at_home`, operations "tasks_add" and "tasks_join"), so the count is one count, however
the queue's users are spread. The steps live here, not in `dragon.native.queue`, so that the agent
loads them without loading `dragon.native` (processes, channels, policies).

Why not the runtime's Semaphore for the count and its Condition for the joiners (both cross nodes
too): three records instead of one (three Global Services requests to make the queue, three
references per pickling), a lock round trip more per put and per `task_done`, and the Semaphore
gives a killed process's acquires back (`dragon.mp.locks`: a Semaphore's holders): a consumer
SIGKILLed after its `task_done`s made them unfinished again, and the next `join` waited for ever. A
count word has no holder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from dragon.mp.homes import Home
from dragon.transport import Record
from dragon.transport.records import OWN

TASKS: Final = OWN
"""The record word of the unfinished tasks."""


def add(rec: Record, n: int) -> bool:
    """Add `n` (negative: tasks done, or a put taken back) to the count; False, changing nothing, if
    that would take it below zero (`task_done` called too many times). A count back at zero wakes
    every joiner."""

    def step() -> bool:
        words = rec.words
        count = words[TASKS] + n
        if count < 0:
            return False
        words[TASKS] = count
        if count == 0:
            rec.wake(-1)
        return True

    return rec.locked(step)


def wait_done(rec: Record, timeout: float | None, stop: Callable[[], bool] | None = None) -> int:
    """Wait until the count is zero, at most `timeout` s (None: no limit), or until `stop()` is true
    when the waiter looks (it looks at every wake-up: see `wake_all`). The count then: 0 once every
    task is done."""
    words = rec.words

    def step() -> int | None:
        if words[TASKS] == 0:
            return 0
        return int(words[TASKS]) if stop is not None and stop() else None

    done = rec.wait_for(step, timeout, peek=lambda: words[TASKS] == 0)
    return int(words[TASKS]) if done is None else done


def wake_all(rec: Record) -> None:
    """Make every `wait_done` on the record look again (at its `stop`)."""
    rec.locked(lambda: rec.wake(-1))


class Tasks:
    """A queue's handle on its count (`home`: this process's hold on the record): the steps made here,
    or at the record's home for a handle of another node. Pickle it with `pickle_refs` and `rebuild`."""

    def __init__(self, home: Home) -> None:
        self.home = home

    @classmethod
    def create(cls) -> Tasks:
        """A new count (a record made through Global Services), at 0."""
        return cls(Home.create("QueueTasks"))

    @classmethod
    def rebuild(cls, refs: list[tuple[int, str]]) -> Tasks:
        """Attach with the reference a pickling took (`pickle_refs`), on any node."""
        return cls(Home.rebuild(refs, across=True))

    def pickle_refs(self) -> list[tuple[int, str]]:
        return self.home.pickle_refs()

    def add(self, n: int) -> bool:
        """`add` on the record, here or at its home."""
        away = self.home.away
        if away is None:
            return add(self.home.rec, n)
        return bool(away.call("tasks_add", n))

    def unfinished_after(self, timeout: float | None, stop: Callable[[], bool] | None = None) -> int:
        """`wait_done`, here or at its home. A handle of another node waits there with no `stop`:
        only `dragon.aio`'s face of a native queue stops a join, and that face is made on the queue's
        node only (its TrioChannels map the queue's channels)."""
        away = self.home.away
        if away is None:
            return wait_done(self.home.rec, timeout, stop)
        return int(away.call("tasks_join", timeout=None if timeout is None else max(0.0, timeout)))

    def wake_all(self) -> None:
        """Make every `unfinished_after` of this node look again (at its `stop`)."""
        wake_all(self.home.rec)

    def close(self) -> None:
        """Give this process's hold on the record back (idempotent; also at GC or exit)."""
        self.home.close()

    def destroy(self) -> None:
        """End the count for every process now (see `Hold.destroy`)."""
        self.home.hold.destroy()
