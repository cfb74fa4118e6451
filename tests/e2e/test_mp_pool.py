"""Pool of the "dragon" start method, its task and result queues on channels (dragon/mp/pool.py, issue #5).

mp_programs/pool_channels.py runs under plain `python` with "spawn", under the real `dragon` command
with "dragon", and under plain `python` with "dragon" (the program's own background runtime). The
part of the reports that must not depend on the method must agree; what only the channel pool does
is checked under dragon. (mp_programs/pool_manager.py covers the rest of the Pool API, see
test_mp_start_method.py.) The dragon runs are on one node and over two isolated nodes (placement.py).
Timings are printed, not asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest
from placement import Placed, placements

from e2e_util import DRAGON, reports_under_each_method, run_report

PROG: Final = str(Path(__file__).resolve().with_name("mp_programs") / "pool_channels.py")


async def _run(argv: list[str], tmp_path: Path, placed: Placed | None = None) -> dict[str, Any]:
    return (await run_report(argv, tmp_path, placed=placed))[0]


@pytest.mark.parametrize("placement", placements("pool_channels.py", reads=("same",)), indirect=True)
async def test_pool_on_channels_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    (spawn, _), (dragon, _), *background = await reports_under_each_method(PROG, tmp_path, placement)
    assert all(report["same"] == spawn["same"] for report, _ in background)
    assert dragon["same"] == spawn["same"]
    same = dragon["same"]
    assert same["map1"] and same["map_async"] == [x * x for x in range(10)]
    assert same["imap_chunked"] == [x * x for x in range(7)] and same["initializer"] == [7]
    assert same["imap_unordered"] == [0, 1, 4, 9, 16]
    assert same["callables"] == {
        "builtin": [1, 2],
        "starmap_builtin": [8, 9],
        "starmap_function": [[3, 1]],
        "object": [2, 4],
        "method": [2, 4],
        "object_changed": [10, 20],
        "method_changed": 30,
        "partial": [8, 16],
        "method_of_builtin_object": [2, 1],
        "apply_kwargs": 255,
        "bytes_argument": 2,
        "lambda": "AttributeError",
    }
    assert same["big"] == [1 << 20, 3 << 20, 10]
    assert same["callbacks"] == [["9", "[25, 36]"], ["KeyError(4)"]]
    assert same["unpicklable_result"] == "MaybeEncodingError"
    assert same["streamed"] == [1, 4, 9]
    assert same["terminate_fast"] and same["terminated_workers"] == [True, True]


@pytest.mark.parametrize("placement", placements("pool_channels.py", reads=("dragon",)), indirect=True)
async def test_pool_channels_survive_killed_workers_and_end_with_the_pool(placement: Placed, tmp_path: Path) -> None:
    report = (await _run([DRAGON, PROG, "dragon", *placement.args()], tmp_path, placement))["dragon"]
    assert report["type"] == "dragon.mp.pool.Pool" and report["plain_mp_Pool"] == "dragon.mp.pool"
    assert report["channels_while_running"] == [True, True]
    assert report["after_kill"]
    assert report["channels_after_join"] == [True, True]
    assert report["channels_after_terminate"] == [False, False]


@pytest.mark.parametrize("placement", placements("pool_channels.py", reads=("direct",)), indirect=True)
async def test_a_pool_built_directly_has_the_stdlib_pipes(placement: Placed, tmp_path: Path) -> None:
    """`multiprocessing.pool.Pool(context=...)`: the stdlib's pipe queues, dragon's processes."""
    report = await _run([DRAGON, PROG, "dragon", *placement.args()], tmp_path, placement)
    assert report == {"direct": ["multiprocessing.queues", [0, 1, 4, 9, 16]]}


async def test_terminate_with_a_full_result_channel(tmp_path: Path) -> None:
    """The pool's end sentinel makes room by dropping results nobody will read (dragon.mp.pool._ResultQueue).
    On one node only: over two its workers fetch the 100,000 tasks one round trip each (about a minute)."""
    prog = str(Path(PROG).with_name("pool_terminate_full.py"))
    report = await _run([DRAGON, prog, "dragon"], tmp_path)
    assert report["full"] and report["returned"], report
    print(f"terminate with a full result channel: {report['seconds']:.2f} s")
