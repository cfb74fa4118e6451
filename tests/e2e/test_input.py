"""dragon's stdin reaches the head's stdin: piped, line by line, to its end of file, and from a terminal."""

from __future__ import annotations

import hashlib
import os
import subprocess

import trio

from e2e_util import DRAGON, RUN_TIMEOUT_S, StreamReader, program, run_dragon, start_process


async def test_piped_input() -> None:
    result = await run_dragon(program("upper.py"), stdin=b"a\nb\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"A\nB\n", b"")


async def test_one_megabyte_of_binary_input_arrives_intact() -> None:
    data = b"\xff\x00\xfe not UTF-8\n" + os.urandom(1024 * 1024)
    result = await run_dragon(program("stdin_sha.py"), stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == [hashlib.sha256(data).hexdigest(), str(len(data))]


async def test_program_that_never_reads_stdin_exits_while_stdin_stays_open() -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery, [DRAGON, program("hello.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert proc.stdin is not None and proc.stdout is not None
            await proc.stdin.send_all(b"input nobody reads\n")
            out = await StreamReader(proc.stdout).to_end()
            await proc.wait()  # while our end of its stdin is still open
            await proc.stdin.aclose()
    assert (proc.returncode, out) == (0, b"hello\n")


async def test_lines_arrive_as_typed_and_eof_ends_the_loop() -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery, [DRAGON, program("lines.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert proc.stdin is not None and proc.stdout is not None
            out = StreamReader(proc.stdout)
            await proc.stdin.send_all(b"first\n")
            await out.until(b"FIRST\n")  # answered before any end of file: forwarded as it came
            await proc.stdin.send_all(b"second\n")
            await out.until(b"SECOND\n")
            await proc.stdin.aclose()
            await out.to_end()
            await proc.wait()
    assert (proc.returncode, bytes(out.data)) == (0, b"FIRST\nSECOND\neof\n")


async def test_interactive_input_from_a_terminal() -> None:
    """dragon on a pty (as in a terminal): the prompt shows, a typed line reaches the head, it answers."""
    master, slave = os.openpty()
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(RUN_TIMEOUT_S):
                proc = await start_process(
                    nursery, [DRAGON, program("ask_name.py")], stdin=slave, stdout=slave, stderr=slave
                )
                os.close(slave)
                slave = -1
                term = trio.lowlevel.FdStream(os.dup(master))
                screen = StreamReader(term)
                await screen.until(b"name? ")
                await term.send_all(b"bob\n")
                await screen.until(b"hi bob")
                await proc.wait()
                await screen.to_end()  # EIO once dragon (the last holder of the slave side) is gone
                await term.aclose()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    assert screen.data.replace(b"\r\n", b"\n") == b"name? bob\nhi bob\n"  # the terminal echoes "bob"
