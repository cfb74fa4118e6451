"""Lock, RLock, Semaphore and BoundedSemaphore in one process and between processes, in the style of
CPython's _TestLock and _TestSemaphore; prints JSON.

Run as `prog.py METHOD` ("spawn" under plain python, "dragon" under `dragon` or plain python). Everything
under "same" must not depend on the method; "differs" holds what the dragon objects do otherwise (by
design: dragon/mp/locks.py), "dragon" what only makes sense under the runtime.
"""

import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from queues import eventually, raises  # mp_programs/queues.py

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0
SHORT_S = 0.1


def timed(fn: Callable[[], object]) -> list[object]:
    """`fn()`'s result, and whether it took at least SHORT_S (a timeout that was waited out)."""
    t0 = time.monotonic()
    result = fn()
    return [result, time.monotonic() - t0 >= SHORT_S * 0.9]


# ------------------------------------------------------------------------------------------- children


def count_under(lock: Any, rlock: Any, values: Any, n: int) -> None:
    """Increment `values[0]` (no lock of its own) `n` times under `lock`, and `values[1]` `n` times
    under `rlock` twice held (one value per lock: two locks would not exclude each other)."""
    for _ in range(n):
        with lock:
            values[0] += 1
        with rlock, rlock:
            values[1] += 1


def rlock_visitor(rlock: Any, out: Any, go: Any) -> None:
    """The parent holds `rlock`: report what this process can do with it, then hold it two deep until
    the parent has looked (`go`)."""
    out.put(
        {
            "acquire_nonblock": rlock.acquire(False),
            "acquire_timeout": timed(lambda: rlock.acquire(timeout=SHORT_S)),
            "release_not_owner": raises(rlock.release),
        }
    )
    got = rlock.acquire(timeout=WAIT_S) and rlock.acquire(timeout=WAIT_S)
    out.put(got)
    go.get(timeout=WAIT_S)
    rlock.release()
    out.put(repr(rlock).replace(mp.current_process().name, "child"))
    rlock.release()


def release_for(lock: Any) -> None:
    """Release a Lock another process holds (allowed for a Lock, as in the standard library)."""
    lock.release()


def produce(sem: Any, n: int) -> None:
    for _ in range(n):
        sem.release()


def overflow(bsem: Any, out: Any) -> None:
    """Release a BoundedSemaphore at its bound (ValueError), then one the parent took (fine)."""
    first = raises(bsem.release)
    out.put([first, bsem.get_value()])


def use_from_queue(q: Any, out: Any) -> None:
    """Get a lock and a semaphore through a queue and use them."""
    lock, sem = q.get()
    with lock:
        sem.release()
    out.put(type(lock).__name__)


def condition_waiter(cond: Any, flag: Any, out: Any) -> None:
    with cond:
        flag.value = 1
        out.put(cond.wait(WAIT_S))


# ----------------------------------------------------------------------------------------- sections


def basics(ctx: Any) -> dict[str, Any]:
    """CPython's _TestLock and _TestSemaphore, plus timeouts and the reprs."""
    out: dict[str, Any] = {}
    lock = ctx.Lock()
    out["lock"] = [
        repr(lock),
        lock.acquire(),
        lock.acquire(False),
        timed(lambda: lock.acquire(timeout=SHORT_S)),
        lock.acquire(True, -1),
        repr(lock),
        lock.release(),
        raises(lock.release),
    ]
    with lock:
        out["lock_with"] = [lock.acquire(False), repr(lock)]
    out["lock_after_with"] = lock.acquire(False)
    lock.release()

    rlock = ctx.RLock()
    out["rlock"] = [repr(rlock), rlock.acquire(), rlock.acquire(), rlock.acquire(timeout=0), repr(rlock)]
    out["rlock"] += [rlock.release(), rlock.release(), rlock.release(), raises(rlock.release), repr(rlock)]
    with rlock, rlock:
        out["rlock_with"] = repr(rlock)

    sem = ctx.Semaphore(2)
    seq: list[Any] = [repr(sem), sem.get_value(), sem.acquire(), sem.get_value(), sem.acquire()]
    seq += [sem.get_value(), sem.acquire(False), timed(lambda: sem.acquire(timeout=SHORT_S)), sem.get_value()]
    seq += [sem.release(), sem.get_value(), sem.release(), sem.release(), sem.release(), sem.get_value(), repr(sem)]
    out["semaphore"] = seq
    zero = ctx.Semaphore(0)
    out["semaphore_zero"] = [zero.get_value(), zero.acquire(False), zero.release(), zero.acquire(False)]

    bsem = ctx.BoundedSemaphore(2)
    seq = [repr(bsem), bsem.acquire(), bsem.acquire(), bsem.acquire(False), bsem.get_value(), repr(bsem)]
    seq += [bsem.release(), bsem.release(), raises(bsem.release), bsem.get_value(), repr(bsem)]
    with bsem:
        seq.append(bsem.get_value())
    out["bounded"] = seq
    out["default_values"] = [ctx.Semaphore().get_value(), ctx.BoundedSemaphore().get_value()]
    return out


def across(ctx: Any) -> dict[str, Any]:
    """The objects passed to children as Process arguments."""
    out: dict[str, Any] = {}
    lock, rlock, values = ctx.Lock(), ctx.RLock(), ctx.Array("i", 2, lock=False)
    ps = [ctx.Process(target=count_under, args=(lock, rlock, values, 300)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    out["counted"] = [values[:], [p.exitcode for p in ps]]

    results, go = ctx.Queue(), ctx.Queue()
    rlock.acquire()
    rlock.acquire()
    p = ctx.Process(target=rlock_visitor, args=(rlock, results, go))
    p.start()
    visitor = results.get(timeout=WAIT_S)
    rlock.release()
    out["rlock_still_mine"] = [rlock.acquire(False), rlock.release(), rlock.release()]
    out["rlock_visitor"] = visitor
    out["rlock_visitor_got"] = results.get(timeout=WAIT_S)
    out["rlock_held_by_child"] = [rlock.acquire(False), repr(rlock), raises(rlock.release)]
    go.put("go")
    out["rlock_child_repr"] = results.get(timeout=WAIT_S)
    p.join()
    out["rlock_after_child"] = [rlock.acquire(timeout=WAIT_S), rlock.release(), p.exitcode]

    lock.acquire()
    p = ctx.Process(target=release_for, args=(lock,))
    p.start()
    p.join()
    out["lock_released_by_other"] = [p.exitcode, lock.acquire(timeout=WAIT_S), lock.release()]

    sem = ctx.Semaphore(0)
    p = ctx.Process(target=produce, args=(sem, 3))
    p.start()
    got = [sem.acquire(timeout=WAIT_S) for _ in range(3)]
    p.join()
    out["produced"] = [got, sem.acquire(timeout=SHORT_S), sem.get_value(), p.exitcode]

    bsem = ctx.BoundedSemaphore(2)
    p = ctx.Process(target=overflow, args=(bsem, results))
    p.start()
    out["overflow_in_child"] = results.get(timeout=WAIT_S)
    p.join()

    cond, flag, woke = ctx.Condition(ctx.Lock()), ctx.Value("i", 0, lock=False), ctx.Queue()
    p = ctx.Process(target=condition_waiter, args=(cond, flag, woke))
    p.start()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # until the child waits (it set the flag under the lock)
        with cond:
            if flag.value:
                cond.notify()
                break
    out["condition_on_lock"] = [woke.get(timeout=WAIT_S), p.join(), p.exitcode]
    return out


def differs(ctx: Any) -> dict[str, Any]:
    """What the dragon objects do otherwise, by design."""
    out: dict[str, Any] = {}
    q, results = ctx.SimpleQueue(), ctx.Queue()
    lock, sem = ctx.Lock(), ctx.Semaphore(0)
    out["through_queue"] = raises(lambda: q.put((lock, sem)))  # SimpleQueue: pickled in put
    if not out["through_queue"]:
        p = ctx.Process(target=use_from_queue, args=(q, results))
        p.start()
        out["through_queue"] = [results.get(timeout=WAIT_S), sem.acquire(timeout=WAIT_S)]
        p.join()
    out["negative"] = raises(lambda: ctx.Semaphore(-1))
    return out


def dragon_only(ctx: Any) -> dict[str, Any]:
    """What only the dragon objects have: Condition's hooks, the routing, where the semaphore is."""
    from dragon.transport import shm_path

    out: dict[str, Any] = {}
    rlock = ctx.RLock()
    rlock.acquire()
    rlock.acquire()
    saved = rlock._release_save()
    out["release_save"] = [saved, rlock._is_mine(), rlock._count(), repr(rlock)]
    rlock._acquire_restore(saved)
    out["acquire_restore"] = [rlock._is_mine(), rlock._count(), repr(rlock)]
    rlock.release()
    rlock.release()
    out["release_save_unowned"] = raises(rlock._release_save)
    lock = ctx.Lock()
    out["lock_release_save"] = [lock.acquire(), lock._release_save(), lock.acquire(False), lock.release()]
    lock._acquire_restore(1)
    out["lock_acquire_restore"] = [lock.acquire(False), repr(lock)]
    lock.release()

    made = [mp.Lock(), mp.RLock(), mp.Semaphore(), mp.BoundedSemaphore(), ctx.Value("i").get_lock()]
    out["modules"] = sorted({type(obj).__module__ for obj in made})
    event, cond = ctx.Event(), ctx.Condition()
    out["inside"] = [type(event).__module__, type(cond).__module__, type(cond._lock).__module__]
    name = lock._home.rec.name
    out["semaphore_entry"] = os.path.exists(shm_path("sem." + name))
    del lock, made  # no reference cycle: freed at once, without the garbage collector
    out["semaphore_entry_after_del"] = not eventually(lambda: not os.path.exists(shm_path("sem." + name)))
    return out


if __name__ == "__main__":
    method = sys.argv[1]
    if method == "dragon":
        mp.set_start_method("dragon")
    ctx = mp.get_context(method)
    report = {"same": {"basics": basics(ctx), "across": across(ctx)}, "differs": differs(ctx)}
    if method == "dragon":
        report["dragon"] = dragon_only(ctx)
    print(json.dumps(report))
