"""`Pipe()` and `Connection` of the "dragon" start method, on the runtime's shared-memory channels (issue 15).

**Home.** A Pipe's home is its two channels (one per direction; a one-way Pipe, `duplex=False`, has
one) and a record (`dragon.transport.Record`, a channel whose spare header words hold an object's
state) that says who holds each end; all are made through Global Services and ref-counted there as
a queue's channels are (`dragon.mp.refs.Hold`: one GS reference per process holding an end, one
more per pickle; `dragon status` lists the record as a "Connection" and the channels as "Pipe of
<maker>"). Every operation is a step on that home: `send` appends one record to the outgoing
channel's ring, `recv` takes one from the incoming one, `poll` looks at the incoming ring, opening,
pickling and closing an end change its row in the record under the record's lock, and a waiter
registers in the channel's waiter table and sleeps on its doorbell (`dragon.transport`'s register /
fence / look-again protocol: a message that comes meanwhile is never missed).

**Across nodes** (issue 17): an end unpickled on another node than its Pipe's is an `AwayEnd`
(`dragon.mp.pipe_away`), each of whose steps is carried out at the home by its node's agent with
this module's own code (`dragon.mp.pipe_home`); such a holder is `records.remote_holder(node, pid)`
in the tables, alive until the runtime tells the home it exited.

**Who holds an end.** EOFError (BrokenPipeError for a send) must come when the other end is closed
by every process that holds it, or all of them died, SIGKILL included, where a socketpair has the
kernel's file reference counts. The record holds a table of (pid, count) rows per end, changed
under its lock when an end is made, pickled (the pickling process counts once more until the
pickle is unpickled, so `p.start(); child_conn.close()` cannot end the pipe before the child has
its end), unpickled (the unpickler counts once, the pickler once less) or closed, and a word per
end set once it is over. A waiting receiver sleeps on its doorbell and on a pidfd of each process
holding the other end, so a death wakes it at once; it reports EOF once no live process is left in
the table (confirmed under the lock). The record is a channel of its own, not a header of the data
channels, because the data channels' locks are leased by their usual single reader and writer
(`Channel.lease_lock`, as a queue's: no system call per message); a table change by another process
under one of those locks would end the lease for good.

**Why channels rather than a socketpair** (`python tools/bench_mp.py --rows pipe_rt --reference
/work/REF`, 2026-12-05, 5 runs, pinned to two CPUs): a round trip of an 8-byte message takes 8.3 µs
here, 63.1 µs under spawn (0.13x) and 23.2 µs under the reference runtime (0.36x). A socket message
costs two system calls and, between processes on two CPUs, a wake-up of the other CPU each way;
a channel message is a copy into shared memory and a store, and a receiver that spins briefly
before it sleeps (`_recv_waiting`) answers without any system call. Large messages (echoed round
trips, same run, `multiprocessing.connection` under spawn vs this): 4 KiB 60 vs 6 µs, 64 KiB 82 vs
21 µs, 1 MiB 1.36 vs 0.94 ms, 16 MiB 35.6 vs 17.8 ms (a message larger than the ring, about 270
KB, travels in a side file: one copy each way, no chunking). Messages close to the ring's size
(200-260 KB) are the one band where the socketpair is as fast or faster (0.6x-1.1x in different
runs): both sides sleep for each message, whose copy outlasts the spin. Not worth a second
mechanism.

**Semantics kept from the stdlib**: its errors (OSError "handle is closed", "connection is
read-only" / "write-only", "bad message length" leaving a duplex end unreadable and closing a
read-only one; the ValueErrors of `send_bytes` and `recv_bytes_into`; BufferTooShort carrying the
message); `poll()` true at EOF; a send of a message larger than the ring returns once it is read
(`_wait_taken`: a writer cannot run ahead of its reader by more than a ring); fds passed with
`multiprocessing.reduction.send_handle`/`recv_handle` (`send_handle` here). The differences:
* `fileno()` is the incoming channel's doorbell FIFO (a write-only end: the outgoing channel's
  senders' doorbell). It is readable only while a waiter of this process is registered on the
  channel and a sender rang, so code that selects on it itself may sleep while a message waits:
  `multiprocessing.connection.wait` (routed here: `wait`) and `poll` register first, and are the way
  to wait for a Connection beside other fds. Bytes written to it are no message; only the
  other end's `recv_handle` notices them, as data without an fd (CPython's
  `test_missing_fd_transfer` writes one), within SAFETY_WAKE_S.
* A send to an end whose holders all died (rather than closed it) succeeds while the ring has room
  and this process has not yet seen that end over (a receive, a poll or a wait did); a socket says
  EPIPE at once. Checking every holder's life on every send would cost more than the send.
* At most `SLOTS` processes can hold one end at once (OSError beyond).
* A child forked by another start method ("fork") that inherits a Connection is not counted as a
  holder: the end is over once the processes that made or unpickled it closed it, whatever such a
  child still does with it. (Counting it needs a count taken before the fork that only a child can
  give back; a fork outside multiprocessing, `subprocess` with `preexec_fn` included, would never
  give it back.) Keep the parent's copy open until such a child is done with it.
* Making a Pipe costs about 1.4 ms (a record and two channels made through Global Services, a round
  trip each; the stdlib's Pipe 39 µs), dropping it about 0.1 ms (its references are given back
  without waiting for the answers), 2026-12-05: code that makes a Pipe per task pays that each time.

Pickling: a Connection pickles anywhere (a `Process` argument, through a Queue, a Pool task); each
pickle takes a GS reference and a count in its end's row that its unpickling inherits. A pickle
never unpickled keeps the end open until the process that made it exits (as the stdlib's
`resource_sharer` does). A closed Connection refuses to pickle (OSError, as the stdlib's).
"""

from __future__ import annotations

import errno
import io
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing import BufferTooShort, util
from multiprocessing.reduction import ForkingPickler
from typing import Any, Final

from dragon.client.remote import RemoteChannel
from dragon.errors import ChannelDestroyed, ChannelError, DragonError
from dragon.mp import fds
from dragon.mp.codec import pickled
from dragon.mp.pipe_away import AwayEnd, wait_away
from dragon.mp.refs import RECORD, Hold, Shape
from dragon.transport import MIN_BLOCK_SIZE, SAFETY_WAKE_S, SPIN_MAX_S, SPIN_MIN_S, Record
from dragon.transport.records import KIND, KINDS, OBJ_WORDS, OWN, REMOTE_BASE, holder_alive

PIPE: Final = Shape(1024, MIN_BLOCK_SIZE, packed=True)
"""One direction of a Pipe: a packed ring of about 270 KB (a socketpair's buffer is about 200 KB);
a larger message travels in a side file of its own."""
OVER: Final = OWN
"""Record word `OVER + end` (end 0: the first Connection `Pipe()` returns, 1: the second) is set once
that end is over; its table of (pid, count) rows is at `_table(end)`."""
SLOTS: Final = (OBJ_WORDS - OWN - 2) // 4
"""Processes that can hold one end open at once (its table's rows): the record's words that are left."""
KIND_CODE: Final = KINDS.index("Connection")
SPIN_WORTH_S: Final = 2 * SPIN_MAX_S
"""A message that comes this soon after a receive began waiting would have been worth spinning for
(the wake-up itself takes part of it)."""
_EXIT_PRIORITY: Final = -(1 << 30)
"""A process closes its Connections after every exit finalizer of the program's (which may still send
on them: CPython's `test_finalize` does), as the end of the process closes a socket."""
_loads: Final = ForkingPickler.loads
_clock: Final = time.perf_counter


# --------------------------------------------------------------------------------------------- the record


def _count(words: memoryview, end: int, pid: int, delta: int) -> None:
    """Add `delta` to `pid`'s row in the table of `end` (the lock held); a row that reaches 0 is
    freed, and a new one takes a free row or the row of a dead process. OSError if all rows are
    taken by live processes."""
    base = _table(end)
    free = -1
    for row in range(base, base + 2 * SLOTS, 2):
        owner = words[row]
        if owner == pid:
            count = max(0, words[row + 1] + delta)
            words[row + 1] = count
            if count == 0:
                words[row] = 0
            return
        if free < 0 and (owner == 0 or not holder_alive(owner)):
            free = row
    if delta <= 0:
        return
    if free < 0:
        raise OSError(errno.EMFILE, f"more than {SLOTS} processes hold this end of a Pipe open")
    words[free + 1] = delta
    words[free] = pid


def _take_holder(rec: Record, who: int) -> bool:
    """Take `who` (a holder that ended) out of both ends' tables; an end it leaves without a live
    holder is over. Whether it held either end."""
    rec.lock()
    try:
        words, held = rec.words, False
        for end in (0, 1):
            base = _table(end)
            for row in range(base, base + 2 * SLOTS, 2):
                if words[row] == who:
                    words[row] = words[row + 1] = 0
                    held = True
                    if not _holders(words, end):
                        words[OVER + end] = 1
        return held
    finally:
        rec.unlock()


def _table(end: int) -> int:
    return OVER + 2 + end * 2 * SLOTS


def _holders(words: memoryview, end: int, me: int = 0) -> list[int]:
    """The live processes holding `end` open (lock-free: may be stale); a holder of another node
    (`records.remote_holder`) counts until the runtime tells the home it ended (`dragon.mp.pipe_home`).
    `me`: the caller's pid, alive without a look at /proc (a process that made a Pipe usually keeps
    both ends: a receive's look before each sleep would read /proc for itself every time)."""
    base = _table(end)
    rows = words[base : base + 2 * SLOTS].tolist()
    return [
        pid for pid, n in zip(rows[::2], rows[1::2], strict=True) if pid and n > 0 and (pid == me or holder_alive(pid))
    ]


def _ended(rec: Record, end: int) -> bool:
    """Whether every holder of `end` closed it or died: the lock-free look, confirmed under the lock
    (a row being moved may look empty for a moment)."""
    words = rec.words
    if words[OVER + end]:
        return True
    if _holders(words, end):
        return False
    rec.lock()
    try:
        if not _holders(words, end):
            words[OVER + end] = 1  # for good (its holders died): a send sees it at once
        return bool(words[OVER + end])
    finally:
        rec.unlock()


# --------------------------------------------------------------------------------------------- an end


class _End:
    """This process's hold on end `me` (0 or 1) of a Pipe: its record `rec`, the channel it reads
    (`inc`) and the one it writes (`out`), and pidfds of the processes holding the other end (for a
    waiter). Closing it (once) takes this process out of its table and lets go of the `Hold` (shared
    with the other end when both are in the process that made the Pipe)."""

    __slots__ = ("hold", "inc", "me", "out", "pidfds", "rec", "spin_s")

    hold: Hold | None

    def __init__(self, hold: Hold, me: int, inc: int | None, out: int | None) -> None:
        self.hold, self.me = hold, me
        self.rec = _record(hold, 0)
        self.inc = None if inc is None else _record(hold, inc)
        self.out = None if out is None else _record(hold, out)
        if self.inc is not None:  # usually one process per end: no flock per message (`lease_lock`)
            self.inc.lease_lock("recv")
        if self.out is not None:
            self.out.lease_lock("send")
        self.pidfds: dict[int, int] = {}
        self.spin_s = SPIN_MAX_S

    @classmethod
    def at_home(cls, rec: Record, me: int, inc: Record | None, out: Record | None) -> _End:
        """End `me` as its home node's agent works it for a holder of another node, for one operation
        (`dragon.mp.pipe_home`): the records the agent attached, no hold, no lease (operations of
        several holders run at once, each with an `_End` of its own), no spin (a thread of the
        agent must not keep the interpreter from its other work)."""
        end = cls.__new__(cls)
        end.hold, end.me, end.rec, end.inc, end.out = None, me, rec, inc, out
        end.pidfds = {}
        end.spin_s = 0.0
        return end

    @property
    def holder(self) -> int:
        """This process in the record's tables."""
        return os.getpid()

    def count(self, delta: int, pid: int, closing: bool = False) -> None:
        """Add `delta` to `pid`'s count in this end's table (`closing`: and mark the end over if no
        holder is left), then wake the other end's waiters: they look again at who holds this end,
        for EOF and for a pidfd of each holder."""
        rec, me = self.rec, self.me
        rec.lock()
        try:
            _count(rec.words, me, pid, delta)
            if closing and not _holders(rec.words, me):
                rec.words[OVER + me] = 1
        finally:
            rec.unlock()
        # After the unlock (a full barrier), against a waiter's registration and look at the table.
        if self.out is not None:  # receivers of the other end
            self.out.ring_waiters("recv")
        if self.inc is not None:  # its senders waiting for room
            self.inc.ring_waiters("send")

    def close(self) -> None:
        """This process holds the end no more: out of the table (the end is over if it was the last
        holder: the word says so, and the other end's waiters are woken to see it), then let go."""
        try:
            self.count(-1, os.getpid(), closing=True)
        except DragonError:  # the runtime is going away (it destroyed the channels)
            pass
        finally:
            self.close_fds()
            if self.hold is not None:
                self.hold.release()

    def close_fds(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)
        self.pidfds.clear()

    def other_over(self) -> bool:
        """Whether the other end is over (closed by every holder, or they all died)."""
        return _ended(self.rec, 1 - self.me)

    def peers(self) -> list[int]:
        """The live holders of the other end, with a pidfd of each of this node in `pidfds` (this
        process apart), so that a sleeper wakes when one dies (the death of one of another node is
        told by the runtime: `dragon.mp.pipe_home.reclaim` rings the waiters)."""
        me = os.getpid()
        live = _holders(self.rec.words, 1 - self.me, me)
        for pid in [p for p in self.pidfds if p not in live]:
            os.close(self.pidfds.pop(pid))
        for pid in live:
            if pid != me and pid < REMOTE_BASE and pid not in self.pidfds:
                try:
                    self.pidfds[pid] = os.pidfd_open(pid)
                except ProcessLookupError:  # died meanwhile: the next look sees it
                    pass
        return live

    def sleep(self, bell: int, deadline: float | None = None) -> None:
        """Sleep until doorbell `bell` rings (one ring is consumed), a holder of the other end dies,
        SAFETY_WAKE_S or the `deadline` (of `_clock`)."""
        poller = select.poll()
        for fd in (bell, *self.pidfds.values()):
            poller.register(fd, select.POLLIN)
        wait_s = SAFETY_WAKE_S if deadline is None else max(0.0, min(SAFETY_WAKE_S, deadline - _clock()))
        if any(fd == bell for fd, _ in poller.poll(wait_s * 1000)):
            _drain(bell)


def _record(hold: Hold, index: int) -> Record:
    rec = hold.chans[index]
    assert isinstance(rec, Record)  # a Hold with a record attaches every channel as one
    return rec


def _drain(bell: int) -> None:
    try:
        os.read(bell, 1)
    except BlockingIOError:
        pass


# --------------------------------------------------------------------------------------------- Connection


class Connection:
    """One end of a `Pipe()` of the dragon start method: `multiprocessing.connection.Connection`'s API
    on channels (see the module docstring)."""

    __slots__ = ("__weakref__", "_end", "_finalize", "_readable", "_writable")

    def __init__(self, end: _End | AwayEnd, readable: bool, writable: bool) -> None:
        """Made by `Pipe()` and by unpickling, with this process already counted in the end's tables."""
        self._end: _End | AwayEnd | None = end
        self._readable, self._writable = readable, writable
        self._finalize = util.Finalize(self, end.close, exitpriority=_EXIT_PRIORITY)

    # ----------------------------------------------------------------------------------- state

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._end is None

    @property
    def readable(self) -> bool:
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection is writable."""
        return self._writable

    def _check(self, readable: bool) -> _End | AwayEnd:
        end = self._end
        if end is None:
            raise OSError("handle is closed")
        if readable and not self._readable:
            raise OSError("connection is write-only")
        if not readable and not self._writable:
            raise OSError("connection is read-only")
        return end

    def fileno(self) -> int:
        """The incoming channel's doorbell fd (a write-only end: the outgoing channel's senders'
        doorbell). Readable only while a waiter is registered: see the module docstring."""
        end = self._end
        if end is None:
            raise OSError("handle is closed")
        if isinstance(end, AwayEnd):
            return end.fileno()
        if end.inc is not None:
            return end.inc.rbell
        assert end.out is not None
        return end.out.sbell

    def close(self) -> None:
        """Close the connection in this process (idempotent). The other end gets EOFError once every
        process holding this end closed it or died."""
        if self._end is not None:
            self._end = None
            self._finalize()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[..., Connection], tuple[Any, ...]]:
        end = self._end
        if end is None:
            raise OSError("handle is closed")
        assert end.hold is not None
        refs = end.hold.new_refs()
        pid = end.holder
        end.count(1, pid)  # the pickle holds the end open until it is unpickled
        chans = end.hold.chans
        index = (None if end.inc is None else chans.index(end.inc), None if end.out is None else chans.index(end.out))
        return _rebuild, (refs, end.me, index, self._readable, self._writable, pid)

    def __repr__(self) -> str:
        end = self._end
        if end is None or end.hold is None:
            return f"<{type(self).__module__}.Connection closed>"
        return f"<{type(self).__module__}.Connection channels={[c for c, _ in end.hold.refs]}>"

    # ----------------------------------------------------------------------------------- send

    def send(self, obj: object) -> None:
        """Send a picklable object."""
        self._send(self._check(False), pickled(obj))

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send bytes from a bytes-like object (from `offset`, `size` bytes), as one message."""
        end = self._check(False)
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send(end, m[offset : offset + size] if offset or size != n else m)

    def _send(self, end: _End | AwayEnd, data: bytes | memoryview) -> None:
        if isinstance(end, AwayEnd):
            end.send(data)
        else:
            send(end, data)

    # ----------------------------------------------------------------------------------- receive

    def recv(self) -> Any:
        """Receive a pickled object; EOFError once the other end is closed and nothing is left."""
        return _loads(_take(self._check(True)))

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Receive one message as bytes. OSError if it is longer than `maxlength` (the connection
        is then unreadable, or closed if read-only, as the stdlib's)."""
        end = self._check(True)
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        data = _take(end)
        if maxlength is not None and len(data) > maxlength:
            if self._writable:
                self._readable = False
            else:
                self.close()
            raise OSError("bad message length")
        return data

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive one message into a writable bytes-like object at byte `offset`; its size.
        BufferTooShort (carrying the message) if it does not fit."""
        end = self._check(True)
        with memoryview(buf) as m:
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            data = _take(end)
            size = len(data)
            if bytesize < offset + size:
                raise BufferTooShort(data)
            io.BytesIO(data).readinto(m[offset // itemsize : (offset + size) // itemsize])
            return size

    # ----------------------------------------------------------------------------------- poll

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or the end of the other end) can be received, waiting at most `timeout`
        seconds for one (None: no limit)."""
        end = self._check(True)
        if isinstance(end, AwayEnd):
            return end.poll(timeout if timeout is None else max(0.0, timeout))
        if _ready(end):
            return True
        if timeout is not None and timeout <= 0:
            return False
        return bool(_wait([self], [self], timeout))


# --------------------------------------------------------------------------------------------- steps of an end


def send(end: _End, data: bytes | memoryview) -> None:
    """Send one message on end `end` of this node (BrokenPipeError once the reading end is over)."""
    out = end.out
    assert out is not None
    if end.rec.words[OVER + 1 - end.me]:
        raise _broken()
    try:
        if len(data) <= out.max_inline and out.put(data):
            return
    except ChannelDestroyed:
        raise _broken() from None
    _send_waiting(end, out, data)


def _send_waiting(end: _End, out: Record, data: bytes | memoryview) -> None:
    """No room (or a message for a side file): wait for room, or for the reading end to end."""
    payload, flags = out.prepare(data)
    waited = False
    try:
        while True:
            if out.put(payload, flags, True, 0, waited, True):
                if flags:
                    _wait_taken(end, out)
                return
            waited = True  # registered as a waiting sender
            if not end.peers() and end.other_over():
                raise _broken()
            end.sleep(out.sbell)
    except BaseException as exc:
        if waited and not isinstance(exc, ChannelDestroyed):
            out.end_wait("send")
        out.discard(payload, flags)
        if isinstance(exc, ChannelDestroyed):
            raise _broken() from None
        raise


def _wait_taken(end: _End, out: Record) -> None:
    """After sending a message larger than the ring (in a side file, which takes no room in
    it): wait until the ring is empty, which means the message was taken, as a pipe's writer
    waits for the reader to read all but a buffer's worth. So a writer cannot run ahead of its
    reader by more than a ring and a message (filling /dev/shm with side files), and it is still
    running when its message is read (CPython's `TestIgnoreEINTR` signals it then).
    BrokenPipeError if the reading end ends first, as the stdlib's."""
    while True:
        if not out.enroll("send", out.ring_bytes):  # register, fence, look again
            return
        try:
            if not end.peers() and end.other_over():
                raise _broken()
            end.sleep(out.sbell)
        finally:
            out.end_wait("send")


def _take(end: _End | AwayEnd) -> bytes:
    """The next message of `end` (waiting for it); EOFError once the other end is over and nothing
    is left."""
    if isinstance(end, AwayEnd):
        return end.recv()
    inc = end.inc
    assert inc is not None
    data = inc.take()
    if data is None:
        data = _recv_waiting(end)
        assert data is not None  # no deadline
    return data


def _recv_waiting(end: _End, deadline: float | None = None) -> bytes | None:
    """The channel was empty: spin briefly, then sleep as a registered waiter until a message
    comes or the other end is over (EOFError), or until `deadline` (of `_clock`: then None).

    The spin adapts as a channel receiver's does, with one difference: a message that came
    while we slept but within SPIN_WORTH_S of the start lengthens the spin too. Otherwise two
    partners whose spins once shrank to nothing (a slow start) would each sleep on every
    message from then on, a wake-up (20-40 µs here) per message each way."""
    inc = end.inc
    assert inc is not None
    start = _clock()
    spin_end = start + end.spin_s
    while _clock() < spin_end:
        if inc.pending():
            got = inc.take(False)
            if got is not None and got is not False:
                end.spin_s = min(SPIN_MAX_S, end.spin_s * 2)
                return got
        os.sched_yield()  # as a channel receiver's spin (dragon.transport's `Channel`)
    waited = False
    try:
        while True:
            data = inc.take(True, waited, True)
            if data is not None:
                soon = _clock() - start < SPIN_WORTH_S
                end.spin_s = min(SPIN_MAX_S, end.spin_s * 2) if soon else max(SPIN_MIN_S, end.spin_s / 2)
                return data
            waited = True  # registered as a waiting receiver
            if not end.peers() and end.other_over():
                inc.end_wait("recv")
                waited = False
                data = inc.take()  # what was sent before the end closed
                if data is not None:
                    return data
                raise EOFError
            if deadline is not None and _clock() >= deadline:
                inc.end_wait("recv")
                return None
            end.sleep(inc.rbell, deadline)
    except ChannelDestroyed:
        raise EOFError from None
    except BaseException:
        if waited:
            inc.end_wait("recv")
        raise


def _broken() -> BrokenPipeError:
    return BrokenPipeError(errno.EPIPE, "the other end of the Pipe is closed")


def _ready(end: _End) -> bool:
    """Whether a waiter on `end` would return now: a message waits, or the other end is over."""
    return (end.inc is not None and end.inc.pending()) or end.other_over()


def _rebuild(
    refs: list[tuple[int, str]],
    me: int,
    index: tuple[int | None, int | None],
    readable: bool,
    writable: bool,
    pickler: int,
) -> Connection:
    """Unpickle a Connection: attach with the references its pickling took, count this process in
    the end's table and take the pickle's count back from the process that made it."""
    hold = Hold(refs, owned=True, record=True)
    end: _End | AwayEnd
    try:
        end = AwayEnd(hold, me, *index) if isinstance(hold.chans[0], RemoteChannel) else _End(hold, me, *index)
    except BaseException:
        hold.release()
        raise
    try:
        end.count(1, end.holder)
        end.count(-1, pickler)
    except BaseException:
        end.close()
        raise
    return Connection(end, readable, writable)


# --------------------------------------------------------------------------------------------- Pipe


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two Connections at the ends of a pipe: both read and write if `duplex`, else the first reads
    and the second writes. In a plain `python` program the first Pipe (like the first Queue or
    process) brings the program's background runtime up."""
    if duplex:
        hold = Hold.create(RECORD, PIPE, PIPE, kinds=("Pipe", "Pipe", "Pipe"))
        ends = _End(hold, 0, 2, 1), _End(hold, 1, 1, 2)
        modes = (True, True), (True, True)
    else:
        hold = Hold.create(RECORD, PIPE, kinds=("Pipe (one-way)", "Pipe (one-way)"))
        ends = _End(hold, 0, 1, None), _End(hold, 1, None, 1)
        modes = (True, False), (False, True)
    hold.use()  # both ends share this process's hold: the last one closed lets go
    words, pid = ends[0].rec.words, os.getpid()
    words[KIND] = KIND_CODE  # for `dragon status`
    for me in (0, 1):  # no other process knows the record yet: no lock needed
        _count(words, me, pid, 1)
    return Connection(ends[0], *modes[0]), Connection(ends[1], *modes[1])


# --------------------------------------------------------------------------------------------- fds


_OFFER: Final = "dragon.mp.connection fd offer"


def send_handle(conn: Connection, handle: int, destination_pid: int) -> None:
    """`multiprocessing.reduction.send_handle` over a runtime Connection (routed here by
    `dragon.mp.context.route_handles`): a copy of fd `handle` waits for process `destination_pid`
    on a one-shot unix socket (`dragon.mp.fds.FdHandoff`, served by a thread until that process
    takes it or exits), whose address goes as a message for its `recv_handle`. The stdlib passes
    the fd through the Connection's socket itself; a channel carries bytes only."""
    handoff = fds.FdHandoff()
    try:
        handoff.add(handle)
        offer = handoff.listen()
        sentinel = os.pidfd_open(destination_pid)
    except BaseException:
        handoff.close()
        raise

    def serve() -> None:
        try:
            handoff.serve(destination_pid, sentinel)
        finally:
            handoff.close()
            os.close(sentinel)

    threading.Thread(target=serve, name="SendHandle", daemon=True).start()
    conn.send((_OFFER, offer, os.environ.get("DRAGON_INDEX", "")))


def recv_handle(conn: Connection) -> int:
    """`multiprocessing.reduction.recv_handle` over a runtime Connection: the fd of the next message,
    which must come from `send_handle` (RuntimeError otherwise, as the stdlib's for data without
    an fd).

    While it waits it also looks, at least every SAFETY_WAKE_S, for bytes written raw to the other
    end's `fileno()` (a doorbell, where the runtime only ever writes rings, byte 1, or fills it with
    byte 0 when the channel is destroyed): such a byte is data without an fd too, as on the
    stdlib's socket (CPython's `test_missing_fd_transfer` writes one). The rings read meanwhile are
    written back, for whoever sleeps on that doorbell."""
    end = conn._check(True)
    while not conn.poll(SAFETY_WAKE_S):
        if isinstance(end, _End):  # an end of another node's Pipe has no fileno() to write to
            _raw_write_check(end)
    msg = conn.recv()
    if not (isinstance(msg, tuple) and len(msg) == 3 and msg[0] == _OFFER):
        raise RuntimeError("Invalid data received: a message, not a handle from send_handle")
    (address, count), there = msg[1:]
    here = os.environ.get("DRAGON_INDEX", "")
    if there and here and there != here:
        raise fds.FdOnAnotherNode(
            f"a process of node {there} sent this process, of node {here}, a file descriptor through a Pipe "
            "(multiprocessing.reduction.send_handle): file descriptors cannot cross nodes; send the data itself, "
            f"or start this process on node {there} (dragon.native.Policy(node={there}))"
        )
    return fds.take(address, count)[0]


def _raw_write_check(end: _End) -> None:
    """RuntimeError if a byte other than a ring was written to the other end's `fileno()` (see
    `recv_handle`): a duplex end's is the doorbell of the channel this end writes; a write-only
    end's, the senders' doorbell of the channel this end reads."""
    if end.out is not None:
        chan, bell = end.out, end.out.rbell
    else:
        assert end.inc is not None
        chan, bell = end.inc, end.inc.sbell
    try:
        seen = os.read(bell, 65536)
    except BlockingIOError:
        return
    rings = seen.count(1)
    if rings:
        try:
            os.write(bell, b"\1" * rings)
        except BlockingIOError:  # full of rings again
            pass
    if rings < len(seen) and not chan.destroyed:
        raise RuntimeError("Invalid data received: bytes written to the other end's fileno(), not a handle")


# --------------------------------------------------------------------------------------------- wait


def wait(object_list: Iterable[Any], timeout: float | None, stdlib_wait: Callable[..., list[Any]]) -> list[Any]:
    """`multiprocessing.connection.wait` for a list that may hold runtime Connections (routed here by
    `dragon.mp.context.route_wait`; `stdlib_wait` is the stdlib's, used alone when there are none).

    Looks at each Connection; if none is ready, registers as a waiter on each one's incoming channel
    (register, fence, look again: a message that came meanwhile is seen), polls their doorbells, the
    pidfds of the processes holding their other ends and the other objects' fds at once, and looks
    again after each wake-up. Returns the ready objects in the order of `object_list`."""
    objects = list(object_list)
    ours = [o for o in objects if isinstance(o, Connection)]
    if not ours:
        return stdlib_wait(objects, timeout)
    return _wait(objects, ours, timeout)


def _wait(objects: list[Any], ours: list[Connection], timeout: float | None) -> list[Any]:
    ends: list[_End | AwayEnd] = []
    for conn in ours:
        end = conn._end
        if end is None:
            raise OSError("handle is closed")
        ends.append(end)
    others: dict[int, list[Any]] = {}
    for obj in objects:
        if not isinstance(obj, Connection):
            others.setdefault(obj if isinstance(obj, int) else obj.fileno(), []).append(obj)
    if any(isinstance(end, AwayEnd) for end in ends):
        ready_ends, ready_fds = wait_away(ends, list(others), timeout, wait_ends)
    else:
        ready_ends, ready_fds = wait_ends([e for e in ends if isinstance(e, _End)], list(others), timeout)
    ready = {id(ours[i]) for i in ready_ends}
    ready.update(id(o) for fd in ready_fds for o in others[fd])
    return [o for o in objects if id(o) in ready]


def wait_ends(ends: list[_End], fds: list[int], timeout: float | None) -> tuple[list[int], list[int]]:
    """Wait until one of `ends` (of this node) can be received from (or is at EOF) or one of `fds`
    is readable, at most `timeout` s (None: no limit): the indices of the ready ends and the ready
    fds (both empty at the timeout)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ready_fds: list[int] = _poll_now(fds)
    while True:
        ready = [i for i, end in enumerate(ends) if _ready(end)]
        if ready or ready_fds:
            return ready, ready_fds
        if deadline is not None and time.monotonic() >= deadline:
            return [], []
        ready_fds = _sleep_on(ends, fds, deadline)


def _poll_now(fds: list[int]) -> list[int]:
    if not fds:
        return []
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(0)]


def _sleep_on(ends: list[_End], others: list[int], deadline: float | None) -> list[int]:
    """One sleep of `wait`: registered on each end's incoming channel (unless something is there
    already), woken by a ring, a death, one of the other fds or the deadline; the other fds that are
    ready."""
    registered: list[Record] = []
    try:
        bells: list[int] = []
        for end in ends:
            if end.inc is None:  # a write-only end: wakes when a holder of its reading end dies (or at
                assert end.out is not None  # the next safety wake, for a close: it is no registered sender)
                end.peers()
                continue
            if not end.inc.enroll("recv"):  # a message (or the destroy) came: look again
                return []
            registered.append(end.inc)
            end.peers()
            bells.append(end.inc.rbell)
        if any(_ready(end) for end in ends):  # a close between the first look and the registration
            return []
        wait_s = SAFETY_WAKE_S
        if deadline is not None:
            wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
        poller = select.poll()
        for fd in {*bells, *others, *(fd for end in ends for fd in end.pidfds.values())}:
            poller.register(fd, select.POLLIN)
        fired = {fd for fd, _ in poller.poll(wait_s * 1000)}
        for fd in bells:
            if fd in fired:
                _drain(fd)
        return [fd for fd in others if fd in fired]
    finally:
        for chan in registered:
            try:
                chan.end_wait("recv")
            except ChannelError:
                pass
