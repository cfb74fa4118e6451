"""Each of N multiprocessing children (start method "dragon") prints the node it runs on; the head too.

argv: N (default 4). Under `dragon --nodes K` the default placement spreads them round robin.
"""

import multiprocessing as mp
import os
import sys


def report(i: int) -> None:
    print(f"child {i} node {os.environ.get('DRAGON_INDEX', '?')} pid {os.getpid()}", flush=True)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    print(f"head node {os.environ.get('DRAGON_INDEX', '?')} of {os.environ.get('DRAGON_NODES', '?')}", flush=True)
    procs = [mp.Process(target=report, args=(i,)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("exitcodes", [p.exitcode for p in procs], flush=True)
