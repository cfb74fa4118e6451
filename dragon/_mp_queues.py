"""`Queue`, `SimpleQueue` and `JoinableQueue` of the "dragon" start method, on shared-memory channels (issue #5).

The standard library's queues are a pipe, two POSIX semaphores and, for `Queue`, a feeder thread.
Here the pipe is a channel of the runtime (`dragon.transport.Channel`, made through Global Services),
with the same API and semantics as `multiprocessing.queues` otherwise. What changes, and why:

* **put encodes at once** (`encode`): pickled with `multiprocessing.reduction.ForkingPickler`'s
  reducers, so shared memory, Connections and locks travel as under spawn; a `bytes` item is sent as
  it is, unpickled (its first byte tells it from a pickle), which spares a large item two copies into
  fresh memory. An object that cannot be pickled raises in `put`, in the caller **[choice]**, where
  the stdlib's feeder thread prints a traceback and drops the item, while `put` returned and the
  consumer may wait for it for ever: nothing `put` accepted is lost (the queue goes on as the
  stdlib's does; docs/mp_suite.md, the one test of CPython's suite that differs). The item is a
  snapshot taken at `put`, not whenever the feeder gets to it. The price: a backlog holds pickles, not references (so
  putting one large non-bytes object many times faster than it is consumed costs a copy each).
  A `put` that is not part of a burst sends its message itself when the channel has room and
  nothing this process put earlier is still waiting to be sent: no hand-off to the feeder thread,
  which would cost tens of µs of thread wake-up and GIL exchange (most of a round trip between two
  processes). The feeder thread of `Queue` takes the rest: everything `put` left in its buffer,
  written with one `Channel.send_many`, so a burst of puts costs one channel lock and the feeder
  runs ahead of a slower consumer. `put` on an unbounded queue never blocks (the buffer is in the
  process, as in the stdlib). `SimpleQueue.put`
  sends synchronously (as the stdlib's does), blocking while the channel is full.
* **get takes exactly one message per call** from the channel, under the channel's receive lock (a
  flock: released by the kernel if the holder dies). Nothing is prefetched into the process: with
  several consumers a prefetching one would starve the others, and its prefetched items would die with
  it. A consumer SIGKILLed in `get` loses at most the message it was taking; the others go on.
  While a queue has one consumer process (and one producer), it keeps the channel's lock of its
  direction between calls (`Channel.lease_lock`): a second one that comes waits for it once, about
  10 ms (a `get_nowait` or a `get` with a timeout included), after which every get (put) takes the
  lock per call again. A lease unused for 0.2 s is given back, so an idle queue costs nothing.
* **maxsize** (up to `MAXSIZE_LIMIT`) is a second channel of `maxsize` empty "slot" messages in
  flight: `put` sends one (and so blocks, or raises `queue.Full` after its timeout, exactly at
  `maxsize` items, counting the ones still in the feeder's buffer, as the stdlib's BoundedSemaphore
  does) and `get` takes one back after its item. Unlike a semaphore, a channel pickles anywhere and
  is cleaned up by the runtime. A consumer killed between taking an item and its slot leaves the
  queue one slot smaller (the stdlib's semaphore has the same hole).
* **qsize, empty, full** read the channels' sent and received totals without a lock
  (`Channel.approximate_depth`), plus this process's feeder backlog: approximate while other
  processes put or get, as in the stdlib (whose `empty` ignores the feeder backlog; ours counts it,
  so `put` then `empty()` in one process says False).
* **pickling**: a `Queue` or `SimpleQueue` pickles anywhere (as a `Process` argument, inside another
  queue, as a Pool task argument), where the stdlib allows it only while spawning a process. A
  `JoinableQueue` carries the context's Condition and Semaphore (its task counter), which pickle only
  while spawning, so it does too (as in the stdlib).

Where. Under `dragon my.py` the queues use the program's runtime; in a plain `python my.py` program
the first queue, like the first process of the start method, brings up the program's background
runtime (`dragon._background`), which stops after multiprocessing's exit finalizers, ours included.

Lifetime. A queue's channels are ref-counted in Global Services (GSChannelCreate with
`ChannelOptions.ref_count`). The creating process holds one reference; **pickling takes another one**
(GSChannelQuery with `inc_refcnt`) that the unpickled handle inherits, so a queue handed to a child can
never be destroyed between the pickling and the child's attach, even if the parent drops its own
handle at once. A process gives its reference back (GSChannelDestroy with `dec_ref`) when the queue is
closed, garbage-collected, or at process exit (a `multiprocessing.util.Finalize`), after its feeder
thread has flushed; the last one destroys the channels. References that are never given back (a
process killed with SIGKILL, a pickle never unpickled) keep the channels until the runtime tears down,
which destroys every channel of the run: nothing outlives the runtime either way.

Channel sizing: a packed ring of 2.1 MB of /dev/shm per queue, which holds `QUEUE_CAPACITY`
messages of `QUEUE_BLOCK_SIZE` bytes and more smaller ones (touched as it is used; a pipe's buffer
is 64 KiB); a message larger than the ring travels in a side file of its own (see
`dragon.transport.Channel`). A bounded queue adds a channel of `maxsize` 264-byte slots (not packed:
it counts items).
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import queue
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable
from multiprocessing import context, util
from multiprocessing.reduction import ForkingPickler
from typing import Any, ClassVar, Final, NamedTuple, TypeVar

from dragon import _gs_common as gs
from dragon._gs_client import connection
from dragon._mp_names import channel_label
from dragon.descriptors import ChannelDescriptor, ObjectState
from dragon.errors import ChannelDestroyed, ChannelEmpty, ChannelFull, DragonError
from dragon.messages import GSChannelDestroy, GSChannelDestroyResponse, GSChannelQuery, GSChannelQueryResponse, Response
from dragon.transport import MIN_BLOCK_SIZE, Channel

QUEUE_CAPACITY: Final = 8192
"""Messages of up to QUEUE_BLOCK_SIZE bytes a queue's channel holds at least: a ring of 2.1 MB, which
holds two 1 MiB items (copying them through the ring costs a tenth of writing a side file to tmpfs)."""
QUEUE_BLOCK_SIZE: Final = MIN_BLOCK_SIZE
"""The channel is packed (`Channel.create`): an item takes its own size, so small items (the common
case) take less than a block each (30,000 items of 64 bytes fit); larger ones take several blocks,
or a side file."""


class _Shape(NamedTuple):
    """How to make one of a queue's channels."""

    capacity: int
    block_size: int
    packed: bool


_ITEMS: Final = _Shape(QUEUE_CAPACITY, QUEUE_BLOCK_SIZE, packed=True)
"""A queue's channel of items (the bound of a bounded queue is a separate channel: `Queue._slots`)."""
MAXSIZE_LIMIT: Final = 1 << 20
"""The largest bound of a bounded queue: its slots channel takes 264 bytes of /dev/shm per item in
the queue (277 MB when full at this size), where the stdlib's semaphore takes nothing."""
PROTOCOL: Final = pickle.HIGHEST_PROTOCOL

_T = TypeVar("_T", bound="Queue")
_S = TypeVar("_S", bound="SimpleQueue")
R = TypeVar("R", bound=Response)
T = TypeVar("T")
_loads: Final = pickle.loads
_clock: Final = time.perf_counter
BURST_GAP_S: Final = 2e-6
"""A put that comes less than this after the previous one (of the same handle) is part of a burst: it
goes to the feeder thread, which sends a burst in batches. Any other put sends at once if it can."""
_STOP: Final = object()  # tells a feeder thread to flush and exit (every other item is a message)


# --------------------------------------------------------------------------------------------- pickling


class _Encoder:
    """This thread's pickler and its output buffer, reused from message to message.

    `ForkingPickler.dumps` costs about 4 µs for a Pool task here, 2.9 µs this way: it copies
    copyreg's whole dispatch table for every call, and a fresh pickler and buffer cost 0.4 µs more.
    The table here is a plain dict (`_pickler`): the C pickler consults it for every object
    that is not of a built-in type (a builtin function, for example), and a dict costs nothing
    there where a ChainMap costs a Python call and a KeyError. The dict is rebuilt when either
    table grows, which is what `ForkingPickler.register` and `copyreg.pickle` do for a new type (a
    new reducer for a type that had one already is seen once either table grows again)."""

    __slots__ = ("buf", "busy", "copyreg", "extra", "pickler")

    def __init__(self) -> None:
        self.busy = False  # a reducer is encoding something itself, in the middle of a dump
        self.renew()

    def renew(self) -> None:
        """A new pickler and buffer; `extra`, `copyreg`: the sizes of the two tables now (-1 asks for
        a renewal)."""
        self.buf = io.BytesIO()
        self.pickler = _pickler(self.buf)
        self.extra, self.copyreg = len(_EXTRA_REDUCERS), len(copyreg.dispatch_table)


def _pickler(buf: io.BytesIO) -> pickle.Pickler:
    """A pickler with ForkingPickler's reducers over copyreg's, as one dict."""
    pickler = pickle.Pickler(buf, PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, **_EXTRA_REDUCERS}
    return pickler


_THREAD: Final = threading.local()  # .encoder: this thread's _Encoder
_EXTRA_REDUCERS: Final[dict[type, Any]] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
"""Types that pickle without any reducer: `pickle.dumps` (all C) gives the same bytes faster."""
_SMALL: Final = 1 << 16
"""Above this, `pickle.dumps` spends most of its time growing and then copying its output (page
faults in fresh memory: 0.6 ms for 1 MiB here); a BytesIO's buffer, lent out as is, costs 0.05 ms."""
_PICKLE: Final = 0x80
"""The first byte of every pickle of protocol 2 or later (the PROTO opcode)."""


def encode(obj: object) -> bytes | memoryview:
    """The message for `obj`: a `bytes` object that does not start with byte 0x80 travels as it is
    (no pickling on either side: for 1 MiB that saves two copies into fresh memory, a third of the
    cost of a message); anything else is pickled as `ForkingPickler.dumps` would. Raises what
    pickling raises."""
    kind = type(obj)
    if kind is bytes:
        if obj and obj[0] != _PICKLE:  # type: ignore[index]
            return obj  # type: ignore[return-value]
    elif kind in _PLAIN and (kind is not str or len(obj) < _SMALL):  # type: ignore[arg-type]
        return pickle.dumps(obj, PROTOCOL)
    try:
        enc: _Encoder = _THREAD.encoder
    except AttributeError:
        enc = _THREAD.encoder = _Encoder()
    if enc.busy:  # re-entered from a reducer: this dump gets a pickler of its own
        buf = io.BytesIO()
        _pickler(buf).dump(obj)
        return buf.getbuffer()
    if enc.extra != len(_EXTRA_REDUCERS) or enc.copyreg != len(copyreg.dispatch_table):
        enc.renew()
    buf = enc.buf
    enc.busy = True
    try:
        enc.pickler.dump(obj)
        if buf.tell() > _SMALL:  # lend the buffer out as it is (see _SMALL); the next dump gets a new one
            enc.extra = -1
            return buf.getbuffer()
        return buf.getvalue()
    finally:
        enc.busy = False
        if enc.extra >= 0:
            enc.pickler.clear_memo()
            buf.seek(0)
            buf.truncate()


def decode(data: bytes) -> Any:
    """The object a message of `encode` stands for."""
    return pickle.loads(data) if data[0] == _PICKLE else data


# --------------------------------------------------------------------------------------------- channels


def _run(call: gs.GSCall[R, T], *, start_runtime: bool = False) -> T:
    """Carry out one GS call (see dragon._gs_common); `start_runtime`: in a plain `python` program,
    bring its background runtime up first if need be, as the start method's first process does."""
    return call.finish(connection(start_runtime=start_runtime).call(call.request, call.response_type))


def _create_channel(shape: _Shape, label: str) -> ChannelDescriptor:
    """A new ref-counted channel through GS (this process holds its one reference); `label` is what
    `dragon status` calls it. A queue made before the first process of a plain `python` program
    brings the background runtime up."""
    return _run(
        gs.channel_create(
            capacity=shape.capacity, block_size=shape.block_size, packed=shape.packed, ref_count=True, label=label
        ),
        start_runtime=True,
    )


def _add_ref(c_uid: int) -> ChannelDescriptor:
    """One more GS reference to channel `c_uid`; ChannelDestroyed if it is gone. Never starts a
    runtime: a queue to pickle was made in a live one."""
    plain = gs.channel_attach(c_uid, "")
    desc = _run(
        gs.GSCall(
            GSChannelQuery(p_uid=0, r_c_uid=0, c_uid=c_uid, inc_refcnt=True), GSChannelQueryResponse, plain.finish
        )
    )
    if desc.state != ObjectState.ACTIVE:
        raise ChannelDestroyed(f"channel {desc.name} (c_uid {c_uid}) was destroyed")
    return desc


def _drop_ref(c_uid: int) -> None:
    """Give one GS reference back; the last one destroys the channel. Quiet if the runtime is gone
    (it destroyed every channel) or the channel was destroyed already; never starts a runtime."""
    try:
        connection().call(GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=c_uid, dec_ref=True), GSChannelDestroyResponse)
    except DragonError:
        pass


def _destroy(c_uid: int) -> None:
    """Destroy channel `c_uid` whatever references are left; quiet if it (or the runtime) is gone."""
    try:
        connection().call(GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=c_uid), GSChannelDestroyResponse)
    except DragonError:
        pass


class _Hold:
    """This process's hold on a queue's channels: a transport handle on each and, unless `owned` is
    False, one GS reference to each.

    Shared by the queue object and its feeder thread (`use`/`release`): the last of them to let go
    closes the handles and gives the references back, so a feeder always finishes its flush first.
    """

    def __init__(self, refs: list[tuple[int, str]], *, owned: bool) -> None:
        """Attach to each channel of `refs` ((c_uid, sdesc) pairs). If that fails (ChannelDestroyed),
        the references are given back before the error propagates."""
        self.refs = refs
        self.chans: list[Channel] = []
        self._owned, self._pid = owned, os.getpid()
        self._users = 1
        self._lock = threading.Lock()
        try:
            for _, sdesc in refs:
                self.chans.append(Channel.attach(sdesc))
        except BaseException:
            self._users = 0
            self._let_go()
            raise

    @classmethod
    def create(cls, *shapes: _Shape, kind: str) -> _Hold:
        """New channels of the given shapes, each with this process's reference, labelled as
        channels of a queue of `kind` made by this process (the second one: the bound's slots)."""
        refs: list[tuple[int, str]] = []
        try:
            for i, shape in enumerate(shapes):
                desc = _create_channel(shape, channel_label(kind if i == 0 else f"{kind} slots"))
                refs.append((desc.c_uid, desc.sdesc))
        except BaseException:
            for c_uid, _ in refs:
                _drop_ref(c_uid)
            raise
        return cls(refs, owned=True)

    def new_refs(self) -> list[tuple[int, str]]:
        """One more reference to each channel, for a pickled handle to inherit."""
        refs: list[tuple[int, str]] = []
        try:
            for c_uid, _ in self.refs:
                desc = _add_ref(c_uid)
                refs.append((desc.c_uid, desc.sdesc))
        except BaseException:
            for c_uid, _ in refs:
                _drop_ref(c_uid)
            raise
        return refs

    def use(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """One user lets go; the last one closes the handles and drops the references."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._let_go()

    def destroy(self) -> None:
        """End the channels for every process now, whatever references others still hold (for
        channels only their maker's own helpers use, such as a Pool's); this process's handles are
        closed too. Only in the process that made the hold; idempotent."""
        for chan in self.chans:
            chan.close()
        if self._owned and self._pid == os.getpid():
            for c_uid, _ in self.refs:
                _destroy(c_uid)
            self._owned = False  # nothing left to give back

    def _let_go(self) -> None:
        for chan in self.chans:
            chan.close()
        if self._owned and self._pid == os.getpid():
            for c_uid, _ in self.refs:
                _drop_ref(c_uid)


# --------------------------------------------------------------------------------------------- Queue


class Queue:
    """A process-shared FIFO queue: `multiprocessing.Queue` on a channel (see the module docstring)."""

    _KIND: ClassVar[str] = "Queue"
    """What `dragon status` calls its channels (with their maker's name: `dragon._mp_names`)."""
    _hold: _Hold
    _chan: Channel
    _slots: Channel | None
    _maxsize: int

    def __init__(self, maxsize: int = 0, *, ctx: context.BaseContext) -> None:
        """`maxsize` > 0 bounds the queue (put blocks, or raises queue.Full, at that many items); `ctx`
        is taken as by the stdlib's Queue (which makes its locks with it; this one needs none).

        In a plain `python` program the first queue (or process) brings the program's background
        runtime up (`dragon._background`). Raises ValueError for a maxsize above MAXSIZE_LIMIT,
        BringupError if that runtime does not come up, and what GS answers if it cannot make a channel.
        """
        if maxsize > MAXSIZE_LIMIT:
            raise ValueError(
                f"Queue maxsize {maxsize} is above the limit of {MAXSIZE_LIMIT} of the dragon "
                "start method: use 0 for an unbounded queue"
            )
        maxsize = max(0, maxsize)
        shapes = [_ITEMS] + ([_Shape(maxsize, MIN_BLOCK_SIZE, packed=False)] if maxsize else [])
        self._setup(maxsize, _Hold.create(*shapes, kind=self._KIND))

    def _setup(self, maxsize: int, hold: _Hold) -> None:
        self._maxsize = maxsize
        self._hold = hold
        self._chan = hold.chans[0]
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
        self._hold = _Hold(self._hold.refs, owned=False)
        self._chan = self._hold.chans[0]
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
        return self._chan.approximate_depth() + self._backlog.count

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


def _rebuild(cls: type[_T], maxsize: int, refs: list[tuple[int, str]]) -> _T:
    """Unpickle a queue: attach to its channels with the references its pickling took."""
    q = cls.__new__(cls)
    q._setup(maxsize, _Hold(refs, owned=True))
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
    hold: _Hold,
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
    stdlib), so a JoinableQueue pickles only while spawning a process.
    """

    _KIND: ClassVar[str] = "JoinableQueue"

    def __init__(self, maxsize: int = 0, *, ctx: context.BaseContext) -> None:
        super().__init__(maxsize, ctx=ctx)
        self._set_extra(ctx.Condition(), ctx.Semaphore(0))

    def _set_extra(self, cond: Any, unfinished: Any) -> None:
        self._cond, self._unfinished_tasks = cond, unfinished

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        context.assert_spawning(self)  # before taking references that would otherwise leak
        return (_rebuild_joinable, (type(self), self._maxsize, self._pickle_refs(), self._cond, self._unfinished_tasks))

    def put(self, obj: object, block: bool = True, timeout: float | None = None) -> None:
        """As `Queue.put`; the item counts as an unfinished task until `task_done`."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        data = self._chan.stage(encode(obj))
        if self._slots is not None:
            self._take_slot(block, timeout)
        with self._cond:  # counted before any consumer can see it
            self._unfinished_tasks.release()
            self._enqueue(data)

    def task_done(self) -> None:
        """One item got earlier is processed. ValueError if called more often than items were put."""
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self) -> None:
        """Block until every item put so far has been got and marked with `task_done`."""
        with self._cond:
            if not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()


def _rebuild_joinable(
    cls: type[JoinableQueue], maxsize: int, refs: list[tuple[int, str]], cond: Any, unfinished: Any
) -> JoinableQueue:
    q = _rebuild(cls, maxsize, refs)
    q._set_extra(cond, unfinished)
    return q


# --------------------------------------------------------------------------------------------- SimpleQueue


class SimpleQueue:
    """`multiprocessing.SimpleQueue` on a channel: synchronous put (blocks while the channel is full),
    get, empty, close. Pickles anywhere (see the module docstring)."""

    _KIND: ClassVar[str] = "SimpleQueue"
    """What `dragon status` calls its channel (with its maker's name: `dragon._mp_names`)."""

    def __init__(self, *, ctx: context.BaseContext) -> None:
        """`ctx` as for the stdlib's SimpleQueue (unused: no locks needed). Brings a plain `python`
        program's background runtime up as `Queue` does."""
        self._setup(_Hold.create(_ITEMS, kind=self._KIND))

    def _setup(self, hold: _Hold) -> None:
        self._hold = hold
        self._chan = hold.chans[0]
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

    # For `dragon._mp_pool`, whose process is the only sender of one queue and the only receiver of
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
        """End the channel for every process (see `_Hold.destroy`); this handle is closed."""
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
    q._setup(_Hold(refs, owned=True))
    return q
