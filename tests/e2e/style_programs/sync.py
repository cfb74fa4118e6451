"""Workers that share a Lock-guarded Value, meet at a Barrier, wait for an Event, take turns under a
Semaphore and a Condition; prints the counts."""

import multiprocessing as mp
from typing import Any

import where

WORKERS, ADDS = 4, 200


def work(counter: Any, lock: Any, barrier: Any, go: Any, sem: Any, cond: Any, turns: Any, q: Any) -> None:
    for _ in range(ADDS):
        with lock:
            counter.value += 1
    index = barrier.wait(60)
    go.wait(60)
    with sem:
        with cond:
            turns.value += 1
            cond.notify_all()
    q.put((index, where.node()))


if __name__ == "__main__":
    mp.set_start_method("dragon")
    counter, turns = mp.Value("i", 0), mp.Value("i", 0)
    lock, barrier, go, sem, cond, q = (
        mp.Lock(),
        mp.Barrier(WORKERS),
        mp.Event(),
        mp.Semaphore(2),
        mp.Condition(),
        mp.Queue(),
    )
    workers = [mp.Process(target=work, args=(counter, lock, barrier, go, sem, cond, turns, q)) for _ in range(WORKERS)]
    for p in workers:
        p.start()
    go.set()
    with cond:
        print("all turns", cond.wait_for(lambda: turns.value == WORKERS, 60))
    answers = [q.get(timeout=60) for _ in workers]
    for p in workers:
        p.join(60)
    print("counter", counter.value, "barrier indices", sorted(i for i, _ in answers))
    print("exit codes", [p.exitcode for p in workers])
    where.report([where.node(), *(n for _, n in answers)])
