"""The multiprocessing start method "dragon" (spec §7.3, issue #5) end to end.

The programs of mp_programs/ use the standard library's multiprocessing objects and print what they
saw as JSON. Each runs twice: under plain `python` with the start method "spawn", and under the real
`dragon` command with "dragon", on one node and over two isolated nodes (placement.py). The two
reports must agree (and hold the expected values): "dragon" has spawn's semantics. Timings are
printed, not asserted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import pytest
from placement import Placed, placements

from e2e_util import DRAGON, pid_alive, run_command, run_dragon, run_report

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")


async def _both(name: str, tmp_path: Path, placed: Placed) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Run mp_programs/NAME under spawn and under dragon (in `placed`: the sections it runs); returns
    spawn's report (the part `placed` runs), dragon's, and dragon's stderr."""
    prog = str(MP_PROGRAMS / name)
    spawn, _ = await run_report([sys.executable, prog, "spawn", *placed.args()], tmp_path)
    dragon, stderr = await run_report([DRAGON, prog, "dragon", *placed.args()], tmp_path, placed=placed)
    return spawn, dragon, stderr


def _same(spawn: dict[str, Any], dragon: dict[str, Any]) -> None:
    """The reports agree except in the start method's name (and the dragon-only p_uid)."""

    def strip(report: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({k: v for k, v in report.items() if k != "p_uid"}).replace('"spawn"', '"dragon"'))

    assert spawn["start_method"] == "spawn"
    assert strip(dragon) == strip(spawn)


@pytest.mark.parametrize("placement", placements("process_api.py"), indirect=True)
async def test_process_life_cycle_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    spawn, dragon, stderr = await _both("process_api.py", tmp_path, placement)
    _same(spawn, dragon)
    assert (dragon["start_method"], dragon["ctx_name"], dragon["child"]["start_method"]) == ("dragon",) * 3
    assert dragon["p_uid"] == [True, True]
    assert dragon["child_pid_is_os_pid"] and dragon["child_parent_is_me"]
    assert dragon["child"] == {
        "name": "reporter",
        "parent_alive": True,
        "start_method": "dragon",
        "main": "__mp_main__",
        "trio": False,
        "children": 0,
    }
    assert dragon["exitcodes"] == [0, 3, 1]
    assert (dragon["sleeper_alive"], dragon["in_active_children"]) == (True, True)
    assert dragon["join_timeout"] == [None, True] and dragon["wait_timeout"] == []
    assert dragon["wait_sentinel"] and dragon["terminated"] == [-15, False]
    assert (dragon["killed"], dragon["os_kill"]) == (-9, -15)
    assert (dragon["closed"], dragon["active_after"]) == ("ValueError", 0)
    assert b"ValueError: boom" in stderr  # the failing target's traceback, as under spawn


@pytest.mark.parametrize("placement", placements("sync_objects.py"), indirect=True)
async def test_queues_pipes_locks_and_shared_ctypes_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    spawn, dragon, _ = await _both("sync_objects.py", tmp_path, placement)
    assert dragon == spawn
    assert dragon["queue"] == [["queue", [0, 1, 2]], 1_000_000, "simple"] and dragon["joinable"] == 42
    assert dragon["pipe"] == [["echo", {"k": 1}], "raw bytes", "one-way"] and dragon["pipe_eof"] == "EOFError"
    assert dragon["shared"] == [800, [800, 7, 0], 42.0, [0, 0, 0, 0], [0, 0, 0, 0]]
    assert dragon["barrier_me"] and dragon["barrier_children"] == [True, True]
    assert (dragon["semaphores"], dragon["bounded"], dragon["condition"]) == ([0, 2], "ValueError", True)


@pytest.mark.parametrize("placement", placements("pool_manager.py"), indirect=True)
async def test_pool_manager_nesting_and_daemons_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    spawn, dragon, stderr = await _both("pool_manager.py", tmp_path, placement)
    assert dragon == spawn
    assert dragon["map"] == [x * x for x in range(20)] and dragon["starmap"] == [3, 7]
    assert (dragon["apply"], dragon["apply_async"], dragon["error"]) == (11, 81, "KeyError(1)")
    assert dragon["workers"] and dragon["maxtasksperchild"] == [0, 1, 4, 9, 16, 25]
    assert dragon["nested"] == [49, 0, [0, 1, 4, 9], True] and dragon["nested_exit"] == 0
    parts = {"manager": [{"k0": True, "k1": True, "k2": True}, ["k0", "k1", "k2"]], "shared_memory": "hello"}
    assert {k: dragon[k] for k in parts if k in dragon} == placement.pick(parts)  # each its section's one key
    assert dragon["daemon_alive"]
    daemon_pid = int(stderr.split()[-1])
    assert not pid_alive(daemon_pid)


@pytest.mark.parametrize("first", ["import dragon", "import multiprocessing"])
async def test_import_dragon_registers_the_method_without_trio(first: str) -> None:
    """Before or after multiprocessing; `import dragon` alone imports neither trio nor multiprocessing."""
    code = (
        "import sys\n"
        f"{first}\n"
        "light = 'trio' not in sys.modules and ('multiprocessing' not in sys.modules) == (first == 'import dragon')\n"
        "import dragon, multiprocessing as mp\n"
        "ctx = mp.get_context('dragon')\n"
        "mp.set_start_method('dragon')\n"
        "print(light, ctx.get_start_method(), mp.get_start_method(), 'trio' in sys.modules)\n"
    )
    done = await run_command([sys.executable, "-c", f"first = {first!r}\n" + code])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"True", b"dragon", b"dragon", b"False"]


async def test_other_start_methods_beside_dragon_as_the_global_one(tmp_path: Path) -> None:
    """With "dragon" the global start method, children of "spawn", "forkserver" and "fork" work and
    report their own method (a plain spawn child knows no "dragon" before it imports dragon)."""
    prog = tmp_path / "mixed.py"
    prog.write_text(
        "import dragon, multiprocessing as mp\n"
        "def report(conn):\n"
        "    conn.send(mp.get_start_method())\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('dragon')\n"
        "    out = []\n"
        "    for method in ('spawn', 'forkserver', 'fork', 'dragon'):\n"
        "        ctx = mp.get_context(method)\n"
        "        r, w = ctx.Pipe(duplex=False)\n"
        "        p = ctx.Process(target=report, args=(w,))\n"
        "        p.start(); w.close(); out.append(r.recv()); p.join()\n"
        "    print(' '.join(out), mp.get_start_method())\n"
    )
    done = await run_dragon(str(prog), cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"spawn", b"forkserver", b"fork", b"dragon", b"dragon"]


async def test_many_processes_started_and_joined(tmp_path: Path) -> None:
    prog = tmp_path / "many.py"
    prog.write_text(
        "import dragon, json, multiprocessing as mp, time\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('dragon')\n"
        "    t0 = time.monotonic()\n"
        "    ps = [mp.Process(target=abs, args=(-1,)) for _ in range(32)]\n"
        "    for p in ps: p.start()\n"
        "    for p in ps: p.join()\n"
        "    print(json.dumps({'codes': [p.exitcode for p in ps], 's': time.monotonic() - t0}))\n"
    )
    done = await run_dragon(str(prog), cwd=tmp_path, timeout_s=120)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    print(f"32 processes started and joined in {report['s']:.2f} s")
    assert report["codes"] == [0] * 32
