"""The `dragon` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dragon` console script."""
    args = sys.argv[1:] if argv is None else argv
    print("usage: dragon [options] PROG [ARGS...]", file=sys.stderr if args else sys.stdout)
    return 2 if args else 0
