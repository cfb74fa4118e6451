"""Fds pickled for a child (Connection ends, a shared-ctypes arena) reach it, and passing them leaves
nothing registered in the parent (CPython's test_finalize checks `util._finalizer_registry`); prints
JSON. Run as `prog.py METHOD`. It never imports dragon: under "dragon" the start method is known
through the package's .pth file."""

import gc
import json
import multiprocessing as mp
import sys
from multiprocessing import resource_sharer, util
from typing import Any


def noop() -> None:
    pass


def child(duplex: Any, oneway: Any, arr: Any) -> None:
    arr[0] = 42
    oneway.send("one-way")
    duplex.send(("echo", duplex.recv()))


def pass_fds(ctx: Any) -> dict[str, Any]:
    parent, theirs = ctx.Pipe()
    r, w = ctx.Pipe(duplex=False)
    arr = ctx.RawArray("i", 4)
    p = ctx.Process(target=child, args=(theirs, w, arr))
    p.start()
    theirs.close()  # the child has its own copies from here on
    w.close()
    parent.send("hi")
    out = {"echo": parent.recv(), "oneway": r.recv(), "array": list(arr)}
    p.join()
    out["exit"] = p.exitcode
    return out


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    warm = ctx.Process(target=noop)  # what the first start registers (a background runtime's stop)
    warm.start()
    warm.join()
    del warm
    gc.collect()
    before = set(util._finalizer_registry)
    report = pass_fds(ctx)
    gc.collect()
    report["left"] = sorted(
        getattr(util._finalizer_registry[key]._callback, "__name__", "?")
        for key in set(util._finalizer_registry) - before
    )
    report["sharer_listening"] = resource_sharer._resource_sharer._listener is not None
    print(json.dumps(report))
