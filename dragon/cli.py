"""The `dragon` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dragon` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: dragon [options] PROG [ARGS...]")
        return 0
    print("usage: dragon [options] PROG [ARGS...]", file=sys.stderr)
    return 2
