"""A sans-IO heap allocator whose whole state lives in the buffer it manages (spec §6, managed memory).

The heap state is nothing but words inside the buffer, so any process that maps the same shared
segment can read the figures and, holding the pool's lock (`_pool.py`), allocate and free. A `Heap`
object keeps only views of the buffer and two constants; it never caches heap state.

Layout (all words are native u64, offsets are bytes from the start of the buffer):

    [0, MANIFEST_BYTES)   manifest: magic, version, bounds, figures, size-class bitmap and heads
    [HEAP_START, end)     blocks, back to back; every block size is a multiple of 64

A block is a 24-byte header followed by its payload. Blocks start at 40 mod 64, so every payload
starts 64-byte aligned. Header words: `TAG | size | used bit`, the size of the block just before it
(0 for the first; dlmalloc's boundary tag, which makes a footer unnecessary) and the size the caller
asked for (0 when free). A free block also stores next/prev links of its size-class list in its first
payload words. A 1-byte allocation therefore takes one 64-byte block; overhead is 24 bytes plus the
rounding to 64.

Algorithm: segregated fit. Free blocks sit in doubly linked lists, one per power-of-two size class (in
64-byte units), and a bitmap word says which lists are non-empty. `alloc` walks the list of the
request's own class for the first block that fits, else takes the head of the next non-empty larger
class (found with one bit trick), splitting off the remainder. `free` merges the block with free
neighbours on both sides (the prev-size word finds the left one) and pushes the result on its list.
Costs: `free` is O(1); `alloc` is O(length of one class's list) plus O(1); `statistics` is O(length of
the largest non-empty class), to find the largest free block. No operation walks all blocks except
`verify`, a diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._errors import PoolError, PoolExhausted

MAGIC: Final = int.from_bytes(b"DRGNHEAP", "little")
VERSION: Final = 1
ALIGN: Final = 64
HEADER_BYTES: Final = 24  # size word, prev-size word, requested-size word
MIN_BLOCK: Final = 64  # header + two free-list links fit in one aligned unit
NBINS: Final = 48  # size classes by log2 of 64-byte units; 2**47 units is far beyond any segment
TAG: Final = 0xB10C << 48  # upper 16 bits of every header: rejects most garbage offsets in free()
TAG_MASK: Final = 0xFFFF << 48
SIZE_MASK: Final = ((1 << 48) - 1) & ~(ALIGN - 1)
USED: Final = 1

# Manifest word indices.
_W_MAGIC: Final = 0
_W_VERSION: Final = 1
_W_START: Final = 2
_W_END: Final = 3
_W_USED: Final = 4  # bytes in used blocks, headers and rounding included
_W_FREE: Final = 5  # bytes in free blocks, headers included
_W_ALLOCS: Final = 6
_W_BITMAP: Final = 7  # bit k set <=> size class k has a free block
_W_BINS: Final = 8  # NBINS list heads (block offsets; 0 = empty, no block starts at 0)
MANIFEST_BYTES: Final = (_W_BINS + NBINS) * 8
HEAP_START: Final = MANIFEST_BYTES + (ALIGN - HEADER_BYTES - MANIFEST_BYTES) % ALIGN


def _size_class(size: int) -> int:
    """The free-list index of a block of `size` bytes: floor(log2(size / 64)), capped."""
    return min((size >> 6).bit_length() - 1, NBINS - 1)


@dataclass(frozen=True, slots=True)
class HeapStatistics:
    """Figures of a heap (and of the pool around it), for `dragon status` (spec §8).

    `size_bytes` is the whole buffer; `used_bytes` and `free_bytes` count whole blocks (headers and
    rounding included), so `size_bytes - used_bytes - free_bytes` is the fixed manifest and alignment
    overhead. `largest_free_bytes` is the largest request one `alloc` can meet right now.
    """

    size_bytes: int
    used_bytes: int
    free_bytes: int
    largest_free_bytes: int
    allocations: int


class Heap:
    """A heap inside a writable buffer; see the module docstring for layout, algorithm and costs.

    Not thread- or process-safe by itself: callers serialise `alloc`/`free` (the pool holds a lock).
    """

    __slots__ = ("_buf", "_end", "_size", "_start", "_w")

    def __init__(self, buf: memoryview | bytearray) -> None:
        """Attach to a buffer that `Heap.format` initialised (in this or another process).

        Raises:
            PoolError: the buffer does not hold a heap (wrong magic, version or bounds).
            ValueError: the buffer is read-only.
        """
        mv = memoryview(buf).cast("B")
        try:
            start, end = self._check_manifest(mv)
        except BaseException:
            mv.release()  # a traceback keeps this frame alive: its view must not pin an mmap
            raise
        self._buf = mv
        self._w = mv[:end].cast("Q")
        self._start = start
        self._end = end
        self._size = len(mv)

    @classmethod
    def format(cls, buf: memoryview | bytearray) -> Heap:
        """Initialise an empty heap over the whole of `buf` (overwriting it) and return it attached.

        The magic number is written last, so a half-formatted buffer never attaches.

        Raises:
            ValueError: the buffer is read-only, too small (under HEAP_START + 64 bytes) or too large.
        """
        with memoryview(buf).cast("B") as mv:
            if mv.readonly:
                raise ValueError("a heap needs a writable buffer")
            size = len(mv)
            if size < HEAP_START + MIN_BLOCK:
                raise ValueError(f"a heap needs at least {HEAP_START + MIN_BLOCK} bytes, not {size}")
            end = size - (size - HEAP_START) % ALIGN
            if end > SIZE_MASK:
                raise ValueError(f"a heap holds at most {SIZE_MASK} bytes, not {size}")
            with mv[:end].cast("Q") as w:
                w[: _W_BINS + NBINS] = memoryview(bytes(MANIFEST_BYTES)).cast("Q")
                w[_W_START] = HEAP_START
                w[_W_END] = end
                block = end - HEAP_START
                i = HEAP_START >> 3
                w[i], w[i + 1], w[i + 2], w[i + 3], w[i + 4] = TAG | block, 0, 0, 0, 0
                k = _size_class(block)
                w[_W_BINS + k] = HEAP_START
                w[_W_BITMAP] = 1 << k
                w[_W_FREE] = block
                w[_W_VERSION] = VERSION
                w[_W_MAGIC] = MAGIC
        return cls(buf)

    def release(self) -> None:
        """Drop this object's views of the buffer (an mmap cannot close while they exist).

        Idempotent. Any later call on this object raises ValueError (released memoryview).
        """
        self._w.release()
        self._buf.release()

    def alloc(self, size_bytes: int) -> int:
        """Allocate `size_bytes` (>= 1) and return the payload's offset in the buffer (64-aligned).

        Raises:
            PoolExhausted: no free block is large enough; the text gives the size asked for, the free
                bytes and the largest free block.
            ValueError: `size_bytes` is not positive.
        """
        if size_bytes < 1:
            raise ValueError(f"allocation size must be at least 1 byte, not {size_bytes}")
        w = self._w
        need = (size_bytes + HEADER_BYTES + ALIGN - 1) & ~(ALIGN - 1)
        k = _size_class(need)
        s = w[_W_BINS + k]
        while s and w[s >> 3] & SIZE_MASK < need:  # first fit within the request's own class
            s = w[(s >> 3) + 3]
        if not s:  # every block of a larger class fits: take the head of the smallest such class
            larger = w[_W_BITMAP] >> (k + 1) << (k + 1)
            if not larger:
                raise self._exhausted(size_bytes)
            s = w[_W_BINS + (larger & -larger).bit_length() - 1]
        i = s >> 3
        size = w[i] & SIZE_MASK
        self._unlink(s, size)
        rest = size - need
        if rest >= MIN_BLOCK:  # split: the tail stays free
            r = s + need
            j = r >> 3
            w[j], w[j + 1], w[j + 2] = TAG | rest, need, 0
            if r + rest < self._end:
                w[((r + rest) >> 3) + 1] = rest
            self._link(r, rest)
            size = need
        w[i] = TAG | size | USED
        w[i + 2] = size_bytes
        w[_W_USED] += size
        w[_W_FREE] -= size
        w[_W_ALLOCS] += 1
        return s + HEADER_BYTES

    def free(self, offset: int) -> None:
        """Free the allocation at `offset`, merging it with free neighbours.

        Raises:
            ValueError: `offset` is not a live allocation of this heap (double free, or an offset
                `alloc` did not return); the heap is left unchanged.
        """
        w = self._w
        i = self._live_header(offset)
        s = offset - HEADER_BYTES
        size = w[i] & SIZE_MASK
        w[_W_USED] -= size
        w[_W_FREE] += size
        w[_W_ALLOCS] -= 1
        w[i + 2] = 0
        right = s + size
        if right < self._end and not w[right >> 3] & USED:
            rsize = w[right >> 3] & SIZE_MASK
            self._unlink(right, rsize)
            w[right >> 3] = 0  # a stale header inside a free block must never look live
            size += rsize
        if s != self._start:
            left = s - w[i + 1]
            if not w[left >> 3] & USED:
                lsize = w[left >> 3] & SIZE_MASK
                self._unlink(left, lsize)
                w[i] = 0
                s, i, size = left, left >> 3, size + lsize
        w[i] = TAG | size
        if s + size < self._end:
            w[((s + size) >> 3) + 1] = size
        self._link(s, size)

    def size_of(self, offset: int) -> int:
        """The size asked for when the live allocation at `offset` was made.

        Raises:
            ValueError: `offset` is not a live allocation of this heap.
        """
        return self._w[self._live_header(offset) + 2]

    def statistics(self) -> HeapStatistics:
        """The heap's current figures (a snapshot; see `HeapStatistics`)."""
        w = self._w
        return HeapStatistics(
            size_bytes=self._size,
            used_bytes=w[_W_USED],
            free_bytes=w[_W_FREE],
            largest_free_bytes=self._largest_free(),
            allocations=w[_W_ALLOCS],
        )

    def verify(self) -> None:
        """Walk every block and list and check the heap's invariants (a diagnostic, O(blocks)).

        Raises:
            PoolError: the heap is corrupt; the text says where.
        """
        w = self._w
        s, prev_size, prev_free = self._start, 0, False
        used = free = allocs = 0
        free_blocks: set[int] = set()
        while s < self._end:
            hw = w[s >> 3]
            size = hw & SIZE_MASK
            if hw & TAG_MASK != TAG or size < MIN_BLOCK or s + size > self._end:
                raise PoolError(f"heap corrupt: bad block header {hw:#x} at offset {s}")
            if w[(s >> 3) + 1] != prev_size:
                raise PoolError(f"heap corrupt: block at {s} records previous size {w[(s >> 3) + 1]}, not {prev_size}")
            if hw & USED:
                used, allocs, prev_free = used + size, allocs + 1, False
            else:
                if prev_free:
                    raise PoolError(f"heap corrupt: free block at {s} follows a free block (not merged)")
                free, prev_free = free + size, True
                free_blocks.add(s)
            s, prev_size = s + size, size
        listed: set[int] = set()
        for k in range(NBINS):
            b, back = w[_W_BINS + k], 0
            if bool(b) != bool(w[_W_BITMAP] >> k & 1):
                raise PoolError(f"heap corrupt: size-class bitmap disagrees with list {k}")
            while b:
                if b not in free_blocks or b in listed or _size_class(w[b >> 3] & SIZE_MASK) != k:
                    raise PoolError(f"heap corrupt: free list {k} holds offset {b}")
                if w[(b >> 3) + 4] != back:
                    raise PoolError(f"heap corrupt: broken back link at offset {b}")
                listed.add(b)
                b, back = w[(b >> 3) + 3], b
        if listed != free_blocks:
            missing = sorted(free_blocks - listed)
            raise PoolError(f"heap corrupt: free blocks missing from the lists: {missing}")
        figures = (w[_W_USED], w[_W_FREE], w[_W_ALLOCS])
        if figures != (used, free, allocs):
            raise PoolError(
                f"heap corrupt: figures (used, free, allocations) {figures} != walked {(used, free, allocs)}"
            )

    @staticmethod
    def _check_manifest(mv: memoryview) -> tuple[int, int]:
        """The block bounds (start, end) recorded in a heap's manifest; PoolError if there is no heap."""
        if mv.readonly:
            raise ValueError("a heap needs a writable buffer")
        size = len(mv)
        if size < MANIFEST_BYTES:
            raise PoolError(f"buffer is not a heap: {size} bytes is smaller than a heap manifest")
        with mv[:MANIFEST_BYTES].cast("Q") as head:
            magic, version, start, end = head[_W_MAGIC], head[_W_VERSION], head[_W_START], head[_W_END]
        if magic != MAGIC:
            raise PoolError(f"buffer is not a heap: magic {magic:#018x}, expected {MAGIC:#018x}")
        if version != VERSION:
            raise PoolError(f"heap has layout version {version}; this code understands version {VERSION}")
        if start != HEAP_START or not start < end <= size or (end - start) % ALIGN:
            raise PoolError(f"heap manifest is corrupt: blocks [{start}, {end}) in a {size}-byte buffer")
        return start, end

    def _live_header(self, offset: int) -> int:
        """The header word index of the live allocation at `offset`; ValueError if there is none.

        Beyond the tag and used bit, both boundary tags must agree with the neighbours, so a random
        offset into someone's payload is rejected unless its bytes forge three consistent headers.
        """
        w, start, end = self._w, self._start, self._end
        if not isinstance(offset, int) or offset % ALIGN or not start + HEADER_BYTES <= offset < end:
            raise ValueError(
                f"offset {offset!r} is not an allocation of this heap "
                f"(payloads are 64-byte aligned, in [{start + HEADER_BYTES}, {end}))"
            )
        s = offset - HEADER_BYTES
        i = s >> 3
        hw = w[i]
        size = hw & SIZE_MASK
        prev = w[i + 1]
        ok = (
            hw & ~(SIZE_MASK | USED) == TAG
            and hw & USED
            and MIN_BLOCK <= size <= end - s
            and (s + size == end or w[((s + size) >> 3) + 1] == size)
            and (prev == 0 if s == start else start <= s - prev and w[(s - prev) >> 3] & SIZE_MASK == prev)
        )
        if not ok:
            raise ValueError(
                f"offset {offset} is not a live allocation of this heap "
                "(double free, or an offset alloc() did not return)"
            )
        return i

    def _unlink(self, s: int, size: int) -> None:
        """Remove free block `s` of `size` bytes from its size-class list."""
        w = self._w
        i = s >> 3
        nxt, prv = w[i + 3], w[i + 4]
        if prv:
            w[(prv >> 3) + 3] = nxt
        else:
            k = _size_class(size)
            w[_W_BINS + k] = nxt
            if not nxt:
                w[_W_BITMAP] &= ~(1 << k)
        if nxt:
            w[(nxt >> 3) + 4] = prv

    def _link(self, s: int, size: int) -> None:
        """Push free block `s` of `size` bytes on the front of its size-class list."""
        w = self._w
        i = s >> 3
        k = _size_class(size)
        head = w[_W_BINS + k]
        w[i + 3], w[i + 4] = head, 0
        if head:
            w[(head >> 3) + 4] = s
        w[_W_BINS + k] = s
        w[_W_BITMAP] |= 1 << k

    def _largest_free(self) -> int:
        """The largest request that one `alloc` can meet now (0 if nothing is free)."""
        w = self._w
        bitmap = w[_W_BITMAP]
        if not bitmap:
            return 0
        b, largest = w[_W_BINS + bitmap.bit_length() - 1], 0
        while b:
            largest = max(largest, w[b >> 3] & SIZE_MASK)
            b = w[(b >> 3) + 3]
        return largest - HEADER_BYTES

    def _exhausted(self, size_bytes: int) -> PoolExhausted:
        """The error for a request no free block can meet."""
        return PoolExhausted(
            f"cannot allocate {size_bytes} bytes: {self._w[_W_FREE]} bytes free in all, "
            f"the largest free block holds {self._largest_free()} bytes"
        )
