"""Head program for test_native_popen: `dragon.native.Popen` as code written for subprocess uses it;
prints one JSON report (bytes as text) of what each use saw."""

import json
import os
import subprocess
import sys
import threading
from typing import Any

from dragon.native import Popen, Process
from dragon.native.popen import DEVNULL, PIPE, STDOUT


def error(call: Any) -> list[str]:
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["none", ""]


def _raised(call: Any) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None


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
    lines = "import sys, time\nfor i in range(200):\n    print(i, flush=True)\n    time.sleep(0.002)"
    p = Popen([sys.executable, "-c", lines], stdout=PIPE)
    p.wait()  # more pieces than its pipe holds are still on their way: nothing of them is lost
    r["read_after_exit"] = len(p.stdout.readlines())  # type: ignore[union-attr]
    p = Popen("(sleep 1; echo late) & echo early", shell=True, stdout=PIPE)
    r["grandchild_holds_pipe"] = text(p.communicate(timeout=60)[0])
    p = Popen(["sh", "-c", "sleep 1; wc -c"], stdin=PIPE, stdout=PIPE, bufsize=0)
    for _ in range(80):  # more than its pipe holds: the end of file waits for room
        p.stdin.write(b"x" * 8192)  # type: ignore[union-attr]
    p.stdin.close()  # type: ignore[union-attr]
    r["eof_after_full_pipe"] = text(p.communicate(timeout=60)[0]).strip()  # type: ignore[union-attr]
    p = Popen(["cat"], stdin=PIPE, stdout=PIPE)
    r["communicate_type_error"] = [error(lambda: p.communicate("text in binary mode")), p.wait(60)]
    p = Popen(["printf", "ok\\377"], stdout=PIPE, text=True)
    r["communicate_decode_error"] = error(p.communicate)[0]
    p = Popen(["cat"], stdin=PIPE, stdout=PIPE, text=True, bufsize=0)
    p.stdin.write("a\n")  # type: ignore[union-attr]  # text with bufsize=0: written through, no flush
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    p.kill()
    r["text_unbuffered"] = got
    with open("not-executable", "w") as f:
        f.write("echo no")
    r["errors"] = {
        "not_executable": error(lambda: Popen([os.path.abspath("not-executable")])),
        "file_object": error(lambda: Popen(["true"], stdout=sys.stdout)),
        "descriptor": error(lambda: Popen(["true"], stdin=0)),
        "empty": error(lambda: Popen([])),
        "preexec": error(lambda: Popen(["true"], preexec_fn=print)),
        "pass_fds": error(lambda: Popen(["true"], pass_fds=[3])),
        "missing": error(lambda: Popen(["/nonexistent/program"])),
        "missing_is_os_error": isinstance(_raised(lambda: Popen(["/nonexistent/program"])), OSError),
        "input_no_pipe": error(lambda: Popen(["true"]).communicate(b"x")),
    }
    print(json.dumps(r))
