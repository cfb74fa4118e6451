"""Shared-memory channels (transport/_channel.py and its core), blocking face, in one process: the contract of
every operation, sizes on both sides of every boundary, error cases, and a model-based test."""

from __future__ import annotations

import collections
import os
import random
import stat
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dragon.transport import Channel, ChannelDestroyed, ChannelEmpty, ChannelError, ChannelFull
from dragon.transport._shm import entries, shm_path

from chan_names import destroy_leftover, fresh_name


def side_files(name: str) -> list[str]:
    return entries(name + ".x")


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------------------------------- ordering and sizes


def test_fifo_order(name: str) -> None:
    with Channel.create(name, capacity=100, block_size=256) as ch:
        for i in range(100):
            ch.send(b"m%d" % i)
        assert [ch.recv() for _ in range(100)] == [b"m%d" % i for i in range(100)]


def test_zero_byte_message(name: str) -> None:
    with Channel.create(name, capacity=4) as ch:
        ch.send(b"")
        ch.send(b"x")
        ch.send_nowait(b"")
        assert ch.statistics().depth == 3
        assert ch.recv() == b""
        assert ch.recv() == b"x"
        assert ch.recv_nowait() == b""
        with pytest.raises(ChannelEmpty):
            ch.recv_nowait()


def test_sizes_around_every_boundary_arrive_intact(name: str) -> None:
    with Channel.create(name, capacity=4, block_size=1024) as ch:
        ring = ch.ring_bytes
        assert ring == 4 * (8 + 1024)  # capacity slots of 8 + block_size bytes
        sizes = [
            1,
            7,
            8,
            9,
            ch.block_size,
            ring - 9,
            ring - 8,
            ring - 7,
            ring - 1,
            ring,
            ring + 1,
            3 * ring,
            1 << 20,
            5 << 20,
        ]
        for k, n in enumerate(sizes):  # one at a time: ring - 8 fits only into an empty ring
            msg = blob(n, k)
            ch.send(msg, timeout=5)
            assert (len(side_files(name)) == 1) == (n > ring - 8), f"size {n}: wrong path"
            got = ch.recv(timeout=5)
            assert len(got) == n and got == msg, f"size {n} arrived damaged"
            assert side_files(name) == []
        # And several queued together, inline and side-file ones interleaved, in order.
        batch = [blob(n, 100 + k) for k, n in enumerate([ring - 1, 10, ring, 3 * ring])]
        for msg in batch:
            ch.send(msg, timeout=5)
        assert [ch.recv(timeout=5) for _ in batch] == batch
        assert ch.statistics().bytes_used == 0


def test_wrap_around_with_odd_sizes(name: str) -> None:
    rng = random.Random(1)
    with Channel.create(name, capacity=8, block_size=256) as ch:  # a ring of 8 slots of 264 bytes
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


def test_a_staged_message_travels_as_its_side_file_written_ahead(name: str) -> None:
    """`stage` (for a sender that hands messages to another thread: a queue's feeder) writes a message
    too large for the ring to its side file in the caller; `send` and `send_many` then send its name."""
    with Channel.create(name, capacity=8, block_size=1024) as ch:
        small, big = blob(100), blob(3 * ch.ring_bytes, seed=1)
        assert ch.stage(small) is small  # fits the ring: nothing to do ahead
        staged = ch.stage(big)
        assert len(side_files(name)) == 1  # written now, by the caller
        assert not ch.try_send(staged)  # left to `send`, as an unstaged large message is
        ch.send(staged)
        ch.send_many([small, ch.stage(big), small])
        assert len(side_files(name)) == 2
        assert ch.recv() == big
        assert ch.recv_many(8) == [small, big, small]
        assert side_files(name) == []


# ------------------------------------------------------------------------------------- limits and timeouts


def test_capacity_limit_in_messages(name: str) -> None:
    with Channel.create(name, capacity=3, block_size=1024) as ch:
        for i in range(3):
            ch.send_nowait(b"%d" % i)
        with pytest.raises(ChannelFull):
            ch.send_nowait(b"nope")
        with pytest.raises(ChannelFull):
            ch.send(b"nope", timeout=0.05)
        with pytest.raises(ChannelFull):  # a side-file message leaves no side file behind either
            ch.send(blob(3 * ch.ring_bytes), timeout=0.05)
        assert side_files(name) == []
        s = ch.statistics()
        assert (s.depth, s.sent, s.blocked_senders) == (3, 3, 0)
        assert [ch.recv_nowait() for _ in range(3)] == [b"0", b"1", b"2"]
        with pytest.raises(ChannelEmpty):
            ch.recv_nowait()


def test_ring_bytes_limit(name: str) -> None:
    with Channel.create(name, capacity=100, block_size=256) as ch:  # 100 messages, but 25,600 -> 28 KiB
        n = 0
        while True:
            try:
                ch.send_nowait(blob(1000, n))
            except ChannelFull:
                break
            n += 1
        assert n == ch.ring_bytes // 1008
        assert ch.statistics().bytes_used == n * 1008
        assert ch.recv_nowait() == blob(1000, 0)
        ch.send_nowait(b"fits now")


def test_packed_channel_bounds_bytes_not_messages(name: str) -> None:
    with Channel.create(name, capacity=3, block_size=1024, packed=True) as ch:
        assert ch.packed and ch.statistics().packed and Channel.attach(name).packed
        assert ch.ring_bytes == 3 * 1032  # the same ring as unpacked: capacity blocks of block_size
        n = 0
        while True:
            try:
                ch.send_nowait(b"%07d" % n)  # 8 bytes: a record of 16
            except ChannelFull:
                break
            n += 1
        assert n == ch.ring_bytes // 16
        s = ch.statistics()
        assert (s.depth, s.bytes_used, s.sent) == (n, n * 16, n)
        assert ch.approximate_depth() == n
        assert [ch.recv_nowait() for _ in range(n)] == [b"%07d" % i for i in range(n)]
        for _ in range(3):  # still holds `capacity` messages of block_size bytes
            ch.send_nowait(blob(1024))
        with pytest.raises(ChannelFull):
            ch.send_nowait(b"")


def test_recv_on_empty_times_out(name: str) -> None:
    with Channel.create(name) as ch:
        with pytest.raises(ChannelEmpty):
            ch.recv_nowait()
        with pytest.raises(ChannelEmpty):
            ch.recv(timeout=0.05)
        assert ch.statistics().blocked_receivers == 0  # the timed-out waiter unregistered


def test_statistics_figures(name: str) -> None:
    with Channel.create(name, capacity=10, block_size=512) as ch:
        s = ch.statistics()
        assert (s.name, s.capacity, s.block_size, s.ring_bytes) == (name, 10, 512, 10 * (8 + 512))
        assert (s.depth, s.bytes_used, s.sent, s.received, s.destroyed) == (0, 0, 0, 0, False)
        assert (s.blocked_receivers, s.blocked_senders) == (0, 0)
        for n in (0, 1, 8, 100):
            ch.send(b"a" * n)
        s = ch.statistics()
        assert (s.depth, s.sent, s.received) == (4, 4, 0)
        assert s.bytes_used == 4 * (8 + 512)  # each small message takes one slot
        ch.recv()
        ch.recv()
        s = ch.statistics()
        assert (s.depth, s.sent, s.received, s.bytes_used) == (2, 4, 2, 2 * (8 + 512))
        big = blob(3 * ch.ring_bytes)
        ch.send(big)  # a side-file message takes only a small record in the ring
        s = ch.statistics()
        assert s.depth == 3 and s.bytes_used == 3 * (8 + 512)
        with Channel.attach(name) as other:  # every handle sees the same figures
            assert other.statistics() == s
        ch.recv(), ch.recv()
        assert ch.recv() == big
        s = ch.statistics()
        assert (s.depth, s.sent, s.received, s.bytes_used) == (0, 5, 5, 0)


# ------------------------------------------------------------------------------------- life cycle


def test_create_with_taken_name(name: str) -> None:
    with Channel.create(name, capacity=4) as ch:
        ch.send(b"before")
        with pytest.raises(FileExistsError):
            Channel.create(name, capacity=8)
        ch.send(b"after")
        assert ch.statistics().capacity == 4
        with Channel.attach(name) as other:
            assert other.recv_nowait() == b"before"
            assert other.recv_nowait() == b"after"


def test_attach_to_missing_name() -> None:
    with pytest.raises(ChannelDestroyed):
        Channel.attach(fresh_name())


def test_attach_sees_same_channel(name: str) -> None:
    with Channel.create(name, capacity=4) as ch, Channel.attach(ch.descriptor) as other:
        other.send(b"hello")
        assert ch.recv_nowait() == b"hello"


def test_operations_on_destroyed_channel(name: str) -> None:
    ch = Channel.create(name, capacity=2)
    other = Channel.attach(name)
    ch.send(b"dropped")
    ch.destroy()
    with pytest.raises(ChannelError):  # the destroyer's handle is closed
        ch.send(b"x")
    for op in (
        lambda: other.send(b"x"),
        lambda: other.send_nowait(b"x"),
        lambda: other.send(blob(3 * other.ring_bytes)),
        lambda: other.recv(),
        lambda: other.recv_nowait(),
        lambda: other.recv(timeout=1),
        other.destroy,
    ):
        with pytest.raises(ChannelDestroyed):
            op()
    other.close()
    with pytest.raises(ChannelDestroyed):
        Channel.attach(name)
    assert entries(name) == []


def test_operations_on_closed_handle(name: str) -> None:
    with Channel.create(name) as keeper:
        ch = Channel.attach(name)
        ch.close()
        ch.close()  # idempotent
        for op in (
            lambda: ch.send(b"x"),
            lambda: ch.send_nowait(b"x"),
            ch.recv,
            ch.recv_nowait,
            ch.statistics,
            ch.destroy,
        ):
            with pytest.raises(ChannelError) as info:
                op()
            assert not isinstance(info.value, ChannelDestroyed), "closing a handle destroyed the channel"
        keeper.send(b"still works")
        assert keeper.recv_nowait() == b"still works"


def test_context_manager_closes_only_the_handle(name: str) -> None:
    with Channel.create(name) as ch:
        ch.send(b"kept")
    with pytest.raises(ChannelError):
        ch.recv()
    with Channel.attach(name) as again:
        assert again.recv_nowait() == b"kept"


def test_destroy_twice(name: str) -> None:
    ch = Channel.create(name)
    other = Channel.attach(name)
    ch.destroy()
    with pytest.raises(ChannelDestroyed):
        other.destroy()
    with pytest.raises(ChannelError):  # this handle was closed by its destroy
        ch.destroy()


def test_destroy_removes_every_entry(name: str) -> None:
    ch = Channel.create(name, capacity=8, block_size=256)
    assert entries(name) == sorted([name, name + ".rbell", name + ".sbell"])
    for k in range(3):
        ch.send(blob(3 * ch.ring_bytes, k))  # undelivered side-file messages
    ch.send(b"small")
    assert len(side_files(name)) == 3
    ch.destroy()
    assert entries(name) == []


def test_entries_are_owner_only(name: str) -> None:
    with Channel.create(name, capacity=8, block_size=256) as ch:
        ch.send(blob(3 * ch.ring_bytes))
        made = entries(name)
        assert len(made) == 4
        for entry in made:
            st_ = os.stat(shm_path(entry))
            assert stat.S_IMODE(st_.st_mode) == 0o600, f"{entry} has mode {oct(st_.st_mode)}"
            assert st_.st_uid == os.getuid()
        assert stat.S_ISFIFO(os.stat(shm_path(name + ".rbell")).st_mode)
        assert stat.S_ISFIFO(os.stat(shm_path(name + ".sbell")).st_mode)


@pytest.mark.parametrize(("capacity", "block_size"), [(0, 1024), (-1, 1024), (1, 255), (1, 0), (4, -256)])
def test_bad_geometry(name: str, capacity: int, block_size: int) -> None:
    with pytest.raises(ValueError):
        Channel.create(name, capacity=capacity, block_size=block_size)
    assert entries(name) == []


def test_minimal_geometry(name: str) -> None:
    with Channel.create(name, capacity=1, block_size=256) as ch:
        ch.send_nowait(b"only")
        with pytest.raises(ChannelFull):
            ch.send_nowait(b"")
        assert ch.recv_nowait() == b"only"


# ------------------------------------------------------------------------------------- model-based test

CAP, BLOCK = 8, 512  # 8 slots of 8 + 512 bytes: small messages hit the count, big ones the bytes
RING = CAP * (8 + BLOCK)

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("send"),
            st.one_of(
                st.integers(0, 64),
                st.integers(0, 3 * RING),
                st.sampled_from([RING - 9, RING - 8, RING - 7, RING, BLOCK]),
            ),
        ),
        st.tuples(st.just("recv"), st.just(0)),
    ),
    max_size=60,
)


def _record_bytes(n: int, packed: bool) -> int:
    return max(8 if packed else 8 + BLOCK, 8 + ((n + 7) & ~7))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.booleans())
def test_behaves_like_a_bounded_deque(script: list[tuple[str, int]], packed: bool) -> None:
    name = fresh_name()
    try:
        with Channel.create(name, capacity=CAP, block_size=BLOCK, packed=packed) as ch:
            assert ch.ring_bytes == RING
            model: collections.deque[tuple[bytes, int]] = collections.deque()  # (message, ring bytes)
            for i, (op, size) in enumerate(script):
                if op == "send":
                    msg = blob(size, i)
                    if size > RING - 8:  # the record names the side file: NAME.x + 16 random hex digits
                        rec = _record_bytes(len(".x") + 16, packed)
                    else:
                        rec = _record_bytes(size, packed)
                    used = sum(r for _, r in model)
                    if used + rec > RING:
                        with pytest.raises(ChannelFull):
                            ch.send_nowait(msg)
                    else:
                        ch.send_nowait(msg)
                        model.append((msg, rec))
                elif model:
                    assert ch.recv_nowait() == model.popleft()[0]
                else:
                    with pytest.raises(ChannelEmpty):
                        ch.recv_nowait()
                s = ch.statistics()
                assert (s.depth, s.bytes_used) == (len(model), sum(r for _, r in model))
                assert len(side_files(name)) == sum(1 for m, _ in model if len(m) > RING - 8)
            assert [ch.recv_nowait() for _ in range(len(model))] == [m for m, _ in model]
    finally:
        destroy_leftover(name)
    assert entries(name) == []


# ------------------------------------------------------------------------------------- held locks


@pytest.mark.parametrize("side", ["send", "recv"])
def test_held_lock_excludes_other_handles_until_closed(name: str, side: str) -> None:
    """`hold_lock`: the holder's operations of that direction work as before; another handle's wait
    (as another process's would) until the holder closes, then go through."""
    with Channel.create(name, capacity=8) as holder, Channel.attach(name) as other:
        holder.hold_lock(side)
        holder.hold_lock(side)  # idempotent
        holder.send(b"a")
        assert holder.recv() == b"a"
        holder.send_many([b"b", b"c"])
        assert holder.recv_many(5) == [b"b", b"c"]
        outcome: list[bytes | None] = []
        op = (lambda: outcome.append(other.send(b"d"))) if side == "send" else (lambda: outcome.append(other.recv()))
        if side == "recv":
            holder.send(b"d")
        worker = threading.Thread(target=op, daemon=True)
        worker.start()
        worker.join(0.3)
        assert worker.is_alive() and outcome == []  # blocked on the held lock (the message is there)
        holder.close()
        worker.join(10)
        assert not worker.is_alive()
        if side == "send":
            assert other.recv() == b"d"
        else:
            assert outcome == [b"d"]


def test_hold_lock_on_closed_handle(name: str) -> None:
    ch = Channel.create(name, capacity=2)
    ch.close()
    with pytest.raises(ChannelError, match="closed"):
        ch.hold_lock("recv")
    Channel.attach(name).destroy()
