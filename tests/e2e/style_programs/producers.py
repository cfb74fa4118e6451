"""Producers and consumers over one Queue, each consumer reporting its totals on a results Queue;
prints what each producer's items summed to and that every item arrived once, in order per producer."""

import multiprocessing as mp
from typing import Any

import where

PRODUCERS, CONSUMERS, N = 3, 4, 400


def produce(q: Any, me: int) -> None:
    for i in range(N):
        q.put((me, i, me * 1000 + i))


def consume(q: Any, results: Any) -> None:
    got = list(iter(q.get, None))
    results.put((where.node(), got))


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q, results = mp.Queue(), mp.Queue()
    producers = [mp.Process(target=produce, args=(q, me)) for me in range(PRODUCERS)]
    consumers = [mp.Process(target=consume, args=(q, results)) for _ in range(CONSUMERS)]
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join(60)
    for _ in consumers:
        q.put(None)
    reports = [results.get(timeout=60) for _ in consumers]
    for p in consumers:
        p.join(60)
    items = [tuple(item) for _, got in reports for item in got]
    in_order = all(
        [i for me, i, _ in got if me == p] == sorted(i for me, i, _ in got if me == p)
        for _, got in reports
        for p in range(PRODUCERS)
    )
    print("items", len(items), "unique", len(set(items)), "in order per producer", in_order)
    print("sums", [sum(v for me, _, v in items if me == p) for p in range(PRODUCERS)])
    print("exit codes", [p.exitcode for p in producers + consumers])
    where.report([where.node(), *(n for n, _ in reports)])
