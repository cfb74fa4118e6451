"""Start a process that blocks receiving on a channel, kill it once it is blocked; print JSON."""

import json
import sys
import time

from dragon.native import Channel, Process

chan = Channel.create(name="blocking")
receiver = Process(sys.executable, ["-c", "from dragon.native import Channel; Channel.attach(name='blocking').recv()"])
receiver.start()
deadline = time.monotonic() + 30
while chan.statistics().blocked_receivers == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
blocked = chan.statistics().blocked_receivers
alive = receiver.is_alive
receiver.kill()
code = receiver.join()
chan.destroy()
print(json.dumps({"blocked": blocked, "alive_before_kill": alive, "code": code, "returncode": receiver.returncode}))
