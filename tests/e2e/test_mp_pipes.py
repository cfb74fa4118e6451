"""Pipe and Connection of the "dragon" start method on shared-memory channels (issue 15, item 1).

mp_programs/pipes.py exercises every API point of a Connection, EOF (a close, the peer's exit, its
SIGKILL), ends passed to children as arguments, through a Queue and in a Pool task, one-way pipes, messages larger
than a channel's ring (whose send blocks until they are read, as the stdlib's), fds passed with
`multiprocessing.reduction.send_handle` and `multiprocessing.connection.wait` over runtime connections, a socket, a
stdlib Connection, a raw fd and a process sentinel. It runs under plain `python` with "spawn" (the
stdlib's socketpair), under `dragon` with "dragon" and under plain `python` with "dragon" (a
background runtime); the reports must agree but for the times (keys ending in `_s`, printed, not
asserted). The dragon run is on one node and over two isolated nodes (placement.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest
from placement import Placed, placements

from e2e_util import reports_under_each_method

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")


def _times(report: dict[str, Any]) -> dict[str, float]:
    """Take the times out of the report's sections (they differ from run to run)."""
    found = {}
    for section in report["same"].values():
        for key in [k for k in section if k.endswith("_s")]:
            found[key] = section.pop(key)
    return found


@pytest.mark.parametrize("placement", placements("pipes.py"), indirect=True)
async def test_pipe_as_under_spawn(placement: Placed, tmp_path: Path) -> None:
    prog = str(MP_PROGRAMS / "pipes.py")
    (spawn, _), (dragon, _), *others = await reports_under_each_method(prog, tmp_path, placement)
    background = [report for report, _ in others]
    for name, report in (("spawn", spawn), ("dragon", dragon), *(("background", b) for b in background)):
        print(name, _times(report))
    assert spawn["kind"] == ["multiprocessing.connection"] * 2
    assert all(b["kind"] == dragon["kind"] for b in background)
    assert dragon["kind"] == ["dragon.mp.connection"] * 2  # ctx.Pipe and mp.Pipe
    if "executor_wakeup" in placement.pick({"executor_wakeup": 1}):
        assert spawn["executor_wakeup"] == dragon["executor_wakeup"] == [328350, "multiprocessing.connection"]
    assert dragon["same"] == placement.pick(spawn["same"])
    for b in background:
        assert b["same"] == spawn["same"], {
            k: (v, spawn["same"][k]) for k, v in b["same"].items() if v != spawn["same"][k]
        }

    api = dragon["same"]["api"]
    assert api["send_bytes"] == ["abcdefghijklmnopqrstuvwxyz", "fghijklmnopqrstuvwxyz", "hijklmno", "", ""]
    assert api["send_bytes_errors"] == ["ValueError"] * 5
    assert api["into"] == [16, [0, 1, 2, 3] + [0] * 6]
    assert api["into_offset"] == [16, [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]]
    assert api["too_short"] is True
    assert api["poll_empty"] == [False, False, False]
    assert api["poll_full"] == [True, True, None, False]
    assert api["maxlength"] == ["OSError: bad message length", False, False]  # duplex: unreadable
    assert api["maxlength_read_only"] == ["OSError: bad message length", True]  # read-only: closed
    assert api["after_with"] == [True, True] + ["OSError: handle is closed"] * 4
    assert api["pickle_closed"] == "OSError: handle is closed"

    one_way = dragon["same"]["one_way"]
    assert one_way["modes"] == [True, False, False, True]
    assert one_way["errors"] == [
        "OSError: connection is read-only",
        "OSError: connection is write-only",
        "OSError: connection is write-only",
        "OSError: connection is write-only",
    ]
    assert one_way["send_to_closed"] == "BrokenPipeError"

    eof = dragon["same"]["eof"]
    assert eof == {
        "poll": True,
        "recv_first": "last words",
        "poll_after": True,
        "recv": "EOFError",
        "recv_bytes": "EOFError",
        "send_to_closed": "BrokenPipeError",
    }

    children = dragon["same"]["children"]
    assert children["echo"] == [True] * 4  # 5 B, just over the ring, 5 MB, empty
    assert children["child_saw_eof"] == 7
    assert children["exit"] == ["bye", "EOFError"]
    assert children["killed"] == ["ready", "EOFError"]
    assert children["send_after_kill"] == "BrokenPipeError"
    assert (children["via_queue"], children["via_queue_exit"]) == ("via queue", 3)
    assert children["via_pool"] == ["sent", "via pool"]

    assert dragon["same"]["blocking"] == {"big_send_blocked": True, "big": [True, "sent"]}
    assert spawn["same"]["fds"] == {
        "fd_transfer": "written through a passed fd",
        "recv_handle_raw_byte": "RuntimeError",
        "recv_handle_no_fd": "RuntimeError",
    }

    wait = dragon["same"]["wait"]
    assert wait["nothing"] == []
    assert wait["woken_by_child"] == ["one_way"]
    assert wait["sentinel"] == ["one_way", "sentinel"]
    assert [wait[k] for k in ("socket", "stdlib", "fd", "pipe")] == [["socket"], ["stdlib"], ["fd"], ["pipe"]]
    assert wait["woken_by_close"] == wait["woken_by_die"] == [True, "EOFError"]
