"""Head program for test_native_pipes: a child's stdin/stdout/stderr as PIPEs (spec §5.5)."""

import json
import sys

from dragon.errors import ChannelDestroyed
from dragon.native import PIPE, Channel, Process

UPPER = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d.upper()); sys.stderr.write('bye')"
p = Process(sys.executable, ["-c", UPPER], stdin=PIPE, stdout=PIPE, stderr=PIPE)
p.start()
assert p.stdin_conn is not None and p.stdout_conn is not None and p.stderr_conn is not None
payload = bytes(range(256)) * 1000  # 250 KiB, not UTF-8
p.stdin_conn.write(payload[:100_000])
p.stdin_conn.write(payload[100_000:])
p.stdin_conn.close()  # end of file
code = p.join(30)  # the output is read after the exit: the pipe keeps it
out = p.stdout_conn.read(10)
err = p.stderr_conn.read(10)
names = [p.stdout_conn.name, p.stderr_conn.name]
p.stdout_conn.close()
p.stderr_conn.close()
gone = []
for name in names:
    try:
        Channel.attach(name=name)
        gone.append(False)
    except ChannelDestroyed:
        gone.append(True)
print(
    json.dumps(
        {
            "code": code,
            "out_ok": out == payload.upper(),
            "err": err.decode(),
            "gone": gone,
            "plain": Process(sys.executable, ["-c", "pass"]).stdout_conn is None,
        }
    )
)
