"""Shared-memory channels, blocking face, in one process: what only it has (staging, packed channels,
held locks), creating and attaching, a model-based test. The semantics both faces share (order,
sizes, full and empty, timeouts, life cycle) are in test_channel_conformance.py."""

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


# ------------------------------------------------------------------------------------- staging and packing


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


def test_context_manager_closes_only_the_handle(name: str) -> None:
    with Channel.create(name) as ch:
        ch.send(b"kept")
    with pytest.raises(ChannelError):
        ch.recv()
    with Channel.attach(name) as again:
        assert again.recv_nowait() == b"kept"


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
