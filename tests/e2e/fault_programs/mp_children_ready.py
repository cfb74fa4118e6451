"""Head for the fault tests: starts three "dragon" start-method children that sleep (made by the fork
server), says who they are ("children PID..."), then who it is ("ready ..."), and runs until stopped."""

import multiprocessing as mp
import os
import time

import dragon  # noqa: F401  (registers the start method)


def sleep_forever() -> None:
    time.sleep(3600)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    children = [mp.Process(target=sleep_forever) for _ in range(3)]
    for p in children:
        p.start()
    print("children", *(p.pid for p in children), flush=True)
    print(f"ready {os.getpid()} {os.getppid()} {os.environ.get('DRAGON_RUN_ID', '')}", flush=True)
    while True:
        time.sleep(0.1)
