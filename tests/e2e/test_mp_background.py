"""The start method "dragon" under plain `python prog.py`: a runtime in the background (issue #5).

The programs are mp_programs/bg_*.py, run with the venv's interpreter and no DRAGON_* variables, so
that the first `Process.start()` brings up a runtime owned by the program (`dragon.client.background`).
The central promise is checked the moment the program's process has exited (not once its output
has ended, which the background launcher holds open): nothing of the run is left, neither a
process nor a /dev/shm entry nor the runtime directory. Timings (bringup seen by the first start,
how long the exit took after the program's last line) are printed, never asserted.
That `dragon.native` alone brings no runtime up is tested in test_native_api.py (outside the runtime).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from dragon import _runs
from dragon._rundir import run_dir
from dragon.transport import entries, run_prefix

from e2e_util import DRAGON, clean_env, pid_alive

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")
CLEANUP_S: Final = 30.0  # bound of the polls for a runtime cleaning up after a killed program


def prog(name: str) -> str:
    return str(MP_PROGRAMS / name)


def leftovers(run_id: str, pids: list[int]) -> list[str]:
    """What of run `run_id` exists now: live processes (the given pids, and any process carrying the
    run's DRAGON_RUN_ID), /dev/shm entries, the runtime directory. Empty when it is all gone."""
    found = [f"pid {pid}" for pid in pids if pid_alive(pid)]
    found += [
        f"pid {p.pid} ({' '.join(p.cmdline)})"
        for p in _runs.all_processes()
        if p.running and p.pid not in pids and _runs.environ_run_id(p.pid) == run_id
    ]
    found += entries(run_prefix(run_id))
    if os.path.exists(run_dir(run_id)):
        found.append(run_dir(run_id))
    return found


async def run_to_files(
    argv: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> tuple[int, bytes, bytes, float]:
    """Run `argv` with stdout and stderr going to files; return when its process exits (output may
    still come from processes that hold the files). Returns exit code, stdout, stderr, and the Unix
    time of the exit."""
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err, trio.fail_after(timeout_s):
        done = await trio.run_process(
            argv, stdout=out, stderr=err, check=False, cwd=tmp_path, env=clean_env() if env is None else env
        )
    exited = time.time()
    return done.returncode, out_path.read_bytes(), err_path.read_bytes(), exited


def tagged(stdout: bytes, tag: str) -> Any:
    """The JSON after `TAG ` on its line of `stdout`."""
    for line in stdout.decode().splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    raise AssertionError(f"no {tag} line in {stdout!r}")


def check_basic_report(report: dict[str, Any], stdout: bytes, stderr: bytes) -> None:
    assert report["exitcodes"] == [0, 3] and report["speak"] == 0
    assert report["queue"] == [["item", i, False] for i in range(5)]  # ... and no trio in the child
    assert report["pipe"] == [["echo", "a"], ["echo", {"k": 1}]]
    assert report["pool"] == [x * x for x in range(6)] and report["native"] == 0
    assert report["daemon"]["alive"] and report["trio_in_program"] is False
    lines = stdout.decode().splitlines()
    assert "stdout of child: hello" in lines and "stdout of native child" in lines
    assert [line for line in lines if line.startswith("END ")]
    assert stderr == b"stderr of child: hello\n", stderr.decode(errors="replace")


async def test_plain_python_brings_a_runtime_up_and_leaves_nothing(tmp_path: Path) -> None:
    code, stdout, stderr, exited = await run_to_files([sys.executable, prog("bg_basic.py")], tmp_path)
    assert code == 0, stderr.decode(errors="replace")
    report = tagged(stdout, "REPORT")
    run = report["run"]
    left = leftovers(run["run_id"], run["pids"] + [report["daemon"]["pid"]])  # right at the program's exit
    exit_delay = exited - tagged(stdout, "END")  # a number is JSON too
    print(
        f"bringup {report['bringup_s'] * 1000:.0f} ms, first Process.start() {report['first_start_s'] * 1000:.0f} ms, "
        f"exit {exit_delay * 1000:.0f} ms after the program's last line (daemon terminated, runtime torn down)"
    )
    assert left == [], f"left at the program's exit: {left}"
    assert report["background"] is True and len(run["pids"]) == 3
    check_basic_report(report, stdout, stderr)


async def test_the_same_program_under_dragon_uses_that_runtime(tmp_path: Path) -> None:
    code, stdout, stderr, _ = await run_to_files([DRAGON, prog("bg_basic.py")], tmp_path)
    assert code == 0, stderr.decode(errors="replace")
    report = tagged(stdout, "REPORT")
    assert report["background"] is False  # no second runtime: the start method used the one it runs in
    assert report["run"]["run_id"]
    check_basic_report(report, stdout, stderr)


async def test_a_killed_program_leaves_nothing_once_its_runtime_noticed(tmp_path: Path) -> None:
    code, stdout, stderr, exited = await run_to_files([sys.executable, prog("bg_killed.py")], tmp_path)
    assert code == -signal.SIGKILL, stderr.decode(errors="replace")
    run = tagged(stdout, "RUN")
    deadline = time.monotonic() + CLEANUP_S
    while left := leftovers(run["run_id"], run["pids"] + [run["child"]]):  # bounded poll
        assert time.monotonic() < deadline, f"left {CLEANUP_S} s after the program was killed: {left}"
        await trio.sleep(0.02)
    print(f"the background runtime cleaned up {(time.time() - exited) * 1000:.0f} ms after the program died")


async def test_a_runtime_that_does_not_come_up_raises_a_clear_error(tmp_path: Path) -> None:
    env = clean_env(DRAGON_TEST_FAULT="ls-hang-bringup", DRAGON_BRINGUP_TIMEOUT="1")
    code, stdout, stderr, _ = await run_to_files([sys.executable, prog("bg_start_error.py")], tmp_path, env)
    assert code == 0, stderr.decode(errors="replace")
    err = tagged(stdout, "ERROR")
    print(f"Process.start() failed after {err['s']:.2f} s: {err['text']}")
    assert (err["module"], err["type"]) == ("dragon.errors", "BringupError")
    assert "background Dragon runtime" in err["text"] and "SHPingBE" in err["text"]
    assert "did not come up within 1.0 s" in err["text"]
    assert stderr == b""  # the error is the exception's; nothing is printed besides (the leak check: nothing left)


async def test_a_bad_bringup_timeout_is_said_before_anything_starts(tmp_path: Path) -> None:
    env = clean_env(DRAGON_BRINGUP_TIMEOUT="soon")
    code, stdout, stderr, _ = await run_to_files([sys.executable, prog("bg_start_error.py")], tmp_path, env)
    assert code == 0, stderr.decode(errors="replace")
    err = tagged(stdout, "ERROR")
    assert err["type"] == "BringupError" and "DRAGON_BRINGUP_TIMEOUT='soon'" in err["text"]


async def test_a_launcher_that_cannot_start_is_named(tmp_path: Path) -> None:
    code, stdout, stderr, _ = await run_to_files(
        [sys.executable, prog("bg_start_error.py"), "no_such_launcher"], tmp_path
    )
    assert code == 0, stderr.decode(errors="replace")
    err = tagged(stdout, "ERROR")
    assert err["type"] == "BringupError" and "no_such_launcher) exited with code 1 without reporting" in err["text"]
    assert b"No module named no_such_launcher" in stderr  # the launcher's own words, on the program's stderr


async def test_ctrl_c_during_bringup_leaves_nothing(tmp_path: Path) -> None:
    """SIGINT to the program (as a terminal's Ctrl-C) while Local Services hangs in bringup."""
    env = clean_env(DRAGON_TEST_FAULT="ls-hang-bringup")
    with trio.fail_after(60), open(tmp_path / "stdout", "wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, prog("bg_interrupted.py")], env=env, cwd=tmp_path, stdout=out
        )
        try:
            launcher = ls = None
            while ls is None:  # bounded by fail_after: the launcher and its Local Services exist
                procs = list(_runs.all_processes())
                launcher = next(
                    (
                        p.pid
                        for p in procs
                        if p.ppid == proc.pid and p.running and "dragon.services.background" in p.cmdline
                    ),
                    None,
                )
                ls = next((p.pid for p in procs if launcher is not None and p.ppid == launcher and p.running), None)
                await trio.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            code = await proc.wait()
        finally:
            proc.kill()
            await proc.wait()
    assert launcher is not None and ls is not None
    stdout = (tmp_path / "stdout").read_bytes()
    print(f"the interrupted program exited {(time.monotonic() - t0) * 1000:.0f} ms after SIGINT")
    assert code == 0 and stdout.startswith(b"INTERRUPTED "), stdout
    assert not pid_alive(launcher) and not pid_alive(ls)  # gone when the program returned


@pytest.mark.parametrize("name", ["process_api.py", "sync_objects.py", "pool_manager.py"])
async def test_the_start_method_programs_agree_with_spawn(name: str, tmp_path: Path) -> None:
    """The programs of test_mp_start_method.py, run as `python PROG dragon` (a background runtime)
    and as `python PROG spawn`: the reports agree, except for the start method's name and p_uid."""
    reports = []
    for method in ("spawn", "dragon"):
        t0 = time.monotonic()
        code, stdout, stderr, _ = await run_to_files([sys.executable, prog(name), method], tmp_path)
        print(f"{name} {method} under plain python: {time.monotonic() - t0:.2f} s")
        assert code == 0, stderr.decode(errors="replace")
        reports.append(json.loads(stdout))
    spawn, dragon = reports
    dragon.pop("p_uid", None)
    assert json.loads(json.dumps(dragon).replace('"dragon"', '"spawn"')) == spawn
