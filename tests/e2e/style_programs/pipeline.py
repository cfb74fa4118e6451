"""A pipeline of processes connected by queues: source -> square -> add offset (2 workers) -> sink;
prints the sorted results and their sum."""

import multiprocessing as mp
from typing import Any

import where

N = 500
WORKERS = 2


def square(inq: Any, outq: Any) -> None:
    for x in iter(inq.get, None):
        outq.put(x * x)
    outq.put(None)


def add(inq: Any, outq: Any, offset: int, nodes: Any) -> None:
    nodes.put(where.node())
    for x in iter(inq.get, None):
        outq.put(x + offset)
    inq.put(None)  # for the other adder
    outq.put(None)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q1, q2, q3, nodes = mp.Queue(), mp.Queue(maxsize=50), mp.Queue(), mp.Queue()
    stages = [mp.Process(target=square, args=(q1, q2))]
    stages += [mp.Process(target=add, args=(q2, q3, 7, nodes)) for _ in range(WORKERS)]
    for p in stages:
        p.start()
    for x in range(N):
        q1.put(x)
    q1.put(None)
    results, ended = [], 0
    while ended < WORKERS:
        item = q3.get(timeout=60)
        if item is None:
            ended += 1
        else:
            results.append(item)
    for p in stages:
        p.join(60)
    results.sort()
    print(len(results), sum(results), results[:5], results[-3:])
    print("exit codes", [p.exitcode for p in stages])
    where.report([where.node(), *(nodes.get(timeout=60) for _ in range(WORKERS))])
