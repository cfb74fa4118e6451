"""A Pool of 4 workers over the nodes (round robin), as pool_nodes.py and queues_across.py run it: not
a program, a module they import. It sits next to them: `dragon prog.py` puts the program's folder
first on sys.path, and the Pool's workers (spawned) get the head's sys.path, so they find `announce`
and `square` here too (as mp_programs/ share sections.py and queues.py)."""

import multiprocessing as mp
import os
from typing import Any


def announce(q: Any) -> None:
    """A worker's initializer: its node into `q`."""
    q.put(os.environ["DRAGON_INDEX"])


def square(x: int) -> int:
    return x * x


def pool_over_nodes(n: int) -> tuple[list[int], list[str]]:
    """The squares of range(n) from Pool(4) (one task a chunk), and the node of each worker, sorted."""
    workers = mp.Queue()
    with mp.Pool(4, initializer=announce, initargs=(workers,)) as pool:
        results = pool.map(square, range(n), chunksize=1)
        return results, sorted(workers.get(timeout=60) for _ in range(4))
