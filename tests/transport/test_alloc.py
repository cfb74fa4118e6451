"""The sans-IO heap allocator (transport/_alloc.py) over plain bytearrays: units and a state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dragon.transport import PoolError, PoolExhausted
from dragon.transport._alloc import ALIGN, HEADER_BYTES, Heap

KIB = 1024
HEAP_BYTES = 1024 * KIB


def block_bytes(size: int) -> int:
    """What one allocation of `size` bytes costs in used_bytes: header plus rounding to 64."""
    return (size + HEADER_BYTES + ALIGN - 1) // ALIGN * ALIGN


def test_fresh_heap_is_one_free_block() -> None:
    heap = Heap.format(bytearray(HEAP_BYTES))
    stats = heap.statistics()
    assert stats.size_bytes == HEAP_BYTES
    assert (stats.used_bytes, stats.allocations) == (0, 0)
    assert stats.largest_free_bytes == stats.free_bytes - HEADER_BYTES
    assert HEAP_BYTES - 1024 < stats.free_bytes < HEAP_BYTES
    heap.verify()


def test_attach_sees_the_same_state_and_rejects_non_heaps() -> None:
    buf = bytearray(HEAP_BYTES)
    offset = Heap.format(buf).alloc(100)
    other = Heap(memoryview(buf))
    assert other.size_of(offset) == 100
    assert other.statistics().allocations == 1
    with pytest.raises(PoolError, match="not a heap: magic"):
        Heap(bytearray(HEAP_BYTES))
    with pytest.raises(PoolError, match="smaller than a heap manifest"):
        Heap(bytearray(10))
    buf[8] = 99  # version word
    with pytest.raises(PoolError, match="version 99"):
        Heap(buf)


def test_format_rejects_small_and_readonly_buffers() -> None:
    with pytest.raises(ValueError, match="needs at least"):
        Heap.format(bytearray(256))
    with pytest.raises(ValueError, match="writable"):
        Heap.format(memoryview(bytes(HEAP_BYTES)))


def test_alloc_is_aligned_and_accounted() -> None:
    heap = Heap.format(bytearray(HEAP_BYTES))
    free0 = heap.statistics().free_bytes
    offsets = [heap.alloc(n) for n in (1, 40, 41, 64, 1000, 65536)]
    assert all(o % ALIGN == 0 for o in offsets)
    assert [heap.size_of(o) for o in offsets] == [1, 40, 41, 64, 1000, 65536]
    stats = heap.statistics()
    assert stats.used_bytes == sum(block_bytes(n) for n in (1, 40, 41, 64, 1000, 65536))
    assert stats.used_bytes + stats.free_bytes == free0
    assert block_bytes(1) == 64  # a 1-byte allocation takes one aligned unit
    for o in offsets:
        heap.free(o)
    assert heap.statistics().free_bytes == free0


def test_alloc_rejects_non_positive_sizes() -> None:
    heap = Heap.format(bytearray(HEAP_BYTES))
    with pytest.raises(ValueError, match="at least 1 byte"):
        heap.alloc(0)


def test_exhaustion_message_gives_the_figures() -> None:
    heap = Heap.format(bytearray(64 * KIB))
    held = [heap.alloc(8000) for _ in range(7)]
    heap.free(held[1])
    heap.free(held[3])
    stats = heap.statistics()
    with pytest.raises(PoolExhausted) as info:
        heap.alloc(20000)
    text = str(info.value)
    assert "20000 bytes" in text
    assert f"{stats.free_bytes} bytes free" in text
    assert f"largest free block holds {stats.largest_free_bytes} bytes" in text
    assert isinstance(info.value, MemoryError)
    assert heap.statistics() == stats


def test_free_merges_both_neighbours() -> None:
    heap = Heap.format(bytearray(HEAP_BYTES))
    initial = heap.statistics().largest_free_bytes
    a, b, c, guard = (heap.alloc(5000) for _ in range(4))
    heap.free(a)
    heap.free(c)
    heap.free(b)  # merges with a on the left and c on the right
    heap.verify()
    assert heap.alloc(3 * block_bytes(5000) - HEADER_BYTES) == a  # the merged block, first fit
    heap.free(a)
    heap.free(guard)
    assert heap.statistics().largest_free_bytes == initial


def test_double_free_and_bad_offsets_raise_value_error() -> None:
    heap = Heap.format(bytearray(HEAP_BYTES))
    a = heap.alloc(100)
    b = heap.alloc(100)
    heap.free(a)
    before = heap.statistics()
    with pytest.raises(ValueError, match="not a live allocation"):
        heap.free(a)
    for bad in (0, 1, a + 1, b + 64, b + 128, HEAP_BYTES, HEAP_BYTES * 2, -64):
        with pytest.raises(ValueError, match=r"not .*allocation of this heap"):
            heap.free(bad)
    with pytest.raises(ValueError):
        heap.size_of(a)
    heap.free(b)
    with pytest.raises(ValueError, match="double free"):
        heap.free(b)  # merged into the free block on its left: its old header must not look live
    assert heap.statistics().allocations == 0
    assert before.allocations == 1
    heap.verify()


def test_free_rejects_a_forged_header_in_a_payload() -> None:
    buf = bytearray(HEAP_BYTES)
    heap = Heap.format(buf)
    big = heap.alloc(4096)
    buf[big : big + 4096] = bytes(range(256)) * 16
    with pytest.raises(ValueError):
        heap.free(big + 1024)
    heap.verify()


def test_verify_reports_corruption() -> None:
    buf = bytearray(HEAP_BYTES)
    heap = Heap.format(buf)
    a = heap.alloc(100)
    buf[a - HEADER_BYTES : a] = bytes(HEADER_BYTES)
    with pytest.raises(PoolError, match="heap corrupt"):
        heap.verify()


def test_release_drops_the_views() -> None:
    buf = bytearray(HEAP_BYTES)
    heap = Heap.format(buf)
    heap.release()
    heap.release()
    buf.extend(b"x")  # a bytearray with exported views cannot resize: proves none are left
    with pytest.raises(ValueError):
        heap.alloc(1)


class HeapMachine(RuleBasedStateMachine):
    """Random allocs (1 B .. 64 KiB) and frees against a model: a dict of live offset -> size."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray(2048 * KIB)
        self.heap = Heap.format(self.buf)
        first = self.heap.statistics()
        self.free0 = first.free_bytes
        self.largest0 = first.largest_free_bytes
        self.live: dict[int, int] = {}

    @rule(size=st.integers(1, 64 * KIB))
    def alloc(self, size: int) -> None:
        before = self.heap.statistics()
        try:
            offset = self.heap.alloc(size)
        except PoolExhausted:
            assert before.largest_free_bytes < size
            assert self.heap.statistics() == before
            return
        assert offset not in self.live
        self.live[offset] = size
        self.buf[offset : offset + size] = (offset // ALIGN % 251).to_bytes(1, "little") * size

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(sorted(self.live)))
        size = self.live.pop(offset)
        assert self.buf[offset : offset + size] == (offset // ALIGN % 251).to_bytes(1, "little") * size
        self.heap.free(offset)
        with pytest.raises(ValueError):
            self.heap.free(offset)

    @invariant()
    def allocations_are_disjoint_aligned_and_in_bounds(self) -> None:
        end = 0
        for offset in sorted(self.live):
            assert offset % ALIGN == 0
            assert offset >= end + HEADER_BYTES
            end = offset + self.live[offset]
            assert end <= len(self.buf)
            assert self.heap.size_of(offset) == self.live[offset]

    @invariant()
    def accounting_is_consistent(self) -> None:
        stats = self.heap.statistics()
        assert stats.allocations == len(self.live)
        assert stats.used_bytes == sum(block_bytes(n) for n in self.live.values())
        assert stats.used_bytes + stats.free_bytes == self.free0
        assert stats.largest_free_bytes <= stats.free_bytes
        self.heap.verify()

    def teardown(self) -> None:
        for offset in list(self.live):
            self.heap.free(offset)
        stats = self.heap.statistics()
        assert stats.largest_free_bytes == self.largest0  # coalescing restored the one initial block
        assert stats.free_bytes == self.free0


HeapMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)
TestHeapMachine = HeapMachine.TestCase
