"""A Pool of 4 workers over the nodes (round robin): its results, and the node of each worker."""

import json
import multiprocessing as mp
import os
from typing import Any


def announce(q: Any) -> None:
    q.put(os.environ["DRAGON_INDEX"])


def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    with mp.Pool(4, initializer=announce, initargs=(q,)) as pool:
        results = pool.map(square, range(40), chunksize=1)
        workers = sorted(q.get(timeout=60) for _ in range(4))
    print(json.dumps({"squares": results, "workers": workers}))
