"""dragon.native (spec §7.2) end to end: the real `dragon` command runs programs of native_programs/
that use the API and report what they saw as JSON; these tests check it.

Every operation and every error is exercised from the head process and from a grandchild (a process
created by a process the head created), with identical expectations. Timings are printed, not asserted.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from e2e_util import clean_env, run_command, run_dragon

NATIVE: Final = Path(__file__).resolve().with_name("native_programs")
HEAD_PUID: Final = 2**32


def native(name: str) -> str:
    return str(NATIVE / name)


async def _run(*args: str, cwd: Path, timeout_s: float = 120) -> dict[str, Any]:
    """`dragon ARGS`: must succeed with nothing on stderr; returns the JSON its head printed."""
    done = await run_dragon(*args, cwd=cwd, timeout_s=timeout_s)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _check_suite(result: dict[str, Any], role: str) -> None:
    p, c, m = result["processes"], result["channels"], result["pools"]
    assert p["me"] == p["me_env"] == p["current_puid"]
    assert p["me_pid"] and p["me_alive"]
    assert p["before_start"] == [None, None, None, False]
    assert (p["quick_join"], p["quick_returncode"], p["quick_alive"]) == (3, 3, False)
    assert p["quick_default_name"] and p["quick_pid"]
    assert p["kill_dead"] == "none"
    assert (p["join_timeout"], p["join_poll"], p["sleeper_alive"], p["sleeper_returncode"]) == (None, None, True, None)
    assert p["from_name"] and p["from_puid"] == f"sleeper-{role}"
    assert p["sleeper_parent"] == p["me"]
    assert p["children"] and p["in_list"] and p["pickled"]
    assert p["name_in_use"] == ["ProcessNameInUse", True, True]
    assert p["bad_signal"] == "ProcessSignalFailed"
    assert (p["terminated"], p["terminated_alive"]) == (-signal.SIGTERM, False)
    assert p["name_free_after_death"] == "none"
    assert p["sigint"] == -signal.SIGINT
    assert p["env_proc"] == 0
    assert p["env_proc_out"] == "x-value / True\nerr\n"
    assert p["start_failed"] == "ProcessStartFailed"
    assert p["unknown_puid"] == p["unknown_name"] == "UnknownProcess"
    assert p["join_self"] == "JoinSelf"
    for key in ("bad_target", "bad_stdio", "join_unstarted", "start_twice"):
        assert p[key] == "InvalidArgument", key

    assert c["c_uid_range"] and c["default_name"]
    assert c["objects"] == [{"a": [1, 2]}, "raw"]
    assert c["big"] == 3_000_000
    assert (c["recv_timeout"], c["send_timeout"], c["depth"]) == ("ChannelEmpty", "ChannelFull", 2)
    assert c["attach"] == ["via name", True, True, True, True]
    assert c["name_in_use"] == "ChannelNameInUse"
    assert c["wait_timeout"] == "ChannelWaitTimeout"
    assert c["unknown_name"] == c["unknown_cuid"] == c["destroy_twice"] == "UnknownChannel"
    for key in ("attach_neither", "bad_capacity", "bad_block", "soft_no_name"):
        assert c[key] == "InvalidArgument", key
    assert c["unknown_pool"] == "ChannelCreateFailed"
    assert c["send_after_destroy"] == c["attach_destroyed"] == c["wait_destroyed"] == "ChannelDestroyed"
    assert c["is_channel_error"]

    assert m["m_uid_range"] and m["default_name"]
    assert (m["size"], m["allocations"]) == (1 << 20, 1)
    assert m["attach"] == [True] * 5
    assert m["name_in_use"] == "PoolNameInUse"
    assert m["unknown_name"] == m["unknown_muid"] == "UnknownPool"
    assert (m["too_small"], m["bad_size"]) == ("PoolCreateFailed", "InvalidArgument")
    assert m["chan_in_pool"] == "none"
    assert m["destroy_twice"] == m["attach_destroyed"] == "PoolGone"
    assert m["chan_in_dead_pool"] == "ChannelCreateFailed"
    assert result["trio_imported"] is False


async def test_every_operation_and_error_from_head_and_grandchild(tmp_path: Path) -> None:
    done = await run_dragon(native("suite.py"), "head", str(tmp_path), cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    head = json.loads((tmp_path / "result_head.json").read_text())
    grandchild = json.loads((tmp_path / "result_grandchild.json").read_text())
    _check_suite(head, "head")
    _check_suite(grandchild, "grandchild")
    assert head["processes"]["me"] == HEAD_PUID
    assert (head["processes"]["parent"], head["processes"]["parent_puid"]) == (None, 0)
    gc = grandchild["processes"]
    assert gc["parent"] == gc["parent_puid"] and gc["parent"] not in (None, 0, HEAD_PUID)


async def test_a_callable_target_runs_as_under_spawn(tmp_path: Path) -> None:
    """`Process(f, args, kwargs)`: f runs in a new process with its arguments (objects, a runtime
    Queue), the script as `__mp_main__`, the parent's argv and directory; the exit code is f's; a
    callable child starts one of its own; a ProcessTemplate makes several; what cannot work says
    so at construction or start."""
    r = await _run(native("callables.py"), cwd=tmp_path)
    assert r["work"] == 0
    seen = r["seen"]
    assert (seen["data"], seen["extra"]) == ({"a": [1, 2], "b": [3, None]}, 5)
    assert (seen["module"], seen["mp_name"], seen["cwd"]) == ("__mp_main__", "MainProcess", r["cwd"])
    assert seen["argv"] == [native("callables.py")]
    assert seen["p_uid"] not in (None, r["head_puid"])
    assert r["in_sub"] == [0, str(Path(r["cwd"], "sub"))]  # `cwd` is the process's directory
    assert r["start_method_after"] == r["start_method"]  # starting one does not fix the start method
    assert r["exits"] == [3, 0, 1]  # sys.exit(3), sys.exit(None), sys.exit("a text exit")
    assert r["raises"] == 1
    assert (r["grandparent"], r["grandchild"]["data"]) == (0, "from a child")
    assert r["grandchild"]["p_uid"] not in (seen["p_uid"], r["head_puid"])
    assert (r["feeds"], r["fed"][0]) == (0, "fed")
    err = r["stderr"]
    assert err.startswith("a text exit\n"), err
    assert "dragon.native.Process running callables.py: raises:" in err
    assert "ValueError: raised by the target" in err
    assert r["lambda"].startswith("cannot start callables.py: <lambda>") and "must pickle" in r["lambda"]
    assert "kwargs are for a Python callable target" in r["exe_kwargs"]
    assert "or a Python callable, not 123" in r["not_callable"]
    assert r["template"] == [[f"from-template-{i}", 4] for i in range(3)]
    assert r["template_name"] == ["template-name", 0]
    assert "args of an executable must be strings" in r["bad_template"]


async def test_a_callable_target_of_a_script_without_its_main_guard_gets_spawns_error(tmp_path: Path) -> None:
    done = await run_dragon(native("callable_noguard.py"), cwd=tmp_path, timeout_s=60)
    assert (done.returncode, done.stdout) == (0, b"joined 1\n"), done.stderr.decode(errors="replace")
    err = done.stderr.decode(errors="replace")
    assert "dragon.native.Process running builtins: print:" in err
    assert "current process has finished its bootstrapping phase" in err


async def test_outside_the_runtime_every_call_says_to_use_dragon(tmp_path: Path) -> None:
    code = (
        "import sys, dragon.native as n\n"
        "assert 'trio' not in sys.modules, 'dragon.native imported trio'\n"
        "from dragon.errors import RuntimeNotRunning\n"
        "for call in (n.Process.list, n.current, lambda: n.Channel.create(), lambda: n.Pool.create(4096),\n"
        "             lambda: n.Process('true').start()):\n"
        "    try:\n"
        "        call()\n"
        "    except RuntimeNotRunning as exc:\n"
        "        print(exc)\n"
    )
    done = await run_command([sys.executable, "-c", code], cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 5
    assert all("run the program with `dragon prog.py`" in line for line in lines)


async def test_200_processes_created_from_threads_and_joined(tmp_path: Path) -> None:
    result = await _run(native("many_processes.py"), "200", "8", cwd=tmp_path)
    assert result["errors"] == []
    assert result["codes"] == [0] * 200
    assert result["p_uids"] == 200
    print(f"200 processes: created in {result['create_s']:.2f} s, all joined after {result['total_s']:.2f} s")


async def test_1000_channels_created_and_destroyed(tmp_path: Path) -> None:
    result = await _run(native("many_channels.py"), "1000", cwd=tmp_path)
    assert (result["count"], result["distinct"], result["listed"]) == (1000, 1000, True)
    assert result["shm_after"] == result["shm_before"], "destroyed channels left /dev/shm entries"
    print(f"1000 channels created, used and destroyed in {result['seconds']:.2f} s")


async def test_kill_of_a_process_blocked_in_a_channel_receive(tmp_path: Path) -> None:
    result = await _run(native("kill_blocked.py"), cwd=tmp_path)
    assert result == {"blocked": 1, "alive_before_kill": True, "code": -9, "returncode": -9}


async def test_two_processes_exchange_10000_messages_over_named_channels(tmp_path: Path) -> None:
    result = await _run(native("exchange.py"), cwd=tmp_path)
    assert result["codes"] == [0, 0]
    print(f"10,000 round trips between two processes: {result['seconds']:.2f} s including their start")


@pytest.mark.parametrize("module", ["dragon.native", "dragon.client.gs_client"])
async def test_import_leaves_trio_out(module: str) -> None:
    done = await run_command(
        [sys.executable, "-c", f"import sys, {module}; print('trio' in sys.modules)"], env=clean_env()
    )
    assert done.stdout == b"False\n", done.stderr
