"""Event, Condition and Barrier between processes, their whole API; prints JSON.

Run as `prog.py METHOD` ("spawn" under plain python, "dragon" under `dragon` or plain python). The
"same" part must not depend on the method; "differs" is what the dragon objects do by design
(dragon/mp/events.py); "dragon" only makes sense there. Every wait is bounded by a timeout.
"""

import json
import multiprocessing as mp
import sys
import threading
import time
from multiprocessing import util
from typing import Any

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0


def setter(ev: Any) -> None:
    ev.set()


def set_at_exit(ev: Any) -> None:
    """A non-daemon thread sets the Event once this process is exiting: after every exit finalizer
    (multiprocessing joins such threads after it runs them, and the object must still work)."""
    go = threading.Event()
    util.Finalize(None, go.set, exitpriority=-100)
    threading.Thread(target=lambda: go.wait(WAIT_S) and ev.set()).start()


def set_and_clear(ev: Any, started: Any) -> None:
    started.wait(WAIT_S)
    ev.set()
    ev.clear()


def from_queue(q: Any, done: Any) -> None:
    obj = q.get(timeout=WAIT_S)
    if hasattr(obj, "set"):
        obj.set()
    else:
        done.put(obj.wait(WAIT_S))
    done.put("ok")


def cond_waiter(cond: Any, sleeping: Any, woken: Any, timeout: float | None) -> None:
    with cond:
        sleeping.release()
        woken.put(cond.wait(timeout))


def cond_counter(cond: Any, state: Any) -> None:
    for _ in range(4):
        with cond:
            state.value += 1
            cond.notify()


def barrier_party(bar: Any, out: Any, rounds: int) -> None:
    try:
        out.put([bar.wait(WAIT_S) for _ in range(rounds)])
    except Exception as exc:
        out.put(type(exc).__name__)


class Count:
    """A Barrier action: adds one to a shared value (picklable, as a Barrier's action must be)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> None:
        with self.value.get_lock():
            self.value.value += 1


class Fail:
    def __call__(self) -> None:
        raise KeyError("action failed")


def until(pred: Any) -> bool:
    """Poll `pred` (a state another process reaches) for at most WAIT_S."""
    end = time.monotonic() + WAIT_S
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


EARLY_S = 0.05
"""How much earlier than its timeout a wait may end: the stdlib's semaphores wait on the real-time
clock (sem_timedwait), which a VM's clock correction moves (seen: spawn's Event.wait(0.2) ended early
in one CI run of many)."""


def timed(f: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    try:
        got = f(*args)
    except Exception as exc:
        got = type(exc).__name__
    return got, time.monotonic() - t0


def event(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ev = ctx.Event()
    out["new"] = [ev.is_set(), ev.wait(0), repr(ev).endswith(" unset>")]
    got, took = timed(ev.wait, 0.2)
    out["timeout"] = [got, took >= 0.2 - EARLY_S, took < 5]
    ev.set()
    out["set"] = [ev.is_set(), ev.wait(), ev.wait(1), repr(ev).endswith(" set>")]
    ev.set()  # twice is fine
    ev.clear()
    out["cleared"] = [ev.is_set(), ev.wait(0.01)]
    p = ctx.Process(target=setter, args=(ev,))
    p.start()
    out["child_sets"] = ev.wait(WAIT_S)
    p.join(WAIT_S)
    out["exits"] = p.exitcode
    ev.clear()
    p = ctx.Process(target=set_at_exit, args=(ev,))
    p.start()
    p.join(WAIT_S)
    out["set_at_exit"] = [ev.is_set(), p.exitcode]
    return out


def through_queue(ctx: Any) -> list[Any]:
    """An Event and a Barrier passed to a running child through a Queue (the stdlib's pickle only while
    spawning, so this runs under dragon only)."""
    q, done = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=from_queue, args=(q, done))
    p.start()
    ev = ctx.Event()
    q.put(ev)
    got = [ev.wait(WAIT_S), done.get(timeout=WAIT_S)]
    p.join(WAIT_S)
    bar = ctx.Barrier(2)
    p = ctx.Process(target=from_queue, args=(q, done))
    p.start()
    q.put(bar)
    got += [sorted([bar.wait(WAIT_S), done.get(timeout=WAIT_S)]), done.get(timeout=WAIT_S)]
    p.join(WAIT_S)
    return [*got, p.exitcode]


def event_set_and_cleared(ctx: Any) -> bool:
    """A waiter sees a set even if the flag is cleared again before it looks (threading.Event's rule)."""
    ev, started = ctx.Event(), ctx.Event()
    p = ctx.Process(target=set_and_clear, args=(ev, started))
    p.start()
    started.set()
    got = ev.wait(3)
    p.join(WAIT_S)
    return got


def condition(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cond = ctx.Condition()
    with cond:
        got, took = timed(cond.wait, 0.2)
        out["timeout"] = [got, took >= 0.2 - EARLY_S, took < 5, cond.wait(0)]
    sleeping, woken = ctx.Semaphore(0), ctx.Queue()
    ps = [ctx.Process(target=cond_waiter, args=(cond, sleeping, woken, WAIT_S)) for _ in range(3)]
    ps.append(threading.Thread(target=cond_waiter, args=(cond, sleeping, woken, WAIT_S)))  # type: ignore[arg-type]
    for p in ps:
        p.start()
    for _ in ps:
        sleeping.acquire(timeout=WAIT_S)
    with cond:  # they all wait: they released the lock in wait
        cond.notify()
    first = [woken.get(timeout=WAIT_S)]
    with cond:
        cond.notify(2)
    first += [woken.get(timeout=WAIT_S) for _ in range(2)]
    with cond:
        cond.notify_all()
    first.append(woken.get(timeout=WAIT_S))
    with cond:
        cond.notify(5)  # nobody waits: nothing is kept for later waiters
        out["nothing_kept"] = cond.wait(0.05)
    out["notified"] = first
    for p in ps:
        p.join(WAIT_S)
    out["invariant"] = [
        cond._sleeping_count.get_value() - cond._woken_count.get_value(),
        cond._wait_semaphore.get_value(),
    ]

    state = ctx.Value("i", 0)
    p = ctx.Process(target=cond_counter, args=(cond, state))
    with cond:
        p.start()
        out["wait_for"] = [cond.wait_for(lambda: state.value == 4, WAIT_S), state.value]
        got, took = timed(cond.wait_for, lambda: state.value == 5, 0.2)
        out["wait_for_timeout"] = [got, took >= 0.2 - EARLY_S]
    p.join(WAIT_S)

    unheld = []
    for f in (cond.wait, cond.notify, cond.notify_all):
        try:
            f()
            unheld.append("no error")
        except Exception as exc:
            unheld.append(type(exc).__name__)
    out["unheld"] = unheld

    rlock = ctx.RLock()
    cond2 = ctx.Condition(rlock)
    with cond2, cond2:
        cond2.wait(0.01)  # released fully meanwhile, restored to two levels after
        levels = [cond2.acquire(False)]
        cond2.release()
    try:
        rlock.release()
        levels.append("no error")
    except Exception:  # not held any more: both levels were given back
        levels.append("raised")
    out["rlock_levels"] = levels
    cond3 = ctx.Condition(ctx.Lock())
    with cond3:
        out["plain_lock"] = cond3.wait(0.01)
    return out


def barrier(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    results = ctx.Queue()
    count = ctx.Value("i", 0)
    bar = ctx.Barrier(3, action=Count(count), timeout=WAIT_S)
    ps = [ctx.Process(target=barrier_party, args=(bar, results, 5)) for _ in range(2)]
    for p in ps:
        p.start()
    mine = [bar.wait() for _ in range(5)]
    theirs = [results.get(timeout=WAIT_S) for _ in ps]
    for p in ps:
        p.join(WAIT_S)
    rounds = list(zip(mine, *theirs, strict=True))
    out["indices"] = all(sorted(r) == [0, 1, 2] for r in rounds)
    out["action_runs"] = count.value
    out["props"] = [bar.parties, bar.n_waiting, bar.broken]

    p = ctx.Process(target=barrier_party, args=(bar, results, 1))
    p.start()
    out["n_waiting"] = until(lambda: bar.n_waiting == 1)
    bar.abort()
    out["abort"] = [results.get(timeout=WAIT_S), bar.broken, timed(bar.wait)[0]]
    p.join(WAIT_S)
    bar.reset()
    out["reset"] = bar.broken
    p = ctx.Process(target=barrier_party, args=(bar, results, 1))
    p.start()
    out["n_waiting_2"] = until(lambda: bar.n_waiting == 1)
    bar.reset()  # the waiter gets BrokenBarrierError; the barrier is usable
    out["reset_waiter"] = [results.get(timeout=WAIT_S), bar.broken]
    p.join(WAIT_S)

    got, took = timed(bar.wait, 0.2)
    out["timeout"] = [got, took >= 0.2 - EARLY_S, took < 5, bar.broken]
    bar.reset()
    short = ctx.Barrier(2, timeout=0.2)
    got, took = timed(short.wait)
    out["default_timeout"] = [got, took >= 0.2 - EARLY_S, took < 5]

    failing = ctx.Barrier(2, action=Fail())
    p = ctx.Process(target=barrier_party, args=(failing, results, 1))
    p.start()
    got = timed(failing.wait, WAIT_S)[0]
    out["failing_action"] = [*sorted([got, results.get(timeout=WAIT_S)]), failing.broken]
    p.join(WAIT_S)

    one = ctx.Barrier(1)
    out["single"] = [one.wait(1), one.wait(1)]
    try:
        ctx.Barrier(0)
        out["zero"] = "no error"
    except ValueError:
        out["zero"] = "ValueError"
    return out


if __name__ == "__main__":
    method = sys.argv[1]
    ctx = mp.get_context(method)
    report: dict[str, Any] = {"same": {"event": event(ctx), "condition": condition(ctx), "barrier": barrier(ctx)}}
    report["differs"] = {
        "unheld": report["same"]["condition"].pop("unheld"),
        "zero_parties": report["same"]["barrier"].pop("zero"),
    }
    if method == "dragon":
        made = [ctx.Event(), ctx.Condition(), ctx.Barrier(2)]
        report["dragon"] = {
            "modules": [type(o).__module__ for o in made],
            "through_queue": through_queue(ctx),
            "set_and_cleared": event_set_and_cleared(ctx),
            "thread_lock": timed(ctx.Condition, threading.Lock())[0],  # refused at once, said why
        }
    print(json.dumps(report))
