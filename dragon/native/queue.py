"""`dragon.native.Queue`: the reference runtime's native queue API on the start method's channel queue.

The queue is `dragon.mp.queues.Queue` (a channel of items made through Global Services and ref-counted
there, a second channel of slots when bounded, a feeder thread for bursts: see that module), with
the reference's names added: `size()`, the `closed` property, `destroy()`, and `joinable`.

A joinable queue counts its unfinished tasks in a runtime record (kind "QueueTasks", one word:
`dragon.mp.task_count`): `put` adds one under the record's lock before the item can be seen, `task_done`
takes one off and wakes every `join` when the count reaches zero; `join` waits on the record
(`Record.wait_for`). So, unlike `multiprocessing.JoinableQueue` (a Condition and a Semaphore,
which pickle only while spawning), it pickles anywhere, as the reference's does (a semaphore
channel). A consumer that dies between `get` and `task_done` leaves its task unfinished, as in the
standard library: `join(timeout)` then returns by raising TimeoutError.

**Across nodes** (issue 17): a handle on another node than the record's reaches it through its home
(`Home(across=True)`: `dragon.mp.away` / `dragon.mp.at_home`, as the runtime's Lock or Event do), which
makes the same steps there: a put's count and a `task_done` are one round trip each (the count must
be in before the item can be seen, so it is not posted as the item is), a `join` one wait at the
home, answered when the count reaches zero. Users on the record's node keep their direct steps.

Differences from the reference, on purpose: `maxsize` 0 (the default) is an unbounded queue, as in
multiprocessing (the reference makes it 100); items are pickled with `pickle` (the reference uses
cloudpickle: a lambda does not pass); there is no `poll` (a channel cannot wait for an item
without taking it: use `get(timeout=...)`) and no stream channels, pools or policies.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from dragon.mp import queues
from dragon.mp.refs import Hold
from dragon.mp.task_count import Tasks


class QueueError(Exception):
    """`task_done` or `join` on a queue that is not joinable (the reference's error)."""


class Queue(queues.Queue):
    """`Queue(maxsize=0, *, joinable=False)`: a FIFO queue between processes, as the reference
    runtime's `dragon.native.Queue` (see the module docstring for what differs).

    `put`, `get`, `put_nowait`, `get_nowait` with `block` and `timeout` (queue.Full, queue.Empty), `size`
    (also `qsize`), `empty`, `full`, `close`, `closed`, `destroy`; `task_done` and `join` when
    joinable. Pickles to any process (a `Channel` message, a `Process` argument).

    Raises ValueError for a maxsize above `dragon.mp.queues.MAXSIZE_LIMIT`, and what Global Services
    answers if it cannot make the channels (RuntimeNotRunning outside a runtime).
    """

    _tasks: Tasks | None

    def __init__(self, maxsize: int = 0, *, joinable: bool = False) -> None:
        super().__init__(maxsize, ctx=multiprocessing.get_context("dragon"))
        self._tasks = None
        if joinable:
            try:
                self._tasks = Tasks.create()
            except BaseException:
                self.close()
                raise

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        refs = self._pickle_refs()
        return (_rebuild, (self._maxsize, refs, None if self._tasks is None else self._tasks.pickle_refs()))

    @property
    def joinable(self) -> bool:
        return self._tasks is not None

    def _enqueue(self, data: bytes | bytearray | memoryview) -> None:
        """A joinable queue counts the task before any consumer can take the item."""
        self._count_task()
        super()._enqueue(data)

    def _count_task(self, n: int = 1) -> None:
        """Add `n` to the unfinished tasks of a joinable queue (nothing for another one); a count
        back at zero (a put taken back) wakes the joins, as the last `task_done` does."""
        if self._tasks is not None:
            self._tasks.add(n)

    def size(self) -> int:
        """The reference's name of `qsize()`: items put and not yet got (approximate)."""
        return self.qsize()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called in this process."""
        return self._closed

    def task_done(self) -> None:
        """One item got earlier is processed. QueueError if the queue is not joinable; ValueError if
        called more often than items were put, or after `close`."""
        if not self._joined().add(-1):
            raise ValueError("task_done() called too many times")

    def join(self, timeout: float | None = None) -> None:
        """Wait until every item put so far has been got and marked with `task_done`, at most `timeout`
        seconds (None: no limit), then TimeoutError. QueueError if the queue is not joinable."""
        left = self._unfinished_after(timeout)
        if left:
            raise TimeoutError(f"{left} tasks of {self!r} still unfinished after {timeout} s")

    def _joined_within(self, timeout: float | None, stop: Callable[[], bool] | None = None) -> bool:
        """`join`: whether every task was done within `timeout` s; False also once `stop()` is true
        when the waiter looks (after a `_wake_joiners`: how `dragon.aio` gives up a join)."""
        return self._unfinished_after(timeout, stop) == 0

    def _unfinished_after(self, timeout: float | None, stop: Callable[[], bool] | None = None) -> int:
        """The unfinished tasks once they are none, `timeout` s have passed, or `stop()` is true
        (`Tasks.unfinished_after`)."""
        return self._joined().unfinished_after(timeout, stop)

    def _wake_joiners(self) -> None:
        """Make every `join` of this queue look again (at its `stop`)."""
        self._joined().wake_all()

    def _joined(self) -> Tasks:
        if self._tasks is None:
            raise QueueError("Queue is not joinable: make it with Queue(joinable=True)")
        self._check_usable()
        return self._tasks

    def close(self) -> None:
        """No more put or get in this process; its hold on the channels (and the task count) goes once
        the feeder has flushed. Idempotent; also done when the queue is collected."""
        super().close()
        if self._tasks is not None:
            self._tasks.close()

    def destroy(self) -> None:
        """End the queue for every process now: items still queued are dropped, and other processes'
        calls raise ChannelDestroyed (a `get` waiting wakes with it). Closes this handle, after its
        feeder thread has sent what this process put."""
        self.close()
        self.join_thread()
        self._hold.destroy()
        if self._tasks is not None:
            self._tasks.destroy()


def _rebuild(maxsize: int, refs: list[tuple[int, str]], task_refs: list[tuple[int, str]] | None) -> Queue:
    """Unpickle a native Queue: attach to its channels (and task record) with the references its
    pickling took."""
    q = Queue.__new__(Queue)
    q._setup(maxsize, Hold(refs, owned=True))
    q._tasks = None if task_refs is None else Tasks.rebuild(task_refs)
    return q
