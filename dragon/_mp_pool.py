"""`Pool` of the "dragon" start method: the standard library's Pool, its task and result queues on channels.

`multiprocessing.Pool()` under the start method "dragon" (and `get_context("dragon").Pool()`) is this
subclass of `multiprocessing.pool.Pool`. Everything users see (map, imap, imap_unordered, starmap,
apply_async and its callbacks, initializer, maxtasksperchild, close, terminate, join, the context
manager, errors) is the stdlib's own code; only the two queues between the pool and its workers
change, because with many small tasks (`chunksize=1`) they are the whole cost:

* The pool process has three busy threads (tasks, results, workers) sharing one GIL, and in the
  stdlib every task costs it a pipe write, two pipe reads and a wake of the worker-handler thread
  (it waits on the result pipe too). Each system call lets another thread take the GIL, so the
  threads spend their time handing it over. Here both queues are channels
  (`dragon._mp_queues.SimpleQueue`): the pool process is the only sender of tasks and the only
  receiver of results, so it keeps those two locks for good (`Channel.hold_lock`) and its side of
  a task makes no system call at all while workers keep up; the result thread takes every result
  waiting at once (`_Results`), and does not spin holding the GIL; the worker handler waits on
  worker exits and its notifier only. A worker, or the result thread, that finds nothing to take
  naps briefly before it waits to be woken (NAP_S).
* Workers take one task per `get`, under the task channel's receive lock, as they take one from the
  stdlib's pipe under its lock: a slow task delays nobody else's, chunking is what `chunksize` says.
  Tasks are sent as the task thread makes them, never held back for a batch (an `imap` over a slow
  iterable hands each task out at once).
  A worker killed in the middle of a `get` leaves the channel consistent, where the stdlib's pipe
  lock stays taken and stops the pool.
* When the pool ends (terminate, the context manager, garbage collection, exit) its channels are
  destroyed once its workers are gone, whatever references they held: workers stopped with SIGTERM
  never give theirs back, and a program making many pools would otherwise keep their memory until
  the runtime ends.

`multiprocessing.pool.Pool(context=...)` built directly (and `concurrent.futures`) stays the stdlib's
pipe pool under "dragon" too (see `dragon._mp_context`).
"""

from __future__ import annotations

import collections
import threading
import time
from multiprocessing import pool as mp_pool
from typing import Any, Final

from dragon._mp_queues import SimpleQueue, decode
from dragon.errors import ChannelEmpty, ChannelError, ChannelFull

RESULT_BATCH: Final = 256
"""The most results the result thread takes from its channel at once."""
TERMINATING_CHECK_S: Final = 0.05
"""How often a put waiting for room in the result channel looks whether the pool is terminating."""
NAP_S: Final = 100e-6
"""How long a worker that finds no task, and the result thread that finds no result, first sleep
before they wait for one (registering as a waiter, to be woken by the sender's doorbell). In a
busy pool the next task or result nearly always comes within it, and a sleep of fixed length costs
one system call where a doorbell wait costs the waiter about 5 µs of CPU and the sender a write;
the result thread's sleep also leaves the GIL to the task thread. Measured (tools/bench_mp.py
pool1, 2 cores): the pool process's CPU per task falls from about 10 µs to 7, the workers' from
about 15 µs to 11. A pool waiting for work pays it once per wait: at most NAP_S (plus the kernel's
timer slack) of extra latency for a task or result that comes just after the sleep began."""


class Pool(mp_pool.Pool):
    """`multiprocessing.pool.Pool` whose task and result queues are channels (see the module docstring)."""

    _ctx: Any  # the stdlib's attributes that typeshed does not declare
    _change_notifier: Any
    _inqueue: SimpleQueue
    _outqueue: _ResultQueue

    def _setup_queues(self) -> None:
        self._inqueue = _Tasks(ctx=self._ctx)
        self._outqueue = _ResultQueue(ctx=self._ctx)
        self._inqueue._hold_lock("send")
        self._outqueue._hold_lock("recv")
        self._outqueue._no_spin()
        self._quick_put = self._inqueue.put
        self._quick_get = _Results(self._outqueue).get

    def _get_sentinels(self) -> list[Any]:
        """What the worker handler waits on besides worker exits: its notifier only (the stdlib's also
        waits on the result pipe, which wakes that thread once per result for nothing)."""
        return [self._change_notifier._reader]

    @staticmethod
    def _help_stuff_finish(inqueue: SimpleQueue, task_handler: threading.Thread, size: int) -> None:
        """While terminating: drop waiting tasks, so that a task handler blocked on a full task
        channel can go on and see that the pool ends (what the stdlib does with its pipe)."""
        while task_handler.is_alive():
            try:
                inqueue._take_nowait()
            except (ChannelEmpty, ChannelError, OSError):
                return

    @classmethod
    def _terminate_pool(cls, taskqueue: Any, inqueue: SimpleQueue, outqueue: _ResultQueue,
                        *rest: Any) -> None:
        """The stdlib's ending (stop the threads, terminate and join the workers), then destroy both
        channels: no worker is left to use them. The pool's own end-of-results sentinels may drop
        undelivered results to make room meanwhile (`_ResultQueue`)."""
        outqueue._terminating = True
        try:
            super()._terminate_pool(taskqueue, inqueue, outqueue, *rest)  # type: ignore[misc]
        finally:
            inqueue._destroy()
            outqueue._destroy()


class _ResultQueue(SimpleQueue):
    """The result channel: workers put results, the pool process puts only its end sentinels.

    Once the pool is terminating, its result thread stops reading, and a sentinel put into a full
    channel would wait for room forever (the stdlib's pipe pool hangs there too, sooner: a pipe
    holds less). So a put that finds no room looks again every TERMINATING_CHECK_S whether the
    pool is terminating, and then drops the oldest waiting result (which nobody would read) to make
    room. `_terminating` is only ever set in the pool process (a pickled handle starts without it)."""

    _terminating = False

    def _send_waiting(self, data: bytes | memoryview) -> None:
        chan = self._chan
        while True:
            try:
                chan.send(data, timeout=TERMINATING_CHECK_S)
                return
            except ChannelFull:
                if self._terminating:
                    try:
                        chan.recv_nowait()
                    except ChannelEmpty:
                        pass


class _Results:
    """The result channel as its only reader (the pool's result thread) sees it: every call that
    finds no result in hand takes all that are waiting (up to RESULT_BATCH) in one go, which is fair
    since nobody else reads them. A channel that is gone ends the result thread as a closed pipe
    would (EOFError)."""

    __slots__ = ("_take_many", "_batch")

    def __init__(self, queue: SimpleQueue) -> None:
        self._take_many = queue._take_many
        self._batch: collections.deque[bytes] = collections.deque()

    def get(self) -> Any:
        batch = self._batch
        if not batch:
            take = self._take_many
            try:
                got = take(RESULT_BATCH, 0)
                if not got:
                    time.sleep(NAP_S)  # see NAP_S
                    got = take(RESULT_BATCH, 0) or take(RESULT_BATCH, None)
            except ChannelError as e:
                raise EOFError(f"the pool's result channel is gone: {e}") from None
            batch.extend(got)
        return decode(batch.popleft())


class _Tasks(SimpleQueue):
    """The task channel as a worker sees it: `get` naps (NAP_S) before it waits for a task when
    there is none at hand, in case one comes meanwhile (see NAP_S)."""

    def get(self) -> Any:
        self._check_open()
        chan = self._chan
        try:
            return decode(chan.recv(0))
        except ChannelEmpty:
            pass
        time.sleep(NAP_S)
        return decode(chan.recv())
