"""`pid_alive`: the runtime's one rule of whether a process lives (a zombie is dead)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dragon.transport import pid_alive


def test_a_running_process_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert pid_alive(child.pid)
        assert pid_alive(os.getpid())
    finally:
        child.communicate(b"")


def test_an_exited_child_not_yet_reaped_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has exited; it stays a zombie
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            assert b") Z " in f.read()  # the kernel still has it, as a zombie
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_a_pid_of_no_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process (until the kernel hands it out again)
    assert not pid_alive(child.pid)


def test_a_process_of_another_user_is_alive() -> None:
    if os.getuid() != 0:
        assert os.stat("/proc/1").st_uid != os.getuid()
        assert pid_alive(1)
        return
    # As root, every process is ours to signal: ask as another user (nobody), in a forked child,
    # about this (root's) process.
    me = os.getpid()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setuid(65534)
            os.write(w, b"y" if pid_alive(me) else b"n")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"y"
    finally:
        os.close(r)
        os.waitpid(child, 0)


def test_a_pid_below_1_is_refused() -> None:
    with pytest.raises(ValueError, match="positive integer, not 0"):
        pid_alive(0)
