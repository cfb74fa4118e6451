"""`dragon status` while Locks of node 0 (the head's) have users on node 1: one held by a process of
node 1, one taken back from a process of node 1 killed holding it (then held by the head). Prints one
JSON report: the pids, the Lock rows of the status table and the Locks of `dragon status --json`."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import warnings
from typing import Any

from dragon.native import Policy

WAIT_S = 30.0


def hold(lock: Any, told: Any, release: Any) -> None:
    lock.acquire()
    told.put(os.getpid())
    release.wait(WAIT_S)
    lock.release()


def take_and_die(lock: Any, told: Any) -> None:
    lock.acquire()
    told.put(os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def status(*args: str) -> str:
    command = [os.path.join(os.path.dirname(sys.executable), "dragon"), "status", os.environ["DRAGON_RUN_ID"], *args]
    env = {**os.environ, "COLUMNS": "300"}  # wide enough that no column is left out
    return subprocess.run(command, capture_output=True, check=True, timeout=WAIT_S, env=env, text=True).stdout


if __name__ == "__main__":
    mp.set_start_method("dragon")
    held, taken = mp.Lock(), mp.Lock()
    told, release = mp.SimpleQueue(), mp.Event()  # a SimpleQueue's put is in before its putter dies
    with Policy(node=1):
        holder = mp.Process(target=hold, args=(held, told, release))
        holder.start()
        holder_pid = told.get()
        victim = mp.Process(target=take_and_die, args=(taken, told))
        victim.start()
        victim_pid = told.get()
    victim.join(WAIT_S)
    with warnings.catch_warnings():  # "process ... of node 1 died holding Lock ...": expected here
        warnings.simplefilter("ignore")
        got = taken.acquire(timeout=WAIT_S)
    table = status()
    objects = json.loads(status("--json"))["objects"]
    taken.release()
    release.set()
    holder.join(WAIT_S)
    print(
        json.dumps(
            {
                "pids": {"head": os.getpid(), "holder": holder_pid, "victim": victim_pid},
                "exits": [victim.exitcode, got, holder.exitcode],
                "table": [line for line in table.splitlines() if " Lock " in line],
                "json": sorted([o["holders"], o["reclaimed_from"]] for o in objects if o["kind"] == "Lock"),
            }
        )
    )
