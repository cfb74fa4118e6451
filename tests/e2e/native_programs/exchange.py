"""Two processes attach to channels by name and exchange COUNT messages each way; print JSON.

As head (no argument): create the channels, start "ping" and "pong", join them. As ping: send
0..COUNT-1 and check each echo. As pong: echo COUNT messages, each plus one.
"""

import json
import os
import sys
import time

from dragon.native import Channel, Process

COUNT = 10_000
role = sys.argv[1] if len(sys.argv) > 1 else "head"
if role == "head":
    there, back = Channel.create(name="there", capacity=64), Channel.create(name="back", capacity=64)
    t0 = time.monotonic()
    peers = [Process(sys.executable, [os.path.abspath(__file__), r], name=r) for r in ("ping", "pong")]
    for p in peers:
        p.start()
    codes = [p.join() for p in peers]
    elapsed = time.monotonic() - t0
    there.destroy()
    back.destroy()
    print(json.dumps({"codes": codes, "seconds": elapsed}))
elif role == "ping":
    there, back = Channel.attach(name="there"), Channel.attach(name="back")
    for i in range(COUNT):
        there.send(i)
        got = back.recv(timeout=30)
        if got != i + 1:
            sys.exit(f"ping: sent {i}, got back {got}")
else:
    there, back = Channel.attach(name="there"), Channel.attach(name="back")
    for i in range(COUNT):
        got = there.recv(timeout=30)
        if got != i:
            sys.exit(f"pong: expected {i}, got {got}")
        back.send(got + 1)
