"""`Channel.lease_lock`: a sole receiver (or sender) keeps its direction's flock, and gives it up safely.

The lease must never cost correctness: another handle that comes (in another process, or in this
one) gets through within about LEASE_POLL_S even if the leaseholder never operates again; a
leaseholder SIGKILLed while leasing leaves nothing held; a forked child never keeps its parent's
lease; `hold_lock` on a leased handle makes the lease permanent.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import trio

from dragon.transport import Channel, ChannelError, TrioChannel
from dragon.transport._layout import W_RSHARED, W_SSHARED
from dragon.transport._leases import LEASE_POLL_S

from channel_worker import Worker, poll_until

WAIT_S = 30.0  # guard against hangs only
PROMPT_S = 5.0  # "promptly": the lease is given up within LEASE_POLL_S (0.01 s); slack for a loaded machine


def test_sole_handle_leases_both_directions(name: str) -> None:
    with Channel.create(name, capacity=4) as ch:
        ch.lease_lock("recv")
        ch.lease_lock("send")
        ch.lease_lock("send")  # idempotent
        assert ch._leased == frozenset()  # taken at the first operation, not before
        ch.send(b"a")
        assert ch.recv() == b"a"
        assert ch._leased == {ch.rbell, ch.sbell}
        assert ch.try_send(b"b") and ch.recv_many(4) == [b"b"]
        ch.send_many([b"c"] * 4)
        assert not ch.try_send(b"full")  # no room: False, nothing sent
        assert ch.recv_many(8) == [b"c"] * 4
        assert (ch._w[W_RSHARED], ch._w[W_SSHARED]) == (0, 0)


@pytest.mark.parametrize("side", ["recv", "send"])
def test_other_process_gets_through_an_idle_lease(name: str, side: str) -> None:
    """The leaseholder (another process) does one operation and then nothing: our handle's operation
    of the same direction still goes through promptly, and the direction is shared from then on."""
    with Channel.create(name, capacity=8) as ch, Worker("lease", name, side) as holder:
        holder.expect("ready", WAIT_S)
        if side == "recv":
            ch.send_many([b"first", b"second"])
        holder.expect("leased True", WAIT_S)
        t0 = time.monotonic()
        if side == "recv":
            assert ch.recv(timeout=WAIT_S) == b"second"
        else:
            ch.send(b"ours", timeout=WAIT_S)
            assert ch.recv_many(4) == [b"leased", b"ours"]
        assert time.monotonic() - t0 < PROMPT_S
        assert ch._w[W_RSHARED if side == "recv" else W_SSHARED] == 1


@pytest.mark.parametrize("side", ["recv", "send"])
def test_leaseholder_sigkilled(name: str, side: str) -> None:
    with Channel.create(name, capacity=8) as ch:
        with Worker("lease", name, side) as holder:
            holder.expect("ready", WAIT_S)
            if side == "recv":
                ch.send_many([b"first", b"second"])
            holder.expect("leased True", WAIT_S)
            holder.kill()  # while leasing: the kernel releases the flock
        if side == "recv":
            assert ch.recv(timeout=WAIT_S) == b"second"
        else:
            ch.send(b"ours", timeout=WAIT_S)
            assert ch.recv_many(4) == [b"leased", b"ours"]
        s = ch.statistics()
        assert (s.depth, s.blocked_receivers, s.blocked_senders) == (0, 0, 0)


def test_second_handle_in_process_while_holder_waits(name: str) -> None:
    """Two handles in one process (a queue handed back to its maker): the leaseholder sleeps in recv
    (registered as a waiter); the other handle's receive gets through, and both go on receiving."""
    import threading

    with Channel.create(name, capacity=8) as a, Channel.attach(name) as b:
        a.lease_lock("recv")
        a.send(b"x")
        assert a.recv() == b"x" and a._leased
        got: list[bytes] = []
        waiter = threading.Thread(target=lambda: got.append(a.recv(timeout=WAIT_S)), daemon=True)
        waiter.start()
        poll_until(lambda: a.statistics().blocked_receivers == 1, WAIT_S, "the leaseholder waits in recv")
        a.send_many([b"1", b"2"])
        waiter.join(WAIT_S)
        assert got == [b"1"]
        assert b.recv(timeout=WAIT_S) == b"2"
        poll_until(lambda: not a._leased, WAIT_S, "the lease is given up")
        a.send_many([b"3", b"4"])
        assert sorted([a.recv(timeout=WAIT_S), b.recv(timeout=WAIT_S)]) == [b"3", b"4"]


def test_forked_child_does_not_keep_the_lease(name: str) -> None:
    """A flock belongs to the open file description, which fork shares: the child gets one of its
    own, so once the parent's handle is closed another handle receives while the child lives on."""
    with Channel.create(name, capacity=8) as ch:
        leaser = Channel.attach(name)
        leaser.lease_lock("recv")
        ch.send_many([b"a", b"b"])
        assert leaser.recv() == b"a" and leaser._leased
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no lease, then wait for the parent's word
            os._exit(0 if not leaser._leased and os.read(r, 1) == b"." else 1)
        try:
            leaser.close()
            assert ch.recv(timeout=WAIT_S) == b"b"  # would block on the child's copy of the lease
        finally:
            os.write(w, b".")
            _, status = os.waitpid(pid, 0)
            os.close(r)
            os.close(w)
        assert os.waitstatus_to_exitcode(status) == 0


def test_idle_lease_is_given_back_and_taken_again(name: str) -> None:
    """A lease unused for LEASE_IDLE_S is given back (the watcher thread then ends: an idle queue costs
    no wake-ups) and the next operation takes it again; the direction is not marked shared."""
    import threading

    def watching() -> bool:
        return any(t.name == "ChannelLeaseWatcher" for t in threading.enumerate())

    with Channel.create(name, capacity=8) as ch:
        ch.lease_lock("recv")
        ch.send_many([b"a", b"b"])
        assert ch.recv() == b"a" and ch._leased == {ch.rbell}
        poll_until(lambda: not ch._leased and not watching(), WAIT_S, "the idle lease is given back")
        assert ch.rbell not in ch._held and ch._w[W_RSHARED] == 0
        assert ch.recv() == b"b" and ch._leased == {ch.rbell} and watching()


def test_forked_child_does_not_keep_a_held_lock(name: str) -> None:
    """Same for `hold_lock`: the child keeps nothing, is excluded while the parent holds the lock,
    and does not keep it alive once the parent's handle is closed."""
    with Channel.create(name, capacity=8) as ch:
        holder = Channel.attach(name)
        holder.hold_lock("recv")
        ch.send_many([b"a", b"b"])
        assert holder.recv() == b"a"
        r, w = os.pipe()  # parent -> child
        answer_r, answer_w = os.pipe()  # child -> parent
        pid = os.fork()
        if pid == 0:  # the child: nothing held, and the parent's hold excludes it; then wait
            os.write(answer_w, b"y" if not holder._held and not holder._lock(holder.rbell, False) else b"n")
            os._exit(0 if os.read(r, 1) == b"." else 1)
        try:
            assert os.read(answer_r, 1) == b"y"
            holder.close()
            assert ch.recv(timeout=WAIT_S) == b"b"  # would block on the child's copy of the hold
        finally:
            os.write(w, b".")
            _, status = os.waitpid(pid, 0)
            for fd in (r, w, answer_r, answer_w):
                os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0


def test_hold_lock_makes_a_lease_permanent(name: str) -> None:
    import threading

    with Channel.create(name, capacity=8) as holder, Channel.attach(name) as other:
        holder.lease_lock("recv")
        holder.send_many([b"a", b"b"])
        assert holder.recv() == b"a"
        holder.hold_lock("recv")
        assert not holder._leased and holder.rbell in holder._held
        outcome: list[bytes] = []
        worker = threading.Thread(target=lambda: outcome.append(other.recv()), daemon=True)
        worker.start()
        worker.join(50 * LEASE_POLL_S)
        assert worker.is_alive() and outcome == []  # held for good: no watcher gives it up
        holder.close()
        worker.join(WAIT_S)
        assert outcome == [b"b"]


def test_lease_lock_on_closed_handle(name: str) -> None:
    ch = Channel.create(name, capacity=2)
    ch.close()
    with pytest.raises(ChannelError, match="closed"):
        ch.lease_lock("recv")
    Channel.attach(name).destroy()


@pytest.mark.parametrize("leased", [False, True])
def test_batch_sender_waits_for_half_the_ring_and_finishes(name: str, leased: bool) -> None:
    """A `send_many` larger than the ring sleeps until half of it is free (one wake-up per half
    ring): with a receiver taking one message at a time, everything still arrives, in order."""
    import threading

    with Channel.create(name, capacity=8) as rx, Channel.attach(name) as tx:
        if leased:
            rx.lease_lock("recv")
            tx.lease_lock("send")
        msgs = [str(i).encode() for i in range(50)]
        sender = threading.Thread(target=tx.send_many, args=(msgs,), daemon=True)
        sender.start()
        assert [rx.recv(timeout=WAIT_S) for _ in msgs] == msgs
        sender.join(WAIT_S)
        assert not sender.is_alive()
        assert rx.statistics().blocked_senders == 0


@pytest.mark.parametrize("blocked_first", [True, False])
def test_watcher_never_waits_for_a_busy_handle(name: str, blocked_first: bool) -> None:
    """Two handles of one process, each leasing one direction; a thread of one of them operates on the
    direction the other leases (so it waits for that flock holding its own thread lock). The watcher
    must not wait for that thread lock: it gives the other lease up and the operation finishes,
    whichever of the two handles the watcher happens to visit first."""
    import threading

    from dragon.transport import _leases

    with Channel.create(name, capacity=8), Channel.attach(name) as h1, Channel.attach(name) as h2:
        h1.lease_lock("send")
        h1.send(b"x")
        h2.lease_lock("recv")
        assert h2.recv() == b"x" and h1._leased and h2._leased
        h1.send(b"y")
        first = next(iter(_leases._leases))
        blocked = first if blocked_first else (h2 if first is h1 else h1)
        op = (lambda: h1.recv()) if blocked is h1 else (lambda: h2.send(b"z"))
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(op()), daemon=True)
        worker.start()
        worker.join(WAIT_S)
        assert done, "the operation stayed blocked behind a lease nobody gave up"


# The trio face in a loop that serves others (a transport agent): never waits for a lock in a system call.


async def test_trio_nowait_forms_need_not_wait_for_a_lock_another_process_keeps(name: str) -> None:
    """`wait_lock=False`: trio.WouldBlock at once, nothing done, while another process keeps the lock
    (held for good here); `try_send` waits for it without stopping the loop, and goes through once
    the lock is free (its holder died)."""
    with Channel.create(name, capacity=4) as ch, Worker("hold_locks", name) as holder:
        holder.expect("locked", WAIT_S)
        tch = TrioChannel.attach(name)
        # A nowait that waited for the lock would block the loop (fail_after could not end it): the
        # holder's death ends it instead, and the send succeeds, which fails the test.
        guard = threading.Timer(WAIT_S, holder.kill)
        guard.start()
        try:
            with trio.fail_after(WAIT_S):
                with pytest.raises(trio.WouldBlock):
                    tch.send_nowait(b"x", wait_lock=False)
                with pytest.raises(trio.WouldBlock):
                    tch.receive_nowait(wait_lock=False)
                guard.cancel()
                ticks = 0
                async with trio.open_nursery() as nursery:

                    async def ticker() -> None:
                        nonlocal ticks
                        while True:
                            ticks += 1
                            await trio.sleep(0.005)

                    nursery.start_soon(ticker)
                    with trio.move_on_after(0.3) as waited:
                        await tch.try_send(b"blocked")
                    assert waited.cancelled_caught  # still waiting for the lock, and the loop ran on:
                    assert ticks >= 10
                    holder.kill()  # the kernel releases its locks
                    assert await tch.try_send(b"through")
                    nursery.cancel_scope.cancel()
            assert ch.recv(timeout=WAIT_S) == b"through"
        finally:
            guard.cancel()
            await tch.aclose()


async def test_trio_many_nowait_forms_do_nothing_while_another_process_keeps_the_lock(name: str) -> None:
    """`receive_many_nowait` and `send_many_nowait` (a transport agent's batches) with
    `wait_lock=False`: nothing taken, nothing put while another process keeps the locks; once it is
    gone, everything waiting in one go, and the leading messages that fit the ring as they are."""
    with Channel.create(name, capacity=8) as ch:
        ch.send(b"waiting")
        tch = TrioChannel.attach(name)
        try:
            with Worker("hold_locks", name) as holder:
                holder.expect("locked", WAIT_S)
                guard = threading.Timer(WAIT_S, holder.kill)  # a nowait that blocked: ended, and failed below
                guard.start()
                try:
                    assert tch.receive_many_nowait(4, wait_lock=False) == []
                    assert tch.send_many_nowait([b"a", b"b"], wait_lock=False) == 0
                finally:
                    guard.cancel()
                assert holder.proc.poll() is None, "a nowait form waited for the lock until its holder was killed"
                holder.kill()
            assert tch.receive_many_nowait(4, wait_lock=False) == [b"waiting"]
            large = b"x" * (tch._core.max_inline + 1)
            assert tch.send_many_nowait([b"a", b"b", large, b"c"], wait_lock=False) == 2
            assert ch.recv_many(8, timeout=WAIT_S) == [b"a", b"b"]
        finally:
            await tch.aclose()


async def test_trio_try_send_gets_through_a_lease_at_once_or_nearly(name: str) -> None:
    """A producer's lease (another process) is given up within about LEASE_POLL_S of a `try_send`,
    which waits for it in the loop; `send_nowait(wait_lock=False)` does not."""
    with Channel.create(name, capacity=4) as ch, Worker("lease", name, "send") as holder:
        holder.expect("ready", WAIT_S)
        holder.expect("leased True", WAIT_S)
        tch = TrioChannel.attach(name)
        try:
            with pytest.raises(trio.WouldBlock):
                tch.send_nowait(b"not yet", wait_lock=False)
            t0 = time.monotonic()
            with trio.fail_after(WAIT_S):
                assert await tch.try_send(b"ours")
            assert time.monotonic() - t0 < PROMPT_S
            assert ch.recv_many(4) == [b"leased", b"ours"]
        finally:
            await tch.aclose()
