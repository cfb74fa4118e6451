"""The batch calls of the blocking face: `send_many` and `recv_many`."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragon.transport import Channel, ChannelEmpty, ChannelFull
from dragon.transport._channel import PUBLISH_EVERY
from dragon.transport._shm import entries, run_prefix


@pytest.fixture
def ch() -> Iterator[Channel]:
    name = run_prefix("t" + uuid.uuid4().hex[:8]) + "batch"
    chan = Channel.create(name, capacity=8, block_size=256)
    yield chan
    chan.destroy()
    assert entries(name) == []


def test_send_many_then_recv_many_keeps_order(ch: Channel) -> None:
    msgs = [os.urandom(n) for n in (0, 1, 100, 256, 5000, 3)]  # 5000 B: larger than the ring
    ch.send_many(msgs)
    assert ch.recv_many(100) == msgs
    with pytest.raises(ChannelEmpty):
        ch.recv_nowait()


def test_recv_many_takes_at_most_max(ch: Channel) -> None:
    ch.send_many([b"a", b"b", b"c"])
    assert ch.recv_many(2) == [b"a", b"b"]
    assert ch.recv_many(2) == [b"c"]


def test_send_many_waits_for_room_and_delivers_everything(ch: Channel) -> None:
    msgs = [i.to_bytes(4, "little") for i in range(1000)]  # far more than the 8 the channel holds
    got: list[bytes] = []

    def consume() -> None:
        while len(got) < len(msgs):
            got.extend(ch.recv_many(16, timeout=10))

    t = threading.Thread(target=consume)
    t.start()
    ch.send_many(msgs, timeout=10)
    t.join(timeout=30)
    assert got == msgs


def test_send_many_timeout_sends_a_prefix(ch: Channel) -> None:
    with pytest.raises(ChannelFull):
        ch.send_many([bytes([i]) for i in range(20)], timeout=0.05)
    got = ch.recv_many(100)
    assert got == [bytes([i]) for i in range(8)]  # what fitted, in order; nothing after the failure
    assert list(entries(ch.name + ".x")) == []


def test_recv_many_times_out_when_empty(ch: Channel) -> None:
    with pytest.raises(ChannelEmpty):
        ch.recv_many(4, timeout=0.05)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.lists(st.integers(0, 700), min_size=1, max_size=12), st.integers(1, 9)), max_size=25))
def test_batches_behave_like_a_queue(script: list[list[int] | int]) -> None:
    """Random send_many batches (sizes around the 256-byte block and past the ring) and recv_many
    limits through a small ring keep FIFO order and lose nothing."""
    name = run_prefix("t" + uuid.uuid4().hex[:8]) + "hb"
    chan = Channel.create(name, capacity=4, block_size=256)
    model: list[bytes] = []
    try:
        for k, step in enumerate(script):
            if isinstance(step, list):
                batch = [bytes([k % 256]) * n for n in step]
                try:
                    chan.send_many(batch, timeout=0)
                    model.extend(batch)
                except ChannelFull:  # a prefix of the batch went in, in order: drain and compare
                    expected, drained = model + batch, []
                    while True:
                        try:
                            drained.extend(chan.recv_many(100, timeout=0))
                        except ChannelEmpty:
                            break
                    assert len(model) <= len(drained) < len(expected)
                    assert drained == expected[: len(drained)]
                    model.clear()
            elif model:
                got = chan.recv_many(step, timeout=0)
                assert got == model[: len(got)] and 1 <= len(got) <= step
                del model[: len(got)]
        while model:
            got = chan.recv_many(100, timeout=0)
            assert got == model[: len(got)]
            del model[: len(got)]
    finally:
        chan.destroy()
    assert entries(name) == []


class _Gate(bytes):
    """A message whose length is told (so that it can be sent) only once `GATE` is set."""

    def __len__(self) -> int:
        assert GATE.wait(10), "the receiver never saw the first part of the batch"
        return super().__len__()


GATE = threading.Event()


def test_a_long_batch_is_published_part_by_part() -> None:
    name = run_prefix("t" + uuid.uuid4().hex[:8]) + "batch"
    chan = Channel.create(name, capacity=1000, block_size=256, packed=True)
    try:
        GATE.clear()
        assert PUBLISH_EVERY < 300
        msgs = [b"%05d" % k for k in range(600)]
        msgs[300] = _Gate(msgs[300])  # in the second part or later
        sender = threading.Thread(target=chan.send_many, args=(msgs,))
        sender.start()
        try:
            first = chan.recv(timeout=5)  # ChannelEmpty if nothing is visible before the whole batch
        finally:
            GATE.set()
            sender.join(10)
        assert first == msgs[0] and not sender.is_alive()
        assert [first] + [chan.recv_nowait() for _ in msgs[1:]] == msgs
    finally:
        chan.destroy()
    assert entries(name) == []
