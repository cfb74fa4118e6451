"""Write `argv[1]` bytes that are not valid UTF-8 on stdout; say their sha256 and length on stderr."""

import hashlib
import os
import sys

size = int(sys.argv[1])
head = b"\xff\xfe\x80 not UTF-8 \xc3\x28\n"
data = head + os.urandom(size - len(head))
assert len(data) == size
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
print(hashlib.sha256(data).hexdigest(), len(data), file=sys.stderr)
