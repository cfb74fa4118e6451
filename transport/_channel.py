"""Shared-memory channels: the core and its blocking face (spec §6 "Channel").

A channel is an ordered, bounded, many-to-many message queue between processes on one node. It lives
in three /dev/shm entries named after the channel (all mode 0600):

- ``NAME``: the segment, a 4 KiB header of u64 control words followed by a byte ring;
- ``NAME.rbell``: a FIFO that receivers sleep on ("data arrived"); ``flock`` on it is the receive lock;
- ``NAME.sbell``: a FIFO that senders sleep on ("room freed"); ``flock`` on it is the send lock.

How a message travels. The ring holds records ``[u64 length|flags][payload][pad to 8]``; ``head`` and
``tail`` are ever-increasing byte counters (no ABA), each written by one side only. Every record takes
at least one *slot* of ``8 + block_size`` bytes and the ring has ``capacity`` slots, so the channel
holds ``capacity`` messages of up to ``block_size`` bytes (bigger ones take more room); in a *packed*
channel a record takes only its own room, so the same ring holds more small messages. Whether there
is room therefore depends on ``head`` and ``tail`` alone, each published by one aligned store: no
crash between two stores can leave the accounting wrong. The depth `statistics` reports is counted
from the records between ``tail`` and ``head``; the ``sent``/``received`` totals are statistics only,
and may be one off after a process was killed between two stores. Senders exclude each
other with the send lock and receivers with the receive lock, so at any moment the ring has one writer
and one reader, and the two sides never wait for each other's lock. A sender copies the payload into
the ring once and publishes it with a single aligned 8-byte store of ``head``; a receiver copies it out
once and frees it with a store of ``tail``. A message larger than the ring travels in a side file
``NAME.x<pid>.<n>``: the sender writes it once with write(2), the ring carries only the file's name,
and the receiver reads it once with read(2) and unlinks it. Order is FIFO across all senders.

Memory ordering: this relies on x86-64 (total store order; aligned 8-byte stores are atomic; a
locked instruction or a system call is a full barrier). On another architecture the fences below would
have to be real ones.

Waiting without busy-waiting (an eventcount, see notes/ipc-costs.md §Sleepers). A receiver that finds
the ring empty registers in the header's waiter table under the receive lock, issues a full fence,
looks again, and only then sleeps in poll(2) on the ``rbell`` FIFO. A sender publishes ``head``, leaves
its lock (a system call, hence a full barrier; a handle that keeps its lock issues a fence instead),
and writes one byte to ``rbell`` if any receiver is registered. One of the two always sees the other,
so no wake-up is lost; a byte nobody needed only causes one spurious, harmless wake. Senders waiting
for room work the same way on ``sbell``, with one refinement: a sender waits for a given amount of
room (``SWANT``, the least any registered sender wants), and receivers ring only once there is that
much. A batch (`send_many`) asks for room for the rest of it, up to half the ring, so a producer
ahead of its consumer is woken once per half ring instead of once per message taken (each wake a
write(2) in the consumer and a sleep in the producer); a single `send` asks for its own room only. The
blocking face also spins briefly (adaptively, a few tens of µs at most) before sleeping, which removes
the system calls from a ping-pong between two busy processes. Every sleep is also capped at
`SAFETY_WAKE_S`, after which the waiter simply looks again.

Kept locks. A handle may keep a direction's flock between operations, which takes two system calls
off each (half the cost of a small message): for good (`hold_lock`, for a channel one process alone
uses that way) or as a *lease* (`lease_lock`: while no other handle has ever taken that lock; a
queue's usual single producer and single consumer). A handle that takes the lock without a lease
marks the direction shared (a sticky header word) before waiting for the flock, and a watcher thread
of the leasing process gives the lease up when it sees the mark, so the newcomer waits once, for
about `LEASE_POLL_S`. The lease is the flock itself: the kernel releases it when its holder dies.

What a crash leaves. A process SIGKILLed mid-send has not stored ``head``, so its half-written record is
invisible; one killed mid-receive has not stored ``tail``, so the message is still there for the
others (except a message in a side file whose receiver dies after taking its record and before
reading the file: that one is lost, and its file stays until the channel is destroyed). The kernel releases a dead holder's flock. The waiter table records pids, so a dead waiter is
pruned by the next process that registers. Destroying a channel sets the ``closed`` word, fills both
FIFOs so every sleeper wakes, and unlinks every entry: every waiter and every later call then raises
`ChannelDestroyed`, while mappings already made stay valid until their handles close.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import select
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from ._errors import ChannelCorrupted, ChannelDestroyed, ChannelEmpty, ChannelError, ChannelFull, excerpt
from ._procs import pid_alive
from ._shm import NoSharedMemory, entries, open_own, reserve, shm_path, unlink_own, unlink_quietly

Buffer = bytes | bytearray | memoryview

MAGIC: Final = 0x4452_4743_4841_4E31  # "DRGCHAN1"
HEADER_BYTES: Final = 4096
DEFAULT_CAPACITY: Final = 100  # spec §6: default capacity 100 messages
DEFAULT_BLOCK_SIZE: Final = 1024  # spec §6: default block size 1024 bytes
MIN_BLOCK_SIZE: Final = 256  # spec §6: minimum block size
SAFETY_WAKE_S: Final = 1.0  # a sleeper looks again at least this often, whatever happens
WAITER_SLOTS: Final = 60  # processes that can be registered as waiting, per direction
SPIN_MAX_S: Final = 50e-6  # longest adaptive spin of a blocking receive before it sleeps
SPIN_MIN_S: Final = 2e-6
LEASE_POLL_S: Final = 0.01  # how often a process looks whether another handle wants a lock it leases
LEASE_IDLE_S: Final = 0.2  # a lease unused this long is given back (and taken again when used)
PUBLISH_EVERY: Final = 256
"""`send_many` publishes what it wrote (and wakes a sleeping receiver) at least every this many
messages: a receiver starts on a long batch while it is being written, instead of waiting for all of
it (a queue's feeder may hand over tens of thousands of messages at once, milliseconds of writing)."""
LOCK_SPIN_S: Final = 20e-6  # longest retrying of a taken flock before sleeping on it (see `_lock`)

# Header words (u64). Words written by different parties sit on different 64-byte lines.
_W_MAGIC, _W_CAPACITY, _W_BLOCK, _W_RING, _W_PACKED = 0, 2, 3, 4, 5
_W_HEAD, _W_SENT = 8, 9  # written by the sender holding the send lock
_W_TAIL, _W_RECEIVED = 16, 17  # written by the receiver holding the receive lock
_W_RWAIT = 24  # registered receivers (under the receive lock)
_W_SWAIT = 32  # registered senders (under the send lock)
_W_SWANT = 33  # the least room (bytes) a registered sender waits for: receivers ring below it for nothing
_W_CLOSED = 40  # set once by destroy
_W_RSHARED, _W_SSHARED = 48, 56  # set once a handle takes that direction's lock without a lease (`lease_lock`)
_W_RTABLE = 64  # WAITER_SLOTS pairs (pid, count) of waiting receivers
_W_STABLE = _W_RTABLE + 2 * WAITER_SLOTS + 8  # same for senders

_SIDE: Final = 1 << 63  # record flag: the payload is the name suffix of a side file
_LEN_MASK: Final = (1 << 56) - 1
_SIDE_SUFFIX: Final = re.compile(rb"\.x[0-9a-f]{16}")  # the name suffix of a side file (`_write_side_file`)

_STAGED_LEN: Final = 1 << 62  # the `len` of a `_Staged`: more than any ring holds
_fence_lock = threading.Lock()


class _Staged(bytes):
    """The name suffix of a side file a sender wrote ahead (`Channel.stage`): sent as such.

    Its `len` is that of no message a ring holds, so the one size test of every send path routes it
    to `_prepare` (which sends the plain name as a side-file record) and the hot paths pay no type
    test per message; its bytes (buffer protocol) are the name."""

    __slots__ = ()

    def __len__(self) -> int:
        return _STAGED_LEN


class _SideName(bytes):
    """A taken record's payload that names a side file (the record's _SIDE flag): read the file."""

    __slots__ = ()


def _fence() -> None:
    """A full memory barrier: a locked instruction orders our earlier stores before our later loads."""
    _fence_lock.acquire()
    _fence_lock.release()


class ChannelStatistics(msgspec.Struct, frozen=True):
    """What a channel looks like right now (for `dragon status`); read without taking any lock."""

    name: str
    capacity: int
    block_size: int
    ring_bytes: int
    depth: int  # messages waiting
    bytes_used: int  # ring bytes they take
    blocked_receivers: int  # registered waiting receivers of live processes
    blocked_senders: int
    sent: int  # messages ever sent
    received: int
    destroyed: bool
    packed: bool = False  # a message takes its own room, not a block: capacity bounds bytes, not messages


class Channel:
    """A handle on a shared-memory channel, with the blocking face for plain Python code.

    Make one with `Channel.create` (which makes the channel) or `Channel.attach` (by name, from any
    process of the same user). A handle is thread-safe. `close` drops only this handle; `destroy` ends
    the channel for everybody. The trio face (`TrioChannel`) wraps a handle and shares its core.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_held",
        "_lease_seen",
        "_lease_wanted",
        "_leased",
        "_max_inline",
        "_mm",
        "_mv",
        "_rfd",
        "_ring",
        "_ringq",
        "_rlock",
        "_sfd",
        "_slock",
        "_slot",
        "_spin_cap",
        "_spin_s",
        "_w",
        "block_size",
        "capacity",
        "name",
        "packed",
        "ring_bytes",
    )

    def __init__(self, name: str, mm: mmap.mmap, rfd: int, sfd: int) -> None:
        self.name = name
        self._mm = mm
        self._mv = memoryview(mm)
        self._w = self._mv[:HEADER_BYTES].cast("Q")
        if self._w[_W_MAGIC] != MAGIC:
            self._release_views()
            raise ChannelError(f"/dev/shm/{name} is not a dragon channel (bad magic number)")
        self.capacity = int(self._w[_W_CAPACITY])
        self.block_size = int(self._w[_W_BLOCK])
        self.ring_bytes = int(self._w[_W_RING])
        self._ring = self._mv[HEADER_BYTES : HEADER_BYTES + self.ring_bytes]
        self._ringq = self._ring.cast("Q")
        self._max_inline = self.ring_bytes - 8
        self.packed = bool(self._w[_W_PACKED])
        self._slot = 8 if self.packed else 8 + ((self.block_size + 7) & ~7)  # the least room a record takes
        self._rfd, self._sfd = rfd, sfd
        self._rlock, self._slock = threading.Lock(), threading.Lock()
        self._held: frozenset[int] = frozenset()  # fds whose flock this handle keeps (`hold_lock`, a lease)
        self._lease_wanted: frozenset[int] = frozenset()  # `lease_lock` asked, first lock not taken yet
        self._leased: frozenset[int] = frozenset()  # the part of `_held` that is a lease
        self._lease_seen: dict[int, tuple[int, int]] = {}  # fd: (sent or received total, idle looks)
        self._closed = False
        self._spin_s = self._spin_cap = SPIN_MAX_S

    # ----------------------------------------------------------------------------- life cycle

    @classmethod
    def create(
        cls, name: str, *, capacity: int = DEFAULT_CAPACITY, block_size: int = DEFAULT_BLOCK_SIZE, packed: bool = False
    ) -> Channel:
        """Make a new channel named `name` and return a handle on it.

        The channel holds `capacity` messages of up to `block_size` bytes each; a larger message takes
        the room of several, and one larger than the whole ring travels in a side file (see the module
        docstring). `packed`: a message takes only its own room (8 bytes and its payload rounded up
        to 8) rather than a whole block, so the ring of the same size holds at least `capacity`
        messages of `block_size` bytes and more smaller ones; `capacity` is then a bound on bytes, not
        on messages. For channels whose message count is no promise to anyone (a multiprocessing
        queue: small messages take a third of the room, which halves the memory traffic between
        the two processes' caches and leaves more slack for a producer that is late to refill).
        Raises FileExistsError if the name is taken, NoSharedMemory if /dev/shm has not the room for
        its `segment_bytes` (reserved now), ValueError for a capacity below 1 or a block size below
        `MIN_BLOCK_SIZE`.
        """
        if capacity < 1:
            raise ValueError(f"channel capacity must be at least 1 message, not {capacity}")
        if block_size < MIN_BLOCK_SIZE:
            raise ValueError(f"channel block size must be at least {MIN_BLOCK_SIZE} bytes, not {block_size}")
        ring = segment_bytes(capacity, block_size) - HEADER_BYTES
        made: list[str] = []
        try:
            for suffix in (".rbell", ".sbell"):
                os.mkfifo(shm_path(name + suffix), 0o600)
                made.append(name + suffix)
            # Build the segment under a temporary name and rename it into place, so that an attacher
            # sees either no channel or a complete header.
            tmp = f"{name}.new{os.getpid()}"
            fd = os.open(shm_path(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            made.append(tmp)
            try:
                os.ftruncate(fd, HEADER_BYTES + ring)
                reserve(fd, 0, HEADER_BYTES + ring)  # a full /dev/shm is an error here, not a SIGBUS later
                mm = mmap.mmap(fd, HEADER_BYTES + ring)
            finally:
                os.close(fd)
            words = memoryview(mm)[:HEADER_BYTES].cast("Q")
            words[_W_CAPACITY], words[_W_BLOCK], words[_W_RING] = capacity, block_size, ring
            words[_W_PACKED] = int(packed)
            words[_W_MAGIC] = MAGIC
            words.release()
            if os.path.exists(shm_path(name)):
                raise FileExistsError(errno.EEXIST, f"a channel named {name} exists already")
            os.rename(shm_path(tmp), shm_path(name))
            made[-1] = name
            return cls(name, mm, *_open_bells(name))
        except BaseException:
            for entry in made:
                unlink_quietly(entry)
            raise

    @classmethod
    def attach(cls, name: str) -> Channel:
        """A new handle on the existing channel `name`; ChannelDestroyed if there is no such channel."""
        try:
            fd = open_own(name)
        except FileNotFoundError:
            raise ChannelDestroyed(f"no channel named {name}: it was destroyed or never made") from None
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        try:
            bells = _open_bells(name)
        except FileNotFoundError:
            mm.close()
            raise ChannelDestroyed(f"channel {name} was destroyed while attaching") from None
        return cls(name, mm, *bells)

    @property
    def descriptor(self) -> str:
        """What another process passes to `Channel.attach` (the spec's channel sdesc)."""
        return self.name

    def close(self) -> None:
        """Drop this handle (the channel lives on). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._rlock, self._slock:
            self._held = self._leased = frozenset()  # the flocks go with the fds (the watcher lets go)
            self._release_views()
            os.close(self._rfd)
            os.close(self._sfd)

    def destroy(self, *, find_side_files: bool = True) -> None:
        """End the channel for everybody: queued messages are dropped, every waiter (in any process)
        wakes with ChannelDestroyed, and all its /dev/shm entries are removed. Then closes this handle.
        Raises ChannelDestroyed if it was destroyed already.

        Without `find_side_files` the files of messages too large for the ring are left to the caller,
        who removes every entry of its runtime afterwards: finding them lists /dev/shm, and a teardown
        of thousands of channels would list its tens of thousands of entries once for each."""
        try:
            self._mark_destroyed(find_side_files)
        finally:
            self.close()

    def _mark_destroyed(self, find_side_files: bool = True) -> None:
        """Set the `closed` word, wake every sleeper of every process, unlink every entry."""
        self._check_open()
        if self._w[_W_CLOSED]:
            raise ChannelDestroyed(f"channel {self.name} was destroyed already")
        self._w[_W_CLOSED] = 1
        _fence()
        for fd in (self._rfd, self._sfd):  # fill the doorbells: every sleeper wakes and sees `closed`
            try:
                os.write(fd, b"\0" * 65536)
            except BlockingIOError:
                pass
        side_files = entries(self.name + ".x") if find_side_files else []
        for entry in (self.name, self.name + ".rbell", self.name + ".sbell", *side_files):
            unlink_own(entry)

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release_views(self) -> None:
        for view in ("_ringq", "_ring", "_w", "_mv"):
            v = getattr(self, view, None)
            if v is not None:
                v.release()
        self._mm.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelError(f"this handle on channel {self.name} was closed")

    def _destroyed(self) -> ChannelDestroyed:
        return ChannelDestroyed(f"channel {self.name} was destroyed")

    # ----------------------------------------------------------------------------- statistics

    def statistics(self) -> ChannelStatistics:
        """A snapshot of depth, ring use and waiters; counts waiters of live processes only."""
        self._check_open()
        w = self._w
        head, tail = int(w[_W_HEAD]), int(w[_W_TAIL])
        return ChannelStatistics(
            name=self.name,
            capacity=self.capacity,
            block_size=self.block_size,
            ring_bytes=self.ring_bytes,
            depth=self._count_records(tail, head),
            bytes_used=head - tail,
            blocked_receivers=self._live_waiters(_W_RTABLE),
            blocked_senders=self._live_waiters(_W_STABLE),
            sent=int(w[_W_SENT]),
            received=int(w[_W_RECEIVED]),
            destroyed=bool(w[_W_CLOSED]),
            packed=self.packed,
        )

    def approximate_depth(self) -> int:
        """Messages waiting, from the sent and received totals: O(1) and lock-free, where
        `statistics().depth` walks the ring. Too high by one for each process ever killed between
        the two stores of a send or of a receive (see the module docstring)."""
        self._check_open()
        return max(0, int(self._w[_W_SENT]) - int(self._w[_W_RECEIVED]))

    def _count_records(self, tail: int, head: int) -> int:
        """Messages between `tail` and `head`, walking their headers (a snapshot, lock-free)."""
        count, rb = 0, self.ring_bytes
        while tail < head and count <= self.ring_bytes // 8:
            n = self._ringq[(tail % rb) >> 3] & _LEN_MASK
            tail += self._record_bytes(n)
            count += 1
        return count

    def _live_waiters(self, table: int) -> int:
        w = self._w
        return sum(
            int(w[table + 2 * i + 1])
            for i in range(WAITER_SLOTS)
            if w[table + 2 * i] and pid_alive(int(w[table + 2 * i]))
        )

    # ----------------------------------------------------------------------------- core operations
    # Each `_op_*` runs with the direction's lock held and never blocks or awaits.

    def _lock(self, fd: int, blocking: bool) -> bool:
        """Take a direction's flock (True), or, not `blocking`, False if another process holds it.

        A holder keeps it for a few microseconds, so a blocking take first retries for up to
        LOCK_SPIN_S before it sleeps in the kernel: sleeping there and being woken costs each side a
        context switch, many times the wait (two Pool workers sending results, for one)."""
        if fd in self._held:
            return True
        if fd in self._lease_wanted and self._try_lease(fd):
            return True
        self._announce(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not blocking:
                return False
        end = time.perf_counter() + LOCK_SPIN_S
        while time.perf_counter() < end:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True

    def hold_lock(self, side: str) -> None:
        """Keep the process-shared lock of one direction (`side` "send" or "recv") for as long as
        this handle is open, for a channel that only this process sends on (or receives from): a
        Pool's task channel has one sender, its result channel one receiver.

        Each operation of that direction then skips two system calls (a flock and its release),
        which in a process with other busy threads cost far more than their own time: each one lets
        another thread take the GIL. Threads of this process still exclude each other as before.
        Another process's operation of that direction blocks (or, without blocking, fails) until
        this handle is closed or its process dies, when the kernel releases the lock. Idempotent.
        """
        fd, tlock = self._side(side)
        with tlock:
            self._check_open()
            if fd not in self._held:
                self._announce(fd)  # a lease of another handle ends
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._held = self._held | {fd}
            self._leased, self._lease_wanted = self._leased - {fd}, self._lease_wanted - {fd}  # kept for good
        with _leases_lock:
            _holders.add(self)  # for a forked child (`_leave_locks_in_child`)

    def lease_lock(self, side: str) -> None:
        """Keep the process-shared lock of one direction (`side` "send" or "recv") while no other
        handle uses that direction: the common case of a queue with one producer and one consumer
        process. The first operation of that direction on this handle takes the lease, if no other
        handle has ever taken that lock; from then on its operations skip the flock and its release
        (two system calls, about half the cost of a small receive), as with `hold_lock`.

        Unlike `hold_lock` this is safe whoever else comes: a handle that takes the lock without a
        lease first marks the direction as shared in the header (a sticky word), then waits for the
        flock; a watcher thread of the leasing process looks at that word every LEASE_POLL_S and
        gives the lease up for good (under the handle's thread lock, so never within an operation),
        after which everybody takes the flock per operation. So a second consumer (or producer) waits
        once, for about LEASE_POLL_S, and nobody starves. The lease is the flock itself, so a
        leaseholder that dies at any point (or closes its handle) leaves it to the kernel to release,
        and the channel is as consistent as after any crash; a forked child gets a description of
        its own for a leased doorbell (`_leases_after_fork`), so it never keeps its parent's lease.
        The cost: the first other handle waits up to LEASE_POLL_S (more if the leaseholder's process
        is stopped or a C extension keeps its GIL), and the leasing process has one thread that
        wakes every LEASE_POLL_S while it leases. A lease unused for LEASE_IDLE_S is given back
        and taken again by the next operation (a flock and a thread start), so a queue that sits
        idle costs its process no wake-ups. Idempotent; no effect on a held direction."""
        fd, tlock = self._side(side)
        with tlock:
            self._check_open()
            if fd not in self._held:
                self._lease_wanted = self._lease_wanted | {fd}

    def _side(self, side: str) -> tuple[int, threading.Lock]:
        """The doorbell fd whose flock is the lock of direction `side` ("send" or "recv"), and that
        direction's thread lock."""
        if side == "send":
            return self._sfd, self._slock
        if side == "recv":
            return self._rfd, self._rlock
        raise ValueError(f'a channel direction is "send" or "recv", not {side!r}')

    def _announce(self, fd: int) -> None:
        """Before taking the flock of `fd` without a lease: mark that direction shared, which ends
        any other handle's lease of it (see `lease_lock`). A store once per channel, a load after."""
        word = _W_RSHARED if fd == self._rfd else _W_SSHARED
        if not self._w[word]:
            self._w[word] = 1

    def _try_lease(self, fd: int) -> bool:
        """Take the lease `lease_lock` asked for (the direction's thread lock held): True if this
        handle now keeps the flock of `fd`. Tried once: no lease once the direction is shared."""
        self._lease_wanted = self._lease_wanted - {fd}
        w, word = self._w, (_W_RSHARED if fd == self._rfd else _W_SSHARED)
        if w[word]:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another handle is taking it (it announced), or holds or leases it
            return False
        # The flock call is a full barrier: a handle that announced before we got the lock is seen
        # here; one that announces later is seen by the watcher. The lease is recorded before the
        # watcher is asked to look after it, so that a watcher deciding at that very moment that
        # this handle leases nothing cannot drop it (see `_watch_leases`).
        if w[word]:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        self._held, self._leased = self._held | {fd}, self._leased | {fd}
        if not _watch_lease(self):
            self._held, self._leased = self._held - {fd}, self._leased - {fd}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True

    def _keep_lease(self) -> bool:
        """The watcher's look: give up each lease whose direction became shared (for good), and each
        one unused for LEASE_IDLE_S (to be taken again by the next operation, so that an idle queue
        costs its process no wake-ups); False once this handle leases nothing (any more).

        Never waits for a direction's thread lock: an operation holding it may be waiting for a
        flock that another handle's lease keeps, maybe one this same watcher must give up first.
        A busy direction is looked at again at the next poll."""
        w = self._w
        busy = False
        for fd, tlock, word, count in (
            (self._rfd, self._rlock, _W_RSHARED, _W_RECEIVED),
            (self._sfd, self._slock, _W_SSHARED, _W_SENT),
        ):
            if fd not in self._leased:
                continue
            if not tlock.acquire(blocking=False):
                busy = True
                continue
            try:
                if self._closed or fd not in self._leased:
                    continue
                if w[word]:  # shared: for good
                    self._end_lease(fd)
                    continue
                seen, idle = self._lease_seen.get(fd, (-1, 0))
                idle = idle + 1 if int(w[count]) == seen else 0
                if idle * LEASE_POLL_S >= LEASE_IDLE_S:  # idle: the next operation takes it again
                    self._end_lease(fd)
                    self._lease_wanted = self._lease_wanted | {fd}
                    self._lease_seen.pop(fd, None)
                else:
                    self._lease_seen[fd] = (int(w[count]), idle)
            finally:
                tlock.release()
        return busy or bool(self._leased)

    def _end_lease(self, fd: int) -> None:
        """Give the lease of `fd` back (its thread lock held)."""
        self._leased, self._held = self._leased - {fd}, self._held - {fd}
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _leave_locks_in_child(self) -> None:
        """In a forked child: give each doorbell fd whose flock this handle keeps (held or leased) a
        file description of its own (a flock belongs to the description, which the parent still
        uses), so the child keeps nothing and takes the lock per operation, excluded by the parent."""
        if self._closed:
            return
        for fd, suffix in ((self._rfd, ".rbell"), (self._sfd, ".sbell")):
            if fd not in self._held:
                continue
            try:
                fresh = open_own(self.name + suffix, os.O_RDWR | os.O_NONBLOCK)
            except OSError:  # destroyed: any use of the handle fails anyway
                fresh = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                os.dup2(fresh, fd, inheritable=False)
            finally:
                os.close(fresh)
            self._leased, self._held = self._leased - {fd}, self._held - {fd}

    def limit_spin(self, max_s: float) -> None:
        """Spin at most `max_s` seconds (0: not at all) before a blocking receive on this handle
        sleeps. A thread spins holding the GIL, so a receiver whose process has other busy threads
        (a Pool's result thread) should not: they would wait for it instead of working."""
        self._spin_cap = max(0.0, min(max_s, SPIN_MAX_S))
        self._spin_s = min(self._spin_s, self._spin_cap)

    def _unlock(self, fd: int) -> None:
        if fd not in self._held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:  # no system call: fence the publishing store from the waiter count read next
            _fence()

    def _op_put(self, payload: Buffer, flags: int) -> bool:
        """Append one record if there is room; False if the channel is full."""
        w = self._w
        if w[_W_CLOSED]:
            raise self._destroyed()
        n = len(payload)
        rb = self.ring_bytes
        head = w[_W_HEAD]
        need = 8 + ((n + 7) & ~7)
        if need < self._slot:
            need = self._slot
        used = head - w[_W_TAIL]
        if not 0 <= used <= rb - need:
            if not 0 <= used <= rb:  # not full: broken (a head behind its tail, or past a whole ring)
                raise self._corrupted(n, head, w[_W_TAIL])
            return False
        pos = head % rb
        self._ringq[pos >> 3] = n | flags
        p = pos + 8
        if p == rb:
            p = 0
        end = p + n
        if end <= rb:
            self._ring[p:end] = payload
        else:
            k = rb - p
            mv = memoryview(payload)
            self._ring[p:] = mv[:k]
            self._ring[: n - k] = mv[k:]
        w[_W_SENT] += 1
        w[_W_HEAD] = head + need  # publish: a single aligned store
        return True

    def _op_put_many(self, prepared: Sequence[tuple[Buffer, int]], start: int) -> int:
        """Append records from `prepared[start:]` while they fit; publish `head` once for all of them
        (one store: a crash before it leaves none of them visible). Returns the index of the first
        record that did not fit (len(prepared) if all did)."""
        w = self._w
        if w[_W_CLOSED]:
            raise self._destroyed()
        rb, slot, ring, ringq = self.ring_bytes, self._slot, self._ring, self._ringq
        head = w[_W_HEAD]
        free = rb - (head - w[_W_TAIL])
        if not 0 <= free <= rb:
            raise self._corrupted(0, head, w[_W_TAIL])
        i = start
        for payload, flags in prepared[start:]:
            n = len(payload)
            need = 8 + ((n + 7) & ~7)
            if need < slot:
                need = slot
            if free < need:
                break
            pos = head % rb
            ringq[pos >> 3] = n | flags
            p = pos + 8
            if p == rb:
                p = 0
            end = p + n
            if end <= rb:
                ring[p:end] = payload
            else:
                k = rb - p
                mv = memoryview(payload)
                ring[p:] = mv[:k]
                ring[: n - k] = mv[k:]
            head += need
            free -= need
            i += 1
        if i > start:
            w[_W_SENT] += i - start
            w[_W_HEAD] = head  # publish them all: a single aligned store
        return i

    def _op_take_many(self, limit: int) -> list[bytes]:
        """Remove up to `limit` records (payloads as `_op_take`); free them with one store of `tail`."""
        w = self._w
        if w[_W_CLOSED]:
            raise self._destroyed()
        rb, slot, ring, ringq = self.ring_bytes, self._slot, self._ring, self._ringq
        tail, head = w[_W_TAIL], w[_W_HEAD]
        out: list[bytes] = []
        if not 0 <= head - tail <= rb:
            raise self._corrupted(0, head, tail)
        while tail < head and len(out) < limit:
            pos = tail % rb
            word = ringq[pos >> 3]
            n = word & _LEN_MASK
            p = pos + 8
            if p == rb:
                p = 0
            end = p + n
            data = bytes(ring[p:end]) if end <= rb else bytes(ring[p:]) + bytes(ring[: end - rb])
            out.append(_SideName(data) if word & _SIDE else data)
            tail += max(slot, 8 + ((n + 7) & ~7))
        if tail > head:  # the last record said it was longer than what is published: nothing is taken
            raise self._corrupted(n, head, tail - max(slot, 8 + ((n + 7) & ~7)))
        if out:
            w[_W_TAIL] = tail  # free them all: a single aligned store
            w[_W_RECEIVED] += len(out)
        return out

    def _op_take(self) -> bytes | None:
        """Remove the oldest record: its payload (a `_SideName` if it names a side file), or None if
        the channel is empty."""
        # The per-message hot path of every receive: slicing the mmap itself makes the bytes in one
        # step (a memoryview slice would make a view first), and no builtin is called.
        w = self._w
        if w[_W_CLOSED]:
            raise self._destroyed()
        tail, head = w[_W_TAIL], w[_W_HEAD]
        if head == tail:
            return None
        rb = self.ring_bytes
        pos = tail % rb
        word = self._ringq[pos >> 3]
        n = word & _LEN_MASK
        need = (n + 15) & ~7  # the record's header and payload
        if not need <= head - tail <= rb:  # a record longer than what is published, or a broken head
            raise self._corrupted(n, head, tail)
        p = pos + 8 if pos + 8 != rb else 0
        end = p + n
        if end <= rb:
            out = self._mm[HEADER_BYTES + p : HEADER_BYTES + end]
        else:
            out = self._mm[HEADER_BYTES + p : HEADER_BYTES + rb] + self._mm[HEADER_BYTES : HEADER_BYTES + end - rb]
        w[_W_TAIL] = tail + (need if need > self._slot else self._slot)  # free it: a single aligned store
        w[_W_RECEIVED] += 1
        return _SideName(out) if word & _SIDE else out

    def _corrupted(self, n: int, head: int, tail: int) -> ChannelCorrupted:
        """What a receive raises for a record no sender wrote (the tail is not moved past it)."""
        return ChannelCorrupted(
            f"channel {self.name} is corrupt: its next record says it is {n} bytes long and {head - tail} bytes "
            f"are published, in a ring of {self.ring_bytes} bytes; something other than the runtime wrote "
            "into its shared memory (destroy the channel)"
        )

    def _record_bytes(self, n: int) -> int:
        """The ring bytes a record of an `n`-byte payload takes."""
        return max(self._slot, 8 + ((n + 7) & ~7))

    def _has_room(self, n: int) -> bool:
        w = self._w
        return self.ring_bytes - (w[_W_HEAD] - w[_W_TAIL]) >= self._record_bytes(n)

    def _register(self, table: int, count_word: int, delta: int, want: int = 0) -> None:
        """Add `delta` to this process's entry in a waiter table (its lock held); prune dead pids.

        A sender registering (`delta` > 0) also lowers _W_SWANT to the room it waits for (`want`
        bytes; 0: one slot), stored before the count, so a receiver that sees the count sees it too.
        It is not raised when a waiter leaves: a stale low value only costs wake-ups for nothing."""
        w, pid = self._w, os.getpid()
        if count_word == _W_SWAIT and delta > 0:
            want = max(want, self._slot)
            w[_W_SWANT] = want if not w[_W_SWAIT] else min(want, w[_W_SWANT])
        owners = w[table : table + 2 * WAITER_SLOTS : 2].tolist()
        if pid in owners:
            slot = table + 2 * owners.index(pid)
            w[slot + 1] += delta
            if w[slot + 1] == 0:
                w[slot] = 0
        elif delta > 0 and not any(owners):  # nobody else is registered (the usual case): no pruning
            w[table], w[table + 1] = pid, delta
        elif delta > 0:
            free = -1
            for i, owner in enumerate(owners):
                if owner and not pid_alive(owner):  # a dead waiter: take it out of the count
                    slot = table + 2 * i
                    w[count_word] -= w[slot + 1]
                    w[slot] = w[slot + 1] = 0
                    owner = 0
                if owner == 0 and free < 0:
                    free = table + 2 * i
            if free >= 0:
                w[free], w[free + 1] = pid, delta
            # With the table full the process waits counted but not in the table, and so is still
            # woken; it only cannot be pruned should it die while waiting.
        w[count_word] += delta

    def _wake_senders(self) -> None:
        """After a take, with senders registered: ring their doorbell if there is the room the least
        demanding one waits for (_W_SWANT). Each take looks, and the one that empties the ring sees
        all of it free, so no sender is left asleep with room it waits for."""
        w = self._w
        if self.ring_bytes - (w[_W_HEAD] - w[_W_TAIL]) >= w[_W_SWANT]:
            self._ring_bell(self._sfd)

    def _ring_bell(self, fd: int) -> None:
        try:
            os.write(fd, b"\1")
        except BlockingIOError:  # the FIFO is full of wake-ups already
            pass

    def _drain_bell(self, fd: int) -> None:
        try:
            os.read(fd, 1)
        except BlockingIOError:
            pass

    def _write_side_file(self, data: Buffer) -> bytes:
        """Write a message too large for the ring to its own file; returns the name suffix."""
        while True:
            # unguessable: /dev/shm is listed and shared (_shm.py); os.urandom is what secrets.token_hex
            # uses, without importing secrets (hmac, hashlib) into every user process (issue 12.4)
            suffix = f".x{os.urandom(8).hex()}"
            try:
                fd = os.open(shm_path(self.name + suffix), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:  # a one in 2**64 chance
                continue
        try:
            mv, done = memoryview(data), 0
            while done < len(mv):
                done += os.write(fd, mv[done:])
        except BaseException as exc:
            os.close(fd)
            unlink_quietly(self.name + suffix)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise NoSharedMemory(len(data)) from None
            raise
        os.close(fd)
        return suffix.encode()

    def _read_side_file(self, suffix: bytes) -> bytes:
        if _SIDE_SUFFIX.fullmatch(suffix) is None:
            raise ChannelCorrupted(
                f"channel {self.name} is corrupt: a record names a side file {excerpt(suffix)} "
                "that no sender makes (something other than the runtime wrote into it)"
            )
        name = self.name + suffix.decode()
        try:
            fd = open_own(name, os.O_RDONLY)
        except FileNotFoundError:
            raise self._destroyed() from None
        try:
            unlink_quietly(name)
            size = os.fstat(fd).st_size
            data = os.read(fd, size)
            if len(data) < size:  # rare: read(2) may return less than asked on a huge file
                data += b"".join(iter(lambda: os.read(fd, size), b""))
            return data
        finally:
            os.close(fd)

    def stage(self, data: Buffer) -> Buffer:
        """`data` ready to be sent later (by `send` or `send_many`, from any thread of this process):
        itself if it fits the ring, else written to its side file now, and the name of that file.

        For a sender that hands messages to another thread (a queue's feeder): what can fail about a
        large message (a full /dev/shm: NoSharedMemory) then fails in the caller, which learns of it.
        A staged message that is never sent leaves its side file until the channel is destroyed.
        """
        if len(data) <= self._max_inline:
            return data
        self._check_open()
        return _Staged(self._write_side_file(data))

    def _prepare(self, data: Buffer) -> tuple[Buffer, int]:
        self._check_open()
        if data.__class__ is _Staged:
            return bytes(data), _SIDE
        if len(data) > self._max_inline:
            return self._write_side_file(data), _SIDE
        return data, 0

    def _discard(self, payload: Buffer, flags: int) -> None:
        if flags & _SIDE:
            unlink_quietly(self.name + bytes(payload).decode())

    # ----------------------------------------------------------------------------- blocking face

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one message (any size) and return once it is in the channel.

        Blocks while the channel is full, without using CPU, for at most `timeout` seconds (None:
        forever; 0: do not block). Raises ChannelFull on timeout, ChannelDestroyed if the channel is
        destroyed before or while waiting. The message is either in the channel or not sent at all.
        """
        payload, flags = self._prepare(data)
        try:
            self._send_blocking(payload, flags, timeout)
        except BaseException:
            self._discard(payload, flags)
            raise

    def send_nowait(self, data: Buffer) -> None:
        """Send without blocking; ChannelFull if there is no room."""
        self.send(data, 0)

    def try_send(self, data: Buffer) -> bool:
        """Send `data` if there is room now: True, or False with nothing sent (no room, the send lock
        busy, or a message too large for the ring, which is left to `send` so that its side file is
        written once). Never waits, not even for the send lock.

        The lean form of `send_nowait` for a caller with a fallback (a Queue's `put` hands the
        message to its feeder thread): no exception, deadline or waiter registration."""
        if self._closed:
            self._check_open()
        if len(data) > self._max_inline:  # a `_Staged` too (its `len`)
            return False
        sfd, tlock = self._sfd, self._slock
        tlock.acquire()  # not `with`: see `recv`
        try:
            if not self._lock(sfd, False):  # another handle sends, or leases the lock: the fallback
                return False
            try:
                sent = self._op_put(data, 0)
            finally:
                self._unlock(sfd)
        finally:
            tlock.release()
        if sent and self._w[_W_RWAIT]:
            self._ring_bell(self._rfd)
        return sent

    def _send_blocking(self, payload: Buffer, flags: int, timeout: float | None, want: int = 0) -> None:
        """Send one message, waiting for room as `send` says. A full channel is left alone until it
        has room for the message, or for `want` bytes (at most the ring) if that is more (a batch
        waits for room for many: the receivers then wake it once, not once per message taken)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        w, sfd = self._w, self._sfd
        want = min(self.ring_bytes, max(want, self._record_bytes(len(payload))))
        registered = False
        while True:
            with self._slock:
                self._lock(sfd, True)
                try:
                    if registered:
                        self._register(_W_STABLE, _W_SWAIT, -1)
                        registered = False
                    # Room for the message but not `want` yet: wait on (a batch gains nothing from
                    # sending one message at a time, each costing the receiver a wake-up call).
                    sent = (self.ring_bytes - (w[_W_HEAD] - w[_W_TAIL]) >= want or timeout == 0) and self._op_put(
                        payload, flags
                    )
                    if not sent and timeout != 0:
                        self._register(_W_STABLE, _W_SWAIT, 1, want)
                        registered = True
                        _fence()
                        if self.ring_bytes - (w[_W_HEAD] - w[_W_TAIL]) >= want:
                            continue  # room appeared: unregister and put, in the next round
                finally:
                    self._unlock(sfd)
            if sent:
                if w[_W_RWAIT]:
                    self._ring_bell(self._rfd)
                return
            try:
                self._sleep(
                    sfd,
                    deadline,
                    lambda: ChannelFull(
                        f"channel {self.name} stayed full for {timeout} s "
                        f"({self.capacity} messages / {self.ring_bytes} bytes)"
                    ),
                )
            except BaseException:
                if registered:
                    with self._slock:
                        self._lock(sfd, True)
                        self._register(_W_STABLE, _W_SWAIT, -1)
                        self._unlock(sfd)
                raise

    def send_many(self, messages: Sequence[Buffer], timeout: float | None = None) -> None:
        """Send several messages, in order, taking the send lock once per run of messages that fit
        (at most PUBLISH_EVERY).

        The batch form of `send` (the same guarantees for each message, the same errors): when the
        channel is full it waits as `send` does, at most `timeout` seconds for each message that has
        to wait. On an error, the messages before the failing one were sent, the rest were not.
        """
        self._check_open()
        inline = self._max_inline
        start, total = 0, len(messages)
        while start < total:
            # `_prepare` written out for messages that fit the ring (all but huge ones)
            chunk = [
                (data, 0) if len(data) <= inline else self._prepare(data)
                for data in messages[start : start + PUBLISH_EVERY]
            ]
            i = 0
            try:
                while i < len(chunk):
                    with self._slock:
                        self._lock(self._sfd, True)
                        try:
                            i = self._op_put_many(chunk, i)
                        finally:
                            self._unlock(self._sfd)
                    if self._w[_W_RWAIT]:
                        self._ring_bell(self._rfd)
                    if i < len(chunk):  # full: wait for room as `send` does, for this one message
                        # Without a timeout, for room for the rest too (as much as this one each,
                        # an estimate), up to half the ring: one wake-up per half ring instead of
                        # one per message taken. With one, only for this message's room, which the
                        # timeout is about.
                        want = (
                            0
                            if timeout is not None
                            else min(self.ring_bytes // 2, (total - start - i) * self._record_bytes(len(chunk[i][0])))
                        )
                        self._send_blocking(*chunk[i], timeout, want)
                        i += 1
            except BaseException:
                for payload, flags in chunk[i:]:
                    self._discard(payload, flags)
                raise
            start += len(chunk)

    def recv_many(self, max_messages: int, timeout: float | None = None) -> list[bytes]:
        """Receive up to `max_messages` messages at once: waits (as `recv`) for the first one, then
        takes whatever else is waiting under one lock. Returns them oldest first."""
        out = [self.recv(timeout)]
        with self._rlock:
            self._lock(self._rfd, True)
            try:
                taken = self._op_take_many(max_messages - 1)
            finally:
                self._unlock(self._rfd)
        if taken and self._w[_W_SWAIT]:
            self._wake_senders()
        out.extend(self._read_side_file(data) if data.__class__ is _SideName else data for data in taken)
        return out

    def recv(self, timeout: float | None = None) -> bytes:
        """Receive the oldest message, blocking while the channel is empty.

        Waits at most `timeout` seconds (None: forever; 0: do not block) without busy-waiting beyond
        a short adaptive spin. Raises ChannelEmpty on timeout, ChannelDestroyed if the channel is
        destroyed before or while waiting.
        """
        # The first attempt is `_recv_once` written out (and `_unlock`, `_wake_senders`): most
        # receives end here, and each call level saved is a few percent of a receive (about 2 µs,
        # half of it the two flock calls; under 1 µs with the lock kept, `hold_lock` or `lease_lock`).
        # A producer that ran ahead waits for much room, so every receive meanwhile checks for it.
        if self._closed:
            self._check_open()
        rfd, w, tlock = self._rfd, self._w, self._rlock
        tlock.acquire()  # not `with`: its exit costs 0.09 µs more than `release`, a tenth of a receive
        try:
            if rfd not in self._held:
                if w[_W_RSHARED] and rfd not in self._lease_wanted:  # the common shared case, inline
                    try:
                        fcntl.flock(rfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        self._lock(rfd, True)
                else:  # first receive of a handle: take a lease, or announce
                    self._lock(rfd, True)
            try:
                data = self._op_take()
            finally:
                if rfd not in self._held:
                    fcntl.flock(rfd, fcntl.LOCK_UN)
                # else kept: no system call. The fence `_unlock` would make (our store of tail
                # before our load of the waiting senders below) is the release of `_rlock` just
                # after, a locked instruction as in `_fence`.
        finally:
            tlock.release()
        if data is not None:
            if w[_W_SWAIT] and self.ring_bytes - (w[_W_HEAD] - w[_W_TAIL]) >= w[_W_SWANT]:
                self._ring_bell(self._sfd)  # `_wake_senders` written out
            return self._read_side_file(data) if data.__class__ is _SideName else data
        if timeout == 0:
            raise ChannelEmpty(f"channel {self.name} is empty")
        # Spin a little: a partner on the other CPU often answers within microseconds.
        spin_end = time.perf_counter() + self._spin_s
        while time.perf_counter() < spin_end:
            if w[_W_HEAD] != w[_W_TAIL] or w[_W_CLOSED]:
                got = self._recv_once(False)
                if got is not None:
                    self._spin_s = min(self._spin_cap, self._spin_s * 2)
                    return got
        self._spin_s = max(min(SPIN_MIN_S, self._spin_cap), self._spin_s / 2)
        return self._recv_sleeping(timeout)

    def recv_nowait(self) -> bytes:
        """Receive without blocking; ChannelEmpty if there is no message."""
        return self.recv(0)

    def _recv_once(self, blocking: bool = True) -> bytes | None:
        """One try: the oldest message, or None if there is none (or, not `blocking`, if another
        receiver holds the lock: a spinning receiver then goes on spinning instead of sleeping in
        the kernel until that one is done, which costs two context switches)."""
        rfd = self._rfd
        with self._rlock:
            if not self._lock(rfd, blocking):
                return None
            try:
                got = self._op_take()
            finally:
                self._unlock(rfd)
        return None if got is None else self._finish_take(got)

    def _finish_take(self, got: bytes) -> bytes:
        """After a take (lock released): wake a waiting sender, fetch a side file."""
        if self._w[_W_SWAIT]:
            self._wake_senders()
        return self._read_side_file(got) if got.__class__ is _SideName else got

    def _recv_sleeping(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        rfd = self._rfd
        while True:
            with self._rlock:
                self._lock(rfd, True)
                try:
                    got = self._op_take()
                    if got is None:
                        self._register(_W_RTABLE, _W_RWAIT, 1)
                        _fence()
                        w = self._w
                        if w[_W_HEAD] != w[_W_TAIL] or w[_W_CLOSED]:
                            self._register(_W_RTABLE, _W_RWAIT, -1)
                            continue
                finally:
                    self._unlock(rfd)
            if got is not None:
                return self._finish_take(got)
            try:
                self._sleep(
                    rfd, deadline, lambda: ChannelEmpty(f"no message arrived on channel {self.name} within {timeout} s")
                )
            finally:
                with self._rlock:
                    self._lock(rfd, True)
                    self._register(_W_RTABLE, _W_RWAIT, -1)
                    self._unlock(rfd)

    def _sleep(self, fd: int, deadline: float | None, timed_out: Callable[[], ChannelError]) -> None:
        """Sleep until the doorbell `fd` rings (consuming one ring), the deadline, or SAFETY_WAKE_S."""
        wait_s = SAFETY_WAKE_S
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise timed_out()
            wait_s = min(wait_s, left)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(wait_s * 1000):
            self._drain_bell(fd)


_leases: weakref.WeakSet[Channel] = weakref.WeakSet()  # handles of this process that lease a lock
_leases_lock = threading.Lock()
_lease_watcher: threading.Thread | None = None
_holders: weakref.WeakSet[Channel] = weakref.WeakSet()  # handles of this process that hold a lock (`hold_lock`)


def _watch_lease(chan: Channel) -> bool:
    """Have the watcher thread look after `chan`'s new lease (starting it if need be); False if no
    thread can be started (interpreter shutdown): then there is no lease."""
    global _lease_watcher
    with _leases_lock:
        _leases.add(chan)
        if _lease_watcher is None:
            thread = threading.Thread(target=_watch_leases, name="ChannelLeaseWatcher", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                _leases.discard(chan)
                return False
            _lease_watcher = thread
    return True


def _watch_leases() -> None:
    """The watcher thread: every LEASE_POLL_S, end the leases whose direction became shared (see
    `Channel.lease_lock`); exits when this process leases nothing."""
    global _lease_watcher
    try:
        while True:
            time.sleep(LEASE_POLL_S)
            with _leases_lock:
                chans = list(_leases)
                if not chans:
                    _lease_watcher = None
                    return
            for chan in chans:
                if not chan._keep_lease():
                    with _leases_lock:  # a lease taken since is recorded before it is added here
                        if not chan._leased:
                            _leases.discard(chan)
    finally:
        with _leases_lock:
            if _lease_watcher is threading.current_thread():  # died of an error: let the next lease start one
                _lease_watcher = None


def _leases_after_fork() -> None:
    """In a forked child: no lease or held lock of the parent's lives on (nor its watcher thread)."""
    global _leases_lock, _lease_watcher, _fence_lock
    _leases_lock, _lease_watcher, _fence_lock = threading.Lock(), None, threading.Lock()
    for chan in list(_leases):
        chan._leave_locks_in_child()
    for chan in list(_holders):
        chan._leave_locks_in_child()
    _leases.clear()
    _holders.clear()


os.register_at_fork(after_in_child=_leases_after_fork)


def segment_bytes(capacity: int, block_size: int) -> int:
    """The shared memory a channel of `capacity` blocks of `block_size` bytes takes (its header and
    ring; its side files apart), all reserved when it is made."""
    return HEADER_BYTES + capacity * (8 + ((block_size + 7) & ~7))


def _open_bells(name: str) -> tuple[int, int]:
    """Open both doorbell FIFOs read-write, non-blocking (never blocks, whoever else has them open)."""
    flags = os.O_RDWR | os.O_NONBLOCK
    rfd = open_own(name + ".rbell", flags)
    try:
        return rfd, open_own(name + ".sbell", flags)
    except BaseException:
        os.close(rfd)
        raise
