"""Pool of the "dragon" start method (task and result queues on channels) against the stdlib's; prints JSON.

Run as `prog.py METHOD [SECTIONS]` (sections.py) ("spawn" under plain python, "dragon" under `dragon` or plain python). The
"same" part of the report must not depend on the method; "dragon" adds what only the channel pool
does (its channels destroyed when it ends; workers SIGKILLed while waiting for tasks do not wedge it).
"""

import functools
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import pool as mp_pool
from typing import Any

import sections

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 60.0


def square(x: int) -> int:
    return x * x


def fail(x: int) -> int:
    raise KeyError(x)


def make_bytes(n: int) -> bytes:
    return bytes([n % 251]) * n


def unpicklable(_: int) -> Any:
    return lambda: None


def pid(_: int) -> int:
    return os.getpid()


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def set_flag(value: int) -> None:
    global FLAG
    FLAG = value


FLAG = 0


def flag(_: int) -> int:
    return FLAG


def slow_numbers(gate: threading.Event) -> Iterator[int]:
    """Two tasks, then a pause until the test saw their results: a task must not wait for the next."""
    yield 1
    yield 2
    gate.wait(WAIT_S)
    yield 3


class Scale:
    """A callable object and a bound method whose state changes between maps: sent with each task."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return self.k * x

    def times(self, x: int) -> int:
        return self.k * x


def callables(pool: Any) -> dict[str, Any]:
    """Every kind of callable a task can carry (tasks name module-level functions in a compact form
    under "dragon", `dragon.mp.pool._encode_task`; everything else travels as it is)."""
    out: dict[str, Any] = {}
    scale = Scale(2)
    out["builtin"] = pool.map(abs, [-1, -2], chunksize=1)
    out["starmap_builtin"] = pool.starmap(pow, [(2, 3), (3, 2)], chunksize=1)
    out["starmap_function"] = pool.starmap(divmod, [(7, 2)])
    out["object"] = pool.map(scale, [1, 2], chunksize=1)
    out["method"] = pool.map(scale.times, [1, 2])
    scale.k = 10  # the next tasks carry the new state
    out["object_changed"] = pool.map(scale, [1, 2], chunksize=1)
    out["method_changed"] = pool.apply(scale.times, (3,))
    out["partial"] = pool.map(functools.partial(pow, 2), [3, 4])
    out["method_of_builtin_object"] = pool.map("abcab".count, ["a", "c"])
    out["apply_kwargs"] = pool.apply(int, ("ff",), {"base": 16})
    out["bytes_argument"] = pool.apply(len, (b"\x01\x02",))
    try:
        pool.map(lambda x: x, [1])
    except Exception as exc:  # pickling fails in the pool process, as in the stdlib
        out["lambda"] = type(exc).__name__
    return out


def same(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ctx.Pool(2, initializer=set_flag, initargs=(7,)) as pool:
        out["map1"] = pool.map(square, range(2000), chunksize=1) == [x * x for x in range(2000)]
        out["map_async"] = pool.map_async(square, range(10)).get(WAIT_S)
        out["imap_chunked"] = list(pool.imap(square, range(7), chunksize=3))
        out["imap_unordered"] = sorted(pool.imap_unordered(square, range(5)))
        out["callables"] = callables(pool)
        out["initializer"] = sorted(set(pool.map(flag, range(4))))
        out["big"] = [len(b) for b in pool.map(make_bytes, [1 << 20, 3 << 20, 10], chunksize=1)]
        got: list[Any] = []
        errors: list[str] = []
        done = threading.Event()
        pool.apply_async(square, (3,), callback=got.append)
        pool.apply_async(fail, (4,), error_callback=lambda e: (errors.append(repr(e)), done.set()))
        done.wait(WAIT_S)
        pool.map_async(square, [5, 6], callback=got.append).wait(WAIT_S)
        out["callbacks"] = sorted(map(str, got)), errors
        try:
            pool.apply(unpicklable, (0,))
        except Exception as exc:  # the stdlib's MaybeEncodingError, from the worker
            out["unpicklable_result"] = type(exc).__name__
        gate = threading.Event()
        it = pool.imap(square, slow_numbers(gate))
        out["streamed"] = [next(it, None), next(it, None)]  # would hang if tasks 1, 2 were held back
        gate.set()
        out["streamed"].append(next(it, None))
    with ctx.Pool(2) as pool:
        running = pool.apply_async(nap, (30,))
        t0 = time.monotonic()
        pool.terminate()  # with a task running
        out["terminate_fast"] = time.monotonic() - t0 < 10 and not running.ready()
    pool.join()
    out["terminated_workers"] = [p.exitcode is not None for p in pool._pool]
    return out


def channel_files(pool: Any) -> Callable[[], list[bool]]:
    names = [sdesc for q in (pool._inqueue, pool._outqueue) for _, sdesc in q._hold.refs]
    return lambda: [os.path.exists(f"/dev/shm/{n}") for n in names]


def dragon_only(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pool = ctx.Pool(2)
    out["type"] = f"{type(pool).__module__}.{type(pool).__qualname__}"
    out["plain_mp_Pool"] = type(mp.Pool(1)).__module__  # the default context routes to ours too
    exists = channel_files(pool)
    out["channels_while_running"] = exists()
    pool.map(square, range(10))
    # Both workers wait for tasks (the stdlib's would be blocked in the pipe lock): SIGKILL them; the
    # pool replaces them, and the task channel still works.
    victims = [p.pid for p in pool._pool]
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while any(p.pid in victims for p in pool._pool) and time.monotonic() < deadline:
        time.sleep(0.01)  # the pool's own worker handler replaces them; poll its list (bounded)
    out["after_kill"] = pool.map(square, range(20), chunksize=1) == [x * x for x in range(20)]
    pool.close()
    pool.join()
    out["channels_after_join"] = exists()  # still there: the pool object lives on
    pool.terminate()
    out["channels_after_terminate"] = exists()
    return out


def direct(ctx: Any) -> list[Any]:
    """A Pool built directly: the stdlib's pipes (their fds handed to the workers), dragon processes."""
    pool = mp_pool.Pool(2, context=ctx)
    try:
        return [type(pool._inqueue).__module__, pool.map(square, range(5))]
    finally:
        pool.terminate()
        pool.join()


if __name__ == "__main__":
    method = sys.argv[1]
    mp.set_start_method(method)
    ctx = mp.get_context(method)
    parts = {"same": lambda: same(ctx)}
    if method == "dragon":
        parts |= {"dragon": lambda: dragon_only(ctx), "direct": lambda: direct(ctx)}
    print(json.dumps(sections.run(parts)), flush=True)
