"""Whether a process is alive: the one rule the whole runtime uses (a zombie is dead)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited.

    A zombie (exited, not yet reaped by its parent) is dead: it runs no more code, and its parent may
    not reap it for long (or ever, if that parent is stuck). A process of another user is alive (the
    kernel says it exists even where it forbids signalling it or /proc hides it).
    Raises ValueError for a pid below 1 (0 and negative pids name process groups)."""
    if pid < 1:
        raise ValueError(f"a process id is a positive integer, not {pid}")
    if not _exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # hidden by /proc's hidepid option, or reaped since
        return _exists(pid)
    # The command name in parentheses may hold spaces and parentheses: the state follows the last ")".
    return stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def _exists(pid: int) -> bool:
    """Whether the kernel has a process `pid` (a zombie too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
