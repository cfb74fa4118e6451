"""Create COUNT processes (`true`) from THREADS threads at once, join them all; print JSON."""

import json
import sys
import threading
import time

from dragon.native import Process

COUNT, THREADS = int(sys.argv[1]), int(sys.argv[2])
procs: list[Process] = []
lock = threading.Lock()
errors: list[str] = []


def make(n: int) -> None:
    try:
        for _ in range(n):
            p = Process("true")
            p.start()
            with lock:
                procs.append(p)
    except Exception as exc:
        errors.append(repr(exc))


t0 = time.monotonic()
threads = [threading.Thread(target=make, args=(COUNT // THREADS,)) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
created = time.monotonic() - t0
codes = [p.join() for p in procs]
elapsed = time.monotonic() - t0
print(
    json.dumps(
        {
            "errors": errors,
            "codes": codes,
            "p_uids": len({p.p_uid for p in procs}),
            "create_s": created,
            "total_s": elapsed,
        }
    )
)
