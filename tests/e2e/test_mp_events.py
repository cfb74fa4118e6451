"""Event, Condition and Barrier of the "dragon" start method on runtime records (issue #15).

mp_programs/event_objects.py exercises their API between processes and prints a JSON report; it runs
under plain `python` with "spawn", under the real `dragon` command with "dragon", and under plain
`python` with "dragon" (its first object brings a background runtime up). The "same" parts must agree.
mp_programs/party_death.py kills a party of a Barrier (or the notifier of a Condition) while the
others wait: every wait there is bounded by 60 s, and the waiters must be told within a few seconds.
They also run over two isolated nodes (placement.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

import pytest
from placement import Placed, placements

from e2e_util import DRAGON, reports_under_each_method, run_command, run_report

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")
NOTICED_S: Final = 10.0
"""A waiter of a Barrier whose party died is told well within this (its own bound is 60 s)."""


@pytest.mark.parametrize("placement", placements("event_objects.py"), indirect=True)
async def test_event_condition_barrier_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    prog = str(MP_PROGRAMS / "event_objects.py")
    (spawn, _), (dragon, _), *background = await reports_under_each_method(prog, tmp_path, placement)
    assert all(report == dragon for report, _ in background)
    assert dragon["same"] == spawn["same"]
    same = dragon["same"]
    assert same["event"] == {
        "new": [False, False, True],
        "timeout": [False, True, True],
        "set": [True, True, True, True],
        "cleared": [False, False],
        "child_sets": True,
        "exits": 0,
        "set_at_exit": [True, 0],  # by a thread of a child that outlives its exit finalizers
    }
    assert same["condition"] == {
        "timeout": [False, True, True, False],
        "notified": [True] * 4,
        "nothing_kept": False,
        "invariant": [0, 0],
        "wait_for": [True, 4],
        "wait_for_timeout": [False, True],
        "rlock_levels": [True, "raised"],
        "plain_lock": False,
    }
    assert same["barrier"] == {
        "indices": True,
        "action_runs": 5,
        "props": [3, 0, False],
        "n_waiting": True,
        "abort": ["BrokenBarrierError", True, "BrokenBarrierError"],
        "reset": False,
        "n_waiting_2": True,
        "reset_waiter": ["BrokenBarrierError", False],
        "timeout": ["BrokenBarrierError", True, True, True],
        "default_timeout": ["BrokenBarrierError", True, True],
        "failing_action": ["BrokenBarrierError", "KeyError", True],
        "single": [0, 0],
    }
    # By design: threading's RuntimeError where the stdlib's mp Condition asserts; a Barrier of no
    # parties is refused (the stdlib's would wait for ever).
    assert spawn["differs"] == {"unheld": ["AssertionError"] * 3, "zero_parties": "no error"}
    assert dragon["differs"] == {"unheld": ["RuntimeError"] * 3, "zero_parties": "ValueError"}
    assert dragon["dragon"] == {
        "modules": ["dragon.mp.events"] * 3,
        "through_queue": [True, "ok", [0, 1], "ok", 0],  # pickled anywhere
        "set_and_cleared": True,  # a set is seen even if cleared before the waiter looked
        "thread_lock": "TypeError",
    }


@pytest.mark.parametrize("placement", placements("party_death.py"), indirect=True)
@pytest.mark.parametrize("how", ["kill", "error", "inside"])
async def test_a_party_dying_breaks_the_barrier(how: str, placement: Placed, tmp_path: Path) -> None:
    report, _ = await run_report(
        [DRAGON, str(MP_PROGRAMS / "party_death.py"), "dragon", how], tmp_path, placed=placement
    )
    print(report)
    assert report["victim_exit"] == (1 if how == "error" else -9)
    assert report["results"] == ["BrokenBarrierError"] * 2
    assert report["within_s"] < NOTICED_S and report["broken"]
    if how == "inside":
        assert report["after_reset"] == [0, 1, 2]  # the dead party's arrival was counted out


async def test_a_party_exiting_cleanly_does_not_break_the_barrier(tmp_path: Path) -> None:
    report, _ = await run_report([DRAGON, str(MP_PROGRAMS / "party_death.py"), "dragon", "clean"], tmp_path)
    assert report["victim_exit"] == 0 and report["broken_after_exit"] is False
    assert report["results"] == [0, 1, 2] and not report["broken"]


async def test_a_condition_waiter_whose_notifier_was_killed_times_out(tmp_path: Path) -> None:
    report, _ = await run_report([DRAGON, str(MP_PROGRAMS / "party_death.py"), "dragon", "notifier"], tmp_path)
    assert report["notifier_exit"] == -9 and report["notified"] is False
    assert 1.0 <= report["waited_s"] < NOTICED_S


@pytest.mark.parametrize("first", ["import dragon", "import multiprocessing"])
async def test_multiprocessing_event_follows_the_start_method(first: str, tmp_path: Path) -> None:
    """`multiprocessing.Event()` & co. give ours under "dragon" (in a plain python program the first one
    brings the background runtime up), the stdlib's under "spawn", whatever is imported first."""
    code = (
        f"{first}\n"
        "import dragon, multiprocessing as mp, multiprocessing.synchronize as ms\n"
        "mp.set_start_method('spawn')\n"
        "assert type(mp.Event()) is ms.Event and type(mp.Barrier(2)) is ms.Barrier\n"
        "mp.set_start_method('dragon', force=True)\n"
        "made = [mp.Event(), mp.Condition(), mp.Barrier(2)]\n"
        "made[0].set()\n"
        "print(*(type(o).__module__ for o in made), made[0].wait(5))\n"
    )
    done = await run_command([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"dragon.mp.events"] * 3 + [b"True"]


async def test_dragon_status_shows_the_objects(tmp_path: Path) -> None:
    """Kind, value (an Event's flag, a Condition's sleepers, a Barrier's arrivals) and waiters."""
    done = await run_command([DRAGON, str(MP_PROGRAMS / "events_status.py"), "dragon"], cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    # the Condition's own RLock is an object too: free (value 1), nobody waiting; the Lock is held (0)
    # and the Semaphore has 2 of its 3 left, both held by the program, which status names as holder
    assert report["objects"] == [
        ["Barrier", 1, 1],
        ["Condition", 1, 1],
        ["Event", 1, 0],
        ["Lock", 0, 0],
        ["RLock", 1, 0],
        ["Semaphore", 2, 0],
    ]
    assert report["holders"] == {"Lock": True, "Semaphore": True} and report["table"] is True


@pytest.mark.parametrize("placement", placements("condition_dead_sleeper.py"), indirect=True)
async def test_a_condition_sleeper_killed_in_wait_is_counted_out(placement: Placed, tmp_path: Path) -> None:
    """The ticket `notify_all` gave a sleeper that was SIGKILLed inside `wait` does not stay out: the
    next waiter counts the dead one out (sleepers and tickets back to 0), so a program that waits for
    the sleeper count before it notifies (as CPython's tests do) wakes its live waiter. Before, the
    dead sleeper stayed counted: that notify came before the waiter was in, and it was never woken.
    Over two nodes the sleeper is a process of the other node, killed before or inside its wait at
    the Condition's home: the home counts it out when the runtime tells of its end, and a ticket
    its wait took is put back without waking the waiter that came later (`dragon.mp.at_home`)."""
    prog = str(MP_PROGRAMS / "condition_dead_sleeper.py")
    report, _ = await run_report([DRAGON, prog, "dragon"], tmp_path, placed=placement)
    assert report == {"timed_out": False, "after": [0, 0], "woken": True, "exit": 0}
