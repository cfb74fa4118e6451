"""multiprocessing queues and a Pool whose users are on different nodes (issue 17 item 2, queues):
prints one JSON report. A queue's size, counted by its producer on node 1 and by the head, is
exact once nobody gets from it ("sizes": [50, false, 50])."""

import json
import multiprocessing as mp
import os
from typing import Any

from pool_over_nodes import pool_over_nodes  # node_programs/pool_over_nodes.py

from dragon.native import Policy

N = 300
BIG = 24


def producer(q: Any, back: Any, sq: Any) -> None:
    for i in range(N):
        q.put((os.environ["DRAGON_INDEX"], i, "x" * (i % 7)))
    sq.put("simple from node " + os.environ["DRAGON_INDEX"])
    sq.put([back.get(timeout=60) for _ in range(3)])


def two_threads(q: Any) -> None:
    """A thread puts 0..N-1 into `q`, then (after it, by a join) this thread puts "last" and the process
    exits at once: the process's order holds across its threads, and nothing is lost at exit."""
    import threading

    t = threading.Thread(target=lambda: [q.put(i) for i in range(N)])
    t.start()
    t.join()
    q.put("last")


def counts(q: Any, sq: Any) -> None:
    """A producer's own count of its items in a queue nobody reads: exact once its puts are in (they
    are quiet: `dragon.mp.queues._items`; the count settles them first)."""
    for i in range(50):
        q.put(i)
    sq.put([q.qsize(), q.empty()])


def pipe_then_big(conn: Any, q: Any) -> None:
    """A Pipe send (posted quietly) to node 0, then an item larger than the window of unanswered
    posts (8 MiB) into a queue of node 0: the item goes once the answers that will come came (it
    waited for the Pipe send's, which never comes alone)."""
    conn.send("hello")
    q.put(b"b" * (9 << 20))


def big_then_exit(q: Any) -> None:
    """Large items put just before the process exits: all arrive (the exit waits for the agent to have
    every posted send; ZeroMQ sends them without a copy)."""
    for i in range(BIG):
        q.put(bytes([i]) * (1 << 20))


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q, back, sq = mp.Queue(), mp.Queue(), mp.SimpleQueue()
    with Policy(node=1):
        p = mp.Process(target=producer, args=(q, back, sq))
        p.start()
    items = [q.get(timeout=60) for _ in range(N)]
    report: dict[str, Any] = {"in_order": items == [("1", i, "x" * (i % 7)) for i in range(N)]}
    for i in range(3):
        back.put(i)
    report["simple"] = sq.get()
    report["back"] = sq.get()
    p.join(60)
    report["exit"] = p.exitcode
    report["empty"] = q.empty()
    threads_q = mp.Queue()
    with Policy(node=1):
        t = mp.Process(target=two_threads, args=(threads_q,))
        t.start()
    report["threads"] = [threads_q.get(timeout=60) for _ in range(N + 1)] == [*range(N), "last"]
    t.join(60)
    count_q = mp.Queue()
    with Policy(node=1):
        c = mp.Process(target=counts, args=(count_q, sq))
        c.start()
    report["sizes"] = [*sq.get(), count_q.qsize()]
    report["drained"] = [count_q.get(timeout=60) for _ in range(50)] == list(range(50))
    c.join(60)
    a, b = mp.Pipe()
    pipe_q = mp.Queue()
    with Policy(node=1):
        pb = mp.Process(target=pipe_then_big, args=(b, pipe_q))
        pb.start()
    report["pipe_then_big"] = [a.recv(), len(pipe_q.get(timeout=60))] == ["hello", 9 << 20]
    pb.join(60)
    big_q = mp.Queue()
    with Policy(node=1):
        b = mp.Process(target=big_then_exit, args=(big_q,))
        b.start()
    big = [big_q.get(timeout=60) for _ in range(BIG)]  # before the join, as the stdlib asks
    b.join(60)
    report["big"] = [(len(x), x[0]) for x in big] == [(1 << 20, i) for i in range(BIG)] and b.exitcode == 0
    squares, report["pool_nodes"] = pool_over_nodes(100)
    report["pool"] = squares == [x * x for x in range(100)]
    print(json.dumps(report))
