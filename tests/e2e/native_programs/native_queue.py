"""dragon.native.Queue: every API point, a joinable queue worked by children, a joiner in a child,
cleanup; prints JSON.

As head (no argument): exercise the API, hand a joinable queue of tasks and a queue for results to a
native Process child (pickled through a Channel) and to multiprocessing children of the "dragon" start
method (as Process arguments), join the tasks, and count the run's /dev/shm entries before and after.
As "child": work the tasks of the queues from the channel "queues".
"""

import gc
import json
import multiprocessing as mp
import os
import pickle
import queue
import sys
from typing import Any

from report_util import error, eventually, shm_entries

import dragon  # noqa: F401  (registers the start method)
from dragon.native import Channel, Process, Queue


def basics() -> dict[str, Any]:
    out: dict[str, Any] = {}
    q = Queue()
    out["new"] = [q.empty(), q.size(), q.qsize(), q.full(), q.closed, q.joinable]
    for i in range(5):
        q.put(i)
    q.put_nowait({"five": 5})
    out["after_puts"] = [q.empty(), q.size()]
    out["fifo"] = [q.get() for _ in range(5)] + [q.get_nowait()]
    out["empty"] = [error(q.get_nowait), error(lambda: q.get(timeout=0.05)), error(lambda: q.get(False))]
    bounded = Queue(2)
    bounded.put("a")
    bounded.put("b", timeout=1)
    out["bounded"] = [bounded.full(), bounded.size(), error(lambda: bounded.put_nowait("c"))]
    out["bounded_timeout"] = [error(lambda: bounded.put("c", timeout=0.05)), error(lambda: bounded.put("c", False))]
    out["bounded_got"] = [bounded.get(), bounded.full(), bounded.get(), bounded.empty()]
    out["not_joinable"] = [error(q.task_done), error(q.join)]
    out["pickled"] = pickle.loads(pickle.dumps(q)).joinable
    out["unpicklable"] = error(lambda: q.put(lambda: 0))
    out["too_large"] = error(lambda: Queue(1 << 30))
    q.close()
    q.close()
    out["closed"] = [q.closed, error(lambda: q.put(1)), error(q.get), error(q.size), error(lambda: pickle.dumps(q))]
    j = Queue(joinable=True)
    out["joinable"] = [j.joinable, error(j.task_done)]
    j.put("task")
    out["join_timeout"] = error(lambda: j.join(timeout=0.05))
    j.get()
    j.task_done()
    j.join()
    out["joined"] = True
    j.close()
    out["after_close"] = [error(j.task_done), error(j.join)]
    return out


def destroyed() -> list[str]:
    q = Queue(joinable=True)
    other = pickle.loads(pickle.dumps(q))
    q.put(1)
    q.destroy()
    return [error(lambda: other.get(timeout=5)), error(lambda: q.put(1))]


def work(tasks: Any, results: Any) -> None:
    """Take tasks until None: put each one's square in `results`, and mark it done."""
    while True:
        item = tasks.get(timeout=30)
        if item is not None:
            results.put(item * item)
        tasks.task_done()
        if item is None:
            return


def with_children() -> dict[str, Any]:
    tasks, results = Queue(joinable=True), Queue()
    Channel.create(name="queues").send((tasks, results))
    native = Process(sys.executable, [os.path.abspath(__file__), "child"])
    native.start()
    ctx = mp.get_context("dragon")
    helpers = [ctx.Process(target=work, args=(tasks, results)) for _ in range(2)]
    for p in helpers:
        p.start()
    for i in range(100):
        tasks.put(i)
    tasks.join(timeout=60)  # every task done, by whichever of the three took it
    squares = sorted(results.get(timeout=5) for _ in range(100))
    for _ in range(3):
        tasks.put(None)
    tasks.join(timeout=60)
    for p in helpers:
        p.join()
    code = native.join()
    Channel.attach(name="queues").destroy()
    tasks.close()
    tasks.join_thread()  # its feeder has let go of the channel (it holds it while it runs)
    results.close()
    return {"squares": squares == [i * i for i in range(100)], "codes": [code] + [p.exitcode for p in helpers]}


def joiner(tasks: Any, out: Any) -> None:
    """The other side of `joined_elsewhere`: put two tasks, join while they are unfinished (a timeout),
    then until they are done, and call `task_done` once too often."""
    tasks.put("a")
    tasks.put("b")
    out.put(error(lambda: tasks.join(timeout=0.05)))
    tasks.join(timeout=30)
    out.put("joined")
    out.put(error(tasks.task_done))


def joined_elsewhere() -> list[Any]:
    """A joinable queue's producer and joiner in a child (over two nodes: on the other node than the
    queue's record), its consumer here: the child's join times out while tasks are unfinished, waits
    while one is, returns once both are done; its extra `task_done` raises ValueError."""
    tasks, out = Queue(joinable=True), Queue()
    child = mp.get_context("dragon").Process(target=joiner, args=(tasks, out))
    child.start()
    got = [tasks.get(timeout=30), tasks.get(timeout=30)]
    timed_out = out.get(timeout=30)
    tasks.task_done()
    early = error(lambda: out.get(timeout=0.2))  # one task unfinished: nothing from the child yet
    tasks.task_done()
    report = [got, timed_out, early, out.get(timeout=30), out.get(timeout=30)]
    child.join()
    tasks.close()
    out.close()
    return [*report, child.exitcode]


def child() -> None:
    chan = Channel.attach(name="queues")
    tasks, results = chan.recv(timeout=30)
    chan.close()
    work(tasks, results)


if __name__ == "__main__" and sys.argv[1:] == ["child"]:
    child()
elif __name__ == "__main__":
    before = shm_entries()
    report: dict[str, Any] = {"basics": basics(), "destroyed": destroyed(), "children": with_children()}
    report["joined_elsewhere"] = joined_elsewhere()
    gc.collect()
    eventually(lambda: set(shm_entries()) <= set(before))
    report["shm_left"] = sorted(set(shm_entries()) - set(before))
    report["empty_is"] = queue.Empty.__name__
    print(json.dumps(report))
