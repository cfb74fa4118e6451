"""`Queue`, `SimpleQueue` and `JoinableQueue` of the "dragon" start method, on shared-memory channels (issue #5).

The standard library's queues are a pipe, two POSIX semaphores and, for `Queue`, a feeder thread.
Here the pipe is a channel of the runtime (made through Global Services and ref-counted there:
`dragon.mp.refs`), with the same API and semantics as `multiprocessing.queues` otherwise. What
changes, and why:

* **put encodes at once** (`dragon.mp.codec`): an object that cannot be pickled raises in `put`, in
  the caller **[choice]**, where the stdlib's feeder thread prints a traceback and drops the item
  while the consumer may wait for it for ever (docs/mp_suite.md: the one CPython test that differs).
  The item is a snapshot taken at `put`. A `put` that is not part of a burst sends its message
  itself when it can, sparing the hand-off to the feeder thread (a thread wake-up, most of a round
  trip); the feeder takes bursts and a full channel, with one `Channel.send_many` per batch. `put`
  on an unbounded queue never blocks; `SimpleQueue.put` sends synchronously, as the stdlib's.
* **get takes exactly one message per call**, under the channel's receive lock (a flock, released by
  the kernel if the holder dies): nothing is prefetched, so several consumers share fairly and a
  consumer SIGKILLed in `get` loses at most the message it was taking. A queue with one consumer
  (producer) process keeps that lock between calls (`Channel.lease_lock`), given back when a second
  one comes or after a while unused.
* **maxsize** (up to `MAXSIZE_LIMIT`) is a second channel of `maxsize` "slot" messages: `put` sends
  one (blocking, or queue.Full, exactly at `maxsize` items, as the stdlib's BoundedSemaphore does),
  `get` takes one back. Unlike a semaphore, a channel pickles anywhere and the runtime cleans it up.
* **qsize, empty, full** read the channels' totals without a lock, plus this process's feeder
  backlog: approximate while other processes put or get, as in the stdlib.
* **pickling**: a `Queue` or `SimpleQueue` pickles anywhere (a `Process` argument, inside another
  queue, a Pool task); a `JoinableQueue` carries the context's Condition and Semaphore, so it pickles
  only while spawning (as in the stdlib).

Under `dragon my.py` the queues use the program's runtime; in a plain `python my.py` program the
first queue, like the first process, brings up the program's background runtime (`dragon.client.background`).
"""

from __future__ import annotations

import pickle
import queue
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable
from multiprocessing import context, util
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from dragon.client.nodes import several_nodes
from dragon.client.remote import RemoteChannel
from dragon.errors import ChannelDestroyed, ChannelEmpty, ChannelFull
from dragon.mp.codec import decode, encode
from dragon.mp.refs import ITEMS, Hold, Shape
from dragon.transport import MIN_BLOCK_SIZE, Channel

if TYPE_CHECKING:
    from dragon.mp.task_count import Tasks

MAXSIZE_LIMIT: Final = 1 << 20
"""The largest bound of a bounded queue: its slots channel takes a block of /dev/shm per item in the
queue (a few hundred MB when full at this size), where the stdlib's semaphore takes nothing."""

_T = TypeVar("_T", bound="Queue")
_S = TypeVar("_S", bound="SimpleQueue")
_loads: Final = pickle.loads
_clock: Final = time.perf_counter
BURST_GAP_S: Final = 2e-6
"""A put that comes less than this after the previous one (of the same handle) is part of a burst: it
goes to the feeder thread, which sends a burst in batches. Any other put sends at once if it can."""
FEEDER_WAIT_S: Final = 0.05
"""How long `qsize` of a queue of another node waits at most for this process's feeder to have posted
what `put` left it (then it counts as it can: a feeder waiting for answers of a full queue's node)."""
_STOP: Final = object()  # tells a feeder thread to flush and exit (every other item is a message)


# --------------------------------------------------------------------------------------------- Queue


class Queue:
    """A process-shared FIFO queue: `multiprocessing.Queue` on a channel (see the module docstring)."""

    _KIND: ClassVar[str] = "Queue"
    """What `dragon status` calls its channels (with their maker's name: `dragon.mp.names`)."""
    _hold: Hold
    _chan: Channel
    _slots: Channel | None
    _maxsize: int

    def __init__(self, maxsize: int = 0, *, ctx: context.BaseContext) -> None:
        """`maxsize` > 0 bounds the queue (put blocks, or raises queue.Full, at that many items); `ctx`
        is taken as by the stdlib's Queue (which makes its locks with it; this one needs none).

        In a plain `python` program the first queue (or process) brings the program's background
        runtime up (`dragon.client.background`). Raises ValueError for a maxsize above MAXSIZE_LIMIT,
        BringupError if that runtime does not come up, and what GS answers if it cannot make a channel.
        """
        if maxsize > MAXSIZE_LIMIT:
            raise ValueError(
                f"Queue maxsize {maxsize} is above the limit of {MAXSIZE_LIMIT} of the dragon "
                "start method: use 0 for an unbounded queue"
            )
        maxsize = max(0, maxsize)
        shapes = [ITEMS] + ([Shape(maxsize, MIN_BLOCK_SIZE, packed=False)] if maxsize else [])
        self._setup(maxsize, Hold.create(*shapes, kinds=(self._KIND, f"{self._KIND} slots")))

    def _setup(self, maxsize: int, hold: Hold) -> None:
        self._maxsize = maxsize
        self._hold = hold
        self._chan = _items(hold)
        self._slots = hold.chans[1] if maxsize else None
        self._lease(self._chan)
        self._reset()
        self._release = util.Finalize(self, hold.release, exitpriority=-10)  # after the feeder's join (-5)
        util.register_after_fork(self, Queue._after_fork)

    def _reset(self) -> None:
        self._closed = False
        self._buffer: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._backlog = _Backlog()
        self._feeder: threading.Thread | None = None
        self._feeder_lock = threading.Lock()
        self._close: util.Finalize | None = None
        self._jointhread: util.Finalize | None = None
        self._joincancelled = False

    def _after_fork(self) -> None:
        """In a child forked by multiprocessing: fresh handles (the parent's locks may have been held
        by its threads), no feeder yet. The child borrows the parent's references (it cannot make GS
        requests: it is not a managed process)."""
        self._hold = Hold(self._hold.refs, owned=False)
        self._chan = _items(self._hold)
        self._slots = self._hold.chans[1] if self._maxsize else None
        self._lease(self._chan)
        self._reset()
        self._release = util.Finalize(self, self._hold.release, exitpriority=-10)

    def _lease(self, chan: Channel) -> None:
        """Most queues have one producer and one consumer process: each keeps its direction's lock
        of the channel while it is the only one (`Channel.lease_lock`, safe when others come), which
        takes two system calls off every get and every send."""
        chan.lease_lock("recv")
        chan.lease_lock("send")
        self._recv, self._try_send = chan.recv, chan.try_send

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (_rebuild, (type(self), self._maxsize, self._pickle_refs()))

    def _pickle_refs(self) -> list[tuple[int, str]]:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed: it cannot be passed to another process")
        return self._hold.new_refs()

    # ----------------------------------------------------------------------------------- put

    def put(self, obj: object, block: bool = True, timeout: float | None = None) -> None:
        """Queue `obj` (pickled now: an unpicklable object raises here). Blocks only when the queue is
        bounded and full: at most `timeout` s (None: no limit), then queue.Full; never if not `block`.
        ValueError after `close`."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        data = self._chan.stage(encode(obj))  # a large item's side file now: its failure is the caller's
        if self._slots is not None:
            self._take_slot(block, timeout)
        self._enqueue(data)

    def _enqueue(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` at once if this put is not part of a burst (BURST_GAP_S), nothing this
        process put is still on its way (so FIFO order per process holds) and the channel has room;
        else hand it to the feeder thread.

        Sending in the caller spares the hand-off to the feeder thread (waking it, and the GIL
        going back and forth: tens of µs, most of a round trip between two processes). In a burst
        the feeder is better: `put` then costs a fifth of a send and the feeder sends the backlog in
        batches (one lock, one wake-up of the consumer), running ahead of a consumer. Once the
        channel is full, messages go through the feeder until it has sent them all, so a put never
        blocks. A failing send (the channel destroyed, ...) leaves the message to the feeder too,
        which reports the error as before (put does not raise it, as the stdlib's does not)."""
        backlog = self._backlog
        now = _clock()
        backlog.lock.acquire()
        try:
            if not backlog.count and now - backlog.last > BURST_GAP_S:
                try:
                    if self._try_send(data):
                        backlog.last = _clock()
                        return
                except Exception:
                    pass
            backlog.last = now
            backlog.count += 1
            self._buffer.put(data)
        finally:
            backlog.lock.release()
        if self._feeder is None:
            self._start_feeder()

    def put_nowait(self, obj: object) -> None:
        """`put(obj, False)`: queue.Full at once if the queue is full."""
        self.put(obj, False)

    def _take_slot(self, block: bool, timeout: float | None) -> None:
        assert self._slots is not None
        try:
            self._slots.send(b"", (None if timeout is None else max(0.0, timeout)) if block else 0)
        except ChannelFull:
            raise queue.Full from None

    def _start_feeder(self) -> None:
        with self._feeder_lock:
            if self._feeder is not None:
                return
            stop = threading.Event()
            self._hold.use()
            feeder = threading.Thread(
                target=_feed,
                name="QueueFeederThread",
                daemon=True,
                args=(self._buffer, self._backlog, stop, self._chan, self._hold, self._on_queue_feeder_error),
            )
            feeder.start()
            self._feeder = feeder
            if not self._joincancelled:
                self._jointhread = util.Finalize(feeder, _join_feeder, [weakref.ref(feeder)], exitpriority=-5)
            self._close = util.Finalize(self, _stop_feeder, [self._buffer, stop], exitpriority=10)

    @staticmethod
    def _on_queue_feeder_error(e: BaseException, obj: object) -> None:
        """Called in the feeder thread when writing to the channel failed (as the stdlib's hook,
        which concurrent.futures overrides); prints the traceback."""
        traceback.print_exc()

    # ----------------------------------------------------------------------------------- get

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item. Blocks while the queue is empty: at most `timeout` s (None:
        no limit), then queue.Empty; not at all if not `block`. ValueError after `close`; ChannelDestroyed
        if the channel was destroyed (the runtime is going away)."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        try:
            if block and timeout is None:
                data = self._recv()
            else:
                data = self._recv(max(0.0, timeout) if block and timeout is not None else 0)
        except ChannelEmpty:
            raise queue.Empty from None
        if self._slots is not None:
            self._give_slot()
        return _loads(data) if data[0] == 0x80 else data  # `decode` written out (a call level less)

    def get_nowait(self) -> Any:
        """`get(False)`: queue.Empty at once if the queue is empty."""
        return self.get(False)

    def _give_slot(self) -> None:
        assert self._slots is not None
        try:
            self._slots.recv(0)
        except ChannelEmpty:  # its putter's slot was taken back already: cannot happen while put sends first
            pass

    # ----------------------------------------------------------------------------------- state

    def qsize(self) -> int:
        """Items put and not yet got (approximate: other processes may be putting or getting).

        Bounded: the slots in use, which count items still in any process's feeder buffer, as the
        stdlib does. Unbounded: the items in the channel plus this process's feeder backlog."""
        self._check_usable()
        if self._slots is not None:
            return self._slots.approximate_depth()
        if isinstance(self._chan, RemoteChannel):
            self._wait_for_feeder()
        return self._chan.approximate_depth() + self._backlog.count

    def _wait_for_feeder(self) -> None:
        """Until the feeder has posted what `put` left it (at most FEEDER_WAIT_S; a bounded poll: a
        feeder posts without waiting for answers, so this is short). An item the feeder posts while
        the count is taken would be counted twice: once as posted and not yet answered, once in the
        channel. So a producer's own count of an unbounded queue of another node is exact once
        nobody gets from it, as the stdlib's is."""
        deadline = time.monotonic() + FEEDER_WAIT_S
        while self._backlog.count and time.monotonic() < deadline:
            time.sleep(BURST_GAP_S * 100)

    def empty(self) -> bool:
        """Whether `qsize()` is 0 (approximate, as `qsize`)."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether a put would block now (never for an unbounded queue)."""
        self._check_usable()
        return self._slots is not None and self._slots.approximate_depth() >= self._maxsize

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    # ----------------------------------------------------------------------------------- end

    def close(self) -> None:
        """No more put or get in this process: the feeder flushes what is buffered and exits, then this
        process's hold on the channels goes. Idempotent; also done when the queue is collected."""
        self._closed = True
        close, self._close = self._close, None
        if close is not None:
            close()
        self._release()

    def join_thread(self) -> None:
        """Wait for the feeder thread to flush and exit; only after `close` (AssertionError before)."""
        assert self._closed, f"Queue {self!r} not closed"
        if self._jointhread is not None:
            self._jointhread()

    def cancel_join_thread(self) -> None:
        """Do not wait for the feeder at process exit (its buffered items may then be lost)."""
        self._joincancelled = True
        if self._jointhread is not None:
            self._jointhread.cancel()

    def __repr__(self) -> str:
        kind = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{kind} c_uid={self._hold.refs[0][0]} maxsize={self._maxsize}>"


def _items(hold: Hold) -> Channel:
    """The items channel of a Queue's `hold`; of another node, with its sends posted (a put returns
    before the item is in, as the stdlib's does: its feeder thread writes it later; a process killed
    right after a put may lose it there too: `RemoteChannel.posted`). Not a SimpleQueue's: the
    stdlib's writes its pipe before `put` returns. **[choice]** Not quiet (`RemoteChannel.posted`'s
    `quiet`), although an 8 B round trip between two nodes, a put each way, was 7 % faster so (191
    against 206 µs): a producer could then count its items (`qsize`, `empty`) only after the
    quiet puts are carried out, which a full queue delays for as long as nobody gets, and the
    stdlib's count never waits."""
    chan = hold.chans[0]
    return chan.posted() if isinstance(chan, RemoteChannel) else chan  # type: ignore[return-value]


def _rebuild(cls: type[_T], maxsize: int, refs: list[tuple[int, str]]) -> _T:
    """Unpickle a queue: attach to its channels with the references its pickling took."""
    q = cls.__new__(cls)
    q._setup(maxsize, Hold(refs, owned=True))
    return q


class _Backlog:
    """Messages of one queue handle that `put` left to the feeder and that are not in the channel yet
    (in the buffer, or taken by the feeder and not yet sent): `put` sends directly only while there
    are none, which keeps each process's messages in order."""

    __slots__ = ("count", "last", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.last = 0.0  # when the last put ended (about: see `Queue._enqueue`)


def _feed(
    buffer: queue.SimpleQueue[object],
    backlog: _Backlog,
    stop: threading.Event,
    chan: Channel,
    hold: Hold,
    onerror: Callable[[BaseException, object], None],
) -> None:
    """The feeder thread: write everything `put` buffered with one `send_many` per batch, until told
    to stop (then flush up to the stop mark and exit). Lets go of its use of `hold` when it ends."""
    get, get_nowait, qsize, send_many = buffer.get, buffer.get_nowait, buffer.qsize, chan.send_many
    try:
        while True:
            batch = [get()]
            for _ in range(qsize()):
                batch.append(get_nowait())
            done = stop.is_set() and _STOP in batch
            if done:
                batch = batch[: batch.index(_STOP)]
            try:
                send_many(batch)  # type: ignore[arg-type]  # every item but _STOP is a message
            except Exception as exc:
                # The rest of the batch is lost, as the stdlib's feeder loses the item it failed on
                # (their slots too, for a bounded queue). The causes: the channel was destroyed, or
                # /dev/shm has no room for a side file.
                if util.is_exiting():  # resources may go away under a daemon thread at exit
                    return
                onerror(exc, None)
                if isinstance(exc, ChannelDestroyed):  # for good: nothing more can be sent
                    return
            finally:
                with backlog.lock:
                    backlog.count -= len(batch)
            if done:
                return
    finally:
        hold.release()


def _stop_feeder(buffer: queue.SimpleQueue[object], stop: threading.Event) -> None:
    stop.set()
    buffer.put(_STOP)


def _join_feeder(ref: weakref.ReferenceType[threading.Thread]) -> None:
    thread = ref()
    if thread is not None:
        thread.join()


# --------------------------------------------------------------------------------------------- JoinableQueue


class JoinableQueue(Queue):
    """A `Queue` with `task_done` and `join`, as `multiprocessing.JoinableQueue`.

    The count of unfinished tasks is the context's Semaphore, guarded by its Condition (as in the
    stdlib), so a JoinableQueue pickles only while spawning a process. In a run of several nodes the
    count is a runtime record's word instead (`dragon.mp.task_count.Tasks`, as a joinable
    `dragon.native.Queue`'s): the stdlib's semaphore is a named semaphore of its maker's node only,
    and the record's users on other nodes reach it through its home (issue 17). Not the runtime's
    Semaphore: it gives a killed process's acquires back, and a consumer SIGKILLed after its
    `task_done`s made them unfinished again (the next `join` waited for ever).
    """

    _KIND: ClassVar[str] = "JoinableQueue"
    _tasks: Tasks | None
    """The count in a run of several nodes (else None: the stdlib's Condition and Semaphore)."""

    def __init__(self, maxsize: int = 0, *, ctx: context.BaseContext) -> None:
        super().__init__(maxsize, ctx=ctx)
        if several_nodes():
            from dragon.mp.task_count import Tasks  # only in runs of several nodes (a record's machinery)

            self._set_extra(None, None, Tasks.create())
        else:
            self._set_extra(ctx.Condition(), ctx.Semaphore(0), None)

    def _set_extra(self, cond: Any, unfinished: Any, tasks: Tasks | None) -> None:
        self._cond, self._unfinished_tasks, self._tasks = cond, unfinished, tasks

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        context.assert_spawning(self)  # before taking references that would otherwise leak
        tasks = None if self._tasks is None else self._tasks.pickle_refs()
        return (
            _rebuild_joinable,
            (type(self), self._maxsize, self._pickle_refs(), self._cond, self._unfinished_tasks, tasks),
        )

    def put(self, obj: object, block: bool = True, timeout: float | None = None) -> None:
        """As `Queue.put`; the item counts as an unfinished task until `task_done`."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        data = self._chan.stage(encode(obj))
        if self._slots is not None:
            self._take_slot(block, timeout)
        if self._tasks is not None:  # counted before any consumer can see it
            self._tasks.add(1)
            self._enqueue(data)
            return
        with self._cond:
            self._unfinished_tasks.release()
            self._enqueue(data)

    def task_done(self) -> None:
        """One item got earlier is processed. ValueError if called more often than items were put."""
        if self._tasks is not None:
            if not self._tasks.add(-1):
                raise ValueError("task_done() called too many times")
            return
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self) -> None:
        """Block until every item put so far has been got and marked with `task_done`."""
        if self._tasks is not None:
            self._tasks.unfinished_after(None)
            return
        with self._cond:
            if not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()


def _rebuild_joinable(
    cls: type[JoinableQueue],
    maxsize: int,
    refs: list[tuple[int, str]],
    cond: Any,
    unfinished: Any,
    tasks: list[tuple[int, str]] | None,
) -> JoinableQueue:
    q = _rebuild(cls, maxsize, refs)
    if tasks is None:
        q._set_extra(cond, unfinished, None)
    else:
        from dragon.mp.task_count import Tasks

        q._set_extra(cond, unfinished, Tasks.rebuild(tasks))
    return q


# --------------------------------------------------------------------------------------------- SimpleQueue


class SimpleQueue:
    """`multiprocessing.SimpleQueue` on a channel: synchronous put (blocks while the channel is full),
    get, empty, close. Pickles anywhere (see the module docstring)."""

    _KIND: ClassVar[str] = "SimpleQueue"
    """What `dragon status` calls its channel (with its maker's name: `dragon.mp.names`)."""

    def __init__(self, *, ctx: context.BaseContext) -> None:
        """`ctx` as for the stdlib's SimpleQueue (unused: no locks needed). Brings a plain `python`
        program's background runtime up as `Queue` does."""
        self._setup(Hold.create(ITEMS, kinds=(self._KIND,)))

    def _setup(self, hold: Hold) -> None:
        self._hold = hold
        self._chan = hold.chans[0]  # a put is in the pipe when it returns, as the stdlib's: not posted
        self._closed = False
        self._ends_closed = [False, False]  # `_reader.close()`, `_writer.close()` in this process
        self._release = util.Finalize(self, hold.release, exitpriority=-10)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        self._check_open()
        return (_rebuild_simple, (type(self), self._hold.new_refs()))

    def _check_open(self, end: int | None = None) -> None:
        """OSError if the queue, or the end (0 read, 1 write: `_PipeEnd`) `end` uses, is closed."""
        if self._closed or (end is not None and self._ends_closed[end]):
            raise OSError("handle is closed")  # what the stdlib's closed pipe raises

    def put(self, obj: object) -> None:
        """Pickle `obj` (raising what pickling raises) and send it; blocks while the channel is full."""
        self._check_open(1)
        self._send(encode(obj))

    def _send(self, data: bytes | memoryview) -> None:
        """Send one encoded message; blocks while the channel is full."""
        if not self._chan.try_send(data):  # the lean path first: a put is most of a Pool task's cost
            self._send_waiting(data)

    def _send_waiting(self, data: bytes | memoryview) -> None:
        """`put` when there is no room (or the send lock is busy): wait for room."""
        self._chan.send(data)

    def get(self) -> Any:
        """Remove and return the oldest item, blocking while there is none."""
        self._check_open(0)
        return decode(self._chan.recv())

    def empty(self) -> bool:
        """Whether no item is waiting (approximate while other processes put or get)."""
        self._check_open(0)
        return self._chan.approximate_depth() == 0

    def close(self) -> None:
        """Let go of the channel in this process (later calls raise OSError). Idempotent."""
        self._closed = True
        self._release()

    @property
    def _reader(self) -> _PipeEnd:
        """What stands for the read end of the stdlib queue's pipe (see `_PipeEnd`)."""
        return _PipeEnd(self, 0)

    @property
    def _writer(self) -> _PipeEnd:
        """What stands for the write end of the stdlib queue's pipe (see `_PipeEnd`)."""
        return _PipeEnd(self, 1)

    # For `dragon.mp.pool`, whose process is the only sender of one queue and the only receiver of
    # the other, and which ends both queues itself.

    def _hold_lock(self, side: str) -> None:
        """This process is the channel's only sender ("send") or receiver ("recv"): `Channel.hold_lock`."""
        self._chan.hold_lock(side)

    def _no_spin(self) -> None:
        """Receive without spinning first (`Channel.limit_spin`)."""
        self._chan.limit_spin(0)

    def _take_nowait(self) -> bytes:
        """One message as it is (not decoded); ChannelEmpty if there is none."""
        return self._chan.recv_nowait()

    def _take_many(self, limit: int, timeout: float | None = None) -> list[bytes]:
        """Up to `limit` waiting messages as they are (not decoded): with `timeout` None waits for the
        first one; with 0 takes only what is there (maybe nothing)."""
        if timeout is None:
            return self._chan.recv_many(limit)
        try:
            return self._chan.recv_many(limit, 0)
        except ChannelEmpty:
            return []

    def _destroy(self) -> None:
        """End the channel for every process (see `Hold.destroy`); this handle is closed."""
        self._closed = True
        self._hold.destroy()
        self._release()  # the exit finalizer has nothing left to do

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} c_uid={self._hold.refs[0][0]}>"

    def __class_getitem__(cls, item: Any) -> types.GenericAlias:
        """`SimpleQueue[int]` in annotations, as the stdlib's."""
        return types.GenericAlias(cls, item)


class _PipeEnd:
    """`SimpleQueue._reader` and `._writer`. The stdlib's SimpleQueue is a pipe, and code outside it
    uses the two ends: the stdlib's own Pool closes the end a worker does not use (it takes
    `hasattr(queue, "_writer")` for "a pipe queue") and polls the result end, CPython's tests check
    that both are `closed` after `close()`. These stand for the queue's one channel, with those
    meanings: `close()` closes one end in this process (the channel stays, as the other end of a
    pipe does), `closed` is true once that end or the queue is closed, `poll()` says whether an item
    waits, `recv()` and `send()` are `get` and `put`. A channel has no fd that is readable exactly
    while it holds a message, so there is no `fileno` and `poll` cannot wait: code that waits for
    the ends (`multiprocessing.connection.wait`) needs the stdlib's queue, `get_context("spawn").SimpleQueue()`."""

    __slots__ = ("_end", "_queue")

    def __init__(self, queue: SimpleQueue, end: int) -> None:
        self._queue, self._end = queue, end

    @property
    def closed(self) -> bool:
        return self._queue._closed or self._queue._ends_closed[self._end]

    def close(self) -> None:
        self._queue._ends_closed[self._end] = True

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether an item waits (approximate while other processes get). Only `timeout=0`."""
        self._check(0)
        if timeout != 0:
            raise ValueError(
                f"poll({timeout!r}) on a queue of the dragon start method: a channel queue "
                "cannot wait without taking the item; use poll() or get()"
            )
        return self._queue._chan.approximate_depth() > 0

    def recv(self) -> Any:
        self._check(0)
        return self._queue.get()

    def send(self, obj: object) -> None:
        self._check(1)
        self._queue.put(obj)

    def _check(self, end: int) -> None:
        if self._end != end:  # what a Connection of `Pipe(duplex=False)` raises
            raise OSError("connection is write-only" if end == 0 else "connection is read-only")
        self._queue._check_open(end)

    def __repr__(self) -> str:
        return f"<{('read', 'write')[self._end]} end of {self._queue!r}: a channel, no fd>"


def _rebuild_simple(cls: type[_S], refs: list[tuple[int, str]]) -> _S:
    q = cls.__new__(cls)
    q._setup(Hold(refs, owned=True))
    return q
