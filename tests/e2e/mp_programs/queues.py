"""Queue, SimpleQueue and JoinableQueue between processes, in the style of CPython's _TestQueue; prints JSON.

Run as `prog.py METHOD [SECTIONS]` ("spawn" under plain python, "dragon" under `dragon`; the sections
as sections.py says, all by default). Everything under the
key "same" must not depend on the method; "differs" holds what the dragon queues do otherwise (by
design: see dragon/mp/queues.py), "dragon" what only makes sense under the runtime.
"""

import concurrent.futures
import gc
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import sections

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0


def until(pred: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll `pred` until it holds (True) or `timeout` passes (False): for the feeder thread's flush."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def eventually(check: Callable[[], bool]) -> bool:
    """Whether `check()` becomes true within WAIT_S (a bounded poll): a dropped object's channels go a
    moment after its last handle (its reference is given back without waiting for the answer)."""
    deadline = time.monotonic() + WAIT_S
    while not check() and time.monotonic() < deadline:
        time.sleep(0.001)
    return check()


def raises(fn: Callable[[], object]) -> str:
    """The name of the exception `fn()` raises ("" if none)."""
    try:
        fn()
    except Exception as exc:  # the name is the result
        return type(exc).__name__
    return ""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# ------------------------------------------------------------------------------------------- children


def echo(q: Any, out: Any) -> None:
    """Get items until None and send each back, tagged, on `out`."""
    for item in iter(q.get, None):
        out.put(("echo", item))


def big_items(q: Any, sq: Any, sizes: list[int]) -> None:
    for n in sizes:
        q.put(pattern(n))
    for n in sizes:  # blocks (a pipe) until the parent reads: after q
        sq.put(pattern(n))


def relay(q: Any) -> None:
    """A child that hands the queue on to a grandchild."""
    p = mp.Process(target=grandchild, args=(q,))
    p.start()
    p.join()
    q.put(("child", p.exitcode, mp.parent_process() is not None))


def grandchild(q: Any) -> None:
    q.put(("grandchild", os.getpid() != 0))


def produce(q: Any, who: int, n: int) -> None:
    for i in range(n):
        q.put((who, i))


def consume(q: Any, out: Any) -> None:
    got = list(iter(q.get, None))
    out.put(got)


def joinable_worker(jq: Any) -> None:
    for _ in iter(jq.get, None):
        jq.task_done()
    jq.task_done()  # for the None


def consume_then_die(jq: Any, n: int, said: Any) -> None:
    """Take `n` tasks and mark each done, say so (`said`: a SimpleQueue, whose put is in when it
    returns), then be SIGKILLed."""
    for _ in range(n):
        jq.get(timeout=WAIT_S)
        jq.task_done()
    said.put("done")
    os.kill(os.getpid(), signal.SIGKILL)


def late_attach(q: Any, back: Any) -> None:
    back.put(("late", q.get(timeout=WAIT_S)))


def put_one(q: Any) -> None:
    q.put("one")


def square(x: int) -> int:
    return x * x


def put_from_pool(q: Any, x: int) -> int:
    q.put(x)
    return x


def use_inner(outer: Any) -> None:
    inner = outer.get(timeout=WAIT_S)
    inner.put("through a queue inside a queue")


# ------------------------------------------------------------------------------------------- checks


def fifo_and_basics(ctx: Any) -> dict[str, Any]:
    q = ctx.Queue()
    out: dict[str, Any] = {"empty_new": q.empty(), "qsize_new": q.qsize(), "full_new": q.full()}
    out["get_nowait_empty"] = raises(q.get_nowait)
    out["get_timeout_empty"] = raises(lambda: q.get(timeout=0.05))
    out["get_nonblock_empty"] = raises(lambda: q.get(False))
    items = [None, 1, "two", b"three", [4.0], {"five": 5}, (6,), b"\x80 not a pickle", b""]
    for item in items:
        q.put(item)
    out["qsize_after_puts"] = until(lambda: q.qsize() == len(items)) and q.qsize()
    out["empty_after_puts"] = until(lambda: not q.empty()) and q.empty()
    out["fifo"] = [q.get(timeout=WAIT_S) for _ in items] == items
    q.put_nowait("nowait")
    out["put_nowait"] = q.get(True, WAIT_S)
    q.close()
    out["closed_put"] = raises(lambda: q.put(1))
    out["closed_get"] = raises(q.get)
    q.join_thread()
    q.close()  # twice is fine
    q2 = ctx.Queue()
    out["join_thread_before_close"] = raises(q2.join_thread)
    q2.cancel_join_thread()
    q2.put("dropped at exit: nobody waits for it")
    return out


def bounded(ctx: Any) -> dict[str, Any]:
    q = ctx.Queue(maxsize=3)
    out: dict[str, Any] = {"empty": q.empty(), "full": q.full()}
    q.put(1)
    q.put(2, True)
    q.put_nowait(3)
    out["qsize"] = q.qsize()
    out["full_at_max"] = q.full()
    out["put_nonblock"] = raises(lambda: q.put(4, False))
    out["put_nowait"] = raises(lambda: q.put_nowait(4))
    t0 = time.monotonic()
    out["put_timeout"] = raises(lambda: q.put(4, True, 0.2))
    out["put_waited"] = time.monotonic() - t0 >= 0.15
    out["got"] = [q.get(timeout=WAIT_S) for _ in range(3)]
    out["full_after"] = q.full()
    t0 = time.monotonic()
    out["get_timeout"] = raises(lambda: q.get(True, 0.2))
    out["get_waited"] = time.monotonic() - t0 >= 0.15
    for i in range(3):  # the slots came back
        q.put_nowait(i)
    out["refilled"] = [q.get(timeout=WAIT_S) for _ in range(3)]
    return out


def across_processes(ctx: Any) -> dict[str, Any]:
    q, back = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo, args=(q, back))
    p.start()
    sent = [("tuple", 1), "str", b"bytes", list(range(100))]
    for item in sent:
        q.put(item)
    got = [back.get(timeout=WAIT_S) for _ in sent]
    q.put(None)
    p.join()
    out: dict[str, Any] = {"echo": got == [("echo", x) for x in sent], "echo_exit": p.exitcode}

    sizes = [1 << 20, 20 << 20]
    q, sq = ctx.Queue(), ctx.SimpleQueue()
    p = ctx.Process(target=big_items, args=(q, sq, sizes))
    p.start()
    out["big_queue"] = [[len(x), digest(x)] for x in (q.get(timeout=WAIT_S) for _ in sizes)]
    out["big_simple"] = [[len(x), digest(x)] for x in (sq.get() for _ in sizes)]
    out["big_expected"] = [[n, digest(pattern(n))] for n in sizes]
    p.join()

    q = ctx.Queue()
    p = ctx.Process(target=relay, args=(q,))
    p.start()
    out["grandchild"] = [q.get(timeout=WAIT_S), q.get(timeout=WAIT_S)]
    p.join()

    q, back = ctx.Queue(), ctx.Queue()
    q.put("hello")
    p = ctx.Process(target=late_attach, args=(q, back))
    p.start()
    q.close()  # likely before the child attached: its copy must live on without ours
    q.join_thread()
    out["late_attach"] = back.get(timeout=WAIT_S)
    p.join()
    return out


def many_to_many(ctx: Any) -> dict[str, Any]:
    producers, consumers, n = 3, 3, 2000
    q, results = ctx.Queue(), ctx.Queue()
    ps = [ctx.Process(target=produce, args=(q, w, n)) for w in range(producers)]
    cs = [ctx.Process(target=consume, args=(q, results)) for _ in range(consumers)]
    for p in ps + cs:
        p.start()
    for p in ps:
        p.join()
    for _ in cs:
        q.put(None)
    lists = [[tuple(x) for x in results.get(timeout=60)] for _ in cs]
    for p in cs:
        p.join()
    got = [x for lst in lists for x in lst]
    expected = {(w, i) for w in range(producers) for i in range(n)}
    in_order = all(
        [i for w2, i in lst if w2 == w] == sorted(i for w2, i in lst if w2 == w)
        for lst in lists
        for w in range(producers)
    )
    return {
        "count": len(got),
        "unique": len(set(got)),
        "all": set(got) == expected,
        "each_producer_in_order": in_order,
        "exits": [p.exitcode for p in ps + cs],
    }


def simple_queue(ctx: Any) -> dict[str, Any]:
    sq = ctx.SimpleQueue()
    out: dict[str, Any] = {"empty_new": sq.empty()}
    for item in (1, "two", b"three"):
        sq.put(item)
    out["empty_after"] = sq.empty()
    out["fifo"] = [sq.get() for _ in range(3)] == [1, "two", b"three"]
    out["unpicklable"] = raises(lambda: sq.put(lambda: 0))  # the stdlib's put pickles at once too
    sq.put("still works")
    out["after_unpicklable"] = sq.get()
    out["ends_open"] = [sq._reader.closed, sq._writer.closed]
    sq.close()
    sq.close()
    out["closed_get"] = raises(sq.get)
    out["ends_closed"] = [sq._reader.closed, sq._writer.closed]  # private, but code looks at them
    return out


def pipe_ends(ctx: Any) -> dict[str, Any]:
    """SimpleQueue's `_reader` and `_writer`: private, but the stdlib's Pool and other code use them."""
    sq = ctx.SimpleQueue()
    sq._writer.send("sent")
    out: dict[str, Any] = {"poll": sq._reader.poll(), "recv": sq._reader.recv(), "poll_after": sq._reader.poll()}
    out["wrong_end"] = [raises(lambda: sq._reader.send(1)), raises(sq._writer.recv)]
    sq._writer.close()
    out["writer_closed"] = [sq._writer.closed, sq._reader.closed, raises(lambda: sq.put(1))]
    sq.close()
    out["both_closed"] = [sq._writer.closed, sq._reader.closed, raises(sq._reader.poll)]
    return out


def unpicklable(ctx: Any) -> dict[str, Any]:
    """An object that cannot be pickled (CPython's test_queue_feeder_donot_stop_onexc): the stdlib's
    `put` returns and its feeder thread prints the error and drops the item; dragon's `put` raises
    (by design: dragon/mp/queues.py). Either way the queue goes on, a bounded one with its size right."""
    q, bounded, jq = ctx.Queue(), ctx.Queue(maxsize=1), ctx.JoinableQueue()
    out = {"raised": [raises(lambda: queue.put(lambda: 0)) for queue in (q, bounded, jq)]}  # noqa: B023 (called at once)
    for queue in (q, bounded, jq):
        queue.put("next")
    out["qsize_bounded"] = bounded.qsize()
    out["next"] = [queue.get(timeout=WAIT_S) for queue in (q, bounded, jq)]
    out["empty_bounded"] = bounded.empty()
    return out


def joinable(ctx: Any) -> dict[str, Any]:
    jq = ctx.JoinableQueue()
    p = ctx.Process(target=joinable_worker, args=(jq,))
    p.start()
    for i in range(20):
        jq.put(i)
    jq.put(None)
    jq.join()  # returns once the child called task_done for all 21
    p.join()
    out: dict[str, Any] = {"joined": True, "exit": p.exitcode}
    out["too_many"] = raises(jq.task_done)
    jq.put("x")
    jq.get(timeout=WAIT_S)
    jq.task_done()
    jq.join()
    out["local"] = True
    # A consumer killed after its task_dones leaves them done: a later join returns once the tasks put
    # since are done (by a worker started after the death, so that the runtime has heard of it).
    said = ctx.SimpleQueue()
    for i in range(3):
        jq.put(i)
    p = ctx.Process(target=consume_then_die, args=(jq, 3, said))
    p.start()
    said.get()
    p.join()
    p = ctx.Process(target=joinable_worker, args=(jq,))
    p.start()
    jq.put("after")
    jq.put(None)
    joiner = threading.Thread(target=jq.join, daemon=True)
    joiner.start()
    joiner.join(WAIT_S)
    p.join()
    out["after_a_killed_consumer"] = [p.exitcode, not joiner.is_alive()]
    return out


def pools(ctx: Any) -> dict[str, Any]:
    with ctx.Pool(2) as pool:
        return {"map": pool.map(square, range(10)), "imap": sorted(pool.imap_unordered(square, range(5), chunksize=2))}


def executor(ctx: Any) -> list[int]:
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        return list(ex.map(square, range(5)))


# ------------------------------------------------------------------------------------------- differs


def queue_as_pool_argument(ctx: Any) -> str:
    """stdlib: RuntimeError (queues are shared only through inheritance); dragon: it pickles."""
    q = ctx.Queue()
    with ctx.Pool(1) as pool:
        try:
            pool.apply(put_from_pool, (q, 5))
        except RuntimeError:
            return "RuntimeError"
    return f"got {q.get(timeout=WAIT_S)}"


# ------------------------------------------------------------------------------------------- dragon only


def queue_in_queue(ctx: Any) -> str:
    outer, inner = ctx.Queue(), ctx.Queue()
    outer.put(inner)
    p = ctx.Process(target=use_inner, args=(outer,))
    p.start()
    got = inner.get(timeout=WAIT_S)
    p.join()
    return str(got)


def released(ctx: Any) -> dict[str, Any]:
    """A queue's channels are destroyed once every process let go of them (shm entry gone)."""

    def gone(q: Any) -> Callable[[], bool]:
        names = [sdesc for _, sdesc in q._hold.refs]
        return lambda: not any(os.path.exists(f"/dev/shm/{n}") for n in names)

    q = ctx.Queue(maxsize=2)
    p = ctx.Process(target=put_one, args=(q,))
    p.start()
    p.join()
    item = q.get(timeout=WAIT_S)
    check = gone(q)
    alive_before = not check()
    q.close()
    closed = eventually(check)
    sq = ctx.SimpleQueue()
    check = gone(sq)
    del sq
    gc.collect()
    return {"item": item, "alive_before": alive_before, "gone_after_close": closed, "gone_after_gc": eventually(check)}


def packing(ctx: Any) -> dict[str, Any]:
    """Which of a queue's channels are packed (items take their own size) and what an item
    channel holds: more than QUEUE_CAPACITY small items, and (bounded) no more than maxsize."""
    bounded, simple = ctx.Queue(maxsize=3), ctx.SimpleQueue()
    for i in range(3):
        bounded.put(i)
    full = raises(lambda: bounded.put(3, timeout=0.01))
    many, fit = 3 * simple._chan.capacity, 0
    while fit < many and not raises(lambda: simple._chan.send_nowait(b"%07d" % fit)):  # noqa: B023 (called at once); 8 bytes each
        fit += 1
    got = [simple.get() for _ in range(fit)]
    return {
        "items": bounded._chan.packed,
        "slots": bounded._slots.packed,
        "simple": simple._chan.packed,
        "full": full,
        "simple_all": fit == many and got == [b"%07d" % i for i in range(many)],
    }


if __name__ == "__main__":
    method = sys.argv[1]
    mp.set_start_method(method)  # children and grandchildren use it too
    ctx = mp.get_context(method)
    if method == "dragon":
        assert type(mp.Queue()).__module__ == "dragon.mp.queues"
        assert type(mp.SimpleQueue()).__module__ == "dragon.mp.queues"
    report: dict[str, Any] = {
        "same": sections.run(
            {
                "basics": lambda: fifo_and_basics(ctx),
                "bounded": lambda: bounded(ctx),
                "across": lambda: across_processes(ctx),
                "many": lambda: many_to_many(ctx),
                "simple": lambda: simple_queue(ctx),
                "joinable": lambda: joinable(ctx),
                "pools": lambda: pools(ctx),
                "executor": lambda: executor(ctx),
                "pipe_ends": lambda: pipe_ends(ctx),
            }
        ),
        "differs": sections.run(
            {"unpicklable": lambda: unpicklable(ctx), "pool_argument": lambda: queue_as_pool_argument(ctx)}
        ),
    }
    if method == "dragon":
        report["dragon"] = sections.run(
            {
                "queue_in_queue": lambda: queue_in_queue(ctx),
                "released": lambda: released(ctx),
                "packing": lambda: packing(ctx),
            }
        )
    print(json.dumps(report))
