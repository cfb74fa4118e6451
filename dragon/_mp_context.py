"""The multiprocessing start method "dragon" (spec §7.3): spawn semantics, processes made by the runtime.

`import dragon` registers `DragonContext` as the start method "dragon" (see `dragon._mp_hook`), so
`multiprocessing.set_start_method("dragon")` and `multiprocessing.get_context("dragon")` work. It is
the "spawn" context with another `Process._Popen`: `DragonPopen` (`dragon._mp_popen`) pickles what
spawn pickles and asks Global Services to start `python -c <dragon._mp_child>`, which receives the
pickle in its GSPingProc handshake. Everything else (queues, locks, shared ctypes, Pool, Manager) is
the standard library's, working as under spawn.

Differences from the reference (spec §7.3): `Process.pid` is the real OS pid, and `p_uid` is an
extra attribute; `sentinel` is a real fd (a pidfd) that `multiprocessing.connection.wait` accepts.
"""

from __future__ import annotations

import os
from multiprocessing import context, process
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dragon._mp_popen import DragonPopen


class DragonProcess(process.BaseProcess):
    """A multiprocessing Process started through the Dragon runtime (as a managed process)."""

    _start_method = "dragon"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> DragonPopen:
        from dragon._mp_popen import DragonPopen

        return DragonPopen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        """The process is spawned, not forked: nothing to do (as SpawnProcess)."""

    @property
    def p_uid(self) -> int | None:
        """The runtime's id of the process (its p_uid); None before start (or unknown)."""
        popen = getattr(self, "_popen", None)
        if popen is not None:
            p_uid = getattr(popen, "p_uid", None)
            return p_uid if isinstance(p_uid, int) else None
        if self is process.current_process():
            value = os.environ.get("DRAGON_MY_PUID", "")
            return int(value) if value.isdigit() else None
        return None


class DragonContext(context.SpawnContext):
    """The "dragon" start method: spawn semantics, every process created by Global Services."""

    _name = "dragon"
    Process = DragonProcess  # type: ignore[assignment]  # typeshed pins SpawnContext.Process
