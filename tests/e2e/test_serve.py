"""`dragon.serve`: a runtime inside a trio program, up until cancelled (or Ctrl-C), nothing left after."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import trio

import dragon
from dragon import _rundir
from dragon.messages import (
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinResponse,
    ProcessCreateErr,
    ProcessJoinErr,
)
from dragon.services.launcher import RuntimeHandle
from dragon.transport import entries, run_prefix, unlink_quietly

from e2e_util import RUN_TIMEOUT_S, StreamReader, pid_alive, program, start_process

INTERRUPT_BOUND_S = 10.0


async def _assert_running(run_id: str) -> _rundir.RunInfo:
    path = _rundir.run_dir(run_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    # Bounded poll, a workaround: Local Services writes runtime.json just *after* it sends SHPingGS, so
    # GSIsUp (and with it the handle of `dragon.serve`) may reach the launcher before the file exists.
    with trio.fail_after(5):
        while (info := _rundir.read_info(run_id)) is None:
            await trio.sleep(0.01)
    assert info.run_id == run_id
    for name, pid in (("Local Services", info.ls_pid), ("Global Services", info.gs_pid)):
        assert pid_alive(pid), f"{name} (pid {pid}) is not running"
    assert entries(run_prefix(run_id))
    return info


def _assert_gone(run_id: str, info: _rundir.RunInfo) -> None:
    assert not os.path.exists(_rundir.run_dir(run_id))
    assert entries(run_prefix(run_id)) == []
    for name, pid in (("Local Services", info.ls_pid), ("Global Services", info.gs_pid)):
        assert not pid_alive(pid), f"{name} (pid {pid}) is still running"


async def test_serve_in_a_nursery(capfd: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            handle: RuntimeHandle = await nursery.start(dragon.serve)
            assert len(handle.run_id) == 8
            info = await _assert_running(handle.run_id)
            assert info.ls_pid == handle.ls_pid
            assert info.launcher_pid == os.getpid()
            created = await handle.call(
                GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", "print('from a managed process')"]),
                GSProcessCreateResponse,
            )
            assert created.err == ProcessCreateErr.SUCCESS, created.err_info
            assert created.desc is not None
            joined = await handle.call(
                GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=created.desc.p_uid), GSProcessJoinResponse
            )
            assert (joined.err, joined.exit_code) == (ProcessJoinErr.SUCCESS, 0)
            nursery.cancel_scope.cancel()
    _assert_gone(handle.run_id, info)
    assert "from a managed process\n" in capfd.readouterr().out  # its output went to our stdout


async def _interrupt_and_check(proc: trio.Process, run_id: str, info: _rundir.RunInfo) -> None:
    """Ctrl-C (SIGINT to the program alone): it ends, in bounded time, with nothing of the run left."""
    assert proc.stderr is not None
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(INTERRUPT_BOUND_S):
        err = await StreamReader(proc.stderr).to_end()
        await proc.wait()
    # trio wraps the KeyboardInterrupt in a BaseExceptionGroup (a nursery is on its way): exit status 1
    assert proc.returncode in (1, -signal.SIGINT), err
    leaves = re.findall(rb"^[ |]*(\w[\w.]*(?:Error|Exception|Interrupt|Broken)\b.*)$", err, re.MULTILINE)
    assert leaves and all(leaf == b"KeyboardInterrupt" for leaf in leaves), err
    _assert_gone(run_id, info)


async def test_serve_in_a_program_ends_on_ctrl_c() -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery,
                [sys.executable, program("serve_until_interrupted.py")],
                stdin=b"",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdout is not None
            out = await StreamReader(proc.stdout).until(b" up\n")
            run_id = out.split()[0].decode()
            info = await _assert_running(run_id)
            assert info.launcher_pid == proc.pid
        await _interrupt_and_check(proc, run_id, info)


def _runtime_of(launcher_pid: int) -> _rundir.RunInfo | None:
    """The runtime whose launcher is `launcher_pid`, once its runtime.json is written (it is up)."""
    try:
        names = os.listdir(_rundir.runtime_root())
    except FileNotFoundError:
        return None
    for run_id in names:
        info = _rundir.read_info(run_id)
        if info is not None and info.launcher_pid == launcher_pid:
            return info
    return None


async def _wait_runtime_of(proc: trio.Process) -> _rundir.RunInfo:
    """Bounded poll (the program prints nothing when its runtime is up) for the runtime of `proc`."""
    while (info := _runtime_of(proc.pid)) is None:
        if proc.poll() is not None:
            assert proc.stderr is not None
            err = await StreamReader(proc.stderr).to_end()
            text = err.decode(errors="replace")
            raise AssertionError(f"it exited ({proc.returncode}) before its runtime was up: {text}")
        await trio.sleep(0.02)
    return info


async def test_trio_run_serve_ends_on_ctrl_c() -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery, [sys.executable, program("trio_run_serve.py")], stdin=b"", stderr=subprocess.PIPE
            )
            info = await _wait_runtime_of(proc)
            await _assert_running(info.run_id)
        await _interrupt_and_check(proc, info.run_id, info)


async def _wait_gone(run_id: str, info: _rundir.RunInfo) -> None:
    """Bounded poll until nothing of the run is left (Local Services tears down alone, in its own time)."""
    with trio.move_on_after(INTERRUPT_BOUND_S + 5):
        while (
            os.path.exists(_rundir.run_dir(run_id))
            or entries(run_prefix(run_id))
            or pid_alive(info.ls_pid)
            or pid_alive(info.gs_pid)
        ):
            await trio.sleep(0.05)
    left = {
        "runtime dir": os.path.exists(_rundir.run_dir(run_id)),
        "shm": entries(run_prefix(run_id)),
        "LS running": pid_alive(info.ls_pid),
        "GS running": pid_alive(info.gs_pid),
    }
    assert not any(left.values()), f"run {run_id} left {left}"


def _remove_leftovers(info: _rundir.RunInfo) -> None:
    """Clean up after a runtime that did not (its test fails; the leak check need not repeat it)."""
    for pid in (info.gs_pid, info.ls_pid):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for name in entries(run_prefix(info.run_id)):
        unlink_quietly(name)
    _rundir.remove_run_dir(info.run_id)


async def test_serve_program_killed_by_sigterm_leaves_nothing() -> None:
    """A program running `trio.run(dragon.serve)` killed by SIGTERM (no teardown of its own): Local Services
    sees its launcher gone and tears the runtime down alone, without a traceback."""
    info: _rundir.RunInfo | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(RUN_TIMEOUT_S):
                proc = await start_process(
                    nursery, [sys.executable, program("trio_run_serve.py")], stdin=b"", stderr=subprocess.PIPE
                )
                assert proc.stderr is not None
                info = await _wait_runtime_of(proc)
                proc.send_signal(signal.SIGTERM)
                err = await StreamReader(proc.stderr).to_end()  # LS and GS write to it too: EOF once they exited
                await proc.wait()
            await _wait_gone(info.run_id, info)
        assert proc.returncode == -signal.SIGTERM
        assert b"Traceback" not in err, err.decode(errors="replace")
    finally:
        if info is not None:
            _remove_leftovers(info)
