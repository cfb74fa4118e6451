"""Shared-memory channels under faults: processes SIGKILLed mid-operation or while holding a lock or
waiting, destruction while processes and tasks wait, and cancellation of trio tasks."""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import trio
import trio.testing

from dragon.transport import Channel, ChannelCorrupted, ChannelDestroyed, ChannelEmpty, TrioChannel
from dragon.transport._shm import entries, run_prefix, shm_path

from channel_worker import EXIT_DESTROYED, WORKER, Worker, pack, payload, poll_until, unpack

WAIT_S = 30.0  # guard against hangs only
PROMPT_S = 10.0  # "promptly": every sleeper looks again at least once a second (SAFETY_WAKE_S)
T = TypeVar("T")


@pytest.fixture
def name2() -> Iterator[str]:
    n = run_prefix("t" + uuid.uuid4().hex[:8]) + "c2"
    yield n
    try:
        Channel.attach(n).destroy()
    except ChannelDestroyed:
        pass


def bounded(fn: Callable[[], T], timeout: float = WAIT_S) -> T:
    """Run a blocking call in a thread and fail (instead of hanging) if it does not return in time."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the test thread below
            error.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{fn} did not return within {timeout} s: the channel is wedged")
    if error:
        raise error[0]
    return result[0]


def check_round_trip(ch: Channel, rng: random.Random) -> None:
    """Send messages of every kind (inline, filling the ring, side-file) through `ch` and back intact."""
    msgs = [pack(9, i, payload(rng, n)) for i, n in enumerate((0, 100, ch.ring_bytes - 24, 3 * ch.ring_bytes))]
    for m in msgs:  # one at a time: the one of ring_bytes - 8 bytes needs the whole ring
        ch.send(m, timeout=WAIT_S)
        assert ch.recv(timeout=WAIT_S) == m
    for m in msgs[:2] + msgs[3:]:
        ch.send(m, timeout=WAIT_S)
    assert [ch.recv(timeout=WAIT_S) for _ in range(3)] == msgs[:2] + msgs[3:]


# ------------------------------------------------------------------------------------- (a) SIGKILL mid-operation


def test_sigkill_mid_operation_loses_no_integrity(name: str) -> None:
    rng = random.Random(5)
    with Channel.create(name, capacity=16, block_size=1024) as ch:
        for round_ in range(10):
            with Worker("flood-send", name, str(round_)) as tx, Worker("flood-recv", name) as rx:
                tx.expect("ready", WAIT_S)
                rx.expect("ready", WAIT_S)
                victims = [tx, rx]
                rng.shuffle(victims)
                for w in victims:  # a random moment of the busy loop (a kill time, not a wait for a state)
                    time.sleep(rng.uniform(0, 0.15))
                    w.kill()
                assert rx.proc.returncode == -9, f"receiver ended with {rx.proc.returncode} (3: bad crc)"
                assert tx.proc.returncode == -9
            # The parent drains what is left (every message intact), then uses the channel normally.
            while True:
                try:
                    sender, _, _ = unpack(bounded(ch.recv_nowait))
                except ChannelEmpty:
                    break
                assert sender == 1
            s = ch.statistics()
            assert (s.depth, s.bytes_used, s.blocked_receivers, s.blocked_senders) == (0, 0, 0, 0), s
            bounded(lambda: check_round_trip(ch, rng))


# ------------------------------------------------------------------------------------- (b) SIGKILL holding the locks


def test_sigkill_while_holding_both_locks(name: str) -> None:
    with Channel.create(name, capacity=4, block_size=1024) as ch:
        ch.send(b"queued")
        with Worker("hold-locks", name) as holder:
            holder.expect("locked", WAIT_S)
            for suffix in (".sbell", ".rbell"):  # really held: our own try-lock fails
                fd = os.open(shm_path(name + suffix), os.O_RDWR | os.O_NONBLOCK)
                try:
                    with pytest.raises(BlockingIOError):
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                finally:
                    os.close(fd)
            holder.kill()
        assert bounded(lambda: ch.recv(timeout=5)) == b"queued"
        bounded(lambda: check_round_trip(ch, random.Random(1)))


# ------------------------------------------------------------------------------------- (c) SIGKILL while waiting


def test_sigkill_blocked_receiver(name: str) -> None:
    with Channel.create(name, capacity=4, block_size=1024) as ch:
        with Worker("recv-one", name) as victim:
            victim.expect("ready", WAIT_S)
            poll_until(lambda: ch.statistics().blocked_receivers == 1, WAIT_S, "the child waits in recv")
            victim.kill()
        assert ch.statistics().blocked_receivers == 0
        with Worker("recv-one", name) as later:
            later.expect("ready", WAIT_S)
            poll_until(lambda: ch.statistics().blocked_receivers == 1, WAIT_S, "the new child waits in recv")
            ch.send(b"wake up")
            assert later.line(WAIT_S) == "got " + b"wake up".hex()
            assert later.wait(WAIT_S) == 0
        s = ch.statistics()
        assert (s.depth, s.blocked_receivers) == (0, 0)


def test_sigkill_blocked_sender(name: str) -> None:
    with Channel.create(name, capacity=1, block_size=1024) as ch:
        ch.send(b"fill")
        with Worker("send-one", name, "10") as victim:
            victim.expect("ready", WAIT_S)
            poll_until(lambda: ch.statistics().blocked_senders == 1, WAIT_S, "the child waits in send")
            victim.kill()
        assert ch.statistics().blocked_senders == 0
        with Worker("send-one", name, "20") as later:
            later.expect("ready", WAIT_S)
            poll_until(lambda: ch.statistics().blocked_senders == 1, WAIT_S, "the new child waits in send")
            assert ch.recv(timeout=WAIT_S) == b"fill"
            assert later.wait(WAIT_S) == 0
        assert ch.recv(timeout=WAIT_S) == b"s" * 20
        assert ch.statistics().depth == 0


# ------------------------------------------------------------------------------------- (d) destroy while waiting


@pytest.mark.parametrize("tasks", [1, 3])
async def test_destroy_wakes_every_waiter(name: str, name2: str, tasks: int) -> None:
    """2 processes blocked in recv and 1 in send, plus `tasks` trio tasks per direction waiting on
    other handles of this process: one destroy each, and every one of them ends with ChannelDestroyed.
    (One channel cannot be empty and full at once, hence two channels.)"""
    empty = Channel.create(name, capacity=4, block_size=1024)
    full = Channel.create(name2, capacity=1, block_size=1024)
    full.send(b"fill")
    trio_empty, trio_full = TrioChannel.attach(name), TrioChannel.attach(name2)
    outcomes: list[str] = []

    async def trio_waiter(op: Callable[[], Awaitable[object]]) -> None:
        try:
            await op()
        except ChannelDestroyed:
            outcomes.append("destroyed")
        else:
            outcomes.append("returned")

    children: list[trio.Process] = []
    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for mode, ch, args in (("recv-one", name, []), ("recv-one", name, []), ("send-one", name2, ["5"])):
                    children.append(await trio.lowlevel.open_process([sys.executable, WORKER, mode, ch, *args]))
                for _ in range(tasks):
                    nursery.start_soon(trio_waiter, trio_empty.receive)
                    nursery.start_soon(trio_waiter, lambda: trio_full.send(b"t"))
                # Everybody waits: 2 children + this process on `empty`, 1 child + this process on `full`.
                while empty.statistics().blocked_receivers < 3 or full.statistics().blocked_senders < 2:
                    await trio.sleep(0.005)  # bounded poll (fail_after above)
                await trio.testing.wait_all_tasks_blocked()
                empty.destroy()
                full.destroy()
                nursery.cancel_scope.deadline = trio.current_time() + PROMPT_S  # cancels a task left waiting
                for proc in children:
                    assert await proc.wait() == EXIT_DESTROYED
        assert outcomes == ["destroyed"] * (2 * tasks), f"{2 * tasks - len(outcomes)} trio tasks still waited"
    finally:
        for proc in children:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for tc in (trio_empty, trio_full):
            await tc.aclose()
        empty.close()
        full.close()
    assert entries(name) == entries(name2) == []


async def test_destroy_through_the_trio_face_wakes_its_own_tasks(name: str) -> None:
    ch = TrioChannel.create(name, capacity=4)
    outcomes: list[str] = []

    async def waiter() -> None:
        with pytest.raises(ChannelDestroyed):
            await ch.receive()
        outcomes.append("destroyed")

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await ch.destroy()
    assert outcomes == ["destroyed"] * 3
    assert entries(name) == []


# ------------------------------------------------------------------------------------- (e) cancellation


async def test_cancelled_receive_loses_nothing(name: str) -> None:
    ch = TrioChannel.create(name, capacity=4)
    try:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for _ in range(3):  # one watcher and two parked tasks, all cancelled
                    nursery.start_soon(ch.receive)
                await trio.testing.wait_all_tasks_blocked()
                assert ch.statistics().blocked_receivers == 1
                nursery.cancel_scope.cancel(reason="test: cancel the receivers")
            assert ch.statistics().blocked_receivers == 0
            with Channel.attach(name) as other:
                other.send(b"after the cancel")
            assert await ch.receive() == b"after the cancel"
            assert ch.statistics().depth == 0
    finally:
        await ch.destroy()


async def test_cancelled_send_puts_nothing_in(name: str) -> None:
    ch = TrioChannel.create(name, capacity=2, block_size=1024)
    try:
        with trio.fail_after(WAIT_S):
            ch.send_nowait(b"one")
            ch.send_nowait(b"two")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ch.send, b"cancelled small")
                nursery.start_soon(ch.send, b"L" * (3 * 4096))  # a side-file message
                await trio.testing.wait_all_tasks_blocked()
                assert ch.statistics().blocked_senders == 1
                nursery.cancel_scope.cancel(reason="test: cancel the senders")
            s = ch.statistics()
            assert (s.depth, s.sent, s.blocked_senders) == (2, 2, 0)
            assert entries(name + ".x") == [], "a cancelled send left its side file"
            assert ch.receive_nowait() == b"one"
            assert ch.receive_nowait() == b"two"
            with pytest.raises(trio.WouldBlock):
                ch.receive_nowait()
    finally:
        await ch.destroy()


# ------------------------------------------------------------------------------------- SIGKILL at every point


@pytest.mark.parametrize("size", [10, 20_000], ids=["inline", "side-file"])
@pytest.mark.parametrize("direction", ["send", "recv"])
def test_sigkill_at_every_bytecode_leaves_channel_consistent(name: str, direction: str, size: int) -> None:
    """A crash may land anywhere: the worker forks a victim per bytecode boundary of the channel code
    and SIGKILLs it exactly there (see channel_worker.mode_crash_points), then checks the channel."""
    with Channel.create(name, capacity=1, block_size=4096):
        done = subprocess.run(
            [sys.executable, WORKER, "crash-points", name, direction, str(size)],
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
    *where, last = done.stdout.splitlines()
    report = json.loads(last)
    assert report["points"] > 50, report  # the victim really was killed at many points
    assert report["violation"] is None, f"{report['violation']}; {where[-1] if where else ''}\n{done.stderr}"


# ---------------------------------------------------------------------------------------------- corruption


def _corrupt(ch: Channel, how: str) -> None:
    """Write into the channel's shared memory what no sender writes (issue 13.10)."""
    w = ch._w
    rb, head = ch.ring_bytes, w[8]
    if how == "length":  # a published record far longer than the ring
        ch._ringq[(head % rb) >> 3] = 1 << 40
        w[8] = head + 16
    elif how == "side":  # a record flagged as naming a side file, naming none a sender makes
        payload = b"/../../etc/passwd"
        ch._ringq[(head % rb) >> 3] = len(payload) | (1 << 63)
        ch._ring[(head % rb) + 8 : (head % rb) + 8 + len(payload)] = payload
        w[8] = head + 8 + ((len(payload) + 7) & ~7)
    else:  # a head behind its tail
        w[16] = head + 64


@pytest.mark.parametrize("how", ["length", "side", "head"])
async def test_a_corrupt_channel_says_so_to_both_faces_and_stays_refused(name2: str, how: str) -> None:
    with Channel.create(name2, capacity=8, block_size=256) as ch:
        ch.send(b"before")
        assert ch.recv() == b"before"
        _corrupt(ch, how)
        for _ in range(2):  # the record is not skipped: every receive says the same
            with pytest.raises(ChannelCorrupted, match="is corrupt"):
                ch.recv(timeout=1)
            with pytest.raises(ChannelCorrupted, match="is corrupt"):
                ch.recv_many(8, timeout=1)
        async with TrioChannel.attach(name2) as tch:
            with trio.fail_after(WAIT_S), pytest.raises(ChannelCorrupted):
                await tch.receive()
        if how == "head":  # no room will ever come: a send says so instead of waiting for it
            with pytest.raises(ChannelCorrupted):
                ch.send(b"x" * 200, timeout=1)
