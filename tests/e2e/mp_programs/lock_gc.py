"""Locks in reference cycles freed by the garbage collector while this process makes Global Services
requests; prints JSON.

The collector runs finalizers wherever it happens to run, including inside this thread's own GS
call, where a Lock's record reference must be given back without waiting for an answer (this thread
may be the one reading the answers: dragon/mp/refs.py `_drop_ref`). A thread makes the garbage, the
main thread makes GS requests (new Locks), with the collector running at almost every allocation.
"""

import gc
import json
import multiprocessing as mp
import sys
import threading
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method)

ROUNDS = 200


class Cyclic:
    """A Lock in a reference cycle: only the garbage collector frees it."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.me = self


def make_garbage(locks: list[Any], stop: threading.Event) -> None:
    """Make each of `locks` garbage in a cycle, one at a time, allocating little else: the collector
    then mostly runs in the main thread, in the middle of its requests."""
    while locks and not stop.is_set():
        Cyclic(locks.pop())
        time.sleep(0.002)  # allocates nothing the collector tracks


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    stop = threading.Event()
    maker = threading.Thread(target=make_garbage, args=([ctx.Lock() for _ in range(ROUNDS)], stop))
    maker.start()
    gc.set_threshold(1, 1, 1)
    try:
        made = [ctx.Lock() for _ in range(ROUNDS)]
    finally:
        gc.set_threshold(700, 10, 10)
        stop.set()
        maker.join()
    gc.collect()
    print(json.dumps({"made": len(made), "usable": all(lock.acquire(False) for lock in made)}))
