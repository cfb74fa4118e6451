"""A record (`dragon.transport.Record`): state words, its lock, waiting for a change, and what the
runtime does to it when a process dies (`records.reclaim`), across real processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dragon.transport import ChannelDestroyed, Record, pid_alive, records, shm_path
from dragon.transport.records import HOLDS, KIND, KINDS, OWN, PARTIES, PARTY_SLOTS, RECLAIMED

from chan_names import fresh_name

FLAG = OWN


@pytest.fixture
def rec() -> Iterator[Record]:
    r = Record.create(fresh_name(), capacity=1, block_size=256)
    try:
        yield r
    finally:
        if not r.closed and not r.destroyed:
            r.destroy()
        r.close()


def _set_flag_after(name: str, delay: float) -> None:
    r = Record.attach(name)
    time.sleep(delay)  # the other process is waiting by then (or not: either way it must see the flag)
    r.lock()
    r.words[FLAG] = 7
    r.wake(-1)
    r.unlock()
    r.close()


def _flag(r: Record) -> int | None:
    return int(r.words[FLAG]) or None


def test_words_start_zero_and_are_shared(rec: Record) -> None:
    assert rec.words.tolist() == [0] * records.OBJ_WORDS
    other = Record.attach(rec.name)
    rec.lock()
    rec.words[FLAG] = -5
    rec.unlock()
    assert other.words[FLAG] == -5
    other.close()


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_wait_for_sees_a_change_made_by_another_process(rec: Record, delay: float) -> None:
    p = multiprocessing.get_context("fork").Process(target=_set_flag_after, args=(rec.name, delay))
    p.start()
    assert rec.wait_for(lambda: _flag(rec), timeout=30, peek=lambda: bool(rec.words[FLAG])) == 7
    p.join()
    assert rec.waiting() == 0  # unregistered again


def test_wait_for_times_out_and_unregisters(rec: Record) -> None:
    t0 = time.monotonic()
    assert rec.wait_for(lambda: _flag(rec), timeout=0.2) is None
    assert time.monotonic() - t0 >= 0.2
    assert rec.waiting() == 0


def test_wait_for_raises_when_destroyed(rec: Record) -> None:
    other = Record.attach(rec.name)
    other.destroy()
    with pytest.raises(ChannelDestroyed):
        rec.wait_for(lambda: _flag(rec), timeout=5)


def _hold_forever(name: str, ready: Any) -> None:
    import _multiprocessing

    r = Record.attach(name)
    sem = _multiprocessing.SemLock._rebuild(0, 1, 1, records.sem_name(name))
    assert sem.acquire(False)
    r.lock()
    r.words[HOLDS] = os.getpid()
    r.unlock()
    ready.set()
    time.sleep(60)


def test_reclaim_gives_a_dead_holders_lock_back(rec: Record) -> None:
    import _multiprocessing

    sem = _multiprocessing.SemLock(1, 1, 1, records.sem_name(rec.name), False)
    rec.words[KIND], rec.words[records.SEM], rec.words[records.SEM_MAX] = KINDS.index("Lock"), 1, 1
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(rec.name, ready))
    p.start()
    assert ready.wait(30)
    assert not sem.acquire(False)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    warning = records.reclaim(rec, p.pid, abnormal=True)
    assert warning is not None and str(p.pid) in warning
    assert rec.words[RECLAIMED] == p.pid and rec.words[HOLDS] == 0
    assert sem.acquire(True, 5)  # given back: the next acquirer proceeds
    assert records.reclaim(rec, p.pid, abnormal=True) is None  # nothing twice
    rec.destroy()
    assert not os.path.exists(shm_path("sem." + rec.name))  # the destroy took the semaphore too


def test_reclaim_breaks_a_barrier_only_on_an_abnormal_exit(rec: Record) -> None:
    rec.words[KIND] = KINDS.index("Barrier")
    ok_pid, killed_pid = 2**22 + 11, 2**22 + 12  # pids of no process: reclaim takes them as exited
    assert records.add_pid(rec.words, PARTIES, PARTY_SLOTS, ok_pid)
    assert records.add_pid(rec.words, PARTIES, PARTY_SLOTS, killed_pid)
    records.reclaim(rec, ok_pid, abnormal=False)
    assert rec.words[records.BROKEN] == 0
    records.reclaim(rec, killed_pid, abnormal=True)
    assert rec.words[records.BROKEN] == killed_pid
    assert records.live_pids(rec.words, PARTIES, PARTY_SLOTS) == []


def test_pid_table_reuses_the_slots_of_dead_processes(rec: Record) -> None:
    w, dead = rec.words, 2**22 + 13
    assert not pid_alive(dead)
    for i in range(PARTY_SLOTS):
        w[PARTIES + i] = dead if i == 0 else os.getpid()
    assert records.add_pid(w, PARTIES, PARTY_SLOTS, 1)  # pid 1 is alive: it takes the dead one's slot
    assert w[PARTIES] == 1
    assert not records.add_pid(w, PARTIES, PARTY_SLOTS, os.getppid())  # full of live ones
    records.remove_pid(w, PARTIES, PARTY_SLOTS, os.getpid())
    assert records.live_pids(w, PARTIES, PARTY_SLOTS) == [1]


def test_a_dead_partys_entry_stays_while_there_is_room(rec: Record) -> None:
    """A process that joins takes an empty slot before a dead party's: Global Services' reclaim may
    not have seen that death yet, and needs the entry to break a Barrier (it was taken first: a
    party that died with an error before the others arrived left the barrier unbroken)."""
    w, dead = rec.words, 2**22 + 13
    assert not pid_alive(dead)
    w[PARTIES] = dead
    assert records.add_pid(w, PARTIES, PARTY_SLOTS, os.getpid())
    assert w[PARTIES] == dead and w[PARTIES + 1] == os.getpid()
    w[KIND] = KINDS.index("Barrier")
    records.reclaim(rec, dead, abnormal=True)
    assert w[records.BROKEN] == dead


def test_never_reclaimed_only_once_the_kind_says_so(rec: Record) -> None:
    """The runtime stops telling a record of exits only when its kind is set and no death changes it:
    a record whose maker has not set its kind yet may still become a Lock."""
    assert not records.never_reclaimed(rec)  # kind not set yet
    for kind, never in (
        ("Event", True),
        ("Value", True),
        ("Lock", False),
        ("Semaphore", False),
        ("Barrier", False),
        ("Condition", True),
    ):
        rec.words[KIND] = KINDS.index(kind)
        assert records.never_reclaimed(rec) is never, kind
    rec.words[KIND] = KINDS.index("Condition")  # over several nodes: its sleepers of another node
    assert not records.never_reclaimed(rec, several_nodes=True)  # are counted out when they end
    rec.words[KIND] = KINDS.index("Event")
    assert records.never_reclaimed(rec, several_nodes=True)


def test_global_services_tells_a_condition_of_exits_only_over_several_nodes(rec: Record) -> None:
    """Global Services' pass over its node's records at a process exit drops a Condition from those it
    tells (`untouched`) in a run of one node only: over several, the news of a process of another
    node must still reach the Condition's home, which counts its sleepers out (`dragon.mp.at_home`)."""
    from dragon.services._gs_base import _reclaim_all

    rec.words[KIND] = KINDS.index("Condition")
    nobody = 4_000_000  # no holder of anything
    assert _reclaim_all([rec.name], nobody, False, False) == ([], {rec.name})
    assert _reclaim_all([rec.name], nobody, False, True) == ([], set())
