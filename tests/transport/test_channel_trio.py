"""The trio face of shared-memory channels (transport/_trio_channel.py): many waiting tasks with a
responsive event loop, interop with the blocking face in another process, closing. What both faces
share is tested on both in test_channel_conformance.py."""

from __future__ import annotations

import json
import random
import sys

import pytest
import trio
import trio.testing

from dragon.transport import Channel, TrioChannel

from chan_names import fresh_name
from channel_worker import WORKER, log_uniform, pack, payload, unpack

WAIT_S = 60.0  # guard against hangs only
RING = 16 * (8 + 1024)  # ring of the interop channels: 16 slots of 8 + block 1024 bytes


# ------------------------------------------------------------------------------------- (a) many waiting tasks


async def test_hundred_waiting_tasks_keep_the_loop_responsive() -> None:
    names = [fresh_name(f"c{i}") for i in range(10)]
    chans = [TrioChannel.create(n, capacity=16) for n in names]
    got: dict[int, list[bytes]] = {}

    async def waiter(task: int, ch: TrioChannel) -> None:
        msg = await ch.receive()
        got.setdefault(task, []).append(msg)

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for c, ch in enumerate(chans):
                    for t in range(10):
                        nursery.start_soon(waiter, 10 * c + t, ch)
                await trio.testing.wait_all_tasks_blocked()
                assert all(ch.statistics().blocked_receivers >= 1 for ch in chans)
                with trio.fail_after(WAIT_S):  # the heartbeat runs while 100 tasks wait
                    for _ in range(200):
                        await trio.sleep(0.001)
                assert got == {}
                await trio.run_process([sys.executable, WORKER, "send-each", "10", *names])
        assert sorted(got) == list(range(100)), "some task got nothing"
        assert all(len(msgs) == 1 for msgs in got.values()), "some task got more than one message"
        for c in range(10):  # the 10 tasks of channel c got its 10 messages, one each
            mine = sorted(got[10 * c + t][0] for t in range(10))
            assert mine == sorted(f"{c}:{i}".encode() for i in range(10))
        assert all(ch.statistics().depth == 0 for ch in chans)
    finally:
        for ch in chans:
            await ch.destroy()


# ------------------------------------------------------------------------------------- (b) interop


async def test_blocking_and_trio_faces_interoperate() -> None:
    pings, stream = 1_000, 9_000  # 10,000 messages each way
    to_child, from_child = fresh_name("in"), fresh_name("out")
    tx = TrioChannel.create(to_child, capacity=16, block_size=1024)  # 16 KiB rings (RING): side files too
    rx = TrioChannel.create(from_child, capacity=16, block_size=1024)
    report: dict[str, list[str]] = {}

    async def child() -> None:
        done = await trio.run_process(
            [sys.executable, WORKER, "echo", to_child, from_child, str(pings), str(stream)], capture_stdout=True
        )
        report.update(json.loads(done.stdout))

    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)
                rng = random.Random(3)
                for i in range(pings):  # ping-pong: one message in flight at a time
                    msg = pack(0, i, payload(rng, rng.randrange(64) if i % 10 else 3 * RING))
                    await tx.send(msg)
                    assert await rx.receive() == msg

                async def stream_out() -> None:
                    srng = random.Random(5)
                    for i in range(pings, pings + stream):
                        await tx.send(pack(0, i, payload(srng, log_uniform(srng, 1, 3 * RING))))

                nursery.start_soon(stream_out)
                srng = random.Random(11)  # the child's sender uses this seed (channel_worker.mode_echo)
                for i in range(stream):  # streaming both ways at once
                    msg = await rx.receive()
                    assert unpack(msg)[:2] == (1, i)
                    assert msg == pack(1, i, payload(srng, log_uniform(srng, 1, 3 * RING)))
        assert report == {"errors": []}
        for ch in (tx, rx):
            s = ch.statistics()
            assert (s.depth, s.sent, s.received) == (0, pings + stream, pings + stream)
    finally:
        for ch in (tx, rx):
            await ch.destroy()


# ------------------------------------------------------------------------------------- errors


async def test_aclose_wakes_own_tasks_with_closed_resource_error(name: str) -> None:
    ch = TrioChannel.create(name)
    keeper = Channel.attach(name)
    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:

                async def waiter() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await ch.receive()

                for _ in range(3):
                    nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                await ch.aclose()
        await ch.aclose()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await ch.send(b"x")
        s = keeper.statistics()
        assert (s.destroyed, s.blocked_receivers) == (False, 0)
    finally:
        keeper.destroy()
