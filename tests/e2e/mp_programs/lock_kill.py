"""Holders of a Lock, RLock, Semaphore and BoundedSemaphore SIGKILLed right after acquiring while this
program waits for the object; prints JSON.

Run under `dragon` only (`prog.py dragon`): the standard library's objects stay taken for ever when
their holder dies (every wait here would time out). The runtime gives a dead holder's count back and
the next acquirer gets a HolderDiedWarning naming the dead process (dragon/mp/locks.py). Every wait
is bounded (WAIT_S): a count not given back shows as a False, never as a hang.
"""

import json
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
import warnings
from typing import Any

from queues import raises  # mp_programs/queues.py

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0
SHORT_S = 0.2


def hold_and_die(obj: Any, times: int, started: Any) -> None:
    """Acquire `obj` `times` times and be killed at once (the worst moment: the holder just recorded)."""
    started.put(os.getpid())
    for _ in range(times):
        obj.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def hold_in_threads_and_die(sem: Any, times: int, started: Any) -> None:
    """Two threads acquire `sem` `times` times each (this process's count is their sum), then die."""
    started.put(os.getpid())
    threads = [threading.Thread(target=lambda: [sem.acquire() for _ in range(times)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.kill(os.getpid(), signal.SIGKILL)


def hold_and_return(obj: Any, started: Any) -> None:
    """Acquire `obj` and end normally without releasing it."""
    started.put(os.getpid())
    obj.acquire()


def release_and_die(sem: Any, times: int, started: Any) -> None:
    """A producer: release `times` times (it holds nothing) and be killed."""
    started.put(os.getpid())
    for _ in range(times):
        sem.release()
    os.kill(os.getpid(), signal.SIGKILL)


def saw_taken(obj: Any, p: Any) -> bool:
    """Poll (bounded) until the child took all of `obj`'s count (True), or ended first (False): when
    True, this process's next acquire waits for the holder's death."""
    deadline = time.monotonic() + WAIT_S
    while obj._semlock._get_value() != 0:
        if p.exitcode is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def after(ctx: Any, obj: Any, target: Any, args: tuple[Any, ...], acquires: int, record: bool = True) -> dict[str, Any]:
    """Start a child running `target(obj, *args, started)`, wait until it took the count, then acquire
    `acquires` times (each bounded) and once more briefly; what happened, with the warnings."""
    started = ctx.SimpleQueue()
    p = ctx.Process(target=target, args=(obj, *args, started))
    p.start()
    pid = started.get()
    taken = saw_taken(obj, p)
    with warnings.catch_warnings(record=record) as caught:
        if record:
            warnings.simplefilter("always")
        t0 = time.monotonic()
        got = [obj.acquire(timeout=WAIT_S) for _ in range(acquires)]
        waited_s = time.monotonic() - t0
        more = obj.acquire(timeout=SHORT_S)
    p.join(WAIT_S)
    told = [(w.category.__name__, str(w.message)) for w in caught or []]
    return {
        "exitcode": p.exitcode,
        "saw_taken": taken,
        "got": got,
        "more": more,
        "waited_s": round(waited_s, 3),
        "warnings": [  # "process PID died holding", or "process PID of node N died holding" (another node's)
            [category, re.search(rf"process {pid}( of node \d+)? died holding", message) is not None]
            for category, message in told
        ],
        "messages": [message for _, message in told],
        "pid": pid,
    }


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    report: dict[str, Any] = {}
    report["lock"] = after(ctx, ctx.Lock(), hold_and_die, (1,), 1)
    rlock = ctx.RLock()
    report["rlock"] = after(ctx, rlock, hold_and_die, (3,), 1)  # `more`: a second level, at once
    report["rlock_after"] = [rlock.release(), rlock.release(), rlock._semlock._get_value()]
    sem = ctx.Semaphore(2)
    report["semaphore"] = after(ctx, sem, hold_and_die, (2,), 2)
    report["semaphore_value"] = sem.get_value()
    sem = ctx.Semaphore(4)
    report["semaphore_threads"] = after(ctx, sem, hold_in_threads_and_die, (2,), 4)
    bsem = ctx.BoundedSemaphore(2)
    report["bounded"] = after(ctx, bsem, hold_and_die, (2,), 2)
    report["bounded_after"] = [bsem.release(), bsem.release(), bsem.get_value(), raises(bsem.release)]

    producer = ctx.Semaphore(0)
    started = ctx.SimpleQueue()
    p = ctx.Process(target=release_and_die, args=(producer, 3, started))
    p.start()
    started.get()
    p.join(WAIT_S)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [producer.acquire(timeout=WAIT_S) for _ in range(3)] + [producer.acquire(timeout=SHORT_S)]
    report["producer"] = {"exitcode": p.exitcode, "got": got, "warnings": len(caught)}

    lock = ctx.Lock()
    report["lock_normal_exit"] = after(ctx, lock, hold_and_return, (), 1)
    sem = ctx.Semaphore(1)
    report["semaphore_normal_exit"] = after(ctx, sem, hold_and_return, (), 0)  # `more`: not given back
    report["unrecorded"] = after(ctx, ctx.Lock(), hold_and_die, (1,), 1, record=False)  # on stderr
    print(json.dumps(report))
