"""A Condition's sleepers and a Barrier's parties of another node at the object's home (`dragon.mp.at_home`,
issue 17): what the home does when the runtime tells it that such a process ended. In one process, on a real record: the
home's operations run as its transport agent runs them (`_run`, a thread for a wait), the Condition's
local users are copies made on the record (`Condition._there`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dragon.mp import at_home
from dragon.mp.away import Request
from dragon.mp.events import COUNT, FILLING, PARTIES_N, SLEEPERS, STATE, TICKETS, Barrier, Condition
from dragon.transport import Record
from dragon.transport.records import BROKEN, KIND, KINDS, remote_holder

from chan_names import fresh_name

AWAY = remote_holder(1, 4242)
"""The sleeper: a process of node 1."""


@pytest.fixture
def rec() -> Iterator[Record]:
    """A Condition's record (a test of another kind sets its own), let go of by the home once destroyed."""
    r = Record.create(fresh_name(), capacity=1, block_size=256)
    r.words[KIND] = KINDS.index("Condition")
    try:
        yield r
    finally:
        r.destroy()
        r.close()
        at_home._reclaim(0, False, [])  # the home lets go of destroyed records no operation uses


def run(rec: Record, name: str, *args: object, timeout: float | None = None) -> object:
    return at_home._run(rec.name, Request(name=name, who=AWAY, args=list(args)), timeout)


def ended(rec: Record) -> None:
    """What Global Services tells the home when the sleeper's process was killed."""
    run(rec, "reclaim", True, [rec.name])


def state(rec: Record) -> list[int]:
    return [int(rec.words[SLEEPERS]), int(rec.words[TICKETS])]


def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0
    while not check():
        assert time.monotonic() < deadline, "the home's wait did not start"
        time.sleep(0.001)


def test_a_sleeper_killed_between_enter_and_wait_is_counted_out(rec: Record) -> None:
    """Killed after "cond_enter", before its "cond_wait" came: the notify's ticket is nobody's. Counted
    out with it when its end is told (before, it stayed a sleeper: `holder_alive` is true for a process
    of another node until then), and a "cond_wait" of it that comes after that news returns at once."""
    entered = run(rec, "cond_enter")
    here = Condition._there(rec, os.getpid())
    here._locked(lambda: here._give(-1))
    assert state(rec) == [1, 1]
    ended(rec)
    assert state(rec) == [0, 0]
    assert run(rec, "cond_wait", entered, timeout=10.0) is False
    assert state(rec) == [0, 0]


def test_a_ticket_taken_for_a_dead_sleeper_does_not_wake_a_later_waiter(rec: Record) -> None:
    """Killed inside its wait at the home: a `notify_all` gives it a ticket, a waiter of this node
    enters after that notify, then the home's wait takes the ticket and finds its requester gone. The
    ticket goes back without a new notify: the later waiter is not woken by a notify that came before
    it (before, it was given again and the later waiter took it), and times out with nothing left over."""
    entered = run(rec, "cond_enter")
    got: list[object] = []
    home = threading.Thread(target=lambda: got.append(run(rec, "cond_wait", entered, timeout=10.0)))
    home.start()
    until(lambda: not at_home._entered)  # the home's wait began
    ended(rec)
    here = Condition._there(rec, os.getpid())

    def notify_all_then_enter() -> int:
        here._give(-1)
        return here._enter()

    late = rec.locked(notify_all_then_enter)
    home.join()
    assert got == [True]
    assert here._await_ticket(late, 0.05) is False
    assert state(rec) == [0, 0]


def test_a_later_notify_wakes_a_waiter_behind_a_dead_sleepers_ticket(rec: Record) -> None:
    """The ticket a `notify_all` gave a sleeper of another node stays when that sleeper is counted out
    after a waiter of this node came (one ticket per sleeper left), and that waiter may not take it.
    The next notify must still reach the waiter (before, it found every sleeper with a ticket and did
    nothing: the waiter slept through every notify while that ticket stayed)."""
    run(rec, "cond_enter")
    here = Condition._there(rec, os.getpid())
    here._locked(lambda: here._give(-1))
    late = here._locked(here._enter)
    ended(rec)
    assert state(rec) == [1, 1]
    here._locked(lambda: here._give(1))
    assert here._await_ticket(late, 2.0) is True
    assert state(rec) == [0, 0]


def test_a_barrier_party_killed_between_its_arrival_and_its_wait_is_counted_out(rec: Record) -> None:
    """Killed after "barrier_enter", before its "barrier_wait" came: the death breaks the barrier and
    its arrival leaves, as its wait would have on the break. Before, its arrival stayed (a process of
    another node is alive until its reclaim, and nothing else counted it out): `reset` left the
    barrier resetting for ever, and every later arrival waited for it (party_death.py "inside" hung
    over two nodes now and then). A "barrier_wait" of it that comes after that news returns at once."""
    w = rec.words
    w[KIND] = KINDS.index("Barrier")
    w[PARTIES_N] = 3
    run(rec, "party")
    assert run(rec, "barrier_enter", False) == 0
    ended(rec)
    assert (w[BROKEN], w[COUNT]) == (AWAY, 0)
    here = Barrier._there(rec, os.getpid())
    here._locked(here._reset)
    assert (w[BROKEN], w[STATE], w[COUNT]) == (0, FILLING, 0)
    assert run(rec, "barrier_wait", timeout=10.0) is None
