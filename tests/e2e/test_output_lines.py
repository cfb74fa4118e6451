"""Output of many processes arrives in whole lines, as under "spawn" (issue 12, item 1).

Under spawn every process writes to the one shared pipe, and the kernel keeps each write of up to
PIPE_BUF (4096) bytes whole. Under the runtime, each process's output is a pipe of its own that Local
Services reads and forwards; mp_programs/line_writers.py has several processes write thousands of
lines of 1..4096 bytes, one write per line, to stdout and stderr at once. The multiset of lines must
be exactly the expected one under spawn, under `dragon` and under plain python with the "dragon" start
method (the background runtime).
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
import trio

from e2e_util import DRAGON, StreamReader, run_command, start_process

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")
WORKERS: Final = 4
LINES: Final = 1500

sys.path.insert(0, str(MP_PROGRAMS))
import line_writers  # noqa: E402


def _expected(stream: str) -> collections.Counter[bytes]:
    who = [f"w{n}" for n in range(WORKERS)]
    lines = [line_writers.line(stream, w, i) for w in who for i in range(LINES)]
    lines += [line_writers.line(stream, "head", i) for i in range(LINES // 4)]
    return collections.Counter(lines)


def _bad_lines(data: bytes, expected: collections.Counter[bytes]) -> list[bytes]:
    got = collections.Counter(data.splitlines(keepends=True))
    return sorted((got - expected).elements()) + sorted((expected - got).elements())


@pytest.mark.parametrize("how", ["spawn", "dragon", "background"])
async def test_lines_of_many_writers_stay_whole(how: str, tmp_path: Path) -> None:
    prog = str(MP_PROGRAMS / "line_writers.py")
    argv = {
        "spawn": [sys.executable, prog, "spawn"],
        "dragon": [DRAGON, prog, "dragon"],
        "background": [sys.executable, prog, "dragon"],
    }[how]
    done = await run_command([*argv, str(WORKERS), str(LINES)], cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for stream, data in (("out", done.stdout), ("err", done.stderr)):
        bad = _bad_lines(data, _expected(stream))
        print(f"{how} {stream}: {len(data.splitlines())} lines, {len(bad)} cut, interleaved or missing")
        assert not bad, f"{len(bad)} lines of {stream} cut, interleaved or missing, e.g. {bad[0][:200]!r}"


PROMPTS = """\
import multiprocessing as mp, os, sys
import dragon

def child(ev):
    os.write(1, b"child 50%\\r")
    ev.wait()
    os.write(1, b"child done\\n")

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ev = mp.Event()
    p = mp.Process(target=child, args=(ev,))
    p.start()
    print("name? ", end="", flush=True)
    name = sys.stdin.readline().strip()
    ev.set()
    p.join()
    print("hello", name)
"""


@pytest.mark.parametrize("how", ["dragon", "background"])
async def test_partial_lines_appear_without_their_newline(how: str, tmp_path: Path) -> None:
    """A prompt of the head and a progress line of a child (`\\r`, no newline) both appear while
    their writers wait for an answer: held partial lines are forwarded after PARTIAL_LINE_S."""
    prog = tmp_path / "prompts.py"
    prog.write_text(PROMPTS)
    argv = [DRAGON, str(prog)] if how == "dragon" else [sys.executable, str(prog)]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            proc = await start_process(nursery, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path)
            assert proc.stdin is not None and proc.stdout is not None
            out = StreamReader(proc.stdout)
            await out.until(b"name? ")
            await out.until(b"child 50%\r")
            await proc.stdin.send_all(b"bob\n")
            await out.to_end()
            await proc.wait()
    assert proc.returncode == 0
    data = bytes(out.data)
    parts = re.findall(rb"name\? |child 50%\r|child done\n|hello bob\n", data)
    assert len(b"".join(parts)) == len(data), data
    assert sorted(parts) == sorted([b"name? ", b"child 50%\r", b"child done\n", b"hello bob\n"]), data


JOIN_ORDER = """\
import multiprocessing as mp, sys
import dragon

def say(i):
    print(f"child {i}", flush=True)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    for i in range(ROUNDS):
        p = mp.Process(target=say, args=(i,))
        p.start()
        p.join()
        print(f"parent {i}", flush=True)
"""


@pytest.mark.parametrize("how", ["dragon", "background"])
async def test_output_of_a_joined_process_comes_before_what_its_joiner_prints_next(how: str, tmp_path: Path) -> None:
    """As under spawn, where the child writes its line itself before it exits: a join returns only once
    the child's forwarded output is written, even when the joiner writes to the same stdout directly
    (plain python with the background runtime)."""
    rounds = 25
    prog = tmp_path / "join_order.py"
    prog.write_text(JOIN_ORDER.replace("ROUNDS", str(rounds)))
    argv = [DRAGON, str(prog)] if how == "dragon" else [sys.executable, str(prog)]
    done = await run_command(argv, cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = "".join(f"child {i}\nparent {i}\n" for i in range(rounds))
    assert done.stdout.decode() == expected
