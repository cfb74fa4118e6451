"""Under `--on-node-loss continue`: a sleeper on node 1, whose node the test kills; the head's join of it
returns (exit code -9, never a hang) and the program goes on with a new child on node 0."""

import multiprocessing as mp
import os
import time

from dragon.native import Policy


def sleeper() -> None:
    print(f"sleeper on node {os.environ['DRAGON_INDEX']} pid {os.getpid()}", flush=True)
    time.sleep(600)


def hello() -> None:
    print(f"hello from node {os.environ['DRAGON_INDEX']}", flush=True)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    with Policy(node=1):
        p = mp.Process(target=sleeper)
        p.start()
    print("ready", flush=True)
    p.join()
    print("joined node 1's sleeper:", p.exitcode, flush=True)
    with Policy(node=0):
        q = mp.Process(target=hello)
        q.start()
    q.join()
    print("and went on:", q.exitcode, flush=True)
