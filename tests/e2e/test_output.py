"""The head's stdout and stderr reach dragon's stdout and stderr: separately, byte for byte, completely.

The launcher adds nothing of its own to either in a normal run.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import trio

from e2e_util import DRAGON, RUN_TIMEOUT_S, StreamReader, program, run_dragon, start_process


async def test_stdout_and_stderr_stay_separate(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import sys\n"
        "print('out 1', flush=True); print('err 1', file=sys.stderr, flush=True)\n"
        "print('out 2', flush=True); print('err 2', file=sys.stderr, flush=True)\n"
    )
    result = await run_dragon(str(prog))
    assert result.returncode == 0
    assert result.stdout == b"out 1\nout 2\n"
    assert result.stderr == b"err 1\nerr 2\n"


async def test_hello_adds_nothing() -> None:
    result = await run_dragon(program("hello.py"))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")


async def test_silent_program_gives_empty_output(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text("x = 1\n")
    result = await run_dragon(str(prog))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


async def test_20_mb_of_non_utf8_bytes_arrive_identical() -> None:
    size = 20 * 1024 * 1024
    result = await run_dragon(program("big_output.py"), str(size))
    assert result.returncode == 0, result.stderr[-2000:]
    digest, length = result.stderr.decode().split()
    assert len(result.stdout) == int(length) == size
    assert hashlib.sha256(result.stdout).hexdigest() == digest


async def test_last_line_without_newline() -> None:
    result = await run_dragon("-c", "import sys; sys.stdout.write('line 1\\nno newline at the end')")
    assert result.returncode == 0
    assert result.stdout == b"line 1\nno newline at the end"


async def test_output_flushed_before_os_exit() -> None:
    result = await run_dragon(
        "-c",
        "import os, sys; print('flushed'); sys.stdout.flush(); "
        "sys.stderr.write('err too'); sys.stderr.flush(); os._exit(0)",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"flushed\n", b"err too")


async def test_output_before_a_crash() -> None:
    result = await run_dragon("-c", "print('before the crash'); raise RuntimeError('crash')")
    assert result.returncode == 1
    assert result.stdout == b"before the crash\n"
    assert result.stderr.endswith(b"RuntimeError: crash\n")


async def test_output_of_a_child_of_the_head() -> None:
    result = await run_dragon(program("child_output.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"parent before\nchild out\nparent after\n"
    assert result.stderr == b"child err\n"


async def test_slow_reader_slows_the_program_and_loses_nothing() -> None:
    """A reader of dragon's stdout that takes its time gets everything, and the writer waits for it.

    The program writes SIZE bytes, far more than the pipes and the launcher's channel hold, and says how
    long its writes took. The reader takes at most 64 KiB per PAUSE_S, so SIZE needs at least
    SIZE / 64 KiB * PAUSE_S to be read: a program that was not held back would finish writing in a few
    milliseconds; one that was waits for most of that (less what the pipes and channel buffered).
    """
    size, read_size, pause_s = 4 * 1024 * 1024, 65536, 0.02
    min_read_time = size // read_size * pause_s
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery,
                [DRAGON, program("timed_writer.py"), str(size)],
                stdin=b"",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stderr is not None
            received = 0
            start = trio.current_time()
            while chunk := await proc.stdout.receive_some(read_size):
                received += len(chunk)
                await trio.sleep(pause_s)  # a slow consumer, not a wait for some state
            read_time = trio.current_time() - start
            err = await StreamReader(proc.stderr).to_end()
            await proc.wait()
    assert proc.returncode == 0, err
    assert received == size
    assert read_time >= min_read_time
    write_time = float(err)
    print(f"read in {read_time:.2f} s, written in {write_time:.2f} s")
    # Generous: the buffers between the program and us hold well under half of SIZE.
    assert write_time >= min_read_time / 4, "the writer was not held back by the slow reader"
