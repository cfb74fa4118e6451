"""A Pool worker of another node takes cheap tasks several at a time (issue 17, `dragon.mp.pool._Batch`):
prints one JSON report.

1. The share rule at the tasks' home (`ChannelOp.share`): receives of node 1 from a task channel of
   node 0 holding 100 tasks: up to 64 with share 8 take 12 (100 // 8); then 83 without a share; then
   up to 64 with share 8 take 1 of the 5 left (at least one); up to 10 take the last 4.
2. A sentinel (None: the pool ends) that came in one receive with others gives those back: node 1
   takes ["task", None, None] at once (share 1, its pace as after cheap tasks), gets "task", then
   None, and the other None is in the channel again (another worker's).
3. Pool(4), two workers on each node (round robin), once each has answered, maps 3,000 cheap tasks:
   every result right; the workers of node 1 take several tasks a receive (their pace is above
   one), those of node 0 one.
4. A Pool whose one worker is on node 1 returns a result of 9 MiB after small ones: it arrives (a
   post larger than the window of unanswered sends, 8 MiB, waits only for answers that will come,
   not for those of quiet sends: `dragon.client.remote._Link._window_full`).
5. The same pool: a task that cannot be unpickled on node 1 ends its worker, as the stdlib's does,
   and is lost, as there; the tasks taken with it are given back and the results of those run
   before it were sent: every other task's result comes (the pool replaces the worker). So with a
   task that calls `sys.exit`: at the worker's exit the results held back go and the tasks taken
   with it go back (40 results of 41 tasks, the one that exited lost, as under the stdlib).
6. A task of a batch that waits until an earlier task's result of the same batch reached the pool
   process (here the program, standing for a callback that sets an Event) is not stuck: the
   worker's watcher sends the result held back once the task has run 10 ms or more, and gives the
   batch's last task (the sentinel) back. The stdlib worker loop on node 1 takes [abs(-5),
   waits_for(Event), None] in one receive (share 1, its pace as after cheap tasks); abs's
   result arrives before the Event is set, and the waiting task sees it set.
"""

import json
import multiprocessing as mp
import multiprocessing.pool as mp_pool
import os
import sys
import time
from typing import Any

from dragon.mp import pool as dpool
from dragon.native import Policy


def takes(tasks: Any, report: "mp.SimpleQueue[Any]") -> None:
    chan = tasks._chan
    report.put([len(chan.recv_many(64, share=8)), len(chan.recv_many(83)), len(chan.recv_many(64, share=8))])
    report.put(len(chan.recv_many(10)))


def gives_back(tasks: Any, report: "mp.SimpleQueue[Any]") -> None:
    dpool._batch = dpool._Batch()
    dpool._batch.pace.count = dpool.TASK_BATCH_MAX  # as after cheap tasks: ask for many
    report.put([tasks.get(), tasks.get()])


def works_a_batch(tasks: Any, results: Any) -> None:
    """The stdlib's worker loop, its first receive asking for many tasks (as after cheap ones)."""
    dpool._batch = dpool._Batch()
    dpool._batch.pace.count = dpool.TASK_BATCH_MAX
    mp_pool.worker(tasks, results)  # type: ignore[attr-defined]  # not in typeshed


def waits_for(ev: Any, timeout: float) -> bool:
    return bool(ev.wait(timeout))


def where(x: int) -> tuple[int, str, int]:
    """x squared, this worker's node, and how many tasks its last receive asked for (0: one a get)."""
    batch = dpool._batch
    return x * x, os.environ["DRAGON_INDEX"], batch.pace.count if batch is not None else 0


def sized(n: int) -> bytes:
    return b"r" * n


def exit_on(x: Any) -> Any:
    if x == "exit":
        sys.exit(3)
    return x


def _explode() -> None:
    raise RuntimeError("this task cannot be unpickled")


class Bomb:
    """Pickles; its unpickling (in the worker) raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_explode, ())


def pid_after(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def on_node_1(target: Any, *args: Any) -> None:
    with Policy(node=1):
        p = mp.Process(target=target, args=args)
        p.start()
    p.join(60)
    assert p.exitcode == 0, f"{target.__name__} on node 1 exited with {p.exitcode}"


if __name__ == "__main__":
    mp.set_start_method("dragon")
    ctx = mp.get_context()
    report = mp.SimpleQueue()
    out: dict[str, Any] = {}

    tasks = dpool._Tasks(ctx=ctx)
    for i in range(100):
        tasks.put(i)
    on_node_1(takes, tasks, report)
    out["takes"] = [*report.get(), report.get()]

    tasks = dpool._Tasks(ctx=ctx)
    tasks._share = 1
    for item in ("task", None, None):
        tasks.put(item)
    on_node_1(gives_back, tasks, report)
    out["got"] = report.get()
    out["left"] = [dpool._decode_task(m) for m in tasks._take_many(10, 0)]

    with mp.Pool(4) as pool:
        pids: set[int] = set()
        for _ in range(100):  # until every worker answers (node 1's start later): at most 5 s of naps
            pids |= set(pool.map(pid_after, [0.05] * 4, chunksize=1))
            if len(pids) == 4:
                break
        results = pool.map(where, range(3000), chunksize=1)
    out["squares"] = [r[0] for r in results] == [x * x for x in range(3000)]
    out["paces"] = {node: max(r[2] for r in results if r[1] == node) for node in sorted({r[1] for r in results})}
    with Policy(node=1):
        one = mp.Pool(1)
    with one:
        sizes = [10] * 20 + [9 << 20] + [10] * 5
        out["big_result"] = [len(r) for r in one.map(sized, sizes, chunksize=1)] == sizes
        one.map(sized, [1] * 200, chunksize=1)  # the worker's pace: many tasks a receive
        before = [one.apply_async(sized, (n,)) for n in range(1, 6)]
        one.apply_async(sized, (Bomb(),))
        after = [one.apply_async(sized, (n,)) for n in range(6, 11)]
        out["others"] = [len(r.get(timeout=60)) for r in before + after] == list(range(1, 11))
        one.map(sized, [1] * 200, chunksize=1)
        done = one.imap_unordered(exit_on, [*range(20), "exit", *range(20, 40)], chunksize=1)
        out["before_exit"] = sorted(done.next(timeout=60) for _ in range(40)) == list(range(40))

    tasks = dpool._Tasks(ctx=ctx)
    tasks._share = 1
    results = dpool._ResultQueue(ctx=ctx)
    ev = ctx.Event()
    for task in ((0, 0, abs, (-5,), {}), (0, 1, waits_for, (ev, 30.0), {}), None):
        tasks.put(task)
    with Policy(node=1):
        worker = mp.Process(target=works_a_batch, args=(tasks, results))
        worker.start()
    first = results.get()  # held back until the batch ended (30 s, the Event unset) before the watcher
    ev.set()
    out["stuck"] = [first, results.get()]
    worker.join(60)
    out["stuck_exit"] = worker.exitcode
    print(json.dumps(out))
