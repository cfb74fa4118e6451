"""AsyncSocket: pyzmq sockets waited on by trio (transport/zsock.py), on real TCP sockets of 127.0.0.1.

No sleep waits for a state: every wait is bounded (trio.fail_after) and waits for the event itself.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import zmq

from dragon.transport.zsock import YIELD_EVERY, AsyncSocket

LOOPBACK = "tcp://127.0.0.1:*"

# A child process that pushes `n` numbered messages of `size` bytes (number first, 8 bytes) to argv[1],
# half of them one by one, half in batches, then waits until the parent closes its stdin.
PUSHER = """
import sys, trio, zmq
from dragon.transport.zsock import YIELD_EVERY, AsyncSocket

async def main(endpoint, n, size):
    ctx = zmq.Context()
    s = AsyncSocket(ctx.socket(zmq.PUSH))
    s.sock.sndhwm = 16
    s.sock.connect(endpoint)
    msgs = [[i.to_bytes(8, "little"), bytes(size)] for i in range(n)]
    for m in msgs[: n // 2]:
        await s.send_multipart(m)
    i = n // 2
    while i < n:
        i += s.try_send_many(msgs[i : i + 100])
        if i < n:
            await s.send_multipart(msgs[i])
            i += 1
    await trio.wrap_file(sys.stdin).read()
    s.close(linger_ms=1000)
    ctx.term()

trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    c: zmq.Context[Any] = zmq.Context()
    yield c
    c.destroy(linger=0)


def bound(ctx: zmq.Context[Any], kind: int, **opts: int) -> tuple[AsyncSocket, str]:
    """An AsyncSocket of `kind` bound on an ephemeral port of 127.0.0.1, and its endpoint."""
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    for name, value in opts.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    sock.bind(LOOPBACK)
    return AsyncSocket(sock), sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connected(ctx: zmq.Context[Any], kind: int, endpoint: str, **opts: int) -> AsyncSocket:
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    for name, value in opts.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    sock.connect(endpoint)
    return AsyncSocket(sock)


def number(msg: list[bytes]) -> int:
    return int.from_bytes(msg[0], "little")


def numbered(i: int, payload: bytes = b"") -> list[bytes]:
    return [i.to_bytes(8, "little"), payload]


async def test_messages_cross_two_tasks_in_order_with_backpressure(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL, rcvhwm=4)
    push = connected(ctx, zmq.PUSH, endpoint, sndhwm=4)
    n = 20_000
    got: list[int] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def send_all() -> None:
                for i in range(n):
                    await push.send_multipart(numbered(i, b"x" * 64))

            nursery.start_soon(send_all)
            while len(got) < n:
                if len(got) % 2:
                    got.append(number(await pull.recv_multipart()))
                else:
                    got.extend(number(m) for m in await pull.recv_many(50))
    assert got == list(range(n))
    push.close()
    pull.close()


async def test_messages_cross_two_processes_without_loss_and_in_order(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL)
    n, size = 5_000, 1000
    got: list[int] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            cmd = [sys.executable, "-c", PUSHER, endpoint, str(n), str(size)]
            child = await nursery.start(partial(trio.run_process, cmd, stdin=subprocess.PIPE))
            while len(got) < n:
                msgs = await pull.recv_many(64, copy=False)
                assert all(len(m[1].bytes) == size for m in msgs)
                got.extend(int.from_bytes(m[0].bytes, "little") for m in msgs)
            assert child.stdin is not None
            await child.stdin.aclose()
    assert child.returncode == 0
    assert got == list(range(n))
    pull.close()


async def test_can_recv_says_whether_a_message_is_there_without_taking_it(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL)
    push = connected(ctx, zmq.PUSH, endpoint)
    assert not pull.can_recv()
    with trio.fail_after(10):
        await push.send_multipart(numbered(7))
        while not pull.can_recv():  # a bounded poll: the message is on its way through libzmq
            await trio.lowlevel.checkpoint()
        assert pull.can_recv()  # looking takes nothing
        assert number(await pull.recv_multipart()) == 7
    assert not pull.can_recv()
    push.close()
    pull.close()
    with pytest.raises(trio.ClosedResourceError):
        pull.can_recv()


async def test_concurrent_senders_on_one_socket_keep_each_senders_order(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL, rcvhwm=8)
    push = connected(ctx, zmq.PUSH, endpoint, sndhwm=8)
    senders, n = 4, 2_000
    got: dict[int, list[int]] = {s: [] for s in range(senders)}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for s in range(senders):

                async def send_all(s: int = s) -> None:
                    for i in range(n):
                        await push.send_multipart([bytes([s]), i.to_bytes(4, "little")])

                nursery.start_soon(send_all)
            for _ in range(senders * n):
                s_, i_ = await pull.recv_multipart()
                got[s_[0]].append(int.from_bytes(i_, "little"))
    assert got == {s: list(range(n)) for s in range(senders)}
    push.close()
    pull.close()


async def test_a_receiver_and_a_sender_of_one_socket_do_not_miss_each_others_wake_ups(
    ctx: zmq.Context[Any],
) -> None:
    """Echoes through one DEALER socket, a sending task and a receiving task, up to `window` messages in
    flight: each call of one may consume the fd's edge the other sleeps for, so without the re-check
    (kick) one of them hangs."""
    router, endpoint = bound(ctx, zmq.ROUTER)
    dealer = connected(ctx, zmq.DEALER, endpoint, sndhwm=2, rcvhwm=2)
    rounds, window = 8_000, 32
    echoed: list[int] = []
    turn = trio.Semaphore(window)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def echo() -> None:
                while True:
                    await router.send_multipart(await router.recv_multipart())

            async def send_all() -> None:
                for i in range(rounds):
                    await turn.acquire()
                    await dealer.send_multipart(numbered(i))

            nursery.start_soon(echo)
            nursery.start_soon(send_all)
            while len(echoed) < rounds:
                echoed.append(number(await dealer.recv_multipart()))
                turn.release()
            nursery.cancel_scope.cancel()
    assert echoed == list(range(rounds))
    dealer.close()
    router.close()


async def test_a_cancelled_receive_loses_no_message(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL)
    push = connected(ctx, zmq.PUSH, endpoint)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            cancelled = trio.Event()

            async def receive_then_give_up(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await pull.recv_multipart()
                    pytest.fail("the receive returned although nothing was sent")
                cancelled.set()

            scope = await nursery.start(receive_then_give_up)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await cancelled.wait()
        await push.send_multipart([b"kept"])
        assert await pull.recv_multipart() == [b"kept"]
    push.close()
    pull.close()


async def test_receives_cancelled_at_random_moments_lose_no_message(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL, rcvhwm=16)
    push = connected(ctx, zmq.PUSH, endpoint, sndhwm=16)
    n = 5_000
    rng = random.Random(16)
    got: list[int] = []
    cancels = 0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def send_all() -> None:
                for i in range(n):
                    await push.send_multipart(numbered(i))

            nursery.start_soon(send_all)
            while len(got) < n:
                with trio.move_on_after(rng.choice((0, 1e-5, 1e-4))) as scope:
                    if rng.random() < 0.5:
                        got.append(number(await pull.recv_multipart()))
                    else:
                        got.extend(number(m) for m in await pull.recv_many(10))
                cancels += scope.cancelled_caught
    assert got == list(range(n))
    assert cancels > 0
    push.close()
    pull.close()


async def test_a_send_waits_at_the_high_water_mark_and_resumes_when_the_receiver_drains(
    ctx: zmq.Context[Any],
) -> None:
    # small kernel buffers too (no autotuning), so a few messages fill the whole path
    small = {"sndbuf": 1 << 16, "rcvbuf": 1 << 16}
    pull, endpoint = bound(ctx, zmq.PULL, rcvhwm=1, **small)
    push = connected(ctx, zmq.PUSH, endpoint, sndhwm=1, **small)
    n, payload = 64, bytes(1 << 18)
    sent = 0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def send_all() -> None:
                nonlocal sent
                for i in range(n):
                    await push.send_multipart(numbered(i, payload))
                    sent += 1

            nursery.start_soon(send_all)
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            assert 0 < sent < n, "the sender should be blocked by the high-water mark"
            assert not push.try_send_multipart(numbered(n))
            got = [number(await pull.recv_multipart()) for _ in range(n)]
    assert sent == n
    assert got == list(range(n))
    push.close()
    pull.close()


async def test_a_cancelled_send_queues_nothing(ctx: zmq.Context[Any]) -> None:
    push, endpoint = bound(ctx, zmq.PUSH, sndhwm=1)  # no peer yet: nothing can be sent
    with trio.fail_after(10):
        with trio.move_on_after(0.05) as scope:
            await push.send_multipart([b"cancelled"])
        assert scope.cancelled_caught
        pull = connected(ctx, zmq.PULL, endpoint)
        await push.send_multipart([b"sent"])
        assert await pull.recv_multipart() == [b"sent"]
        with trio.move_on_after(0.3):
            pytest.fail(f"a cancelled send was delivered after all: {await pull.recv_multipart()}")
    push.close()
    pull.close()


async def test_close_wakes_every_waiting_task_with_closed_resource_error(ctx: zmq.Context[Any]) -> None:
    pull, _ = bound(ctx, zmq.PULL)
    woken: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for name in ("one", "two"):

                async def receive(name: str = name) -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await pull.recv_multipart()
                    woken.append(name)

                nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            pull.close()
    assert sorted(woken) == ["one", "two"]
    with pytest.raises(trio.ClosedResourceError):
        await pull.recv_many(1)
    with pytest.raises(trio.ClosedResourceError):
        pull.try_send_multipart([b"x"])


async def test_bad_arguments_are_named(ctx: zmq.Context[Any]) -> None:
    push, _ = bound(ctx, zmq.PUSH)
    with pytest.raises(ValueError, match="max_n must be at least 1"):
        await push.recv_many(0)
    with pytest.raises(ValueError, match="at least one frame"):
        push.try_send_multipart([])
    push.close()


async def test_a_task_moving_messages_without_waiting_still_lets_other_tasks_run(ctx: zmq.Context[Any]) -> None:
    pull, endpoint = bound(ctx, zmq.PULL)
    push = connected(ctx, zmq.PUSH, endpoint)
    n = 20 * YIELD_EVERY
    ticks = 0
    with trio.fail_after(10):
        await push.send_multipart([b"first"])  # connected
        assert await pull.recv_multipart() == [b"first"]
        async with trio.open_nursery() as nursery:

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await trio.lowlevel.checkpoint()
                    ticks += 1

            nursery.start_soon(tick)
            await trio.lowlevel.checkpoint()  # tick runs
            ticks = 0
            for i in range(n):
                await push.send_multipart(numbered(i))
            for _ in range(n):
                await pull.recv_multipart()
            nursery.cancel_scope.cancel()
    assert ticks >= 2 * n // YIELD_EVERY - 2
    push.close()
    pull.close()
