"""Lock, RLock, Semaphore and BoundedSemaphore of the "dragon" start method: the standard library's
semantics with a home in the runtime, and a dead holder's count given back (issue #15, dragon/mp/locks.py).

mp_programs/locks.py exercises the objects in the style of CPython's _TestLock and _TestSemaphore
and prints a JSON report; it runs under plain `python` with "spawn", under the real `dragon` command
with "dragon", and under plain `python` with "dragon" (its first Lock brings a background runtime
up). The part that must not depend on the method ("same") must agree. mp_programs/lock_kill.py
SIGKILLs holders right after they acquire, while the program waits (under dragon only: the standard
library's objects stay taken for ever). Both also run over two isolated nodes (placement.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

import pytest
from placement import Placed, placements

from e2e_util import DRAGON, reports_under_each_method, run_command, run_report

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")


@pytest.mark.parametrize("placement", placements("locks.py"), indirect=True)
async def test_lock_semantics_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    prog = str(MP_PROGRAMS / "locks.py")
    (spawn, _), (dragon, _), *background = await reports_under_each_method(prog, tmp_path, placement)
    assert all(report == dragon for report, _ in background)
    assert dragon["same"] == spawn["same"]

    basics = dragon["same"]["basics"]
    assert basics["lock"] == [
        "<Lock(owner=None)>",
        True,
        False,
        [False, True],  # acquire(timeout=0.1) waited it out
        False,  # a negative timeout does not wait
        "<Lock(owner=MainProcess)>",
        None,
        "ValueError",  # released when not held
    ]
    assert (basics["lock_with"], basics["lock_after_with"]) == ([False, "<Lock(owner=MainProcess)>"], True)
    taken = ["<RLock(None, 0)>", True, True, True, "<RLock(MainProcess, 3)>"]
    assert basics["rlock"] == [*taken, None, None, None, "AssertionError", "<RLock(None, 0)>"]
    assert basics["rlock_with"] == "<RLock(MainProcess, 2)>"
    taken = ["<Semaphore(value=2)>", 2, True, 1, True, 0, False, [False, True], 0]
    given = [None, 1, None, None, None, 4, "<Semaphore(value=4)>"]  # no bound
    assert basics["semaphore"] == taken + given
    assert basics["semaphore_zero"] == [0, False, None, True]
    assert basics["bounded"] == [
        "<BoundedSemaphore(value=2, maxvalue=2)>",
        True,
        True,
        False,
        0,
        "<BoundedSemaphore(value=0, maxvalue=2)>",
        None,
        None,
        "ValueError",  # over its bound
        2,
        "<BoundedSemaphore(value=2, maxvalue=2)>",
        1,
    ]
    assert basics["default_values"] == [1, 1]

    across = dragon["same"]["across"]
    assert across["counted"] == [[900, 900], [0, 0, 0]]  # 3 processes x 300 under the Lock, and under the RLock
    assert across["rlock_visitor"] == {
        "acquire_nonblock": False,
        "acquire_timeout": [False, True],
        "release_not_owner": "AssertionError",
    }
    assert across["rlock_still_mine"] == [True, None, None]
    assert across["rlock_visitor_got"] is True
    assert across["rlock_held_by_child"] == [False, "<RLock(SomeOtherProcess, nonzero)>", "AssertionError"]
    assert across["rlock_child_repr"] == "<RLock(child, 1)>"
    assert across["rlock_after_child"] == [True, None, 0]
    assert across["lock_released_by_other"] == [0, True, None]
    assert across["produced"] == [[True, True, True], False, 0, 0]
    assert across["overflow_in_child"] == ["ValueError", 2]
    assert across["condition_on_lock"] == [True, None, 0]

    # By design: ours pickle anywhere (through a queue), the stdlib's only while spawning; a negative
    # initial value is a ValueError (an OSError from sem_open in the stdlib).
    assert spawn["differs"] == {"through_queue": "RuntimeError", "negative": "OSError"}
    assert dragon["differs"] == {"through_queue": ["Lock", True], "negative": "ValueError"}
    assert dragon["dragon"] == {
        "release_save": [2, False, 0, "<RLock(None, 0)>"],
        "acquire_restore": [True, 2, "<RLock(MainProcess, 2)>"],
        "release_save_unowned": "AssertionError",
        "lock_release_save": [True, 1, True, None],
        "lock_acquire_restore": [False, "<Lock(owner=MainProcess)>"],
        "modules": ["dragon.mp.locks"],  # mp.Lock() & co. and a Value's lock follow the start method
        "inside": ["dragon.mp.events", "dragon.mp.events", "dragon.mp.locks"],  # a Condition's own lock is ours
        "semaphore_entry": True,
        "semaphore_entry_after_del": False,  # the last handle gone, the record and its semaphore go
    }


@pytest.mark.parametrize("placement", placements("lock_kill.py"), indirect=True)
async def test_a_dead_holders_count_is_given_back_and_the_next_acquirer_told(placement: Placed, tmp_path: Path) -> None:
    report, err = await run_report([DRAGON, str(MP_PROGRAMS / "lock_kill.py"), "dragon"], tmp_path, placed=placement)
    stderr = err.decode(errors="replace")
    print(report)
    told = [["HolderDiedWarning", True]]  # once, naming the dead process
    for kind, acquires in (("lock", 1), ("rlock", 1), ("semaphore", 2), ("semaphore_threads", 4), ("bounded", 2)):
        case = report[kind]
        assert case["exitcode"] == -9 and case["saw_taken"], (kind, case)  # killed while this one waited
        assert case["got"] == [True] * acquires and case["warnings"] == told, (kind, case)
    assert report["lock"]["more"] is False  # held by this process now
    assert report["rlock"]["more"] is True and report["rlock_after"] == [None, None, 1]  # one level each
    assert report["semaphore"]["more"] is False and report["semaphore_value"] == 0  # 2 given back, not more
    assert report["semaphore_threads"]["more"] is False  # two threads' counts, summed
    assert report["bounded"]["more"] is False and report["bounded_after"] == [None, None, 2, "ValueError"]
    # A producer only released: it held nothing, and nothing more is given back.
    assert report["producer"] == {"exitcode": -9, "got": [True, True, True, False], "warnings": 0}
    # A Lock still held at a normal exit is given back too; a Semaphore's count is not [choice].
    assert report["lock_normal_exit"]["got"] == [True] and report["lock_normal_exit"]["warnings"] == told
    normal_sem = report["semaphore_normal_exit"]
    assert (normal_sem["exitcode"], normal_sem["more"], normal_sem["warnings"]) == (0, False, [])
    # Not caught: the warning goes to stderr, as Python prints warnings.
    unrecorded = report["unrecorded"]
    assert unrecorded["got"] == [True] and unrecorded["exitcode"] == -9
    assert re.search(rf"HolderDiedWarning: process {unrecorded['pid']}( of node 1)? died holding Lock", stderr), stderr
    assert stderr.count("HolderDiedWarning") == 1, stderr


async def test_multiprocessing_lock_follows_the_start_method(tmp_path: Path) -> None:
    """`multiprocessing.Lock()` & co. are ours under "dragon" (a plain python program: the first one
    brings the background runtime up), the stdlib's under "spawn"."""
    code = (
        "import multiprocessing as mp, multiprocessing.synchronize as ms, dragon\n"
        "mp.set_start_method('dragon')\n"
        "made = [mp.Lock(), mp.RLock(), mp.Semaphore(2), mp.BoundedSemaphore(3)]\n"
        "print(*(f'{type(o).__module__}.{type(o).__name__}' for o in made))\n"
        "mp.set_start_method('spawn', force=True)\n"
        "assert type(mp.Lock()) is ms.Lock and type(mp.get_context('spawn').RLock()) is ms.RLock\n"
    )
    done = await run_command([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [
        f"dragon.mp.locks.{name}".encode() for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore")
    ]


async def test_locks_freed_by_the_garbage_collector_inside_a_request(tmp_path: Path) -> None:
    """A Lock in a reference cycle, collected in the middle of this thread's own GS request, gives
    its record back without waiting for an answer this thread would have to read (it hung before)."""
    report, _ = await run_report([DRAGON, str(MP_PROGRAMS / "lock_gc.py"), "dragon"], tmp_path)
    assert report == {"made": 200, "usable": True}
