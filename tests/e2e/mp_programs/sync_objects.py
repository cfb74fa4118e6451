"""Queues, pipes, locks and shared ctypes of the standard library between processes; prints JSON.

Run as `prog.py METHOD` ("spawn" under plain python, "dragon" under `dragon`): the output must not
depend on the method.
"""

import json
import multiprocessing as mp
import sys
from typing import Any

import dragon  # noqa: F401  (registers the start method)


def queues(q: Any, sq: Any, jq: Any) -> None:
    q.put(("queue", list(range(3))))
    q.put(b"x" * 1_000_000)  # bigger than a pipe buffer: the feeder thread must work
    sq.put("simple")
    item = jq.get()
    jq.task_done()
    sq.put(item * 2)


def pipes(duplex_end: Any, writer: Any) -> None:
    got = duplex_end.recv()
    duplex_end.send(["echo", got])
    duplex_end.send_bytes(b"raw bytes")
    writer.send("one-way")
    duplex_end.close()
    writer.close()


def counter(lock: Any, rlock: Any, value: Any, array: Any, raw: Any, n: int) -> None:
    for _ in range(n):
        with lock:
            value.value += 1
        with rlock, rlock:
            array[0] += 1
    with array.get_lock():
        array[1] = 7
    raw.value = 42


def events(ev: Any, cond: Any, sem: Any, bsem: Any, barrier: Any, out: Any) -> None:
    ev.wait(30)
    with cond:
        cond.notify_all()
    sem.acquire()
    bsem.release()
    out.put(barrier.wait(30) >= 0)


def waiter(cond: Any, flag: Any, out: Any) -> None:
    with cond:
        flag.value = 1
        out.put(cond.wait(30))


if __name__ == "__main__":
    method = sys.argv[1]
    ctx = mp.get_context(method)
    out: dict[str, Any] = {}

    q, sq, jq = ctx.Queue(), ctx.SimpleQueue(), ctx.JoinableQueue()
    jq.put(21)
    p = ctx.Process(target=queues, args=(q, sq, jq))
    p.start()
    out["queue"] = [q.get(timeout=30), len(q.get(timeout=30)), sq.get()]
    jq.join()  # returns once the child called task_done
    out["joinable"] = sq.get()
    p.join()
    out["queue_exit"] = p.exitcode

    a, b = ctx.Pipe()
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=pipes, args=(b, w))
    p.start()
    b.close()  # the child has its own copies now
    w.close()
    a.send({"k": 1})
    out["pipe"] = [a.recv(), a.recv_bytes().decode(), r.recv()]
    p.join()
    try:
        a.recv()
        out["pipe_eof"] = "no error"
    except EOFError:
        out["pipe_eof"] = "EOFError"
    out["pipe_exit"] = p.exitcode

    lock, rlock = ctx.Lock(), ctx.RLock()
    value, array, raw = ctx.Value("i", 0), ctx.Array("i", [0, 0, 0]), ctx.RawValue("d", 0.0)
    rawarr = ctx.RawArray("b", 4)
    ps = [ctx.Process(target=counter, args=(lock, rlock, value, array, raw, 200)) for _ in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    out["shared"] = [value.value, list(array), raw.value, list(rawarr), [p.exitcode for p in ps]]

    ev, cond, sem, bsem = ctx.Event(), ctx.Condition(), ctx.Semaphore(2), ctx.BoundedSemaphore(2)
    bsem.acquire()
    bsem.acquire()
    barrier, results = ctx.Barrier(3), ctx.Queue()
    ps = [ctx.Process(target=events, args=(ev, cond, sem, bsem, barrier, results)) for _ in range(2)]
    for p in ps:
        p.start()
    ev.set()
    out["barrier_me"] = barrier.wait(30) >= 0
    out["barrier_children"] = [results.get(timeout=30) for _ in ps]
    for p in ps:
        p.join()
    out["semaphores"] = [sem.get_value(), bsem.get_value()]
    try:
        bsem.release()
        out["bounded"] = "no error"
    except ValueError:
        out["bounded"] = "ValueError"

    cond2, flag, woke = ctx.Condition(ctx.Lock()), ctx.Value("i", 0, lock=False), ctx.Queue()
    p = ctx.Process(target=waiter, args=(cond2, flag, woke))
    p.start()
    while True:  # wait until the child holds the condition's wait (it set the flag under the lock)
        with cond2:
            if flag.value:
                cond2.notify()
                break
    out["condition"] = woke.get(timeout=30)
    p.join()
    print(json.dumps(out))
