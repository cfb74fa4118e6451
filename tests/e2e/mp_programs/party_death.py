"""A Barrier whose party dies, and a Condition whose notifier dies; prints JSON.

Run as `prog.py dragon CASE` under `dragon`. A third party of a Barrier(3) never reaches it while the
program and another party wait (bounded by LONG_S): "kill" SIGKILLs it, "error" lets it end with an
exception, "clean" lets it exit 0 (which must not break the barrier: a replacement party then
completes the round), "inside" SIGKILLs it while it waits in the barrier (and then `reset` makes the
barrier usable by the two left and a newcomer). "notifier" SIGKILLs the process that was to notify a
Condition: the waiter times out as asked.
"""

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method)

LONG_S = 60.0
"""Every wait's bound: a broken barrier must be noticed long before."""


def party(bar: Any, out: Any) -> None:
    t0 = time.monotonic()
    try:
        got: Any = bar.wait(LONG_S)
    except Exception as exc:
        got = type(exc).__name__
    out.put([got, time.monotonic() - t0])


def stuck(ready: Any, never: Any, bar: Any, how: str) -> None:
    """A party that does not reach the barrier (or, "inside", dies in it)."""
    ready.set()
    if how == "inside":
        bar.wait(LONG_S)
    elif how == "error":
        raise RuntimeError("this party fails before the barrier")
    elif how == "kill":
        never.wait(LONG_S)


def notifier(cond: Any, ready: Any, never: Any) -> None:
    ready.set()
    never.wait(LONG_S)  # killed before it notifies
    with cond:
        cond.notify()


def barrier_case(ctx: Any, how: str) -> dict[str, Any]:
    bar, out, ready, never = ctx.Barrier(3), ctx.Queue(), ctx.Event(), ctx.Event()
    other = ctx.Process(target=party, args=(bar, out))
    other.start()
    victim = ctx.Process(target=stuck, args=(ready, never, bar, how))
    victim.start()
    ready.wait(LONG_S)
    end = time.monotonic() + LONG_S
    # until the other party waits (or the barrier is broken already: an erring victim may die first,
    # and a broken barrier counts nobody waiting)
    while bar.n_waiting < (2 if how == "inside" else 1) and not bar.broken and time.monotonic() < end:
        time.sleep(0.001)
    if how in ("kill", "inside"):
        os.kill(victim.pid, signal.SIGKILL)
    victim.join(LONG_S)
    if how == "inside":  # its arrival counts until the runtime breaks the barrier: then this one waits
        while not bar.broken and time.monotonic() < end:
            time.sleep(0.001)
    report: dict[str, Any] = {"victim_exit": victim.exitcode}
    if how == "clean":
        report["broken_after_exit"] = bar.broken
        victim = ctx.Process(target=party, args=(bar, out))
        victim.start()
    t0 = time.monotonic()
    try:
        mine: Any = bar.wait(LONG_S)
    except Exception as exc:
        mine = type(exc).__name__
    took = time.monotonic() - t0
    theirs = [out.get(timeout=LONG_S) for _ in range(2 if how == "clean" else 1)]
    report["results"] = sorted([mine] + [t[0] for t in theirs], key=str)
    report["within_s"] = max([took] + [t[1] for t in theirs])
    report["broken"] = bar.broken
    if how == "inside":
        bar.reset()
        newcomer = ctx.Process(target=party, args=(bar, out))
        newcomer.start()
        again = ctx.Process(target=party, args=(bar, out))
        again.start()
        report["after_reset"] = sorted([bar.wait(LONG_S)] + [out.get(timeout=LONG_S)[0] for _ in range(2)])
        newcomer.join(LONG_S)
        again.join(LONG_S)
    other.join(LONG_S)
    victim.join(LONG_S)
    return report


def notifier_case(ctx: Any) -> dict[str, Any]:
    cond, ready, never = ctx.Condition(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=notifier, args=(cond, ready, never))
    p.start()
    ready.wait(LONG_S)
    os.kill(p.pid, signal.SIGKILL)
    p.join(LONG_S)
    with cond:
        t0 = time.monotonic()
        notified = cond.wait(1.0)
        took = time.monotonic() - t0
    return {"notified": notified, "waited_s": took, "notifier_exit": p.exitcode}


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    case = sys.argv[2]
    print(json.dumps(notifier_case(ctx) if case == "notifier" else barrier_case(ctx, case)))
