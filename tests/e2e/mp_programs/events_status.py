"""`dragon status --json` while an Event is set, a Condition has a waiter and a Barrier has one; prints
the objects' kind, value and waiters as JSON. Run under `dragon` (`prog.py dragon`); it names its own run
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
    ev.set()
    ps = [ctx.Process(target=party, args=(bar,)), ctx.Process(target=sleeper, args=(cond,))]
    for p in ps:
        p.start()
    end = time.monotonic() + WAIT_S
    while (bar.n_waiting < 1 or cond._sleeping_count.get_value() < 1) and time.monotonic() < end:
        time.sleep(0.001)
    status = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dragon"), "status", os.environ["DRAGON_RUN_ID"], "--json"],
        capture_output=True,
        check=True,
        timeout=WAIT_S,
    )
    objects = json.loads(status.stdout)["objects"]
    bar.wait(WAIT_S)
    with cond:
        cond.notify()
    for p in ps:
        p.join(WAIT_S)
    print(json.dumps(sorted([o["kind"], o["value"], o["waiters"]] for o in objects)))
