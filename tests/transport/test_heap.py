"""`transport._heap`: a process that takes a large message keeps freed memory for reuse (mallopt);
one that takes only small ones does not change its malloc (each case in a fresh interpreter)."""

from __future__ import annotations

import platform
import subprocess
import sys

PROGRAM = """
import os, sys
from dragon.transport import Channel, _heap
ch = Channel.create(f"dragon.testheap.{os.getpid()}", capacity=64, block_size=65536)
try:
    ch.send(b"s" * 100)
    ch.recv()
    small = _heap.kept()
    ch.send(b"b" * int(sys.argv[1]))
    assert len(ch.recv()) == int(sys.argv[1])
    print(small, _heap.kept())
finally:
    ch.destroy()
"""


def run(size: int) -> str:
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(size)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_large_message_taken_makes_the_process_keep_freed_memory() -> None:
    assert run(512 << 10) == "False True"  # in the ring
    assert run(8 << 20) == "False True"  # in a side file: larger than the ring


def test_small_messages_change_nothing() -> None:
    assert run(1000) == "False False"


def test_the_setting_is_made_once_and_says_whether_it_took() -> None:
    from dragon.transport import _heap

    first = _heap.keep_freed_memory()
    assert _heap.kept() and _heap.keep_freed_memory() is first
    if platform.libc_ver()[0] == "glibc":
        assert first
