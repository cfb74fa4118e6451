"""Head program for test_native_popen: `dragon.native.Popen` as code written for subprocess uses it;
prints one JSON report (bytes as text) of what each use saw."""

import json
import os
import subprocess
import sys
from typing import Any

from dragon.native import Popen, Process
from dragon.native.popen import DEVNULL, PIPE, STDOUT


def error(call: Any) -> list[str]:
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["none", ""]


def text(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


if __name__ == "__main__":
    r: dict[str, Any] = {
        "constants": [PIPE, STDOUT, DEVNULL] == [subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL]
    }
    with Popen(["sort"], stdin=PIPE, stdout=PIPE, text=True) as p:
        r["sort"] = [p.communicate("b\na\n"), p.returncode]
    r["with_exit"] = p.returncode
    p = Popen("echo hi; echo err >&2; exit 3", shell=True, stdout=PIPE, stderr=PIPE)
    out, err = p.communicate()
    r["shell"] = [text(out), text(err), p.returncode, p.args]
    p = Popen(["sh", "-c", "echo one; echo two >&2"], stdout=PIPE, stderr=STDOUT)
    r["merged"] = [text(p.stdout.read()), p.wait(), p.stderr]  # type: ignore[union-attr]
    p = Popen(["sleep", "30"])
    r["handle"] = [p.pid > 0, Process.from_puid(p.puid).pid == p.pid, p.poll()]
    r["wait_timeout"] = error(lambda: p.wait(0.2))
    p.terminate()
    r["terminated"] = [p.wait(), p.poll(), repr(p)]
    p.kill()  # exited already: nothing
    p = Popen(["sh", "-c", "echo start; sleep 1; echo end"], stdout=PIPE)
    r["communicate_timeout"] = error(lambda: p.communicate(timeout=0.2))
    out, err = p.communicate()
    r["communicate_again"] = [text(out), err, p.returncode]
    big = os.urandom(5 << 20)
    p = Popen(["cat"], stdin=PIPE, stdout=PIPE)
    out, _ = p.communicate(big)
    r["big"] = [len(out), out == big]
    p = Popen(["true"], stdin=PIPE)
    p.wait()
    try:
        for _ in range(200):
            p.stdin.write(b"y" * 65536)  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        r["broken_pipe"] = "none"
    except BrokenPipeError as exc:
        r["broken_pipe"] = str(exc)
    p = Popen(["true"], stdin=PIPE)
    r["input_dropped"] = [p.communicate(b"z" * (10 << 20)), p.returncode]
    p = Popen(["cat"], stdin=PIPE, stdout=PIPE, bufsize=0)
    p.stdin.write(b"line\n")  # type: ignore[union-attr]
    r["unbuffered"] = [text(p.stdout.read(5))]  # type: ignore[union-attr]
    p.stdin.close()  # type: ignore[union-attr]
    r["unbuffered"].append(p.wait())
    p = Popen(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stdout=PIPE, text=True)
    r["lines"] = list(p.stdout)  # type: ignore[arg-type]
    p.wait()
    p = Popen(["printf", "caf\\303\\251 \\377"], stdout=PIPE, encoding="utf-8", errors="replace")
    r["decoded"] = p.communicate()[0]
    os.mkdir("sub")
    p = Popen(["sh", "-c", "pwd; echo $ZZZ"], stdout=PIPE, cwd="sub", env={"ZZZ": "set"}, proc_name="popen-named")
    r["cwd_env"] = [text(p.communicate()[0]), Process.from_name("popen-named").p_uid == p.puid]
    p = Popen(["sh", "-c", "echo to-file; echo quiet >&2"], stdout="out.txt", stderr=DEVNULL)
    p.wait()
    r["to_file"] = open("out.txt").read()
    p = Popen(["ignored-name", "-c", "print(7)"], executable=sys.executable, stdout=PIPE)
    r["executable"] = text(p.communicate()[0])
    r["errors"] = {
        "file_object": error(lambda: Popen(["true"], stdout=sys.stdout)),
        "descriptor": error(lambda: Popen(["true"], stdin=0)),
        "empty": error(lambda: Popen([])),
        "preexec": error(lambda: Popen(["true"], preexec_fn=print)),
        "pass_fds": error(lambda: Popen(["true"], pass_fds=[3])),
        "missing": error(lambda: Popen(["/nonexistent/program"])),
        "input_no_pipe": error(lambda: Popen(["true"]).communicate(b"x")),
    }
    print(json.dumps(r))
