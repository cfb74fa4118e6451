"""Write `argv[1]` bytes on stdout in 64 KiB writes; say on stderr how long the writing took (seconds)."""

import sys
import time

size = int(sys.argv[1])
chunk = b"x" * 65535 + b"\n"
out = sys.stdout.buffer
start = time.monotonic()
for _ in range(size // len(chunk)):
    out.write(chunk)
out.flush()
print(f"{time.monotonic() - start:.3f}", file=sys.stderr)
