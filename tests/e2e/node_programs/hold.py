"""Starts one child per node that sleeps until killed, prints "ready" when all run, then waits for them.

The fault tests kill a service of a node while this runs and expect the run to end in order.
"""

import multiprocessing as mp
import os
import sys
import time


def sleeper() -> None:
    print(f"sleeper on node {os.environ.get('DRAGON_INDEX')} pid {os.getpid()}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    n = int(os.environ.get("DRAGON_NODES", "1"))
    procs = [mp.Process(target=sleeper) for _ in range(n)]
    for p in procs:
        p.start()
    print("ready", flush=True)
    for p in procs:
        p.join()
    print("joined", [p.exitcode for p in procs], flush=True)
    sys.exit(3)
