"""The runtimes `dragon.serve` runs in this process, for the blocking API and the start method "dragon".

A program that embeds a runtime (`handle = await nursery.start(dragon.serve)`, or `trio.run(dragon.serve)`
with other threads) is not one of its managed processes: it has no launch parameters. `dragon.serve`
records each runtime here once it takes requests (`register`) and forgets it just before its teardown
begins (`unregister`, which runs the stop hooks: the connection made for it closes). Meanwhile
`dragon.client.gs_client.connection()` connects this process to it as an external client, as it connects
the owner of a background runtime: a reply channel of its own, requests sent as the launcher (p_uid 0).

Replies arrive on that channel, never through the trio loop that runs the launcher, so a blocking
call works even when made in that very loop. It blocks the loop while it waits, though, and the loop
is what takes the managed processes' output from Local Services; the client therefore checks, while
it waits in that thread, that the runtime is not waiting for the loop (`GSClient`, `loop_thread`).

Which runtime **[choice]**: the oldest one that still runs in this process (`current`). A connection,
once made, stays with its runtime until that runtime ends; the next call then connects to the oldest
one left. Reach any other runtime through `dragon.aio` with its handle. The start method "dragon"
uses the same connection, so its processes run in the embedded runtime, not in a background one.

A forked child of the program (os.fork, the start method "fork") does not own the runtimes of its
parent: it forgets them, as it forgets a background runtime.

Plain Python, no trio: `dragon.client.gs_client` imports this in every process, so it imports nothing
costly either (no dataclasses, logging only to report a failing hook: issue #12 item 4).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class EmbeddedRuntime:
    """A runtime of `dragon.serve` in this process: its run id, and the thread whose trio loop runs
    its launcher."""

    def __init__(self, run_id: str, loop_thread: int) -> None:
        self.run_id = run_id
        self.loop_thread = loop_thread
        self.stop_hooks: list[Callable[[], None]] = []
        self.running = True


_lock = threading.Lock()
_runtimes: list[EmbeddedRuntime] = []


def register(run_id: str) -> EmbeddedRuntime:
    """Record the runtime `run_id`, up now; called by `dragon.serve` in the thread of its trio loop."""
    rt = EmbeddedRuntime(run_id=run_id, loop_thread=threading.get_ident())
    with _lock:
        _runtimes.append(rt)
    return rt


def unregister(rt: EmbeddedRuntime) -> None:
    """Forget `rt` (it is about to be torn down) and run its stop hooks, the last added first (a
    later hook may use what an earlier one closes). Idempotent; never raises for a hook."""
    with _lock:
        if not rt.running:
            return
        rt.running = False
        _runtimes.remove(rt)
        hooks, rt.stop_hooks = rt.stop_hooks, []
    for hook in reversed(hooks):
        try:
            hook()
        except Exception:  # closing a connection to a runtime that is gone: nothing to save
            import logging  # the process of dragon.serve has it already

            logging.getLogger(__name__).warning("closing the connection to runtime %s failed", rt.run_id, exc_info=True)


def current() -> EmbeddedRuntime | None:
    """The oldest runtime of `dragon.serve` still running in this process, if any."""
    with _lock:
        return _runtimes[0] if _runtimes else None


def find(run_id: str) -> EmbeddedRuntime | None:
    """The runtime `run_id` if `dragon.serve` runs it in this process (and is not tearing it down)."""
    with _lock:
        return next((rt for rt in _runtimes if rt.run_id == run_id), None)


def add_stop_hook(rt: EmbeddedRuntime, fn: Callable[[], None]) -> bool:
    """Run `fn` when `rt` ends. False (and `fn` is not kept) if it has ended already."""
    with _lock:
        if rt.running:
            rt.stop_hooks.append(fn)
        return rt.running


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _runtimes.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
