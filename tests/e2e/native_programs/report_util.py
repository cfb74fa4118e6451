"""What the report programs of native_programs/ share (imported from the program's own directory)."""

import os
import time
from collections.abc import Callable


def shm_entries() -> list[str]:
    """The /dev/shm entries of this runtime (`dragon` sets DRAGON_RUN_ID), named semaphores included."""
    prefix = f"dragon.{os.getuid()}.{os.environ['DRAGON_RUN_ID']}."
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith((prefix, "sem." + prefix)))


def error(call: Callable[[], object]) -> str:
    """The name of the exception `call()` raises ("none" if it returns)."""
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return "none"


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Whether `check()` becomes true within `timeout_s` (a bounded poll): a dropped object's entries
    go a moment after its last handle (the reference is given back without waiting for the answer)."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.001)
    return check()
