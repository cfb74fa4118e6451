"""The unfinished tasks of a joinable `dragon.native.Queue`: one word of a runtime record (kind
"QueueTasks", `dragon.mp.homes.Home`) and its two steps.

`add` changes the count under the record's lock (a put adds one before its item can be seen, a
`task_done` takes one off, refused below zero) and wakes every joiner when it reaches zero; `wait_done`
waits for zero (`Record.wait_for`). A user on the record's node makes them on the record directly; a
user of another node has the home node's transport agent make the same steps there
(`dragon.mp.at_home`, operations "tasks_add" and "tasks_join"), so the count is one count, however
the queue's users are spread. The steps live here, not in `dragon.native.queue`, so that the agent
loads them without loading `dragon.native` (processes, channels, policies).

Why not `multiprocessing.JoinableQueue`'s pair (the runtime's Semaphore for the count, its Condition
for the joiners), which crosses nodes too: three records instead of one (three Global Services
requests to make the queue, three references per pickling), a lock round trip more per put and per
`task_done`, and the Semaphore gives a killed consumer's count back (a consumer SIGKILLed after its
`task_done`s would make them unfinished again); a count word has no holder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

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
