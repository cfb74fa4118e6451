"""Starting, awaiting and stopping processes: helpers shared by the launcher and Local Services.

Two ways of starting a child are used (each spawn site says which and why):

- `fork_service`: fork *before* `trio.run`, for the services themselves. `import trio` costs about
  0.25 s per fresh interpreter on these machines, so the launcher imports it once and forks Local
  Services, which forks Global Services: the whole runtime pays for trio once. The child runs a given
  function and leaves with `os._exit`, never returning into the parent's code.
- `trio.lowlevel.open_process` (fork+exec), for managed processes: they are fresh interpreters, as
  under multiprocessing's "spawn".

`ForkedChild` lets trio await a forked child's exit through a pidfd (no SIGCHLD handler, no thread),
and `stop_process` / `stop_group` escalate SIGTERM -> SIGKILL, always bounded in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from typing import Final, NoReturn, Protocol

import trio

from dragon import _runs

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER: Final = 36
STOP_GRACE_S: Final = 2.0  # how long a process has to exit after SIGTERM before SIGKILL
MAX_FD: Final = 65536  # fds a forked service closes above 2 (closerange is one cheap system call)


class Waitable(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class ForkedChild:
    """A child made by `fork_service`, awaitable from trio. `returncode` is negative for a signal."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self._returncode: int | None = None
        self._watching = False  # trio lets one task at a time wait on the pidfd; others park
        self._lot: trio.lowlevel.ParkingLot | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> int | None:
        """Reap the child if it has exited (without blocking); its return code, or None."""
        if self._returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: report it as lost, and say so
                log.warning(
                    "pid %d was reaped by someone else: its exit status is unknown (taken as SIGKILL)", self.pid
                )
                self._set(-signal.SIGKILL)
                return self._returncode
            if pid:
                self._set(os.waitstatus_to_exitcode(status))
        return self._returncode

    def _set(self, code: int) -> None:
        self._returncode = code
        with contextlib.suppress(OSError):
            os.close(self._pidfd)

    async def wait(self) -> int:
        """Wait for the child to exit and reap it; any number of tasks may wait at once.

        Cancellable (the child is then left running). One task watches the pidfd; the others park
        until it is done, and one of them takes over if the watcher is cancelled.
        """
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        while self.poll() is None:
            if self._watching:
                await self._lot.park()
                continue
            self._watching = True
            try:
                await trio.lowlevel.wait_readable(self._pidfd)
            finally:
                self._watching = False
                self._lot.unpark_all()
        assert self._returncode is not None
        return self._returncode

    def wait_blocking(self, timeout_s: float) -> int | None:
        """For code that runs before trio does: wait up to `timeout_s` for the child to exit."""
        deadline = time.monotonic() + timeout_s
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            import select

            select.select([self._pidfd], [], [], left)
        return self._returncode

    def send_signal(self, sig: int) -> None:
        if self._returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)


def fork_service(run: Callable[[], int], *, new_session: bool, keep_fds: dict[int, int]) -> ForkedChild:
    """Fork a child that runs `run()` and exits with its result; never call once trio runs.

    `keep_fds` maps fds of the parent to the numbers (0, 1 or 2) they get in the child;
    every other inherited fd above 2 is closed, so the child holds no pipe end that would hide an EOF
    from its peers. With `new_session` the child leads a new session and process group (the runtime's
    group: a terminal's Ctrl-C does not reach it, and `killpg` reaches everything it starts).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return ForkedChild(pid)
    code = 70  # EX_SOFTWARE, if anything below fails before `run` decides
    try:
        if new_session:
            os.setsid()
        for src, dst in keep_fds.items():
            os.dup2(src, dst)
        os.closerange(3, MAX_FD)
        code = run()
    except BaseException as exc:  # report and leave: never unwind into the parent's code
        with contextlib.suppress(Exception):
            os.write(2, f"dragon: fatal error in a forked service: {exc!r}\n".encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    raise AssertionError("unreachable")


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False if the group is empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of a process group, read from /proc."""
    return [p.pid for p in _runs.all_processes() if p.running and p.pgid == pgid]


async def stop_group(pgid: int, *, grace_s: float = STOP_GRACE_S) -> list[int]:
    """SIGTERM every process of group `pgid`, then SIGKILL what is left after `grace_s`.

    Returns the pids that needed SIGKILL. Shielded from cancellation; bounded by about 2 * grace_s.
    Waits by polling /proc because the group's members need not be our children.
    """
    with trio.CancelScope(shield=True):
        if not signal_group(pgid, signal.SIGTERM):
            return []
        with trio.move_on_after(grace_s):
            while group_members(pgid):
                await trio.sleep(0.02)
            return []
        stubborn = group_members(pgid)
        if stubborn:
            log.warning("sending SIGKILL to process group %d, still alive: %s", pgid, stubborn)
        signal_group(pgid, signal.SIGKILL)
        with trio.move_on_after(grace_s):
            while group_members(pgid):
                await trio.sleep(0.02)
        return stubborn
    raise AssertionError("unreachable")  # for mypy: a shielded scope never swallows the returns above


def descendants(pid: int, *, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Pids of the running descendants of `pid` (its children, theirs, ...), from /proc; a pid in
    `exclude` and what descends from it are left out."""
    children: dict[int, list[int]] = {}
    for proc in _runs.all_processes():
        if proc.running:
            children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in exclude:
                found.append(child)
                todo.append(child)
    return found


async def stop_descendants(*, exclude: frozenset[int] = frozenset(), grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop every descendant of this process but those of `exclude`: SIGTERM, then SIGKILL after
    `grace_s`; reap those that are (or become, this being a subreaper) our children. Returns the pids
    found. Shielded; bounded by about 2 * grace_s.

    For the processes of a run that are no managed process, and need not be in the runtime's process
    group either: a child of the head that started its own session (`start_new_session=True`) or a
    daemon that double-forked. Local Services and the launcher are subreapers, so whatever such a
    process leaves is reparented to them and found here.
    """
    me = os.getpid()
    with trio.CancelScope(shield=True):
        if not _own_children() - exclude:  # the common case, read in microseconds (no /proc scan)
            return []
        found = descendants(me, exclude=exclude)
        if not found:
            return []
        log.warning("stopping processes the run left outside its process group: %s", found)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in descendants(me, exclude=exclude):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with trio.move_on_after(grace_s):
                while descendants(me, exclude=exclude):
                    _reap_children(exclude)
                    await trio.sleep(0.02)
                _reap_children(exclude)
                return found
        return found
    raise AssertionError("unreachable")


def _own_children() -> set[int]:
    """Pids of this process's children (those of every thread), from /proc/self/task/*/children."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as f:
                found.update(int(pid) for pid in f.read().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return found


def _reap_children(exclude: frozenset[int]) -> None:
    """Reap the exited children of this process, those of `exclude` apart (their owners reap them)."""
    me = os.getpid()
    for proc in _runs.all_processes():
        if proc.ppid == me and not proc.running and proc.pid not in exclude:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)


async def stop_process(proc: Waitable, *, grace_s: float = STOP_GRACE_S) -> int:
    """Stop and reap one child: SIGTERM, then SIGKILL after `grace_s`. Shielded; bounded."""
    with trio.CancelScope(shield=True):
        if proc.returncode is not None:
            return proc.returncode
        for sig in (signal.SIGTERM, signal.SIGKILL):
            proc.send_signal(sig)
            with trio.move_on_after(grace_s):
                return await proc.wait()
            log.warning("process pid=%d ignored %s", proc.pid, signal.Signals(sig).name)
        with trio.move_on_after(grace_s):  # not even SIGKILL ends a process in uninterruptible sleep
            return await proc.wait()
        log.error("process pid=%d did not die of SIGKILL within %.1f s: leaving it", proc.pid, grace_s)
        return -signal.SIGKILL
    raise AssertionError("unreachable")


def ignore_interrupts() -> None:
    """Take no notice of SIGINT in this service (before `trio.run`, which then leaves it so).

    The launcher sends Ctrl-C to the runtime's whole process group (`RuntimeHandle.interrupt`), as a
    terminal does to a program's; the services stop when the program does, not then. A Python-level
    handler, not SIG_IGN: an ignored signal stays ignored across exec, and the services' children
    must get Ctrl-C as any program does (exec resets a handler to the default).
    """
    signal.signal(signal.SIGINT, _no_interrupt)


def _no_interrupt(signum: int, frame: object) -> None:
    log.info("SIGINT: for the program's processes, not for the services")


def describe_exit(code: int) -> str:
    """`with exit code 3` or `killed by SIGKILL` (`killed by signal 40` for one without a name)."""
    if code >= 0:
        return f"with exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def exit_without_finalization(code: int) -> NoReturn:
    """Leave with `code` once logs and stdout/stderr are flushed, without the interpreter's finalization.

    For the `dragon` command and the background launcher, whose runtime is gone by then: tearing down
    the modules of a process that imported trio and the services takes 20-30 ms that the shell (or
    the program waiting for the launcher) would wait for."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def exit_status_for_shell(code: int) -> int:
    """The status a shell reports for an exit code: 128+N for death by signal N (code -N)."""
    return 128 - code if code < 0 else code & 0xFF


_given_fd_limit: tuple[int, int] | None = None


def raise_fd_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit (which needs no privilege):
    Local Services holds a few descriptors per managed process, and a default soft limit of 1,024
    would end a run of a few hundred processes. `give_back_fd_limit` gives each child the limit it
    would have had."""
    global _given_fd_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            _given_fd_limit = (soft, hard)


def give_back_fd_limit(pid: int) -> None:
    """Set child `pid`'s limit of open files to what this process was given (`raise_fd_limit`), so
    that a program sees under the runtime the limit it sees under plain python."""
    if _given_fd_limit is not None:
        with contextlib.suppress(OSError):
            resource.prlimit(pid, resource.RLIMIT_NOFILE, _given_fd_limit)


def become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (Linux PR_SET_CHILD_SUBREAPER).

    Local Services needs it for the fork server's double-forked children; the test suite for seeing
    every process a test leaves behind.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
