"""`apart.py PROG ARGS...`: run PROG as the head, with every process it starts placed on node 1 (the
tests run over two nodes, tests/e2e/placement.py: the head on node 0, its children on node 1, so
each object the head makes has its users on the other node).

PROG runs as `python PROG ARGS...` would run it: as `__main__` (its children find their functions in
it by its path, as spawn's do), its directory first on sys.path, PROG and ARGS as sys.argv. Processes
started by other processes than the head, or from another thread than its main thread, take the
default placement (round robin over the nodes).
"""

import os
import runpy
import sys

from dragon.native import Policy

if __name__ == "__main__":
    prog = os.path.abspath(sys.argv[1])
    sys.argv[:] = sys.argv[1:]
    sys.path[0] = os.path.dirname(prog)
    with Policy(node=1):
        runpy.run_path(prog, run_name="__main__")
