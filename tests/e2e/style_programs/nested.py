"""Processes that start processes (a tree three levels deep), each leaf answering on a Queue passed
down, each inner process joining its children and reporting their exit codes; prints the answers."""

import multiprocessing as mp
from typing import Any

import where

FANOUT, DEPTH = 2, 3


def node(q: Any, path: str, depth: int) -> None:
    if depth == DEPTH:
        q.put(("leaf", path, sum(int(c) for c in path), where.node()))
        return
    kids = [mp.Process(target=node, args=(q, path + str(i), depth + 1)) for i in range(FANOUT)]
    for k in kids:
        k.start()
    for k in kids:
        k.join(60)
    q.put(("inner", path, [k.exitcode for k in kids], where.node()))


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    root = mp.Process(target=node, args=(q, "", 0))
    root.start()
    answers = [q.get(timeout=60) for _ in range(sum(FANOUT**d for d in range(DEPTH + 1)))]
    root.join(60)
    for kind, path, value, _ in sorted(answers, key=lambda a: (len(a[1]), a[1])):
        print(kind, path or "-", value)
    print("root exit code", root.exitcode)
    where.report([where.node(), *(a[3] for a in answers)])
