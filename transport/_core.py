"""A handle on a shared-memory channel: its life cycle, and the core both faces drive (spec §6).

A channel is an ordered, bounded, many-to-many message queue between processes on one node. It lives
in three /dev/shm entries named after the channel (all mode 0600):

- ``NAME``: the segment, a 4 KiB header of u64 control words followed by a byte ring (`_ring`);
- ``NAME.rbell``: a FIFO that receivers sleep on ("data arrived"); ``flock`` on it is the receive lock;
- ``NAME.sbell``: a FIFO that senders sleep on ("room freed"); ``flock`` on it is the send lock.

`ChannelCore` is one class in layers, each in its module: the locks and leases (`_leases`), waiting
(`_waiting`), the ring and its records (`_ring`), and here the life cycle. A face (the blocking
`Channel`, the trio `TrioChannel`) calls `take`/`put` once per operation; when it must wait, it
calls them with `wait` (which registers it as a waiter if there is still nothing), sleeps on a
doorbell its own way, then tries again (`waited`) or gives up (`end_wait`).

Destroying a channel sets the ``closed`` word, fills both FIFOs so every sleeper wakes, and unlinks
every entry: every waiter and every later call then raises `ChannelDestroyed`, while mappings
already made stay valid until their handles close.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from typing import Final, TypeVar

import msgspec

from ._errors import ChannelDestroyed, ChannelError
from ._layout import (
    HEADER_BYTES,
    MAGIC,
    W_BLOCK,
    W_CAPACITY,
    W_CLOSED,
    W_HEAD,
    W_MAGIC,
    W_PACKED,
    W_RECEIVED,
    W_RING,
    W_RTABLE,
    W_SEM,
    W_SENT,
    W_STABLE,
    W_TAIL,
    fence,
    segment_bytes,
)
from ._ring import _Ring
from ._shm import entries, open_own, reserve, shm_path, unlink_own, unlink_quietly

DEFAULT_CAPACITY: Final = 100  # spec §6: default capacity 100 messages
DEFAULT_BLOCK_SIZE: Final = 1024  # spec §6: default block size 1024 bytes
MIN_BLOCK_SIZE: Final = 256  # spec §6: minimum block size

C = TypeVar("C", bound="ChannelCore")


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


class ChannelCore(_Ring):
    """A handle on a shared-memory channel, without a face: what `Channel` and `TrioChannel` share.

    Make one with `create` (which makes the channel) or `attach` (by name, from any process of the
    same user). A handle is thread-safe. `close` drops only this handle; `destroy` ends the channel
    for everybody."""

    __slots__ = ("__weakref__",)

    def __init__(self, name: str, mm: mmap.mmap, rbell: int, sbell: int) -> None:
        self.name = name
        self._mm = mm
        self._mv = memoryview(mm)
        self._w = self._mv[:HEADER_BYTES].cast("Q")
        if self._w[W_MAGIC] != MAGIC:
            self._release_views()
            raise ChannelError(f"/dev/shm/{name} is not a dragon channel (bad magic number)")
        self.capacity = int(self._w[W_CAPACITY])
        self.block_size = int(self._w[W_BLOCK])
        self.ring_bytes = int(self._w[W_RING])
        self._ring = self._mv[HEADER_BYTES : HEADER_BYTES + self.ring_bytes]
        self._ringq = self._ring.cast("Q")
        self.max_inline = self.ring_bytes - 8
        self.packed = bool(self._w[W_PACKED])
        self._slot = 8 if self.packed else 8 + ((self.block_size + 7) & ~7)
        self.rbell, self.sbell = rbell, sbell
        self._rlock, self._slock = threading.Lock(), threading.Lock()
        self._held = frozenset()
        self._lease_wanted = frozenset()
        self._leased = frozenset()
        self._lease_seen = {}
        self._closed = False

    @classmethod
    def create(
        cls: type[C],
        name: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        block_size: int = DEFAULT_BLOCK_SIZE,
        packed: bool = False,
    ) -> C:
        """Make a new channel named `name` and return a handle on it.

        The channel holds `capacity` messages of up to `block_size` bytes each; a larger message takes
        the room of several, and one larger than the whole ring travels in a side file. `packed`: a
        message takes only its own room (8 bytes and its payload rounded up to 8) rather than a
        whole block, so the ring of the same size holds at least `capacity` messages of `block_size`
        bytes and more smaller ones; `capacity` is then a bound on bytes, not on messages. For
        channels whose message count is no promise to anyone (a multiprocessing queue: small
        messages take a third of the room, which halves the memory traffic between the two
        processes' caches and leaves more slack for a producer that is late to refill).
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
            words[W_CAPACITY], words[W_BLOCK], words[W_RING] = capacity, block_size, ring
            words[W_PACKED] = int(packed)
            words[W_MAGIC] = MAGIC
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
    def attach(cls: type[C], name: str) -> C:
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
        """What another process passes to `attach` (the spec's channel sdesc)."""
        return self.name

    @property
    def closed(self) -> bool:
        """Whether this handle was closed (the channel may live on)."""
        return self._closed

    def close(self) -> None:
        """Drop this handle (the channel lives on). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._rlock, self._slock:
            self._held = self._leased = frozenset()  # the flocks go with the fds (the watcher lets go)
            self._release_views()
            os.close(self.rbell)
            os.close(self.sbell)

    def destroy(self, *, find_side_files: bool = True) -> None:
        """End the channel for everybody: queued messages are dropped, every waiter (in any process)
        wakes with ChannelDestroyed, and all its /dev/shm entries are removed. Then closes this handle.
        Raises ChannelDestroyed if it was destroyed already.

        Without `find_side_files` the files of messages too large for the ring are left to the caller,
        who removes every entry of its runtime afterwards: finding them lists /dev/shm, and a teardown
        of thousands of channels would list its tens of thousands of entries once for each."""
        try:
            self.mark_destroyed(find_side_files)
        finally:
            self.close()

    def mark_destroyed(self, find_side_files: bool = True) -> None:
        """`destroy` without closing this handle: set the `closed` word, wake every sleeper of every
        process, unlink every entry."""
        self.check_open()
        if self._w[W_CLOSED]:
            raise ChannelDestroyed(f"channel {self.name} was destroyed already")
        self._w[W_CLOSED] = 1
        fence()
        for fd in (self.rbell, self.sbell):  # fill the doorbells: every sleeper wakes and sees `closed`
            try:
                os.write(fd, b"\0" * 65536)
            except BlockingIOError:
                pass
        side_files = entries(self.name + ".x") if find_side_files else []
        if self._w[W_SEM]:  # a synchronization object's semaphore (`records`)
            side_files.append("sem." + self.name)
        for entry in (self.name, self.name + ".rbell", self.name + ".sbell", *side_files):
            unlink_own(entry)

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release_views(self) -> None:
        for view in ("_ringq", "_ring", "_w", "_mv"):
            v = getattr(self, view, None)
            if v is not None:
                v.release()
        self._mm.close()

    def statistics(self) -> ChannelStatistics:
        """A snapshot of depth, ring use and waiters; counts waiters of live processes only."""
        self.check_open()
        w = self._w
        head, tail = int(w[W_HEAD]), int(w[W_TAIL])
        return ChannelStatistics(
            name=self.name,
            capacity=self.capacity,
            block_size=self.block_size,
            ring_bytes=self.ring_bytes,
            depth=self._count_records(tail, head),
            bytes_used=head - tail,
            blocked_receivers=self._live_waiters(W_RTABLE),
            blocked_senders=self._live_waiters(W_STABLE),
            sent=int(w[W_SENT]),
            received=int(w[W_RECEIVED]),
            destroyed=bool(w[W_CLOSED]),
            packed=self.packed,
        )

    def approximate_depth(self) -> int:
        """Messages waiting, from the sent and received totals: O(1) and lock-free, where
        `statistics().depth` walks the ring. Too high by one for each process ever killed between
        the two stores of a send or of a receive."""
        self.check_open()
        return max(0, int(self._w[W_SENT]) - int(self._w[W_RECEIVED]))


def _open_bells(name: str) -> tuple[int, int]:
    """Open both doorbell FIFOs read-write, non-blocking (never blocks, whoever else has them open)."""
    flags = os.O_RDWR | os.O_NONBLOCK
    rfd = open_own(name + ".rbell", flags)
    try:
        return rfd, open_own(name + ".sbell", flags)
    except BaseException:
        os.close(rfd)
        raise
