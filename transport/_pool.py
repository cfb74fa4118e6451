"""Managed memory pool: a `Heap` in one POSIX shared-memory segment, shared by processes (spec §6).

The segment is the heap: its manifest is the pool's metadata and its blocks are the allocations, so
offsets (never pointers) name allocations and each process maps the segment at its own address.
Every heap operation holds two locks: a per-handle `threading.Lock` (threads of one handle share one
open file, which `flock` does not tell apart) and `fcntl.flock(LOCK_EX)` on the segment's fd
(processes). The kernel drops a flock when its holder dies, so a SIGKILLed process never wedges the
pool; it can only leak the allocations it held.

Plain user processes import this module, so it uses the standard library only (no trio).
"""

from __future__ import annotations

import builtins
import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from ._alloc import ALIGN, HEAP_START, MIN_BLOCK, Heap, HeapStatistics
from ._alloc import HEADER_BYTES as ALLOC_HEADER_BYTES
from ._errors import PoolError
from ._shm import NoSharedMemory, attach_segment, create_segment, reserve, shm_path, unlink_quietly

RESERVED_AT_CREATE: Final = HEAP_START + MIN_BLOCK
"""What a new pool touches (its manifest and first block header): reserved when it is made, the rest
as it is allocated (`Pool.alloc`), so that a pool of gigabytes costs nothing until used."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """A live block of a pool: `size` bytes (as asked for) at `offset` in the segment.

    Freeing it, or closing the pool handle, makes it stale: using a stale allocation is the caller's
    error, exactly like a dangling pointer, except that it can never touch unmapped memory.
    """

    pool: Pool
    offset: int
    size: int

    @property
    def memoryview(self) -> builtins.memoryview:
        """A writable view of the payload, exactly `size` bytes.

        Release it (`view.release()` or `with a.memoryview as view:`) when done: a live view keeps the
        mapping alive after `Pool.close` (see there).

        Raises:
            PoolError: the pool handle is closed.
        """
        return self.pool._payload(self.offset, self.size)

    def serialize(self) -> str:
        """A string naming this allocation to another process: `"<pool descriptor>:<offset>"`.

        The other process attaches the pool and passes the string to `Pool.allocation_at`.
        """
        return f"{self.pool.descriptor}:{self.offset}"


@dataclass(slots=True)
class _Mapping:
    """What an open pool handle holds; dropped as a whole by `Pool.close`."""

    fd: int
    mm: mmap.mmap
    view: builtins.memoryview
    heap: Heap


class Pool:
    """A handle on a managed memory pool; make one with `Pool.create` or `Pool.attach`.

    Safe to share between threads. After `os.fork` the child may go on using an inherited handle: on
    first use there it opens its own file description (a flock is per open file description, so a
    shared one would not exclude the parent) and a fresh thread lock.

    As a context manager, `with Pool.create(...) as pool:` destroys the pool on exit and
    `with Pool.attach(...) as pool:` closes the handle on exit (the pool lives on).
    """

    def __init__(self, name: str, fd: int, mm: mmap.mmap, *, created: bool) -> None:
        """Internal: use `Pool.create` or `Pool.attach`, which pass a new segment's fd and mapping.

        On an error (the segment holds no heap, or formatting it failed) the fd and mapping are
        closed before it propagates.
        """
        view = memoryview(mm)
        try:
            heap = Heap.format(view) if created else Heap(view)
        except BaseException:
            view.release()  # else a traceback frame holding it keeps mm from closing
            mm.close()
            os.close(fd)
            raise
        self._name = name
        self._created = created
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._mapping: _Mapping | None = _Mapping(fd, mm, view, heap)

    @classmethod
    def create(cls, name: str, size_bytes: int) -> Pool:
        """Create the pool's segment `name` (mode 0600, `size_bytes` long) and format its heap.

        The caller owns the pool and should `destroy()` it. Other processes attach only after this
        returns (the descriptor is handed out then), so they never see a half-formatted heap.

        Raises:
            FileExistsError: a segment of that name exists.
            ValueError: `name` is not a bare name, or `size_bytes` is too small for a heap.
        """
        fd, mm = create_segment(name, size_bytes, reserve_bytes=RESERVED_AT_CREATE)
        try:
            return cls(name, fd, mm, created=True)
        except BaseException:
            unlink_quietly(name)
            raise

    @classmethod
    def attach(cls, descriptor: str) -> Pool:
        """Attach to an existing pool by its descriptor (from `Pool.descriptor` in any process).

        Raises:
            PoolError: the pool does not exist (never created, or destroyed), or the segment is not a pool.
        """
        try:
            fd, mm = attach_segment(descriptor)
        except FileNotFoundError as exc:
            raise PoolError(f"pool {descriptor!r} does not exist or was destroyed (no {shm_path(descriptor)})") from exc
        except ValueError as exc:  # mmap of an empty file
            raise PoolError(f"shared-memory segment {descriptor!r} is not a pool: {exc}") from exc
        return cls(descriptor, fd, mm, created=False)

    @property
    def descriptor(self) -> str:
        """The string another process passes to `Pool.attach` (the segment name); valid after close."""
        return self._name

    def alloc(self, size_bytes: int) -> Allocation:
        """Allocate `size_bytes` (>= 1) in the pool; the payload is 64-byte aligned. Does not block
        beyond the pool lock.

        Raises:
            PoolExhausted: no free block is large enough (the text gives the figures).
            ValueError: `size_bytes` is not positive.
            PoolError: the handle is closed.
        """
        with self._locked() as heap:
            offset = heap.alloc(size_bytes)
        try:  # its pages (and the header of the free rest just after): tmpfs would SIGBUS, not say
            reserve(self._check_open().fd, offset - ALLOC_HEADER_BYTES, size_bytes + ALLOC_HEADER_BYTES + ALIGN)
        except NoSharedMemory:
            self.free(offset)
            raise
        return Allocation(self, offset, size_bytes)

    def free(self, allocation: Allocation | int) -> None:
        """Free an allocation (given as the object, or its offset), made by any process.

        Raises:
            ValueError: it is not a live allocation of this pool (double free, bad offset, another
                pool's allocation).
            PoolError: the handle is closed.
        """
        if isinstance(allocation, Allocation):
            if allocation.pool.descriptor != self._name:
                raise ValueError(f"allocation belongs to pool {allocation.pool.descriptor!r}, not {self._name!r}")
            allocation = allocation.offset
        with self._locked() as heap:
            heap.free(allocation)

    def allocation_at(self, ref: int | str) -> Allocation:
        """The live allocation named by an offset or by `Allocation.serialize()` text.

        Raises:
            ValueError: no live allocation there, malformed text, or the text names another pool.
            PoolError: the handle is closed.
        """
        if isinstance(ref, str):
            name, _, offset_text = ref.rpartition(":")
            if name != self._name or not offset_text.isdigit():
                raise ValueError(f"{ref!r} does not name an allocation of pool {self._name!r}")
            ref = int(offset_text)
        with self._locked() as heap:
            size = heap.size_of(ref)
        return Allocation(self, ref, size)

    def statistics(self) -> HeapStatistics:
        """The pool's figures (size, used, free, largest free block, allocations) for `dragon status`.

        Raises:
            PoolError: the handle is closed.
        """
        with self._locked() as heap:
            return heap.statistics()

    def verify(self) -> None:
        """Check every invariant of the pool's heap (a diagnostic that walks all blocks).

        Raises:
            PoolError: the heap is corrupt (the text says where), or the handle is closed.
        """
        with self._locked() as heap:
            heap.verify()

    def close(self) -> None:
        """Drop this process's mapping and fd; the pool lives on. Idempotent; never raises.

        If the caller still holds memoryviews of allocations, the mapping cannot be unmapped under
        them (mmap refuses with BufferError, and unmapping would turn them into wild pointers), so it
        is left to the garbage collector: it is unmapped when the last such view is released. Until
        then those views stay readable and writable. Every method of this handle raises PoolError
        ("pool handle closed") from here on.
        """
        with self._lock:
            mapping, self._mapping = self._mapping, None
        if mapping is None:
            return
        mapping.heap.release()
        mapping.view.release()
        os.close(mapping.fd)
        try:
            mapping.mm.close()
        except BufferError:
            pass  # allocation views are still exported: the mmap unmaps itself when they are gone

    def destroy(self) -> None:
        """Remove the pool's segment from /dev/shm, then `close()` this handle.

        Normally the owner (the creator) calls this. Processes still attached keep a valid mapping
        until they close, but nobody can attach any more. A segment another handle already removed is
        not an error.

        Raises:
            PoolError: the handle is closed.
        """
        self._check_open()
        unlink_quietly(self._name)
        self.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Destroy the pool if this handle created it, else close the handle (no-op if closed)."""
        if self._mapping is None:
            return
        if self._created:
            self.destroy()
        else:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mapping is None else ("owner" if self._created else "attached")
        return f"<Pool {self._name!r} {state}>"

    def _check_open(self) -> _Mapping:
        """This handle's mapping; PoolError if the handle is closed."""
        mapping = self._mapping
        if mapping is None:
            raise PoolError(f"pool handle closed: {self._name!r} (attach it again to use it)")
        return mapping

    @contextmanager
    def _locked(self) -> Iterator[Heap]:
        """Hold the thread lock and the segment's flock around one heap operation."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            mapping = self._check_open()
            fcntl.flock(mapping.fd, fcntl.LOCK_EX)
            try:
                yield mapping.heap
            finally:
                fcntl.flock(mapping.fd, fcntl.LOCK_UN)

    def _after_fork(self) -> None:
        """In a forked child: own file description (flock is per description) and a fresh lock.

        The inherited lock may have been held by a parent thread that does not exist here. Reopening
        through /proc/self/fd works even once the segment's name is unlinked.
        """
        self._lock = threading.Lock()
        self._pid = os.getpid()
        mapping = self._mapping
        if mapping is not None:
            fd = os.open(f"/proc/self/fd/{mapping.fd}", os.O_RDWR | os.O_CLOEXEC)
            os.close(mapping.fd)
            mapping.fd = fd

    def _payload(self, offset: int, size: int) -> builtins.memoryview:
        """A view of `size` bytes at `offset` of the mapping; PoolError if the handle is closed."""
        with self._lock:  # close() must not release the view between the check and the slicing
            return self._check_open().view[offset : offset + size]
