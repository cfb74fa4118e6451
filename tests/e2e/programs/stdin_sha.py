"""Read stdin to its end (bytes); print its sha256 and length."""

import hashlib
import sys

data = sys.stdin.buffer.read()
print(hashlib.sha256(data).hexdigest(), len(data))
