"""The semantics of a channel, written once and run on both faces (blocking `Channel`, trio
`TrioChannel`; see channel_faces.py): order and sizes, full and empty, timeouts, statistics, life
cycle, destroy waking waiters, many senders and receivers at once. What only one face has (batches,
held and leased locks, cancellation) is tested with that face alone."""

from __future__ import annotations

import collections
import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from dragon.transport import ChannelDestroyed, ChannelError
from dragon.transport._shm import entries

from chan_names import fresh_name
from channel_faces import FACES, Face

WAIT_S = 60.0  # guard against hangs only


@pytest.fixture(params=sorted(FACES))
def face(request: pytest.FixtureRequest) -> type[Face]:
    """The face under test (each test runs once per face)."""
    return FACES[request.param]


def side_files(name: str) -> list[str]:
    return entries(name + ".x")


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def poll_until(cond: Callable[[], bool], what: str) -> None:
    """Wait for `cond` (a state another thread or task reaches), bounded by WAIT_S."""
    with trio.fail_after(WAIT_S):
        while not cond():
            await trio.sleep(0.002)


# ------------------------------------------------------------------------------------- ordering and sizes


async def test_fifo_order(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=100, block_size=256)
    try:
        for i in range(100):
            await ch.send(b"m%d" % i)
        assert [await ch.recv() for _ in range(100)] == [b"m%d" % i for i in range(100)]
    finally:
        await ch.close()


async def test_zero_byte_message(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=4)
    try:
        await ch.send(b"")
        await ch.send(b"x")
        ch.send_nowait(b"")
        assert ch.statistics().depth == 3
        assert await ch.recv() == b""
        assert await ch.recv() == b"x"
        assert ch.recv_nowait() == b""
        with pytest.raises(face.EMPTY):
            ch.recv_nowait()
    finally:
        await ch.close()


async def test_sizes_around_every_boundary_arrive_intact(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=4, block_size=1024)
    try:
        ring = ch.ring_bytes
        assert ring == 4 * (8 + 1024)  # capacity slots of 8 + block_size bytes
        sizes = [1, 7, 8, 9, ch.block_size, ring - 9, ring - 8, ring - 7, ring - 1, ring, ring + 1]
        sizes += [3 * ring, 1 << 20, 5 << 20]
        for k, n in enumerate(sizes):  # one at a time: ring - 8 fits only into an empty ring
            msg = blob(n, k)
            await ch.send(msg, timeout=5)
            assert (len(side_files(name)) == 1) == (n > ring - 8), f"size {n}: wrong path"
            got = await ch.recv(timeout=5)
            assert len(got) == n and got == msg, f"size {n} arrived damaged"
            assert side_files(name) == []
        # And several queued together, inline and side-file ones interleaved, in order.
        batch = [blob(n, 100 + k) for k, n in enumerate([ring - 1, 10, ring, 3 * ring])]
        for msg in batch:
            await ch.send(msg, timeout=5)
        assert [await ch.recv(timeout=5) for _ in batch] == batch
        assert ch.statistics().bytes_used == 0
    finally:
        await ch.close()


async def test_wrap_around_with_odd_sizes(face: type[Face], name: str) -> None:
    rng = random.Random(1)
    ch = face.create(name, capacity=8, block_size=256)  # a ring of 8 slots of 264 bytes
    try:
        queue: collections.deque[bytes] = collections.deque()
        used = 0  # ring bytes the queued records take: 8-byte length word + payload padded to 8,
        # and at least one slot of 8 + block_size bytes

        def room(n: int) -> int:
            return max(8 + 256, 8 + ((n + 7) & ~7))

        for i in range(5000):
            n = rng.choice((rng.randrange(1, 64), rng.randrange(1, 1500))) | 1
            fits = used + room(n) <= ch.ring_bytes
            if fits and (not queue or rng.random() < 0.5):
                msg = blob(n, i)
                ch.send_nowait(msg)
                queue.append(msg)
                used += room(n)
            else:
                msg = ch.recv_nowait()
                assert msg == queue.popleft()
                used -= room(len(msg))
        while queue:
            assert ch.recv_nowait() == queue.popleft()
        s = ch.statistics()
        assert s.sent == s.received > 2500 and s.sent * 8 > 4 * ch.ring_bytes  # wrapped many times
        assert s.sent > 2500 and s.bytes_used == 0 and s.depth == 0
    finally:
        await ch.close()


# ------------------------------------------------------------------------------------- limits and timeouts


async def test_capacity_limit_in_messages(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=3, block_size=1024)
    try:
        for i in range(3):
            ch.send_nowait(b"%d" % i)
        with pytest.raises(face.FULL):
            ch.send_nowait(b"nope")
        with pytest.raises(face.SEND_TIMED_OUT):
            await ch.send(b"nope", timeout=0.05)
        with pytest.raises(face.SEND_TIMED_OUT):  # a side-file message leaves no side file behind either
            await ch.send(blob(3 * ch.ring_bytes), timeout=0.05)
        assert side_files(name) == []
        with pytest.raises(face.FULL):  # nor does one refused without waiting
            ch.send_nowait(blob(3 * ch.ring_bytes))
        assert side_files(name) == [], "a refused send left its side file"
        s = ch.statistics()
        assert (s.depth, s.sent, s.blocked_senders) == (3, 3, 0)
        assert [ch.recv_nowait() for _ in range(3)] == [b"0", b"1", b"2"]
        with pytest.raises(face.EMPTY):
            ch.recv_nowait()
    finally:
        await ch.close()


async def test_nowait_forms_with_a_side_file_message(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=1)
    try:
        with pytest.raises(face.EMPTY):
            ch.recv_nowait()
        ch.send_nowait(b"x" * 100_000)  # a side-file message
        with pytest.raises(face.FULL):
            ch.send_nowait(b"y" * 100_000)
        assert len(entries(name + ".x")) == 1, "a refused send left its side file"
        assert ch.recv_nowait() == b"x" * 100_000
    finally:
        await ch.destroy()


async def test_ring_bytes_limit(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=100, block_size=256)  # 100 messages, but 25,600 -> 28 KiB
    try:
        n = 0
        while True:
            try:
                ch.send_nowait(blob(1000, n))
            except face.FULL:
                break
            n += 1
        assert n == ch.ring_bytes // 1008
        assert ch.statistics().bytes_used == n * 1008
        assert ch.recv_nowait() == blob(1000, 0)
        ch.send_nowait(b"fits now")
    finally:
        await ch.close()


async def test_minimal_geometry(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=1, block_size=256)
    try:
        ch.send_nowait(b"only")
        with pytest.raises(face.FULL):
            ch.send_nowait(b"")
        assert ch.recv_nowait() == b"only"
    finally:
        await ch.close()


async def test_recv_on_empty_times_out(face: type[Face], name: str) -> None:
    ch = face.create(name)
    try:
        with pytest.raises(face.EMPTY):
            ch.recv_nowait()
        with pytest.raises(face.RECV_TIMED_OUT):
            await ch.recv(timeout=0.05)
        assert ch.statistics().blocked_receivers == 0  # the timed-out waiter unregistered
    finally:
        await ch.close()


# ------------------------------------------------------------------------------------- statistics


async def test_statistics_figures(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=10, block_size=512)
    try:
        s = ch.statistics()
        assert (s.name, s.capacity, s.block_size, s.ring_bytes) == (name, 10, 512, 10 * (8 + 512))
        assert (s.depth, s.bytes_used, s.sent, s.received, s.destroyed) == (0, 0, 0, 0, False)
        assert (s.blocked_receivers, s.blocked_senders) == (0, 0)
        for n in (0, 1, 8, 100):
            await ch.send(b"a" * n)
        s = ch.statistics()
        assert (s.depth, s.sent, s.received) == (4, 4, 0)
        assert s.bytes_used == 4 * (8 + 512)  # each small message takes one slot
        await ch.recv()
        await ch.recv()
        s = ch.statistics()
        assert (s.depth, s.sent, s.received, s.bytes_used) == (2, 4, 2, 2 * (8 + 512))
        big = blob(3 * ch.ring_bytes)
        await ch.send(big)  # a side-file message takes only a small record in the ring
        s = ch.statistics()
        assert s.depth == 3 and s.bytes_used == 3 * (8 + 512)
        other = face.attach(name)
        try:  # every handle sees the same figures
            assert other.statistics() == s
        finally:
            await other.close()
        await ch.recv(), await ch.recv()
        assert await ch.recv() == big
        s = ch.statistics()
        assert (s.depth, s.sent, s.received, s.bytes_used) == (0, 5, 5, 0)
    finally:
        await ch.close()


async def test_statistics_while_waiting(face: type[Face], name: str) -> None:
    """Waiting receivers, then waiting senders, are counted while they wait and not after."""
    ch = face.create(name, capacity=1)
    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(ch.recv)
                await poll_until(lambda: ch.statistics().blocked_receivers >= 1, "a receiver waits")
                s = ch.statistics()
                assert s.blocked_receivers >= 1 and s.blocked_senders == 0
                for i in range(3):
                    await ch.send(b"%d" % i)
            ch.send_nowait(b"fill")
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(ch.send, b"more")
                await poll_until(lambda: ch.statistics().blocked_senders >= 1, "a sender waits")
                s = ch.statistics()
                assert s.blocked_senders >= 1 and s.blocked_receivers == 0 and s.depth == 1
                for _ in range(4):
                    assert await ch.recv() in (b"fill", b"more")
            s = ch.statistics()
            assert (s.depth, s.blocked_receivers, s.blocked_senders, s.sent) == (0, 0, 0, 7)
    finally:
        await ch.destroy()


# ------------------------------------------------------------------------------------- life cycle


async def test_operations_on_destroyed_channel(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=2)
    other = face.attach(name)
    await ch.send(b"dropped")
    await ch.destroy()
    with pytest.raises(ChannelError):  # the destroyer's handle is closed
        await ch.send(b"x")
    ops: list[Callable[[], object]] = [
        lambda: other.send(b"x"),
        lambda: other.send_nowait(b"x"),
        lambda: other.send(blob(3 * other.ring_bytes)),
        other.recv,
        other.recv_nowait,
        lambda: other.recv(timeout=1),
        other.destroy,
    ]
    for op in ops:
        with pytest.raises(ChannelDestroyed):
            result = op()
            if isinstance(result, Awaitable):
                await result
    await other.close()
    with pytest.raises(ChannelDestroyed):
        face.attach(name)
    assert entries(name) == []


async def test_operations_on_closed_handle(face: type[Face], name: str) -> None:
    keeper = face.create(name)
    try:
        ch = face.attach(name)
        await ch.close()
        await ch.close()  # idempotent
        ops: list[Callable[[], object]] = [
            lambda: ch.send(b"x"),
            lambda: ch.send_nowait(b"x"),
            ch.recv,
            ch.recv_nowait,
            ch.statistics,
            ch.destroy,
        ]
        for op in ops:
            with pytest.raises(face.CLOSED) as info:
                result = op()
                if isinstance(result, Awaitable):
                    await result
            assert not isinstance(info.value, ChannelDestroyed), "closing a handle destroyed the channel"
        await keeper.send(b"still works")
        assert keeper.recv_nowait() == b"still works"
        assert keeper.statistics().destroyed is False
    finally:
        await keeper.destroy()


async def test_destroy_twice(face: type[Face], name: str) -> None:
    ch = face.create(name)
    other = face.attach(name)
    await ch.destroy()
    with pytest.raises(ChannelDestroyed):
        await other.destroy()
    with pytest.raises(ChannelError):  # this handle was closed by its destroy
        await ch.destroy()
    await other.close()


async def test_destroy_removes_every_entry(face: type[Face], name: str) -> None:
    ch = face.create(name, capacity=8, block_size=256)
    assert entries(name) == sorted([name, name + ".rbell", name + ".sbell"])
    for k in range(3):
        await ch.send(blob(3 * ch.ring_bytes, k))  # undelivered side-file messages
    await ch.send(b"small")
    assert len(side_files(name)) == 3
    await ch.destroy()
    assert entries(name) == []


async def test_destroy_wakes_the_waiters_of_every_handle(face: type[Face], name: str) -> None:
    """Receivers waiting on an empty channel and senders waiting on a full one, three each on other
    handles of this process, all end with ChannelDestroyed when another handle destroys them."""
    empty_name, full_name = name, fresh_name("full")
    empty, full = face.create(empty_name, capacity=4), face.create(full_name, capacity=1)
    full.send_nowait(b"fill")
    waiters = [face.attach(empty_name) for _ in range(3)] + [face.attach(full_name) for _ in range(3)]
    outcomes: list[str] = []

    async def wait(op: Callable[[], Awaitable[object]]) -> None:
        try:
            await op()
        except ChannelDestroyed:
            outcomes.append("destroyed")
        else:
            outcomes.append("returned")

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for w in waiters[:3]:
                    nursery.start_soon(wait, w.recv)
                for w in waiters[3:]:
                    nursery.start_soon(wait, lambda w=w: w.send(b"t"))
                await poll_until(
                    lambda: empty.statistics().blocked_receivers == 3 and full.statistics().blocked_senders == 3,
                    "every waiter waits",
                )
                await empty.destroy()
                await full.destroy()
        assert outcomes == ["destroyed"] * 6
    finally:
        for w in waiters:
            await w.close()
    assert entries(empty_name) == entries(full_name) == []


# ------------------------------------------------------------------------------------- many at once


async def test_many_senders_and_receivers_on_their_own_handles(face: type[Face], name: str) -> None:
    """Four senders and four receivers, each on its own handle, through a small ring (inline and
    side-file messages): every message arrives once, intact, and each sender's in its order."""
    senders, receivers, per_sender = 4, 4, 300
    ch = face.create(name, capacity=4, block_size=256)
    got: list[list[tuple[int, int]]] = [[] for _ in range(receivers)]

    def message(s: int, q: int) -> bytes:
        body = blob(random.Random(s * per_sender + q).choice((3, 200, 2000)), s * per_sender + q)
        return b"%d:%d:" % (s, q) + body

    async def send(s: int) -> None:
        h = face.attach(name)
        try:
            for q in range(per_sender):
                await h.send(message(s, q))
        finally:
            await h.close()

    async def receive(r: int) -> None:
        h = face.attach(name)
        try:
            while (msg := await h.recv()) != b"":
                s, q, _ = msg.split(b":", 2)
                assert msg == message(int(s), int(q)), "a damaged message"
                got[r].append((int(s), int(q)))
        finally:
            await h.close()

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for r in range(receivers):
                    nursery.start_soon(receive, r)
                async with trio.open_nursery() as sending:
                    for s in range(senders):
                        sending.start_soon(send, s)
                for _ in range(receivers):
                    await ch.send(b"")  # one end mark per receiver, after every sender finished
        every = [m for mine in got for m in mine]
        assert sorted(every) == [(s, q) for s in range(senders) for q in range(per_sender)]
        for mine in got:  # FIFO: each receiver sees each sender's messages in order
            for s in range(senders):
                seq = [q for s_, q in mine if s_ == s]
                assert seq == sorted(seq)
        s = ch.statistics()
        assert (s.depth, s.bytes_used, s.blocked_receivers, s.blocked_senders) == (0, 0, 0, 0)
        assert side_files(name) == []
    finally:
        await ch.destroy()
