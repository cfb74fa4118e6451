"""Pool, Manager, daemons, grandchildren and shared_memory of the standard library; prints JSON.

Run as `prog.py METHOD [SECTIONS]` ("spawn" under plain python, "dragon" under `dragon`; sections as
sections.py says): the output must not depend on the method.
"""

import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing import shared_memory
from typing import Any

import sections

import dragon  # noqa: F401  (registers the start method)


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def fail(x: int) -> int:
    raise KeyError(x)


def worker_pid(_: int) -> int:
    time.sleep(0.01)
    return os.getpid()


def fill(d: Any, lst: Any, key: str) -> None:
    d[key] = os.getpid() > 0
    lst.append(key)


def nested(q: Any) -> None:
    """A child that starts a grandchild with the same start method (and a Pool of its own)."""
    inner = mp.Queue()
    p = mp.Process(target=square_into, args=(inner, 7))
    p.start()
    got = inner.get(timeout=30)
    p.join()
    with mp.Pool(2) as pool:
        q.put([got, p.exitcode, pool.map(square, range(4)), mp.parent_process() is not None])


def square_into(q: Any, x: int) -> None:
    q.put(x * x)


def sleep_forever() -> None:
    time.sleep(600)


def write_shm(name: str) -> None:
    shm = shared_memory.SharedMemory(name)
    shm.buf[:5] = b"hello"
    shm.close()


def pools() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with mp.Pool(4) as pool:
        out["map"] = pool.map(square, range(20))
        out["imap"] = list(pool.imap(square, range(5)))
        out["imap_unordered"] = sorted(pool.imap_unordered(square, range(5)))
        out["starmap"] = pool.starmap(add, [(1, 2), (3, 4)])
        out["apply"] = pool.apply(add, (5, 6))
        out["apply_async"] = pool.apply_async(square, (9,)).get(timeout=30)
        try:
            pool.apply_async(fail, (1,)).get(timeout=30)
        except KeyError as exc:
            out["error"] = repr(exc)
        out["workers"] = len(set(pool.map(worker_pid, range(40), chunksize=1))) > 1
    with mp.Pool(2, maxtasksperchild=1) as pool:
        out["maxtasksperchild"] = pool.map(square, range(6), chunksize=1)
    pool = mp.Pool(2)
    pool.terminate()
    pool.join()
    return out


def manager() -> dict[str, Any]:
    with mp.Manager() as manager:
        d, lst = manager.dict(), manager.list()
        ps = [mp.Process(target=fill, args=(d, lst, f"k{i}")) for i in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        return {"manager": [dict(sorted(d.items())), sorted(lst)]}


def nesting() -> dict[str, Any]:
    q = mp.Queue()
    p = mp.Process(target=nested, args=(q,))
    p.start()
    out = {"nested": q.get(timeout=60)}
    p.join()
    out["nested_exit"] = p.exitcode
    return out


def shared_memory_by_name() -> dict[str, Any]:
    shm = shared_memory.SharedMemory(create=True, size=16)
    p = mp.Process(target=write_shm, args=(shm.name,))
    p.start()
    p.join()
    out = {"shared_memory": bytes(shm.buf[:5]).decode()}
    shm.close()
    shm.unlink()
    return out


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    out: dict[str, Any] = {}
    parts = {"pools": pools, "manager": manager, "nested": nesting, "shared_memory": shared_memory_by_name}
    for part in sections.run(parts).values():
        out.update(part)
    daemon = mp.Process(target=sleep_forever, daemon=True)
    daemon.start()
    out["daemon_alive"] = daemon.is_alive()
    print(json.dumps(out), flush=True)
    print(daemon.pid, file=sys.stderr, flush=True)  # the test checks it was ended with this program
