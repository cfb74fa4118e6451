"""Helpers of the end-to-end tests: run the real `dragon` command of this venv on the programs in programs/.

Every run is bounded (`trio.fail_after`); a process still running when a test fails is killed by trio
(`trio.run_process` under a nursery), and the leak check of tests/conftest.py sees anything left over.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from placement import Placed

DRAGON: Final = os.path.join(os.path.dirname(sys.executable), "dragon")
"""The `dragon` command of the venv running the tests (never one found elsewhere on PATH)."""
PROGRAMS: Final = Path(__file__).resolve().with_name("programs")
RUN_TIMEOUT_S: Final = 60.0


def program(name: str) -> str:
    """Path of a helper program in programs/."""
    return str(PROGRAMS / name)


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without DRAGON_* variables (a developer's DRAGON_LOG_LEVEL must not change a run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    env.update(extra)
    return env


async def run_dragon(
    *args: str,
    stdin: bytes = b"",
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """`dragon ARGS...` to completion: `stdin` fed (then closed), stdout and stderr captured."""
    return await run_command([DRAGON, *args], stdin=stdin, cwd=cwd, env=env, timeout_s=timeout_s)


async def run_command(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            list(argv),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env=clean_env() if env is None else env,
        )


async def start_process(nursery: trio.Nursery, argv: Sequence[str], **options: Any) -> trio.Process:
    """`argv` started as a task of `nursery` (so trio kills it if the test fails midway), in `clean_env()`,
    its exit status not checked: `options` are `trio.run_process`'s (stdin, stdout, stderr, cwd)."""
    process: trio.Process = await nursery.start(
        functools.partial(trio.run_process, list(argv), check=False, env=clean_env(), **options)
    )
    return process


async def run_report(
    argv: Sequence[str], cwd: str | Path, *, placed: Placed | None = None
) -> tuple[dict[str, Any], bytes]:
    """Run a program that prints one JSON report on stdout and exits with 0 (else AssertionError with
    its stderr): the report, and its stderr. A `dragon` command runs in `placed` (placement.py) if
    given. Prints how long it ran (timings are shown, not asserted)."""
    t0 = time.monotonic()
    if placed is not None and argv[0] == DRAGON:
        done = await placed.run(*argv[1:], cwd=cwd, timeout_s=180)
        where = f" over {placed.nodes} nodes"
    else:
        done = await run_command(argv, cwd=cwd, timeout_s=180)
        where = ""
    print(f"{' '.join(Path(a).name for a in argv)}{where}: {time.monotonic() - t0:.2f} s")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, done.stderr


async def reports_under_each_method(
    prog: str, cwd: str | Path, placed: Placed | None = None
) -> list[tuple[dict[str, Any], bytes]]:
    """`run_report` of a program that takes its start method as its argument: under plain `python`
    with "spawn" (the whole program: the reference), under the `dragon` command with "dragon" (in
    `placed` if given: the sections it runs, over its nodes), and, in a run of one node, under plain
    `python` with "dragon" (its first object brings a background runtime up, which has one node)."""
    runs = [await run_report([sys.executable, prog, "spawn"], cwd)]
    runs.append(await run_report([DRAGON, prog, "dragon", *(placed.args() if placed else [])], cwd, placed=placed))
    if placed is None or placed.nodes == 1:
        runs.append(await run_report([sys.executable, prog, "dragon"], cwd))
    return runs


class StreamReader:
    """Reads a byte stream into `data`, up to a marker or to its end."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.data = bytearray()
        self.eof = False

    async def until(self, marker: bytes) -> bytes:
        """Read until `marker` has arrived; return everything read so far. AssertionError at EOF first."""
        while marker not in self.data:
            chunk = await self.receive()
            assert chunk, f"end of stream before {marker!r}; got {bytes(self.data)!r}"
        return bytes(self.data)

    async def to_end(self) -> bytes:
        while await self.receive():
            pass
        return bytes(self.data)

    async def receive(self) -> bytes:
        try:
            chunk = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, OSError):  # a pty master reads EIO once the slave side is closed
            chunk = b""
        self.data += chunk
        self.eof = not chunk
        return chunk


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie, exited but not reaped yet, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(b")") + 2 :][:1] != b"Z"
