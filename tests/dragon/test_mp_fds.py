"""The fd hand-over of the "dragon" start method (dragon/mp/fds.py) between two real processes.

The listener is an abstract unix socket anyone on the machine could connect to: the fds go only to
the process named, and the parent stops waiting when that process exits without taking them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from dragon.mp.fds import FdHandoff

TIMEOUT_S = 60  # a guard against hangs, not a speed assertion

CHILD = """
import os, sys
from dragon.mp import fds as _mp_fds
sys.stdin.readline()  # connect after the intruder
_mp_fds.receive("\\0" + sys.argv[1], 2)  # argv cannot hold the abstract name's NUL
fds = [_mp_fds.ParentFd(i).detach() for i in (1, 0)]
print(os.read(fds[1], 100).decode(), os.write(fds[0], b"back"))
"""


def test_fds_go_only_to_the_child_named() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.write(w1, b"through the hand-over")
    handoff = FdHandoff()
    try:
        assert (handoff.add(r1), handoff.add(w2)) == (0, 1)
        os.close(r1)  # the hand-over keeps its own copies
        listen = handoff.listen()
        assert listen is not None
        address, count = listen
        assert count == 2 and address.startswith("\0")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, address[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        sentinel = os.pidfd_open(child.pid)
        served = threading.Thread(target=handoff.serve, args=(child.pid, sentinel))
        served.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as intruder:  # another pid: refused
            intruder.connect(address)
            intruder.settimeout(TIMEOUT_S)
            msg, fds, _, _ = socket.recv_fds(intruder, 1, 2)
        assert (msg, fds) == (b"", [])
        out, _ = child.communicate("go\n", timeout=TIMEOUT_S)
        served.join(TIMEOUT_S)
        assert not served.is_alive()
        os.close(sentinel)
    finally:
        handoff.close()
    assert (child.returncode, out.split()) == (0, ["through", "the", "hand-over", "4"])
    os.close(w2)
    assert os.read(r2, 100) == b"back"
    for fd in (w1, r2):
        os.close(fd)


def test_the_parent_stops_waiting_for_a_child_that_exits_first() -> None:
    r, w = os.pipe()
    handoff = FdHandoff()
    try:
        handoff.add(w)
        assert handoff.listen() is not None
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        sentinel = os.pidfd_open(child.pid)
        handoff.serve(child.pid, sentinel)  # returns once it exited
        assert child.wait(TIMEOUT_S) == 0
        os.close(sentinel)
    finally:
        handoff.close()
    os.close(w)
    assert os.read(r, 1) == b""  # the hand-over's copy of the write end is closed too
    os.close(r)


def test_nothing_to_hand_over_opens_no_listener() -> None:
    handoff = FdHandoff()
    assert handoff.listen() is None
    handoff.close()
