"""Head for the fault tests: SIGINT only makes it say "ignoring"; it keeps running."""

import os
import signal
import time
from types import FrameType


def _ignore(signum: int, frame: FrameType | None) -> None:
    os.write(1, b"ignoring\n")


signal.signal(signal.SIGINT, _ignore)
print(f"ready {os.getpid()} {os.getppid()} {os.environ.get('DRAGON_RUN_ID', '')}", flush=True)
while True:
    time.sleep(0.1)
