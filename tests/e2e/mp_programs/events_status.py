"""`dragon status --json` while an Event is set, a Condition has a waiter, a Barrier has one and this
process holds a Lock and a Semaphore's count; prints the objects' kind, value and waiters, the
holders of the Lock and the Semaphore, and whether the table shows the objects, as JSON. Run under `dragon` (`prog.py dragon`); it names its own run
(other runs may be up on the machine)."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0


def party(bar: Any) -> None:
    bar.wait(WAIT_S)


def sleeper(cond: Any) -> None:
    with cond:
        cond.wait(WAIT_S)


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    ev, cond, bar = ctx.Event(), ctx.Condition(), ctx.Barrier(2)
    lock, sem = ctx.Lock(), ctx.Semaphore(3)
    ev.set()
    lock.acquire()
    sem.acquire()
    ps = [ctx.Process(target=party, args=(bar,)), ctx.Process(target=sleeper, args=(cond,))]
    for p in ps:
        p.start()
    end = time.monotonic() + WAIT_S
    while (bar.n_waiting < 1 or cond._sleeping_count.get_value() < 1) and time.monotonic() < end:
        time.sleep(0.001)
    command = [os.path.join(os.path.dirname(sys.executable), "dragon"), "status", os.environ["DRAGON_RUN_ID"]]
    status = subprocess.run([*command, "--json"], capture_output=True, check=True, timeout=WAIT_S)
    table = subprocess.run(command, capture_output=True, check=True, timeout=WAIT_S).stdout.decode()
    objects = json.loads(status.stdout)["objects"]
    holders = {o["kind"]: o["holders"] == [os.getpid()] for o in objects if o["kind"] in ("Lock", "Semaphore")}
    section = table.split("SYNCHRONIZATION OBJECTS (6)")[-1]
    shown = "SYNCHRONIZATION OBJECTS (6)" in table and all(f" {k} " in section for k in ("Lock", "Event", "Barrier"))
    bar.wait(WAIT_S)
    with cond:
        cond.notify()
    for p in ps:
        p.join(WAIT_S)
    report = {"objects": sorted([o["kind"], o["value"], o["waiters"]] for o in objects), "holders": holders}
    print(json.dumps({**report, "table": shown}))
