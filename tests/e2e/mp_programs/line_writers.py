"""Several processes write whole lines concurrently to stdout and stderr, one write(2) per line.

Usage: line_writers.py METHOD [WORKERS] [LINES]. Each worker writes LINES lines on stdout and LINES on
stderr, alternating, each line in one `os.write` (as `logging` or a flushed `sys.stdout.write(line)`
does). Line lengths cycle from a few bytes to 4096 bytes (the newline included): a pipe keeps each such write
whole, so under "spawn" no line is ever cut; the test checks that the runtime keeps them whole too.
A line is `<stream> <worker> <index> <filler>\n`, so a cut or interleaved line shows as one that is not
in the expected set. The parent (the head) writes lines too, on both streams.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys

import dragon  # noqa: F401  (registers the start method "dragon")

MAX_LINE = 4096


def line(stream: str, who: str, i: int) -> bytes:
    head = f"{stream} {who} {i} ".encode()
    size = len(head) + 1 + (i * 997) % (MAX_LINE - len(head))  # up to 4096 bytes, the newline included
    filler = (who * (size // max(1, len(who)) + 1)).encode()
    body = (head + filler)[: max(0, size - 1)]
    return body + b"\n"


def write_lines(who: str, lines: int) -> None:
    for i in range(lines):
        for fd, stream in ((1, "out"), (2, "err")):
            data = line(stream, who, i)
            assert os.write(fd, data) == len(data)


def main() -> None:
    method = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    lines = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    ctx = mp.get_context(method)
    procs = [ctx.Process(target=write_lines, args=(f"w{n}", lines)) for n in range(workers)]
    for p in procs:
        p.start()
    write_lines("head", lines // 4)
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode


if __name__ == "__main__":
    main()
