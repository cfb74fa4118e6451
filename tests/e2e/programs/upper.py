"""Print stdin upper-cased."""

import sys

print(sys.stdin.read().upper(), end="")
