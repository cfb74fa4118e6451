"""Lock, RLock, Semaphore and BoundedSemaphore whose users are on different nodes (issue 17 item 2):
prints one JSON report.

"basics": mp_programs/locks.py's single-process checks run on node 0 with objects made on node 1 (a
maker process there makes each one on request), next to the same checks with objects of node 0: the
two must agree. "across": the objects of node 0 used by processes on node 1 (mp_programs/locks.py's
children). "death": holders and a waiter of another node killed (SIGKILL).
"""

import json
import multiprocessing as mp
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mp_programs"))

from locks import WAIT_S, basics, overflow, produce, release_for, rlock_visitor  # mp_programs/locks.py
from on_node import on_node  # node_programs/on_node.py


def maker(requests: Any, made: Any) -> None:
    """Make each object asked for (a name and its arguments) here, keep it, send it back; until None."""
    kept = []
    while (asked := requests.get(timeout=WAIT_S)) is not None:
        name, args = asked
        kept.append(getattr(mp, name)(*args))
        made.put(kept[-1])


class MadeThere:
    """A context whose Lock, RLock, Semaphore and BoundedSemaphore are made by the maker (on node 1)."""

    def __init__(self, requests: Any, made: Any) -> None:
        self._requests, self._made = requests, made

    def __getattr__(self, name: str) -> Any:
        def make(*args: Any) -> Any:
            self._requests.put((name, args))
            return self._made.get(timeout=WAIT_S)

        return make


def critical(lock: Any, rlock: Any, out: Any, n: int) -> None:
    """`n` times inside `lock`, and inside `rlock` held twice: the (start, end) of each stay."""
    stays = []
    for _ in range(n):
        with lock:
            stays.append(("lock", time.monotonic(), time.monotonic()))
        with rlock, rlock:
            stays.append(("rlock", time.monotonic(), time.monotonic()))
    out.put(stays)


def exclusive(stays: list[Any]) -> bool:
    """Whether no two stays inside one object overlap."""
    for which in ("lock", "rlock"):
        spans = sorted((a, b) for w, a, b in stays if w == which)
        if any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)):
            return False
    return True


def take_and_die(lock: Any, took: Any) -> None:
    lock.acquire()
    took.put(os.environ["DRAGON_INDEX"])
    os.kill(os.getpid(), signal.SIGKILL)


def wait_and_die(lock: Any, waiting: Any) -> None:
    waiting.put("waiting")
    lock.acquire()  # killed while waiting at the home


def acquire_warned(lock: Any) -> list[Any]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = lock.acquire(timeout=WAIT_S)
    told = [str(w.message).split(" died holding")[0] for w in seen]
    return [got, told, lock.release()]


def across(out: dict[str, Any]) -> None:
    lock, rlock, stays = mp.Lock(), mp.RLock(), mp.Queue()
    ps = [on_node(1, critical, lock, rlock, stays, 100) for _ in range(2)]
    mine = mp.Process(target=critical, args=(lock, rlock, stays, 100))
    mine.start()
    every = [s for _ in range(3) for s in stays.get(timeout=WAIT_S)]
    for p in [*ps, mine]:
        p.join()
    out["exclusive"] = [exclusive(every), len(every), [p.exitcode for p in [*ps, mine]]]

    results, go = mp.Queue(), mp.Queue()
    rlock.acquire()
    rlock.acquire()
    p = on_node(1, rlock_visitor, rlock, results, go)
    visitor = results.get(timeout=WAIT_S)
    rlock.release()
    out["rlock_still_mine"] = [rlock.acquire(False), rlock.release(), rlock.release()]
    out["rlock_visitor"] = visitor
    out["rlock_visitor_got"] = results.get(timeout=WAIT_S)
    out["rlock_held_by_child"] = [rlock.acquire(False), repr(rlock)]
    go.put("go")
    out["rlock_child_repr"] = results.get(timeout=WAIT_S)
    p.join()
    out["rlock_after_child"] = [rlock.acquire(timeout=WAIT_S), rlock.release(), p.exitcode]

    lock.acquire()
    p = on_node(1, release_for, lock)
    p.join()
    out["lock_released_by_other"] = [p.exitcode, lock.acquire(timeout=WAIT_S), lock.release()]

    sem = mp.Semaphore(0)
    p = on_node(1, produce, sem, 3)
    got = [sem.acquire(timeout=WAIT_S) for _ in range(3)]
    p.join()
    out["produced"] = [got, sem.acquire(timeout=0.1), sem.get_value(), p.exitcode]

    bsem = mp.BoundedSemaphore(2)
    p = on_node(1, overflow, bsem, results)
    out["overflow_in_child"] = results.get(timeout=WAIT_S)
    p.join()


def death(out: dict[str, Any], there: MadeThere) -> None:
    took = mp.SimpleQueue()  # a put is in before the putter kills itself (a Queue's may not be)
    for where, lock in (("home 0", mp.Lock()), ("home 1", there.Lock())):
        p = on_node(1 if where == "home 0" else 0, take_and_die, lock, took)
        holder = took.get()
        p.join()
        out[f"holder_killed_{where}"] = [holder, p.exitcode, *acquire_warned(lock)]
    sem = mp.Semaphore(2)
    p = on_node(1, take_and_die, sem, took)
    took.get()
    p.join()
    out["semaphore_count_back"] = eventually_value(sem, 2)

    lock = mp.Lock()
    lock.acquire()
    p = on_node(1, wait_and_die, lock, took)
    took.get()
    p.kill()  # before or while its acquire waits at the home: either way nothing stays taken
    p.join()
    lock.release()
    out["waiter_killed"] = [p.exitcode, lock.acquire(timeout=WAIT_S)]


def eventually_value(sem: Any, value: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while sem.get_value() != value and time.monotonic() < deadline:
        time.sleep(0.01)
    return sem.get_value() == value


if __name__ == "__main__":
    mp.set_start_method("dragon")
    requests, made = mp.Queue(), mp.Queue()
    the_maker = on_node(1, maker, requests, made)
    there = MadeThere(requests, made)
    report: dict[str, Any] = {"basics_there": basics(there)}
    report["basics_same"] = report["basics_there"] == basics(mp.get_context())
    across(report)
    death(report, there)
    requests.put(None)
    the_maker.join(WAIT_S)
    report["maker_exit"] = the_maker.exitcode
    print(json.dumps(report))
