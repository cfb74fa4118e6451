"""Pool.terminate() while the pool's result channel is full and its result thread is slow; prints JSON.

Run under `dragon` only (`prog.py dragon`): the standard library's pipe Pool hangs in the same spot
(its end sentinel waits for room in a full result pipe that nobody reads any more).
"""

import json
import multiprocessing as mp
import sys
import threading
import time

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 60.0
TASKS = 100_000  # more results than the (packed) result channel holds
ROOM = 128


def same(x: int) -> int:
    return x


def slow_callback(_: int) -> None:
    time.sleep(0.002)  # the result thread falls behind, so results pile up in the channel


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    pool = mp.Pool(2)
    for i in range(TASKS):
        pool.apply_async(same, (i,), callback=slow_callback)
    chan = pool._outqueue._chan
    deadline = time.monotonic() + WAIT_S

    def full() -> bool:  # no room for another result (each takes well under ROOM bytes)
        stats = chan.statistics()
        return stats.ring_bytes - stats.bytes_used < ROOM

    while not full() and time.monotonic() < deadline:
        time.sleep(0.01)  # bounded poll: nothing announces "the channel is full"
    was_full = full()
    t0 = time.monotonic()
    ender = threading.Thread(target=pool.terminate, daemon=True)
    ender.start()
    ender.join(WAIT_S)
    print(
        json.dumps({"full": was_full, "returned": not ender.is_alive(), "seconds": time.monotonic() - t0}), flush=True
    )
