"""dragon.native.ProcessGroup (spec §7.2) end to end: the real `dragon` command runs scenarios of
native_programs/process_groups.py, whose report (JSON) these tests check. Placement across nodes is
in test_many_nodes (node_programs/policy_nodes.py)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Final

from e2e_util import run_dragon

PROGRAM: Final = str(Path(__file__).resolve().with_name("native_programs") / "process_groups.py")
NONE: Final = ["none", None]


async def scenarios(tmp_path: Path, *names: str) -> dict[str, Any]:
    """Run the scenarios `names`: the program must succeed with nothing on stderr (the group hides
    the tracebacks of the processes it stops); returns its report."""
    done = await run_dragon(PROGRAM, *names, cwd=tmp_path, timeout_s=180)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_a_group_starts_its_templates_processes_and_records_their_exits(tmp_path: Path) -> None:
    b = (await scenarios(tmp_path, "basic"))["basic"]
    assert b["error"] is False and b["puids_after"] == []
    assert len(b["members"]) == 3 and b["head"] not in b["members"]
    statuses = b["exit_status"]
    assert b["inactive"] == statuses and [c for _, c in statuses] == [0] * 4
    assert set(b["members"]) < {p for p, _ in statuses}  # and the executable's process
    again_members, again_status = b["again"]  # started again: new processes, a new record
    assert len(again_status) == 4 and not {p for p, _ in again_status} & {p for p, _ in statuses}
    assert set(again_members) < {p for p, _ in again_status}
    assert b["closed"][0].endswith("closed>")
    assert b["closed"][1][0] == "DragonProcessGroupRunningError" and "init() it" in b["closed"][1][1]
    assert b["closed"][2] == NONE  # closing twice does nothing
    assert b["reinit"] == 4  # init() after close() makes it usable again
    assert b["repr"] == "<ProcessGroup 'basic' of 4 processes, idle>"


async def test_a_failed_process_stops_the_group_and_join_names_it(tmp_path: Path) -> None:
    r = await scenarios(tmp_path, "failing")
    f = r["failing"]
    error, text = f["join"]
    assert error == "DragonUserCodeError"
    failed = [p for p, c in f["exit_status"] if c == 3]
    assert len(failed) == 1 and f"p_uid {failed[0]} exited 3" in text
    # the sleepers were stopped by the group (SIGINT: KeyboardInterrupt, exit 1): not errors
    assert sorted(p for p, c in f["exit_status"] if c != 3) == f["sleepers"]
    assert "p_uid {}".format(f["sleepers"][0]) not in text
    assert f["error"] is True and f["close"] == NONE
    print(f"failure to group down: {f['seconds'] * 1e3:.0f} ms")
    # ignore_error_on_exit=True: recorded only
    assert r["ignoring"] == [NONE, [0, 0, 3], False]


async def test_a_restarting_group_replaces_processes_until_told_to_stop(tmp_path: Path) -> None:
    r = (await scenarios(tmp_path, "restarting"))["restarting"]
    assert r["taken"] == list(range(6))
    assert len(set(r["takers"])) == 6  # each token taken by a process of its own
    assert set(r["first"]) <= set(r["takers"])
    assert len(r["last"]) <= 2 and not set(r["last"]) & set(r["takers"])
    assert sorted(p for p, _ in r["exit_status"]) == sorted(r["takers"] + r["last"])
    assert {c for _, c in r["exit_status"]} == {0} and r["error"] is False


async def test_stop_signals_and_kills_and_exits_the_group_caused_are_no_errors(tmp_path: Path) -> None:
    r = await scenarios(tmp_path, "stopping")
    s = r["stopping"]
    assert s["exit_status"] == [-signal.SIGKILL, -signal.SIGKILL, 1]  # deaf to SIGINT and SIGTERM; one was not
    assert s["puids"] == [] and s["join"] == NONE and s["error"] is False
    assert s["bad_patience"][0] == "InvalidArgument"
    print(f"stop(patience=0.5) of processes deaf to SIGINT and SIGTERM: {s['seconds']:.2f} s")
    sent, joined, codes, bad = r["signalled"]
    assert sent == NONE
    assert joined[0] == "DragonUserCodeError"  # SIGUSR1 handled, exit 7 later: not the group's doing
    # the first exit 7 stops the other, unless it exited 7 too (its SIGINT: a KeyboardInterrupt, or the
    # signal's default while its SIGUSR1 handler ran)
    assert 7 in codes and len(codes) == 2 and set(codes) <= {7, 1, -signal.SIGINT}, codes
    assert bad[0] == "DragonProcessGroupSignalError" and "12345 is not a signal" in bad[1]
    assert r["killed_by_signal"] == [NONE, [-signal.SIGUSR1] * 2]  # a signal that kills is
    # terminate and kill stop the restarting first
    assert r["terminate"] == [NONE, [-signal.SIGTERM] * 2]
    assert r["kill"] == [NONE, [-signal.SIGKILL] * 2]


async def test_walltime_join_timeout_and_the_with_block(tmp_path: Path) -> None:
    r = await scenarios(tmp_path, "timing_out")
    joined, seconds, exits, error = r["walltime"]
    assert (joined, exits, error) == (NONE, 2, False)  # stopped at the walltime: not an error
    print(f"walltime 1 s: joined after {seconds:.2f} s")
    error_name, waited, is_timeout_error, still = r["join_timeout"]
    assert (error_name, is_timeout_error, still) == ("DragonProcessGroupJoinError", True, 1)
    print(f"join(0.3) raised after {waited:.2f} s")
    closed, codes = r["with_block"]  # leaving the block stopped the process (SIGINT: as in start_failed)
    assert closed == "<ProcessGroup of 1 processes, closed>" and codes in ([1], [-signal.SIGINT])


async def test_a_group_left_running_is_stopped_when_its_program_exits(tmp_path: Path) -> None:
    child_code, member_codes = (await scenarios(tmp_path, "left_running"))["left_running"]
    assert child_code == 0
    assert member_codes == [1, 1]  # SIGINT from the child's exit, not the end of the run


async def test_a_restart_that_cannot_start_stops_the_group_and_join_says_why(tmp_path: Path) -> None:
    in_error, (error, text), clean_exits = (await scenarios(tmp_path, "restart_fails"))["restart_fails"]
    assert in_error is True and clean_exits is True
    assert error == "DragonProcessGroupStartError"
    assert "could not be restarted" in text and "No such file or directory: 'gone'" in text


async def test_misuse_gets_clear_errors(tmp_path: Path) -> None:
    r = await scenarios(tmp_path, "misuse")
    m = r["misuse"]
    expected = {
        "join_new": ("DragonProcessGroupRunningError", "init() or start() it first"),
        "signal_new": ("DragonProcessGroupRunningError", "init() or start() it first"),
        "start_empty": ("DragonProcessGroupStartError", "add_process() first"),
        "pickle": ("InvalidArgument", "cannot be pickled; pass its puids"),
        "pmi": ("InvalidArgument", "PMI) is not supported"),
        "critical": ("InvalidArgument", "is not supported"),
        "walltime": ("InvalidArgument", "seconds > 0 or None, not -1"),
        "nproc": ("InvalidArgument", "an int of 1 or more, not 0"),
        "template": ("InvalidArgument", "must be a dragon.native.ProcessTemplate"),
        "named": ("InvalidArgument", "makes one process (names are unique), not 2"),
        "init_running": ("DragonProcessGroupAlreadyInitialized", "is initialized already"),
        "start_running": ("DragonProcessGroupRunningError", "runs already"),
        "add_running": ("DragonProcessGroupRunningError", "cannot add processes while it runs"),
    }
    for key, (error, text) in expected.items():
        assert m[key][0] == error and text in m[key][1], (key, m[key])
    failed, codes, puids, cause = r["start_failed"]
    assert failed[0] == "DragonProcessGroupStartError"
    assert "cannot start /nonexistent/program" in failed[1]
    # those started were stopped: SIGINT, a KeyboardInterrupt (1), or before Python took it over (-2)
    assert len(codes) == 2 and set(codes) <= {1, -signal.SIGINT}
    assert (puids, cause) == ([], "ProcessStartFailed")
    first, now, by_name = r["named_restart"]
    assert now != first and now == [by_name]  # the replacement has the template's name


async def test_the_groups_policy_places_its_processes_under_their_own(tmp_path: Path) -> None:
    r = await scenarios(tmp_path, "placement")
    assert r["placement"] == [["group", [0]], ["own", [1]]]  # the group's over `with Policy`, the template's over both
