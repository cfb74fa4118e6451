"""A `multiprocessing.Manager()`'s dict, list and Queue used by processes on every node (issue 17 item 2),
the manager started inside `Policy(node=<the last node>)` (its server still runs on this node: the
stdlib hands it an fd). Prints one JSON report; runs on one node too."""

import json
import multiprocessing as mp
import os
from typing import Any

from dragon.native import Policy


def use(d: Any, lst: Any, q: Any, i: int) -> None:
    node = int(os.environ["DRAGON_INDEX"])
    d[f"p{i}"] = node
    lst.append(node)
    q.put([i, node])


if __name__ == "__main__":
    mp.set_start_method("dragon")
    nodes = int(os.environ["DRAGON_NODES"])
    with Policy(node=nodes - 1):
        manager = mp.Manager()
    with manager:
        d, lst, q = manager.dict(), manager.list(), manager.Queue()
        procs = []
        for i in range(2 * nodes):
            with Policy(node=i % nodes):
                p = mp.Process(target=use, args=(d, lst, q, i))
                p.start()
            procs.append(p)
        for p in procs:
            p.join()
        address = manager.address
        report = {
            "address": address if isinstance(address, str) else list(address),
            "dict": dict(sorted(d.items())),
            "list": sorted(lst),
            "queue": sorted(q.get(timeout=30) for _ in procs),
            "exits": [p.exitcode for p in procs],
        }
    print(json.dumps(report))
