"""A runtime in the background of a plain `python my.py` program (issue #5): the program's side.

The multiprocessing start method "dragon" works under plain `python my.py` too, so that users need
not change how they launch. In a process without launch parameters of its own (none, or inherited
ones: `dragon.client.gs_client.launch_parameters`) the start method's first `Process.start()` (or first
queue) calls `runtime(start=True)`, which brings up a runtime owned by this program; `stop()` tears
it down when the program exits. Plain Python: the program never imports trio; the launcher does.

Bringup: the program starts `python -m dragon.services.background`, the launcher without a head
process, whose fd 0 is one end of a socketpair (the *control socket*). The launcher answers there
with one JSON line (`_rundir.StartReport`): the run id once Global Services takes requests, or which step failed
(after removing what it made: BringupError, nothing left behind). The program then connects to GS
as an external client (`GSClient.external`), sending as the launcher (p_uid 0), as the head does.

The launcher stays in the program's process group, so a terminal's Ctrl-C reaches it and, through
it, the children, as under "spawn"; it inherits fds 1 and 2, so the children's output reaches the
program's stdout and stderr. End of file on the control socket means "stop": the launcher tears the
runtime down in order and exits. `stop()` runs as a `multiprocessing.util.Finalize` of priority
`EXIT_PRIORITY`, inside multiprocessing's exit function after it has ended the children and every
other finalizer (queues' feeders, pools), and waits for the launcher (at most `STOP_WAIT_S`). A
program killed without exit handlers closes the socket anyway: the launcher cleans up alone. Forked
copies of the program drop their copy of the socket.

`dragon.native` **[choice]**: only the start method brings a runtime up. Native objects have no exit
hook ordered after the program's use of them, and a silent bringup of a service tree is a surprise
for a call that may only have meant to look something up; so a plain program calling
`dragon.native` first gets RuntimeNotRunning (`NO_RUNTIME`, saying how to get a runtime), and once
the start method has brought one up, uses it. A program that runs a runtime with `dragon.serve` gets
no background runtime: both use the embedded one (`dragon.client.embedded`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from dragon import _rundir
from dragon._pool_sizes import DEFAULT_VAR, INF_VAR
from dragon.client.interpreter import interpreter_argv
from dragon.errors import BringupError, RuntimeNotRunning
from dragon.ids import NOT_INHERITED

EXIT_PRIORITY: Final = -1000
"""Of the `multiprocessing.util.Finalize` that stops the runtime: below every finalizer of the
standard library (the lowest, a Queue's feeder-thread join, is -5), so it runs last."""
STOP_WAIT_S: Final = 10.0
"""How long the exiting program waits for the launcher's orderly teardown."""
REPORT_MARGIN_S: Final = 30.0
"""How much longer than the bringup timeout the program waits for the launcher's answer: the
launcher answers a failed bringup only after removing what it made."""
DEFAULT_BRINGUP_TIMEOUT_S: Final = 30.0
LAUNCHER_MODULE: Final = "dragon.services.background"
ACTOR: Final = "the background Dragon runtime"
NO_RUNTIME: Final = (  # what a request without a runtime is told (also by dragon.client.gs_client.connection)
    "no Dragon runtime runs for this process: run the program with `dragon prog.py`; or, in a trio "
    "program, embed one with `handle = await nursery.start(dragon.serve)`, which dragon.native then "
    'uses; or start a process with the multiprocessing start method "dragon", which brings a '
    "runtime up for the program"
)


@dataclass
class BackgroundRuntime:
    """A runtime this program brought up: its launcher, the control socket, the run's RunInfo."""

    launcher: subprocess.Popen[bytes]
    control: socket.socket
    info: _rundir.RunInfo
    owner_pid: int
    bringup_s: float
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)


_lock = threading.Lock()
_runtime: BackgroundRuntime | None = None
_stopped_in: int | None = None  # pid of the process whose runtime `stop()` has ended


def current() -> BackgroundRuntime | None:
    """This process's background runtime, if it brought one up and has not stopped it."""
    rt = _runtime
    return rt if rt is not None and rt.owner_pid == os.getpid() else None


def runtime(*, start: bool) -> BackgroundRuntime:
    """This program's background runtime; with `start`, bring one up if there is none yet.

    Blocks for the bringup. Thread-safe: concurrent callers share
    one runtime.

    Raises:
      RuntimeNotRunning: there is none and `start` is false, or the program is exiting (its runtime
        was stopped already).
      BringupError: the runtime did not come up (the text says at which step and why); nothing of it
        is left.
    """
    global _runtime
    rt = current()
    if rt is not None:
        return rt
    with _lock:
        rt = current()
        if rt is not None:
            return rt
        if _stopped_in == os.getpid():
            raise RuntimeNotRunning(
                "the background runtime of this program has been stopped (the program "
                "is exiting): no new runtime requests can be made"
            )
        if not start:
            raise RuntimeNotRunning(NO_RUNTIME)
        _runtime = _bring_up()
        from multiprocessing import util

        util.Finalize(None, stop, exitpriority=EXIT_PRIORITY)
        return _runtime


def add_stop_hook(fn: Callable[[], None]) -> None:
    """Run `fn` first thing in `stop()` (the connection to GS closes its reply channel there)."""
    rt = current()
    if rt is None:
        raise RuntimeNotRunning("this program has no background runtime")
    rt.stop_hooks.append(fn)


def stop(timeout_s: float = STOP_WAIT_S) -> None:
    """Tear this program's background runtime down and wait for it, at most `timeout_s` seconds.

    Runs the stop hooks, closes the control socket (the launcher then tears down in order) and waits
    for the launcher to exit. Idempotent; does nothing in a process that does not own a runtime (a
    forked copy of the program inherits the finalizer, not the runtime). If the launcher is not done
    in time, says so on stderr and returns: it finishes alone. Never raises for the runtime's sake.
    """
    global _runtime, _stopped_in
    with _lock:
        rt = current()
        if rt is None:
            return
        _runtime, _stopped_in = None, os.getpid()
    for hook in rt.stop_hooks:
        try:
            hook()
        except Exception as exc:  # closing a connection to a runtime that broke: nothing to save
            _say(f"closing the connection to the background runtime failed: {exc!r}")
    rt.control.close()
    if _wait(rt.launcher, timeout_s) is None:
        _say(
            f"the background runtime {rt.info.run_id} (launcher pid {rt.launcher.pid}) is still stopping "
            f"after {timeout_s:g} s; it finishes alone"
        )


# ------------------------------------------------------------------------------------------- bringup


def _bring_up() -> BackgroundRuntime:
    """Start the background launcher and wait for its report. See the module docstring."""
    t0 = time.monotonic()
    timeout_s = _bringup_timeout()
    ours, theirs = socket.socketpair()
    try:
        # In the program's process group: the terminal's Ctrl-C reaches it too, and it passes it on
        # to the runtime's processes (module docstring). stdout and stderr are inherited: managed
        # processes' output reaches the program's. --fork-server: what the start that brings the
        # runtime up is about to ask for, so that the runtime boots its fork server for it while
        # coming up (LSConfig.fork_server).
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                LAUNCHER_MODULE,
                "--bringup-timeout",
                repr(timeout_s),
                "--fork-server",
                msgspec.json.encode(interpreter_argv()).decode(),
            ],
            stdin=theirs.fileno(),
            close_fds=True,
            env=_launcher_env(),
        )
    except BaseException as exc:
        ours.close()
        if isinstance(exc, OSError):
            raise BringupError(ACTOR, "starting its launcher", f"{sys.executable} -m {LAUNCHER_MODULE}: {exc}") from exc
        raise
    finally:
        theirs.close()
    try:
        report = _read_report(ours, launcher, timeout_s + REPORT_MARGIN_S)
        if report.error or not report.run_id:
            raise BringupError(ACTOR, "bringup", report.error or "the launcher reported no run id")
        info = _rundir.read_info(report.run_id)
        if info is None:
            raise BringupError(
                ACTOR,
                "reading runtime.json",
                f"{_rundir.run_dir(report.run_id)} holds no runtime.json although the runtime is up",
            )
    except BaseException:
        _abandon(ours, launcher)
        raise
    return BackgroundRuntime(
        launcher=launcher, control=ours, info=info, owner_pid=os.getpid(), bringup_s=time.monotonic() - t0
    )


def _launcher_env() -> dict[str, str]:
    """The program's environment, less the launch parameters it inherited from a managed process, if
    any: they name another runtime's channels and processes, and Local Services would hand them to
    its own processes. The pool sizes stay: they are settings (`dragon._pool_sizes`)."""
    return {k: v for k, v in os.environ.items() if k not in NOT_INHERITED or k in (INF_VAR, DEFAULT_VAR)}


def _bringup_timeout() -> float:
    """DRAGON_BRINGUP_TIMEOUT (as for the `dragon` command), default 30 s."""
    raw = os.environ.get("DRAGON_BRINGUP_TIMEOUT", "")
    if not raw:
        return DEFAULT_BRINGUP_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise BringupError(
            ACTOR, "reading its settings", f"DRAGON_BRINGUP_TIMEOUT={raw!r} is not a positive number of seconds"
        )
    return value


def _read_report(sock: socket.socket, launcher: subprocess.Popen[bytes], wait_s: float) -> _rundir.StartReport:
    """The launcher's one line; BringupError if it ends (or `wait_s` passes) without one."""
    deadline = time.monotonic() + wait_s
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BringupError(ACTOR, "waiting for its launcher", f"no answer within {wait_s:g} s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:  # e.g. ECONNRESET: the launcher is gone, as at end of file
            chunk = b""
        if not chunk:
            code = _wait(launcher, STOP_WAIT_S)
            said = f"exited with code {code}" if code is not None else "closed its control socket"
            raise BringupError(
                ACTOR,
                "starting its launcher",
                f"the launcher ({sys.executable} -m {LAUNCHER_MODULE}) {said} without reporting; its stderr is above",
            )
        data += chunk
    try:
        return msgspec.json.decode(data, type=_rundir.StartReport)
    except msgspec.DecodeError as exc:
        raise BringupError(ACTOR, "reading its launcher's report", f"{data[:200]!r}: {exc}") from exc


def _abandon(sock: socket.socket, launcher: subprocess.Popen[bytes]) -> None:
    """Bringup was given up (error, timeout, Ctrl-C): make the launcher remove everything, and wait.

    Closing the control socket makes the launcher tear down whatever it brought up; if it does not
    exit within STOP_WAIT_S it is sent SIGTERM (the same teardown) and then SIGKILL, after which
    Local Services, seeing its pipe end, cleans up alone.
    """
    sock.close()
    if _wait(launcher, STOP_WAIT_S) is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            launcher.send_signal(sig)
        if _wait(launcher, STOP_WAIT_S) is not None:
            return


def _wait(launcher: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """Wait at most `timeout_s` for the launcher to exit, reap it and return its exit code; None if
    it still runs. Waits on a pidfd: `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which
    would be most of the program's exit delay."""
    if launcher.returncode is not None:
        return launcher.returncode
    try:
        pidfd = os.pidfd_open(launcher.pid)
    except ProcessLookupError:  # exited and reaped already? Popen knows
        return launcher.poll()
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(0, round(timeout_s * 1000))):
            return None
    finally:
        os.close(pidfd)
    return launcher.wait()


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"dragon: {text}\n".encode())


def _forget_after_fork() -> None:
    """A forked copy of the program does not own the runtime: drop (not stop) it, and its socket."""
    global _runtime, _lock
    rt, _runtime, _lock = _runtime, None, threading.Lock()
    if rt is not None:
        with contextlib.suppress(OSError):
            rt.control.close()  # our copy only: the launcher sees end of file when the owner exits


os.register_at_fork(after_in_child=_forget_after_fork)
