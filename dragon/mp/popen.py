"""`DragonPopen`: starts a multiprocessing Process as a managed process of the runtime (spec §7.3).

Like `multiprocessing.popen_spawn_posix.Popen`, it pickles the preparation data and the process object
(with itself as the "spawning popen", so locks, queues and connections pickle as under spawn). Then,
instead of exec'ing Python with inherited pipes, it sends one GSProcessCreate: `python -c <child main>`
with `options.mode=PYTHON_IMMEDIATE` and the pickle as `argdata`, which the child reads from its
GSPingProc handshake (`dragon.mp.child`). GS replies once the child runs.

What cannot be inherited is fetched:
* file descriptors pickled with `reduction.DupFd` (Connection ends, shared-ctypes arenas) are handed
  to the child over a unix socket as it starts (`dragon.mp.fds`), before `start()` returns;
* the resource tracker's pipe is reopened by the child through /proc/<parent pid>/fd/<n>.

The popen is a normal multiprocessing Popen: `pid` (the real OS pid), `p_uid`, `returncode`, `poll`,
`wait`, `terminate`, `kill`, `close`, and `sentinel`: a pidfd of the child, readable once it exited
(`multiprocessing.connection.wait` takes it). Exit codes come from GS (killed by signal N: -N).
Signals are sent through GS.

The child is placed (node, host, CPUs) by the `dragon.native.Policy` current when `start()` is called
(`with Policy(...)` around it), or by one pinned to the process object (`pin_policy`: a Pool's).

In a program not started by `dragon` (no launch parameters), the children run in the runtime the
program embeds with `dragon.serve` (`dragon.client.embedded`) if there is one; otherwise the first start
brings up a runtime in the background for the program, torn down when it exits (`dragon.client.background`).
The children are ordinary managed processes either way.

An embedded runtime can end before the program does, and its teardown stops the children still
running then. Just before that, the exit codes of those that have exited are fetched from Global
Services (`_settle`); once the runtime has ended, a child it stopped reports -SIGTERM (its teardown
sends SIGTERM first; one that ignored it was killed), and signals to it are no-ops. A popen never asks
another runtime (whose p_uids mean other processes) about its child.
"""

from __future__ import annotations

import functools
import io
import os
import select
import signal
import sys
import weakref
from multiprocessing import process, reduction, resource_tracker, util
from multiprocessing.context import set_spawning_popen
from typing import Any, Final

from dragon.client import embedded as _embedded
from dragon.client.gs_client import GSClient, connection
from dragon.client.python_child import FORMAT, child_argv, preparation_data
from dragon.client.requests import mp_process_create, mp_signal, process_join, run
from dragon.errors import DragonError, RuntimeNotRunning
from dragon.mp.child import _exit_sentinel
from dragon.mp.fds import FdHandoff, ParentFd
from dragon.mp.names import target_of
from dragon.policy import Policy

SETTLE_S: Final = 2.0
"""How long `_settle` waits for GS's answer (the runtime's teardown waits for it)."""

_pinned: weakref.WeakKeyDictionary[process.BaseProcess, Policy] = weakref.WeakKeyDictionary()
"""Process objects that start under a policy of their own (`pin_policy`)."""


def pin_policy(process_obj: process.BaseProcess, policy: Policy) -> None:
    """Start `process_obj` under `policy` (over the `with Policy(...)` current at its start), wherever
    it is started from: a Pool's workers, which its own thread replaces (`dragon.mp.pool`). Kept
    beside the object, not in it, so that the child's pickle does not carry it."""
    _pinned[process_obj] = policy


class DragonPopen:
    """Starts `process_obj` through Global Services at construction; see the module docstring."""

    method: Final = "dragon"

    def __init__(self, process_obj: process.BaseProcess) -> None:
        util._flush_std_streams()  # type: ignore[attr-defined]
        self.returncode: int | None = None
        self.finalizer: util.Finalize | None = None
        self.pid: int = 0
        """The child's OS pid."""
        self.p_uid: int = 0
        """The child's p_uid in the runtime."""
        self.sentinel: int = -1
        """An fd that becomes readable when the child has exited (a pidfd)."""
        self.run_id = ""
        """The runtime that runs the child."""
        self._fds = FdHandoff()
        try:
            self._launch(process_obj)
        finally:
            self._fds.close()

    # ------------------------------------------------------------------ reduction hooks (spawning popen)

    def duplicate_for_child(self, fd: int) -> int:
        """Called by `reduction.DupFd`: `fd` is handed to the child as it starts; returns its index."""
        return self._fds.add(fd)

    def DupFd(self, index: int) -> Any:
        """What `reduction.DupFd` pickles for the fd `duplicate_for_child` took (`dragon.mp.fds`)."""
        return ParentFd(index)

    # ------------------------------------------------------------------ start

    def _launch(self, process_obj: process.BaseProcess) -> None:
        # First: fail before starting a resource tracker. Under plain `python my.py` this brings up
        # the program's background runtime (dragon.client.background) on the first start.
        client = connection(start_runtime=True)
        tracker_fd = resource_tracker.getfd()
        prep_data = preparation_data(process_obj._name)  # type: ignore[attr-defined]
        body = io.BytesIO()
        set_spawning_popen(self)  # type: ignore[arg-type]  # any Popen with DupFd/duplicate_for_child
        try:
            reduction.dump(prep_data, body)
            reduction.dump(process_obj, body)
        finally:
            set_spawning_popen(None)
        fp = io.BytesIO()  # the header goes first, and names the fds that pickling the body collected
        reduction.dump(
            {
                "format": FORMAT,
                "parent_pid": os.getpid(),
                "tracker_fd": tracker_fd,
                "fds": self._fds.listen(),
                "node": os.environ.get("DRAGON_INDEX", ""),
            },
            fp,
        )
        fp.write(body.getbuffer())
        desc = run(
            mp_process_create(
                child_argv(),
                fp.getvalue(),
                what=repr(process_obj),
                label=process_obj.name,
                target=target_of(process_obj),  # for `dragon status` (dragon.mp.names)
                policy=_pinned.get(process_obj),
            ),
            client=client,
        )
        assert desc.pid is not None  # mp_process_create's finish checks it
        self.pid, self.p_uid, self.run_id = desc.pid, desc.p_uid, client.params.run_id
        self.sentinel = _exit_sentinel(self.pid)
        self.finalizer = util.Finalize(self, os.close, (self.sentinel,))
        self._fds.serve(self.pid, self.sentinel)
        _settle_before_end(self.run_id)

    def _client(self) -> GSClient | None:
        """The connection to the runtime that runs the child; None once that runtime has ended."""
        try:
            client = connection()
        except RuntimeNotRunning:
            return None
        return client if client.params.run_id == self.run_id else None

    # ------------------------------------------------------------------ state

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        """The exit code, or None while the child runs (`flag=0`: wait until it exits)."""
        if self.returncode is None:
            if flag == os.WNOHANG and not _readable(self.sentinel):
                return None  # still running: known without asking GS
            self.returncode = self._join(None)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait at most `timeout` seconds (None: no limit) for the exit code; None if still running."""
        if self.returncode is None:
            if timeout is not None:
                from multiprocessing.connection import wait

                if not wait([self.sentinel], timeout):
                    return None
            return self.poll(0)
        return self.returncode

    def _join(self, timeout_s: float | None, *, answer_s: float | None = None) -> int | None:
        client = self._client()
        if client is None:  # its runtime has ended: the teardown stopped it (module docstring)
            return -signal.SIGTERM if select.select([self.sentinel], [], [], timeout_s)[0] else None
        return run(process_join(self.p_uid, timeout_s), client=client, timeout_s=answer_s)

    # ------------------------------------------------------------------ signals

    def _send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        client = self._client()
        if client is None:  # stopped with its runtime (module docstring)
            return
        if not run(mp_signal(self.p_uid, sig, lambda: _readable(self.sentinel)), client=client):
            try:  # another signal is in flight: deliver ours directly
                signal.pidfd_send_signal(self.sentinel, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """Send SIGTERM through GS (nothing if the child has exited)."""
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL through GS (nothing if the child has exited)."""
        self._send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the sentinel (multiprocessing calls this from `Process.close()`)."""
        if self.finalizer is not None:
            self.finalizer()


_settling: set[str] = set()


def _settle_before_end(run_id: str) -> None:
    """If `dragon.serve` runs the runtime `run_id` in this process, `_settle` before it ends (once)."""
    rt = _embedded.find(run_id)
    if rt is not None and run_id not in _settling:
        _settling.add(run_id)
        _embedded.add_stop_hook(rt, functools.partial(_settle, run_id))


def _settle(run_id: str) -> None:
    """Fetch, while Global Services can still tell, the exit code of each child of the runtime
    `run_id` that has exited unjoined (its runtime is about to end). Bounded: teardown waits."""
    for child in list(process._children):  # type: ignore[attr-defined]
        popen = child._popen
        if (
            isinstance(popen, DragonPopen)
            and popen.run_id == run_id
            and popen.returncode is None
            and _readable(popen.sentinel)
        ):
            try:
                popen.returncode = popen._join(SETTLE_S, answer_s=SETTLE_S)
            except DragonError:  # GS does not answer: the child will report its runtime's end
                return


def _readable(fd: int) -> bool:
    """Whether `fd` is readable now (for a pidfd: the process has exited)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


if sys.platform != "linux":  # pragma: no cover - the runtime is Linux-only (shm channels, pidfds)
    raise ImportError("the dragon start method needs Linux")
