"""The layout of a channel's shared memory, and the state every part of the core shares.

A channel's segment is a 4 KiB header of u64 control words followed by a byte ring (see `_ring`).
Words written by different parties sit on different 64-byte lines. `_Handle` declares the state of
one handle; the parts of the core (`_leases`, `_waiting`, `_ring`, `_core`) are layers of one class
built on it, so that the per-message paths stay single method calls.

Memory ordering: this relies on x86-64 (total store order; aligned 8-byte stores are atomic; a
locked instruction or a system call is a full barrier). On another architecture the fences would
have to be real ones.
"""

from __future__ import annotations

import mmap
import os
import threading
from typing import Final

from ._errors import ChannelError

Buffer = bytes | bytearray | memoryview
"""What a channel sends: anything with the buffer protocol that `len` measures in bytes."""

MAGIC: Final = 0x4452_4743_4841_4E31  # "DRGCHAN1"
HEADER_BYTES: Final = 4096
WAITER_SLOTS: Final = 60  # processes that can be registered as waiting, per direction

# Header words (u64).
W_MAGIC, W_CAPACITY, W_BLOCK, W_RING, W_PACKED = 0, 2, 3, 4, 5
W_HEAD, W_SENT = 8, 9  # written by the sender holding the send lock
W_TAIL, W_RECEIVED = 16, 17  # written by the receiver holding the receive lock
W_RWAIT = 24  # registered receivers (under the receive lock)
W_SWAIT = 32  # registered senders (under the send lock)
W_SWANT = 33  # the least room (bytes) a registered sender waits for: receivers ring below it for nothing
W_CLOSED = 40  # set once by destroy
W_RSHARED, W_SSHARED = 48, 56  # set once a handle takes that direction's lock without a lease (`_leases`)
W_RTABLE = 64  # WAITER_SLOTS pairs (pid, count) of waiting receivers
W_STABLE = W_RTABLE + 2 * WAITER_SLOTS + 8  # same for senders
W_OBJ = W_STABLE + 2 * WAITER_SLOTS + 8  # the rest of the header: an object's state (`records`)
W_SEM = W_OBJ + 1  # nonzero: a named semaphore ``sem.<channel name>`` belongs to the channel (`records.SEM`)

SIDE: Final = 1 << 63  # record flag: the payload is the name suffix of a side file
LEN_MASK: Final = (1 << 56) - 1

_fence_lock = threading.Lock()


def fence() -> None:
    """A full memory barrier: a locked instruction orders our earlier stores before our later loads."""
    _fence_lock.acquire()
    _fence_lock.release()


def _fence_after_fork() -> None:
    global _fence_lock
    _fence_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_fence_after_fork)


def segment_bytes(capacity: int, block_size: int) -> int:
    """The shared memory a channel of `capacity` blocks of `block_size` bytes takes (its header and
    ring; its side files apart), all reserved when it is made."""
    return HEADER_BYTES + capacity * (8 + ((block_size + 7) & ~7))


class _Handle:
    """The state of one handle on a channel."""

    __slots__ = (
        "_closed",
        "_held",
        "_lease_seen",
        "_lease_wanted",
        "_leased",
        "_mm",
        "_mv",
        "_ring",
        "_ringq",
        "_rlock",
        "_slock",
        "_slot",
        "_w",
        "block_size",
        "capacity",
        "max_inline",
        "name",
        "packed",
        "rbell",
        "ring_bytes",
        "sbell",
    )

    name: str
    capacity: int
    block_size: int
    ring_bytes: int
    packed: bool
    max_inline: int  # the largest payload the ring carries itself (larger ones go in a side file)
    rbell: int  # the receivers' doorbell FIFO; its flock is the receive lock
    sbell: int  # the senders' doorbell FIFO; its flock is the send lock
    _mm: mmap.mmap
    _mv: memoryview
    _w: memoryview  # the header words
    _ring: memoryview
    _ringq: memoryview  # the ring as u64 words (record headers)
    _slot: int  # the least room a record takes
    _rlock: threading.Lock  # the receive side's thread lock
    _slock: threading.Lock
    _held: frozenset[int]  # fds whose flock this handle keeps (`hold_lock`, a lease)
    _lease_wanted: frozenset[int]  # `lease_lock` asked, first lock not taken yet
    _leased: frozenset[int]  # the part of `_held` that is a lease
    _lease_seen: dict[int, tuple[int, int]]  # fd: (sent or received total, idle looks)
    _closed: bool

    def check_open(self) -> None:
        """Raise ChannelError if this handle was closed."""
        if self._closed:
            raise ChannelError(f"this handle on channel {self.name} was closed")
