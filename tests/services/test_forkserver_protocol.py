"""The fork server (`dragon.services.forkserver`) on its own: its protocol with real processes, no runtime.

The test process is a child subreaper (tests/conftest.py), as Local Services is when it runs the
server, so the double-forked children are re-parented to it and reaped here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from dragon.services._fast_start import SERVER_MAIN
from dragon.services.forkserver import READY, StartReply, StartRequest

REPORT = """\
import json, os, sys
print(json.dumps({"cwd": os.getcwd(), "x": os.environ.get("FS_X"), "argv": sys.argv, "name": __name__,
                  "ppid": os.getppid(), "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
                  "preloaded": "dragon.client.gs_client" in sys.modules, "trio": "trio" in sys.modules}))
sys.exit(int(os.environ.get("FS_CODE", "0")))
"""


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A running fork server; its socket. The server must exit at end of file on it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_MAIN, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    theirs.close()
    ours.settimeout(30)
    try:
        assert ours.recv(64) == READY
        yield ours
    finally:
        ours.close()
        assert proc.wait(timeout=10) == 0


def start(sock: socket.socket, request: StartRequest, stdio: list[int]) -> StartReply:
    socket.send_fds(sock, [msgspec.msgpack.encode(request)], stdio)
    return msgspec.msgpack.decode(sock.recv(4096), type=StartReply)


def test_a_child_is_python_c_with_the_requested_cwd_env_argv_and_stdio(server: socket.socket, tmp_path: Path) -> None:
    r, w = os.pipe()
    with open(os.devnull, "rb") as null:
        reply = start(
            server,
            StartRequest(
                code=REPORT, argv=["-c", "a1"], env={**os.environ, "FS_X": "yes", "FS_CODE": "7"}, cwd=str(tmp_path)
            ),
            [null.fileno(), w, w],
        )
    os.close(w)
    assert reply.error == "" and reply.pid > 0
    with os.fdopen(r, "rb") as out:
        report = json.loads(out.read())  # end of file: the server kept no copy of the pipe
    _, status = os.waitpid(reply.pid, 0)  # re-parented to us, the subreaper
    assert os.waitstatus_to_exitcode(status) == 7
    assert report == {
        "cwd": str(tmp_path),
        "x": "yes",
        "argv": ["-c", "a1"],
        "name": "__main__",
        "ppid": os.getpid(),
        "fds": [0, 1, 2, report["fds"][-1]],
        "preloaded": True,
        "trio": False,
    }  # the last fd is the one listdir itself opened


def test_a_bad_request_is_refused_and_the_server_goes_on(server: socket.socket, tmp_path: Path) -> None:
    with open(os.devnull, "wb") as null:
        fd = null.fileno()
        refused = start(
            server, StartRequest(code="pass", argv=["-c"], env={}, cwd=str(tmp_path / "nowhere")), [fd, fd, fd]
        )
        assert refused.pid == 0 and "no such directory" in refused.error
        two_fds = start(server, StartRequest(code="pass", argv=["-c"], env={}, cwd=str(tmp_path)), [fd, fd])
        assert two_fds.pid == 0 and "3 fds" in two_fds.error
        ok = start(
            server, StartRequest(code="raise SystemExit(4)", argv=["-c"], env={}, cwd=str(tmp_path)), [fd, fd, fd]
        )
    _, status = os.waitpid(ok.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 4


def test_the_server_leaves_quietly_when_local_services_goes_away_before_it_is_ready() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_MAIN, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    theirs.close()
    ours.close()  # before its imports are done: its READY meets a closed socket
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, b"")


EXITS = {
    "threads and atexit": (
        "import atexit, threading, time\n"
        "atexit.register(print, 'atexit ran', flush=True)\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
        "print('main done', end=' ')",
        0,
        b"main done thread done\natexit ran\n",
        b"",
    ),
    "exception": ("raise ValueError('boom')", 1, b"", b"ValueError: boom"),
    "exit message": ("import sys; sys.exit('bye')", 1, b"", b"bye\n"),
    "exit code": ("import sys; sys.exit(300)", 300 & 0xFF, b"", b""),
    "ctrl-c": ("raise KeyboardInterrupt", -2, b"", b"KeyboardInterrupt"),
}


@pytest.mark.parametrize("case", sorted(EXITS))
def test_a_child_exits_as_the_interpreter_would(server: socket.socket, tmp_path: Path, case: str) -> None:
    code, status, out, err = EXITS[case]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    with open(os.devnull, "rb") as null:
        reply = start(
            server,
            StartRequest(code=code, argv=["-c"], env=dict(os.environ), cwd=str(tmp_path)),
            [null.fileno(), out_w, err_w],
        )
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as fo, os.fdopen(err_r, "rb") as fe:
        got_out, got_err = fo.read(), fe.read()
    _, wstatus = os.waitpid(reply.pid, 0)
    assert os.waitstatus_to_exitcode(wstatus) == status
    assert got_out == out
    assert err in got_err if err else got_err == b""
