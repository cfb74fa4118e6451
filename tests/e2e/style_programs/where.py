"""What the style programs print to stderr about where their processes ran (the test checks that they
spread over the nodes; stdout must be the same whatever the nodes)."""

import os
import sys
from collections.abc import Iterable


def node() -> int:
    """The node this process runs on (0 outside a runtime of several nodes)."""
    return int(os.environ.get("DRAGON_INDEX", "0") or 0)


def report(nodes: Iterable[int]) -> None:
    print("nodes used:", *sorted(set(nodes)), file=sys.stderr, flush=True)
