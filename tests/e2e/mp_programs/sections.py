"""Which sections of its report a test program runs: `prog.py METHOD [NAME...] [-NAME...]` runs only
the NAMEd ones (all if none is named) and none of the -NAMEd ones. The tests run over several nodes
leave out, or run alone, the sections that do not cross nodes (tests/e2e/placement.py)."""

import sys
from collections.abc import Callable
from typing import Any

_only = [a for a in sys.argv[2:] if not a.startswith("-")]
_without = [a[1:] for a in sys.argv[2:] if a.startswith("-")]


def wanted(name: str) -> bool:
    return (not _only or name in _only) and name not in _without


def run(sections: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The results of the wanted sections, in their order."""
    return {name: section() for name, section in sections.items() if wanted(name)}
