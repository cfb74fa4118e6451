"""dragon.native's shared objects (issue 15 item 4) end to end: the real `dragon` command runs
native_programs/shared_values.py, native_queue.py and aio_queue.py, which exercise every API point of
`Value`, `Array`, `Queue` and its trio face `dragon.aio.Queue`, share them with multiprocessing children of the "dragon" start method and with a
native Process child, and count the run's /dev/shm entries; these tests check their JSON reports,
on one node and over two isolated nodes (placement.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import pytest
from placement import Placed, placements

from e2e_util import clean_env, run_command

NATIVE: Final = Path(__file__).resolve().with_name("native_programs")


async def _report(name: str, tmp_path: Path, placed: Placed) -> dict[str, Any]:
    done = await placed.run(str(NATIVE / name), cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("placement", placements("shared_values.py"), indirect=True)
async def test_value_and_array_api_sharing_and_cleanup(placement: Placed, tmp_path: Path) -> None:
    report = await _report("shared_values.py", tmp_path, placement)
    v = report["values"]
    assert (v["int_default"], v["int_set"], v["double"], v["ctype"], v["char"], v["wchar"]) == (
        0,
        10,
        2.5,
        65535,
        "b'z'",
        "é",
    )
    assert (v["struct"], v["struct_field"], v["struct_from_struct"]) == ([1, 2.5], 7.0, [3, 4.5])
    assert v["struct_from_short_tuple"] == [5, 0.0]  # the fields not given are zero, as in a new Structure
    assert v["struct_repr"] == "Point(x=5, y=0.0)"
    assert v["repr"] and v["closed_repr"]
    assert v["no_lock"] == ["AttributeError", "AttributeError"]
    assert (v["lock_with"], v["lock_reentrant"], v["given_lock"]) == ("none", [True, True, None, None], True)
    assert v["pickled"] == 10
    for key in ("bad_typecode", "pointer_type", "pointer_field", "not_a_type", "bad_value", "bad_struct_value"):
        assert v[key] == "TypeError", key
    assert v["bad_lock"] == "AttributeError"
    assert v["closed"] == ["ValueError"] * 3

    a = report["arrays"]
    assert (a["zeros"], a["len"]) == ([0] * 5, 5)
    assert a["items"] == [1, 9, [2, 3], [1, 3, 9], [1, 2, 3, 0, 9]]
    assert (a["index_error"], a["slice_length"]) == (["IndexError", "IndexError"], "ValueError")
    assert (a["from_list"], a["from_range"]) == ([0.5, 1.5], [0, 1, 2])
    assert a["chars"] == ["b'hello'", "b'hello'", "b'el'", "b'h'"]
    assert a["chars_value_set"] == ["b'hi'", "b'hi\\x00lo'"]  # value= writes a NUL after, as ctypes
    assert (a["chars_raw_set"], a["wchars"]) == ("b'world'", ["ab", "a"])
    assert a["no_value"] == ["AttributeError"] * 3
    assert (a["structs"], a["struct_set"], a["struct_index_error"]) == ([[1, 2.0], [3, 5.5]], [7, 8.0, 2], "IndexError")
    assert (a["lock_default"], a["with_lock"], a["no_lock"]) == (["RLock", True, None], 2, "AttributeError")
    assert (a["pickled"], a["empty"], a["repr"]) == ([4, 5], [0, []], True)
    assert (a["negative_size"], a["bad_initializer"]) == ("ValueError", "TypeError")
    assert a["closed"] == ["ValueError", "ValueError"]

    mp = report["mp"]  # 4 processes adding 500 each under the objects' locks
    assert (mp["codes"], mp["total"], mp["counts"]) == ([0] * 4, 2000, [2000, 1, 2, 3, 4])
    assert report["native"] == {"code": 0, "value": 3.0, "array": "b'child'", "point": [42, 1.0]}

    life = report["lifetimes"]  # a record is a channel: its segment and two doorbells
    assert (life["made"], life["kept_by_copy"], life["after_gc"], life["array_gc"]) == (3, 3, 0, 0)
    assert report["shm_left"] == []


@pytest.mark.parametrize("placement", placements("native_queue.py"), indirect=True)
async def test_queue_api_joinable_tasks_worked_by_children_and_cleanup(placement: Placed, tmp_path: Path) -> None:
    report = await _report("native_queue.py", tmp_path, placement)
    b = report["basics"]
    assert b["new"] == [True, 0, 0, False, False, False]
    assert (b["after_puts"], b["fifo"]) == ([False, 6], [0, 1, 2, 3, 4, {"five": 5}])
    assert b["empty"] == ["Empty"] * 3
    assert (b["bounded"], b["bounded_timeout"]) == ([True, 2, "Full"], ["Full", "Full"])
    assert b["bounded_got"] == ["a", False, "b", True]
    assert (b["not_joinable"], b["pickled"]) == (["QueueError", "QueueError"], False)
    assert b["unpicklable"] != "none"  # raised by put, in the caller
    assert b["too_large"] == "ValueError"
    assert b["closed"] == [True] + ["ValueError"] * 4
    assert b["joinable"] == [True, "ValueError"]  # task_done with no task
    assert (b["join_timeout"], b["joined"], b["after_close"]) == ("TimeoutError", True, ["ValueError"] * 2)
    assert report["destroyed"] == ["ChannelDestroyed", "ValueError"]
    # 100 tasks joined while a native child and two mp children work them (a cross-process wake-up)
    assert report["children"] == {"squares": True, "codes": [0, 0, 0]}
    # a child (of the other node, over two) puts and joins, the head works the tasks
    assert report["joined_elsewhere"] == [["a", "b"], "TimeoutError", "Empty", "joined", "ValueError", 0]
    assert report["shm_left"] == []


@pytest.mark.parametrize("placement", placements("aio_queue.py"), indirect=True)
async def test_aio_queue_face_cancellation_and_a_native_worker(placement: Placed, tmp_path: Path) -> None:
    report = await _report("aio_queue.py", tmp_path, placement)
    b = report["basics"]
    assert b["new"] == [True, 0, 0, False]
    assert (b["got"], b["empty"]) == ([{"a": 1}, "b'raw'"], ["Empty", "Empty"])
    assert b["cancelled_get"] == [True, "kept"]  # a cancelled get took nothing
    assert (b["native_side"], b["native_get"]) == ([True, "from native"], "to native")
    assert b["closed"] == ["ValueError"] * 3
    assert b["full"] == [True, "Full", "Full"]
    assert b["cancelled_put"] == [True, 1]  # a cancelled put put nothing (and counted no task: joined below)
    assert (b["join_timeout"], b["cancelled_join"], b["first"]) == ("TimeoutError", True, "first")
    assert (b["task_done_too_many"], b["not_joinable"]) == ("ValueError", ["QueueError", "QueueError"])
    # 50 tasks put into a queue of 2 by the trio head, worked by a native child, joined; the child
    # (of the other node, over two) cannot make a trio face of the queue and is told why
    face = "ChannelOnAnotherNode" if placement.nodes > 1 else "none"
    assert report["child"] == {"squares": True, "code": 0, "face": face}
    assert report["shm_left"] == []


async def test_the_shared_objects_load_on_first_use(tmp_path: Path) -> None:
    code = (
        "import sys, dragon.native as n\n"
        "names = ('dragon.native.value', 'dragon.native.array', 'dragon.native.queue', 'ctypes', 'dragon.mp.queues')\n"
        "print([m in sys.modules for m in names])\n"
        "n.Value, n.Array, n.Queue\n"
        "print([m in sys.modules for m in names])\n"
    )
    done = await run_command([sys.executable, "-c", code], cwd=tmp_path, env=clean_env())
    assert done.stdout.decode().splitlines() == [str([False] * 5), str([True] * 5)], done.stderr


@pytest.mark.parametrize("placement", placements("native_sync.py"), indirect=True)
async def test_native_lock_semaphore_event_barrier(placement: Placed, tmp_path: Path) -> None:
    """The reference's names and arguments, on the runtime's objects: shared with multiprocessing
    children and with a native Process child through a Channel message; nothing left behind."""
    r = await _report("native_sync.py", tmp_path, placement)
    # not recursive; taken; mine; once; a second acquire times out; released; not mine; free again
    assert r["lock"] == [False, True, True, 1, False, None, False, True]
    assert r["lock_with"] is False
    assert r["rlock"] == [True, True, True, 2, None, 1] and r["rlock_unowned"] == "AssertionError"
    assert r["semaphore"] == [2, True, True, False, 0] and r["semaphore_released"] == 2  # release(n)
    assert r["bounded"] == [True, None, "ValueError", 1]
    assert r["event"] == [False, False, None, True, True, None, False]
    assert r["barrier"] == [3, 0, False] and r["barrier_index"] is True
    assert r["children"] == [["barrier", True], ["barrier", True], ["locked", True, 1], ["locked", True, 1]]
    assert r["children_exit"] == [0, 0] and r["child_event"] is True
    assert r["semaphore_after_children"] == 0  # a count taken by a process that exits normally stays taken
    assert r["native_waits"] is False  # the native child waited for the lock this process held
    assert r["native"] == [["native", True], True, 0]
    assert r["aborted"] == [None, True, "BrokenBarrierError"] and r["broken_is_threadings"] == "threading"
    assert r["destroyed"] == ["ChannelDestroyed", "ChannelError"]
    assert r["records_left"] == []  # every object's semaphore went with its last handle
