"""`on_node`: a process started on a given node, as the node programs start theirs: not a program, a
module they import (it sits next to them: `dragon prog.py` puts the program's folder first on
sys.path, as pool_over_nodes.py)."""

import multiprocessing as mp
from typing import Any

from dragon.native import Policy


def on_node(node: int, target: Any, *args: Any) -> Any:
    """A started `multiprocessing.Process(target, args)` placed on `node` (`Policy(node=...)`)."""
    with Policy(node=node):
        p = mp.Process(target=target, args=args)
        p.start()
    return p
