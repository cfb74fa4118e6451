"""Create and destroy COUNT channels through GS; print JSON (time, /dev/shm entries before and after)."""

import json
import os
import sys
import time

from dragon.native import Channel

COUNT = int(sys.argv[1])
prefix = f"dragon.{os.getuid()}.{os.environ['DRAGON_RUN_ID']}."


def shm_entries() -> int:
    return sum(1 for n in os.listdir("/dev/shm") if n.startswith(prefix))


before = shm_entries()
t0 = time.monotonic()
c_uids = []
for i in range(COUNT):
    ch = Channel.create(capacity=4, block_size=256)
    ch.send_bytes(b"%d" % i)
    ok = ch.recv_bytes() == b"%d" % i
    c_uids.append(ch.c_uid)
    ch.destroy()
    if not ok:
        break
elapsed = time.monotonic() - t0
listed = set(Channel.list())
print(
    json.dumps(
        {
            "count": len(c_uids),
            "distinct": len(set(c_uids)),
            "listed": all(c in listed for c in c_uids),
            "shm_before": before,
            "shm_after": shm_entries(),
            "seconds": elapsed,
        }
    )
)
