"""dragon.native Value and Array: every API point, sharing with children, cleanup; prints JSON.

As head (no argument): exercise the API, share objects with multiprocessing children of the "dragon"
start method (as Process arguments: locked, several processes adding under the lock) and with a
native Process child (pickled through a Channel: unlocked), and count the run's /dev/shm entries
before and after. As "child": take objects from the channel "shared", change them, exit.
"""

import ctypes
import gc
import json
import multiprocessing as mp
import os
import pickle
import sys
from typing import Any

from report_util import error, eventually, shm_entries

import dragon  # noqa: F401  (registers the start method)
from dragon.native import Array, Channel, Process, Value

ADDERS, ADDS = 4, 500


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


class WithPointer(ctypes.Structure):
    _fields_ = [("p", ctypes.c_char_p)]


def values() -> dict[str, Any]:
    out: dict[str, Any] = {}
    v = Value("i")
    out["int_default"] = v.value
    v.value = 7
    v.value += 3
    out["int_set"] = v.value
    out["double"] = Value("d", 2.5).value
    out["ctype"] = Value(ctypes.c_ushort, 65535).value
    out["char"] = Value("c", b"z").value
    out["wchar"] = Value("u", "é").value
    s = Value(Point, (1, 2.5))
    out["struct"] = [s.value.x, s.value.y]
    s.value.y = 7.0
    out["struct_field"] = s.value.y
    s.value = Point(3, 4.5)
    out["struct_from_struct"] = [s.value.x, s.value.y]
    s.value = (5,)
    out["struct_from_short_tuple"] = [s.value.x, s.value.y]
    out["struct_repr"] = repr(s.value)
    out["repr"] = "dragon.native.Value c_int value=10" in repr(v)
    out["no_lock"] = [error(v.get_lock), error(v.acquire)]
    locked = Value("i", 1, lock=True)
    out["lock_with"] = error(lambda: locked.__enter__() and locked.__exit__(None, None, None))
    out["lock_reentrant"] = [locked.acquire(), locked.acquire(), locked.release(), locked.release()]
    given = mp.get_context("dragon").Lock()
    out["given_lock"] = Value("i", lock=given).get_lock() is given
    out["pickled"] = pickle.loads(pickle.dumps(v)).value
    out["bad_typecode"] = error(lambda: Value("x"))
    out["pointer_type"] = error(lambda: Value(ctypes.c_char_p))
    out["pointer_field"] = error(lambda: Value(WithPointer))
    out["not_a_type"] = error(lambda: Value(3))  # type: ignore[arg-type]
    out["bad_lock"] = error(lambda: Value("i", lock="yes"))
    out["bad_value"] = error(lambda: Value("i", "text"))
    out["bad_struct_value"] = error(lambda: setattr(s, "value", 3))
    v.close()
    v.close()
    out["closed"] = [error(lambda: v.value), error(lambda: setattr(v, "value", 1)), error(lambda: pickle.dumps(v))]
    out["closed_repr"] = "closed" in repr(v)
    return out


def arrays() -> dict[str, Any]:
    out: dict[str, Any] = {}
    a = Array("i", 5)
    out["zeros"] = a[:]
    out["len"] = len(a)
    a[0], a[-1] = 1, 9
    a[1:3] = [2, 3]
    out["items"] = [a[0], a[-1], a[1:3], a[::2], list(a)]
    out["index_error"] = [error(lambda: a[5]), error(lambda: a.__setitem__(5, 1))]
    out["slice_length"] = error(lambda: a.__setitem__(slice(0, 2), [1, 2, 3]))
    out["from_list"] = Array("d", [0.5, 1.5]).__getitem__(slice(None))
    out["from_range"] = Array(ctypes.c_long, range(3))[:]
    c = Array("c", b"hello")
    out["chars"] = [c.value, c.raw, c[1:3], c[0]]
    c.value = b"hi"
    out["chars_value_set"] = [c.value, c.raw]
    c.raw = b"world"
    out["chars_raw_set"] = c.value
    u = Array("u", 4)
    u.value = "ab"
    out["wchars"] = [u.value, u[0]]
    out["no_value"] = [error(lambda: a.value), error(lambda: a.raw), error(lambda: u.raw)]
    p = Array(Point, [(1, 2), (3, 4)])
    p[1].y = 5.5
    out["structs"] = [[q.x, q.y] for q in p]
    p[0] = (7, 8)
    out["struct_set"] = [p[0].x, p[0].y, len(p[:])]
    out["struct_index_error"] = error(lambda: p[2])
    out["lock_default"] = [type(a.get_lock()).__name__, a.acquire(), a.release()]
    with a:
        a[0] += 1
    out["with_lock"] = a[0]
    out["no_lock"] = error(Array("i", 1, lock=False).get_lock)
    out["pickled"] = pickle.loads(pickle.dumps(Array("i", [4, 5], lock=False)))[:]
    out["negative_size"] = error(lambda: Array("i", -1))
    out["bad_initializer"] = error(lambda: Array("i", ["a"]))
    out["empty"] = [len(Array("i", 0)), Array("i", [])[:]]
    out["repr"] = "dragon.native.Array c_int[5]" in repr(a)
    a.close()
    out["closed"] = [error(lambda: a[0]), error(lambda: len(a[:]))]
    return out


def add(total: Any, counts: Any, index: int) -> None:
    """An adder of the multiprocessing children: ADDS increments of each object, under their locks."""
    for _ in range(ADDS):
        with total.get_lock():
            total.value += 1
        with counts:
            counts[0] += 1
    counts[index + 1] = index + 1  # its own element: no lock needed


def with_mp_children() -> dict[str, Any]:
    ctx = mp.get_context("dragon")
    total, counts = Value("q", 0, lock=True), Array("i", ADDERS + 1)
    procs = [ctx.Process(target=add, args=(total, counts, i)) for i in range(ADDERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return {"codes": [p.exitcode for p in procs], "total": total.value, "counts": counts[:]}


def with_native_child() -> dict[str, Any]:
    value, array, point = Value("d", 1.5), Array("c", b"parent", lock=False), Value(Point, (1, 1.0))
    chan = Channel.create(name="shared")
    chan.send((value, array, point))
    child = Process(sys.executable, [os.path.abspath(__file__), "child"])
    child.start()
    code = child.join()
    chan.destroy()
    return {"code": code, "value": value.value, "array": array.value, "point": [point.value.x, point.value.y]}


def child() -> None:
    value, array, point = Channel.attach(name="shared").recv(timeout=30)
    value.value *= 2
    array.value = b"child"
    point.value.x = 42


def record_lifetimes() -> dict[str, Any]:
    """A record goes when its last holder lets go: by close, by garbage collection, or (a copy
    unpickled in this process) when each copy has let go."""
    before = set(shm_entries())  # (entries of objects dropped before may still go meanwhile)
    v = Value("i", 1)
    mine = set(shm_entries()) - before

    def left() -> int:
        return len(mine & set(shm_entries()))

    made = left()
    copy = pickle.loads(pickle.dumps(v))
    v.close()
    kept_by_copy = left()
    copy.value = 5
    del copy
    gc.collect()
    eventually(lambda: left() == 0)
    after_gc = left()
    before = set(shm_entries())
    a = Array("i", 3)
    mine = set(shm_entries()) - before
    del a
    gc.collect()
    eventually(lambda: left() == 0)
    return {"made": made, "kept_by_copy": kept_by_copy, "after_gc": after_gc, "array_gc": left()}


if __name__ == "__main__" and sys.argv[1:] == ["child"]:
    child()
elif __name__ == "__main__":
    before = shm_entries()
    report = {
        "values": values(),
        "arrays": arrays(),
        "mp": with_mp_children(),
        "native": with_native_child(),
        "lifetimes": record_lifetimes(),
    }
    gc.collect()
    eventually(lambda: set(shm_entries()) <= set(before))
    report["shm_left"] = sorted(set(shm_entries()) - set(before))
    print(json.dumps(report, default=repr))  # bytes as their repr
