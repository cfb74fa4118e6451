"""What the report programs of native_programs/ share (imported from the program's own directory)."""

import os
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
