"""Echo each line of stdin upper-cased as soon as it arrives; print "eof" at end of input."""

import sys

for line in sys.stdin:
    print(line.upper(), end="", flush=True)
print("eof")
