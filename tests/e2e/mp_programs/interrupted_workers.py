"""Workers that loop until interrupted: one Ctrl-C must reach them all, as under spawn (issue 13.7).

Usage: interrupted_workers.py METHOD. Prints "ready" once the workers run; a Ctrl-C (SIGINT to the
program's process group, as a terminal sends it) makes each worker print "worker N interrupted" and
the main process "main interrupted"; then everything ends with status 0.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method "dragon")

WORKERS = 3


def say(line: str) -> None:
    """One write per line: several processes share the pipe under spawn (print writes the newline
    apart when stdout is unbuffered, PYTHONUNBUFFERED=1, and lines of two processes can then mix)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def loop(i: int, ready: Any) -> None:
    try:
        ready.put(i)
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        say(f"worker {i} interrupted")


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    ready = ctx.Queue()
    procs = [ctx.Process(target=loop, args=(i, ready)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    try:  # "ready" inside: the Ctrl-C it calls for may come while `say` is still returning
        say("ready")
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        say("main interrupted")
        for p in procs:
            p.join()
