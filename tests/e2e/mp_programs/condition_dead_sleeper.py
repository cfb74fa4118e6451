"""A Condition sleeper SIGKILLed inside `wait`, then `notify_all`: the ticket given to the dead one
must not stay outstanding. Prints the Condition's sleepers and outstanding tickets after a later
waiter's timed-out wait, and whether a live waiter that comes after is woken by one `notify` sent once
the sleeper count says it waits.
Run under `dragon` (`prog.py dragon`)."""

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0


def sleeper(cond: Any) -> None:
    with cond:
        cond.wait(WAIT_S)


def wait_for_sleepers(cond: Any, n: int) -> None:
    end = time.monotonic() + WAIT_S
    while cond._sleeping_count.get_value() < n and time.monotonic() < end:
        time.sleep(0.001)


def woken_waiter(cond: Any, out: Any) -> None:
    with cond:
        out.put(cond.wait(WAIT_S))


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    cond = ctx.Condition()
    p = ctx.Process(target=sleeper, args=(cond,))
    p.start()
    wait_for_sleepers(cond, 1)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    with cond:
        cond.notify_all()  # one ticket, for the dead sleeper
    with cond:
        timed_out = cond.wait(0.05)  # this waiter counts the dead one out
    after = [cond._sleeping_count.get_value(), cond._wait_semaphore.get_value()]
    out = ctx.Queue()
    q = ctx.Process(target=woken_waiter, args=(cond, out))
    q.start()
    wait_for_sleepers(cond, 1)
    with cond:
        cond.notify()
    woken = out.get(timeout=WAIT_S)
    q.join()
    print(json.dumps({"timed_out": timed_out, "after": after, "woken": woken, "exit": q.exitcode}))
