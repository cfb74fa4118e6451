"""FrameStream: length-prefixed frames (spec §2) over in-memory streams and over real pipes to a child."""

from __future__ import annotations

import itertools
import random
import struct
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from subprocess import PIPE

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dragon.transport import MAX_FRAME_BYTES, FrameStream, ProtocolError

MiB = 1024 * 1024

# A child that echoes frames: stdin -> stdout, one frame at a time, until EOF between frames.
ECHO_CHILD = r"""
import struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
while head := inp.read(4):
    (size,) = struct.unpack("<I", head)
    out.write(head + inp.read(size))
    out.flush()
"""

# A child that announces 100 payload bytes, writes 10 of them and exits.
TRUNCATING_CHILD = r"""
import struct, sys
sys.stdout.buffer.write(struct.pack("<I", 100) + b"0123456789")
"""


def prefix(size: int) -> bytes:
    return struct.pack("<I", size)


class ChunkedReceiveStream(trio.abc.ReceiveStream):
    """Delivers fixed chunks, one per `receive_some` (cut further if max_bytes is smaller), then EOF."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = [bytes(c) for c in chunks if c]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._chunks.insert(0, rest)
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def reader_of(chunks: Sequence[bytes], *, max_frame_bytes: int = MAX_FRAME_BYTES) -> FrameStream:
    """A FrameStream that can only receive, fed with `chunks` exactly as cut."""
    return FrameStream(
        (trio.testing.MemorySendStream(), ChunkedReceiveStream(chunks)), max_frame_bytes=max_frame_bytes, name="test"
    )


async def encode(frames: Sequence[bytes]) -> bytes:
    """The bytes FrameStream writes for `frames`, captured from a memory stream."""
    sink = trio.testing.MemorySendStream()
    writer = FrameStream((sink, trio.testing.MemoryReceiveStream()), name="capture")
    for frame in frames:
        await writer.send(frame)
    return bytes(sink.get_data_nowait()) if frames else b""  # get_data_nowait raises WouldBlock when empty


async def round_trip(a: FrameStream, b: FrameStream, frames: Sequence[bytes]) -> list[bytes]:
    """Send `frames` on `a` while receiving as many on `b`; return what `b` received."""
    received: list[bytes] = []

    async def send_all() -> None:
        for frame in frames:
            await a.send(frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all)
        for _ in frames:
            received.append(await b.receive())
    return received


@pytest.mark.parametrize("make_pair", [trio.testing.memory_stream_pair, trio.testing.lockstep_stream_pair])
@pytest.mark.parametrize("sizes", [[0], [1, 17, 0, 300], [5 * MiB, 0, 3 * MiB + 1]])
async def test_round_trip(make_pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]], sizes: list[int]) -> None:
    with trio.fail_after(30):
        left, right = make_pair()
        a, b = FrameStream(left, name="a"), FrameStream(right, name="b")
        frames = [random.Random(size).randbytes(size) for size in sizes]
        assert await round_trip(a, b, frames) == frames
        assert await round_trip(b, a, frames) == frames  # and the other way
        await a.aclose()
        with pytest.raises(trio.EndOfChannel):
            await b.receive()
        await b.aclose()


async def test_partial_reads_one_byte_at_a_time() -> None:
    with trio.fail_after(30):
        frames = [b"", b"x", b"hello" * 100]
        raw = await encode(frames)
        reader = reader_of([raw[i : i + 1] for i in range(len(raw))])
        assert [await reader.receive() for _ in frames] == frames
        with pytest.raises(trio.EndOfChannel):
            await reader.receive()


@given(
    frames=st.lists(st.binary(max_size=300), max_size=20),
    data=st.data(),
)
async def test_any_frames_survive_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    with trio.fail_after(30):
        raw = await encode(frames)
        cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=50), label="cuts"))
        bounds = [0, *cuts, len(raw)]
        reader = reader_of([raw[lo:hi] for lo, hi in itertools.pairwise(bounds)])
        assert [await reader.receive() for _ in frames] == frames
        with pytest.raises(trio.EndOfChannel):
            await reader.receive()


async def test_eof_between_frames_is_end_of_channel() -> None:
    with trio.fail_after(30):
        reader = reader_of([prefix(3) + b"abc"])
        assert await reader.receive() == b"abc"
        with pytest.raises(trio.EndOfChannel):
            await reader.receive()


async def test_eof_inside_prefix_is_protocol_error() -> None:
    with trio.fail_after(30):
        reader = reader_of([prefix(3) + b"abc", b"\x05\x00"])
        assert await reader.receive() == b"abc"
        with pytest.raises(ProtocolError, match=r"test ended inside a length prefix: 2 of 4 bytes .*x05"):
            await reader.receive()


async def test_eof_inside_payload_is_protocol_error() -> None:
    with trio.fail_after(30):
        reader = reader_of([prefix(10), b"abc"])
        with pytest.raises(ProtocolError, match=r"test ended inside a frame: 3 of 10 payload bytes .*abc"):
            await reader.receive()


async def test_oversized_prefix_is_protocol_error() -> None:
    with trio.fail_after(30):
        reader = reader_of([prefix(11) + b"garbage"], max_frame_bytes=10)
        with pytest.raises(ProtocolError, match=r"frame of 11 bytes, over the maximum of 10 bytes.*garbage"):
            await reader.receive()


async def test_oversized_send_writes_nothing() -> None:
    with trio.fail_after(30):
        left, right = trio.testing.memory_stream_pair()
        a, b = FrameStream(left, max_frame_bytes=10, name="a"), FrameStream(right, name="b")
        with pytest.raises(ProtocolError, match=r"frame of 11 bytes on a: the maximum is 10 bytes"):
            await a.send(b"x" * 11)
        await a.send(b"y" * 10)
        assert await b.receive() == b"y" * 10  # the refused frame left no bytes behind


def test_max_frame_bytes_must_fit_the_prefix() -> None:
    left, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="max_frame_bytes"):
        FrameStream(left, max_frame_bytes=2**32, name="a")


async def test_concurrent_sends_are_busy() -> None:
    with trio.fail_after(30):
        left, _right = trio.testing.lockstep_stream_pair()  # nobody receives: the first send blocks
        a = FrameStream(left, name="a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send, b"first")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError, match="already sending on a"):
                await a.send(b"second")
            nursery.cancel_scope.cancel(reason="test over")


async def test_concurrent_receives_are_busy_and_cancel_loses_nothing() -> None:
    with trio.fail_after(30):
        left, right = trio.testing.memory_stream_pair()
        b = FrameStream(right, name="b")
        await left.send_all(prefix(6) + b"abc")  # half a frame: the first receive blocks for the rest
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError, match="already receiving on b"):
                await b.receive()
            nursery.cancel_scope.cancel(reason="test over")
        await left.send_all(b"def")
        assert await b.receive() == b"abcdef"  # the cancelled receive kept what it had read


async def test_closed_stream_refuses_use() -> None:
    with trio.fail_after(30):
        left, _right = trio.testing.memory_stream_pair()
        a = FrameStream(left, name="a")
        await a.aclose()
        await a.aclose()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await a.send(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await a.receive()


@asynccontextmanager
async def open_child(code: str) -> AsyncIterator[tuple[trio.Process, FrameStream]]:
    """Run `python -c code` with framed pipes on its stdin/stdout; always closes them and reaps it."""
    proc = await trio.lowlevel.open_process([sys.executable, "-c", code], stdin=PIPE, stdout=PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    frames = FrameStream(trio.StapledStream(proc.stdin, proc.stdout), name="child pipes")
    try:
        yield proc, frames
    finally:
        with trio.CancelScope(shield=True):
            await frames.aclose()  # EOF on its stdin: a well-behaved child exits
            with trio.move_on_after(10):
                await proc.wait()
            proc.kill()  # no-op once reaped
            await proc.wait()


async def test_real_pipes_echo_child() -> None:
    with trio.fail_after(30):
        rng = random.Random(2024)
        frames = [rng.randbytes(rng.randrange(MiB + 1)) for _ in range(100)]
        async with open_child(ECHO_CHILD) as (proc, pipes):
            assert await round_trip(pipes, pipes, frames) == frames
            await pipes.aclose()
            assert await proc.wait() == 0


async def test_real_pipes_truncated_frame_from_child() -> None:
    with trio.fail_after(30):
        async with open_child(TRUNCATING_CHILD) as (proc, pipes):
            with pytest.raises(ProtocolError, match=r"ended inside a frame: 10 of 100 payload bytes"):
                await pipes.receive()
            assert await proc.wait() == 0
