"""Consumers of one Queue, one of them SIGKILLed while they all take items as fast as they can; prints JSON.

Run under `dragon` only (`prog.py dragon`): the standard library's Queue holds a semaphore across
`get`, so a consumer killed at the wrong moment wedges it for everybody; the channel's receive lock
is released by the kernel. Every item must reach the report exactly once, except at most the one the
victim had taken and not yet reported.
"""

import json
import multiprocessing as mp
import sys
import time
from typing import Any

import dragon  # noqa: F401  (registers the start method)

ITEMS = 20000
WAIT_S = 60.0


def consume(q: Any, report: Any, go: Any, me: int) -> None:
    """Once all consumers run, report every item got, synchronously (SimpleQueue.put), until None;
    then report (me, None)."""
    go.wait(WAIT_S)
    for item in iter(q.get, None):
        report.put((me, item))
    report.put((me, None))


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    q, report, go = ctx.Queue(), ctx.SimpleQueue(), ctx.Barrier(4)
    for i in range(ITEMS):
        q.put(i)
    consumers = [ctx.Process(target=consume, args=(q, report, go, me)) for me in range(3)]
    for p in consumers:
        p.start()
    go.wait(WAIT_S)
    victim, survivors = consumers[0], consumers[1:]
    seen: list[tuple[int, int]] = []
    victim_seen, deadline = 0, time.monotonic() + WAIT_S
    while victim_seen < 300 and time.monotonic() < deadline:
        seen.append(tuple(report.get()))  # type: ignore[arg-type]
        victim_seen += seen[-1][0] == 0
    victim.kill()  # somewhere in get, in report.put, or between them
    victim.join()
    for _ in survivors:
        q.put(None)
    done = 0
    while done < len(survivors):  # read on: the survivors' reports may fill the channel
        me, item = report.get()
        if item is None:
            done += 1
        else:
            seen.append((me, item))
    for p in survivors:
        p.join(WAIT_S)
    items = [item for _, item in seen]
    missing = sorted(set(range(ITEMS)) - set(items))
    print(
        json.dumps(
            {
                "victim": victim.exitcode,
                "survivors": [p.exitcode for p in survivors],
                "victim_got": sum(1 for me, _ in seen if me == 0),
                "survivors_got": sum(1 for me, _ in seen if me != 0),
                "duplicates": len(items) - len(set(items)),
                "missing": len(missing),
                "left_in_queue": q.qsize(),
            }
        )
    )
