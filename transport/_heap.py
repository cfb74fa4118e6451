"""Freed memory kept for reuse in a process that takes large messages (glibc's malloc, `mallopt`).

Why. Each large message a process takes from a channel becomes a fresh bytes object. By default
glibc maps a block of 128 KiB or more on its own and unmaps it when it is freed, raising that
threshold as such blocks are freed (up to 32 MiB), and it trims the top of its heap once more than
twice the threshold is free there. A process that takes 1 MiB messages one after the other so gives
the memory of each back and faults every page of the next one in again: a queue's consumer spent
about 450 µs per 1 MiB item, a third of a CPU at 730 MiB/s, most of it in page faults (a producer on
another node, CURVE, two isolated nodes). With blocks below KEEP_BELOW taken from the heap and up to
twice that kept free at its top, it reuses the same pages: 730-750 -> 880-940 MiB/s (alternate runs).

**[choice]** Only a process that takes a message of at least BIG bytes (`_Ring.take`, `take_many`, a
side file) changes the setting, once, and a transport agent at its start (ZeroMQ allocates each
incoming message): other processes pay nothing, not even the import of ctypes. The price: such a
process keeps up to 2 * KEEP_BELOW of freed memory at the top of its heap, and its blocks below
KEEP_BELOW come from the heap rather than mappings of their own, which is where glibc's own
adjustment ends up after a freed block of that size. Elsewhere than glibc (no `mallopt`, or one
that refuses) nothing changes.
"""

from __future__ import annotations

from typing import Final

BIG: Final = 256 << 10
"""A message at least this large taken by a process makes it keep freed memory (`keep_freed_memory`)."""
KEEP_BELOW: Final = 8 << 20
"""Blocks smaller than this come from the heap (M_MMAP_THRESHOLD); twice this may stay free at its top
(M_TRIM_THRESHOLD)."""
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

_result: bool | None = None  # None until `keep_freed_memory` ran in this process


def keep_freed_memory() -> bool:
    """Set the process's malloc to keep freed memory for reuse (see the module docstring), once;
    whether it is set (False elsewhere than glibc), the same answer every time."""
    global _result
    if _result is None:
        _result = False  # tried once, whatever happens
        try:
            import ctypes

            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        _result = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * KEEP_BELOW))
    return _result


def kept() -> bool:
    """Whether `keep_freed_memory` ran in this process (whatever it could do)."""
    return _result is not None
