"""dragon.native.Popen (spec §7.2), subprocess.Popen's look-alike, end to end: the real `dragon`
command runs native_programs/popen_program.py, which uses it as code written for subprocess does and
reports what it saw (JSON)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from e2e_util import run_dragon

PROGRAM = str(Path(__file__).resolve().with_name("native_programs") / "popen_program.py")


async def test_popen_behaves_as_subprocess_for_a_runtime_process(tmp_path: Path) -> None:
    done = await run_dragon(PROGRAM, cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""  # stderr=DEVNULL and the PIPEs hid everything
    r: dict[str, Any] = json.loads(done.stdout)
    assert r["constants"] is True  # subprocess.PIPE, STDOUT and DEVNULL work as they are
    assert r["sort"] == [["a\nb\n", None], 0] and r["with_exit"] == 0
    assert r["shell"] == ["hi\n", "err\n", 3, "echo hi; echo err >&2; exit 3"]
    assert r["merged"] == ["one\ntwo\n", 0, None]
    assert r["handle"] == [True, True, None]  # pid is the OS pid; puid finds the same process
    assert r["wait_timeout"][0] == "TimeoutExpired" and "timed out after 0.2 seconds" in r["wait_timeout"][1]
    assert r["terminated"] == [-signal.SIGTERM, -signal.SIGTERM, "<Popen: returncode: -15 args: ['sleep', '30']>"]
    assert r["communicate_timeout"][0] == "TimeoutExpired"
    assert r["communicate_again"] == ["start\nend\n", None, 0]  # nothing read before the timeout was lost
    assert r["big"] == [5 << 20, True]
    assert r["broken_pipe"].endswith("the process has exited")
    assert r["input_dropped"] == [[None, None], 0]  # as subprocess: input a process did not read is dropped
    assert r["unbuffered"] == ["line\n", 0]
    assert r["lines"] == ["1\n", "2\n", "3\n"]
    assert r["decoded"] == "caf\u00e9 \ufffd"
    assert r["cwd_env"] == [f"{tmp_path / 'sub'}\nset\n", True]
    assert r["to_file"] == "to-file\n"
    assert r["executable"] == "7\n"
    e = r["errors"]
    assert e["file_object"][0] == e["descriptor"][0] == "InvalidArgument"
    assert "cannot be handed to a process of the runtime" in e["file_object"][1]
    assert e["empty"][0] == e["preexec"][0] == e["pass_fds"][0] == e["input_no_pipe"][0] == "InvalidArgument"
    assert e["missing"][0] == "FileNotFoundError" and "No such file or directory" in e["missing"][1]
    assert e["missing_is_os_error"] is True and e["not_executable"][0] == "PermissionError"
    assert r["read_after_exit"] == 200  # read after wait(): the pipe is copied past the exit
    assert r["grandchild_holds_pipe"] == "early\nlate\n"  # the end of file comes when the pipe's last writer ends
    assert r["eof_after_full_pipe"] == str(80 * 8192)
    assert r["communicate_type_error"] == [
        ["TypeError", r["communicate_type_error"][0][1]],
        0,
    ]  # stdin closed all the same
    assert r["communicate_decode_error"] == "UnicodeDecodeError"
    assert r["text_unbuffered"] == ["a\n"]
