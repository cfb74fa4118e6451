"""`ProcessGroup` (spec §7.2): many managed processes, made from templates, started, watched, restarted
and stopped as one.

    group = ProcessGroup(restart=False)
    group.add_process(8, ProcessTemplate(work, args=(queue,)))
    group.init()          # optional here: start() initializes a new group
    group.start()
    group.join()          # DragonUserCodeError if a process failed
    group.close()

or `with ProcessGroup() as group: ...`, which closes it (stopping what runs) however the block ends.

[choice] The group is managed in the process that made it, by a watcher thread of its own, over the
client API (`Process`, `wait`: one GSProcessJoinList request waits for all of them): the spec leaves
the reference's manager process and its PG* messages out, and a thread costs no process, no start
and no channel. So a group is not pickled to another process (the reference allows that to query it
there); `puids` and `exit_status` are what another process needs to follow the processes.

What the group does, as the reference documents it:
* `restart=True` ("maintain"): a process that exits is replaced by a new one of its template (named
  as it was) until `stop_restart()`, `join()`, `terminate()`, `kill()`, `stop()` or `close()`.
  `join()` waits for the processes to end, so it first stops the restarting.
* `ignore_error_on_exit=False`: a process that exits with a non-zero code the group did not cause
  is an error (the group caused it if it had delivered a signal asking it to end, SIGINT, SIGTERM,
  SIGKILL, SIGHUP or SIGQUIT, or another signal that killed it; a process that handles, say, a
  SIGUSR1 and fails later failed on its own): the group stops the others (SIGINT, SIGTERM, SIGKILL, as
  `stop()`; as mpiexec ends a job when one rank fails, since the others may wait for it for ever)
  and does not restart it; `in_error_state` turns True and `join()` raises DragonUserCodeError
  naming the processes and their codes. [choice] Only `join()` raises it (the call that waits for
  the outcome); the reference raises it from every call after, `close()` included, so a program
  could not clean up. With True, exit codes are only recorded (`exit_status`).
* `walltime`: seconds from `start()` after which the group is stopped as by `stop()` (its processes'
  exits are then not errors). This stop, and the one after a failure, take `DEFAULT_PATIENCE`.
* Every stop (`stop()`, the walltime, a failure) hides the stderr of the processes it signals, as the
  reference does: a worker's traceback of the KeyboardInterrupt it was stopped with says nothing.
  (So a worker that prints a summary when interrupted should write it elsewhere.)
* `policy`: where its processes run, under each template's own policy and over the `with Policy`
  block current at `start()`, replacements included (as `multiprocessing.Pool` on this runtime).
* A group still running when its program ends is closed then (stopped, by an `atexit` hook).

[choice] `pmi` (MPI launch) is not supported and `critical=True` (restart the runtime when a process
fails; unused in the reference) is not either: each raises InvalidArgument rather than being taken
and ignored. `name` names the group in its repr and errors. `start()` of a new group initializes it
(the reference requires `init()` first); a group whose processes have all ended may be started
again, with fresh processes and a fresh `exit_status`.
"""

from __future__ import annotations

import atexit
import enum
import math
import signal
import threading
import time
import weakref
from types import TracebackType
from typing import NoReturn

from dragon.client import requests as gs
from dragon.client.requests import run
from dragon.errors import DragonProcessGroupAlreadyInitialized as DragonProcessGroupAlreadyInitialized
from dragon.errors import DragonProcessGroupError as DragonProcessGroupError
from dragon.errors import DragonProcessGroupJoinError as DragonProcessGroupJoinError
from dragon.errors import DragonProcessGroupRunningError as DragonProcessGroupRunningError
from dragon.errors import DragonProcessGroupSignalError as DragonProcessGroupSignalError
from dragon.errors import DragonProcessGroupStartError as DragonProcessGroupStartError
from dragon.errors import DragonUserCodeError as DragonUserCodeError
from dragon.errors import InvalidArgument, ProcessSignalFailed
from dragon.policy import Policy, current_policy

from .process import Process, ProcessTemplate

DEFAULT_PATIENCE = 5.0
"""Seconds `stop()` gives the processes after SIGINT and again after SIGTERM, before the next signal;
also the patience of the stops at the walltime and after a failure."""

STOPPING_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP, signal.SIGQUIT})
"""Signals that ask a process to end: an exit after the group delivered one is the group's doing."""

_started: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()
"""The groups of this process that were started and not closed: closed when the interpreter exits."""


@atexit.register
def _close_at_exit() -> None:
    """[choice] A group left running when its program ends is closed (stopped), as the runtime ends the
    head's processes when it exits: in any other process, its processes would otherwise outlive the
    program that manages them, unwatched. Nothing is raised here: a runtime gone already took them."""
    for group in list(_started):
        try:
            group.close()
        except Exception:
            pass


class _State(enum.Enum):
    NEW = "new"  # add processes, then init() or start()
    IDLE = "idle"  # initialized, nothing running: start() (again), close()
    RUNNING = "running"  # started, some process may run: join(), stop(), signals
    CLOSED = "closed"  # init() to use it again


class _Member:
    """One place of the group: its template and its current process (a restart puts a new one of the
    template, named as the template says, in the same place)."""

    __slots__ = ("proc", "template")

    def __init__(self, template: ProcessTemplate) -> None:
        self.template = template
        self.proc: Process | None = None


class ProcessGroup:
    """Processes made from templates and managed as one: see the module docstring.

    Args:
      restart: replace each process that exits with a new one of its template, until stopped.
      ignore_error_on_exit: record non-zero exit codes only (False: an error; see the module).
      pmi: must be None (MPI launch is not supported).
      walltime: seconds from `start()` until the group is stopped; None: no limit.
      policy: placement of the processes (under their template's own policy).
      critical: must be False (a runtime restart on failure is not supported).
      name: the group's name, in its repr and errors.
    Raises:
      InvalidArgument: any of these that cannot be used.
    """

    def __init__(
        self,
        restart: bool = False,
        ignore_error_on_exit: bool = False,
        pmi: str | None = None,
        walltime: float | None = None,
        policy: Policy | None = None,
        critical: bool = False,
        name: str | None = None,
    ) -> None:
        if pmi is not None:
            raise InvalidArgument(
                f"ProcessGroup pmi={pmi!r}: MPI launch (PMI) is not supported by this runtime; leave pmi None"
            )
        if critical:
            raise InvalidArgument(
                "ProcessGroup critical=True (restart the runtime when a process fails) is not supported"
            )
        if walltime is not None and not (
            isinstance(walltime, int | float) and walltime > 0 and math.isfinite(walltime)
        ):
            raise InvalidArgument(f"ProcessGroup walltime must be a number of seconds > 0 or None, not {walltime!r}")
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidArgument(f"ProcessGroup policy must be a dragon.native.Policy or None, not {policy!r}")
        self._restart, self._ignore, self._walltime = bool(restart), bool(ignore_error_on_exit), walltime
        self._policy, self._name = policy, name or ""
        self._templates: list[tuple[int, ProcessTemplate]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the state left RUNNING
        self._down = threading.Lock()  # one bring-down at a time: SIGINT is sent once
        self._state = _State.NEW
        self._watcher: threading.Thread | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        """What one start()'s run records."""
        self._members: list[_Member] = []
        self._codes: dict[int, int] = {}  # p_uid -> exit code, of the processes seen to exit
        self._exited: list[tuple[int, int]] = []  # the same, in the order they were seen
        self._failed: list[tuple[int, int]] = []  # the errors among them
        self._pending: dict[int, int] = {}  # p_uid -> signal on its way to it
        self._signalled: dict[int, int] = {}  # p_uid -> the last signal delivered to it
        self._undecided: dict[int, int] = {}  # p_uid -> exit code seen while a signal was on its way
        self._restarting = False
        self._stopping = False  # a bring-down was started (by stop, an error or the walltime)
        self._patience = DEFAULT_PATIENCE  # of the bring-downs by the watcher (stop() sets its own)
        self._deadline: float | None = None  # time.monotonic() of the walltime
        self._trouble: DragonProcessGroupError | None = None  # the watcher's failure, join() raises it
        self._placement: Policy | None = None

    # ----------------------------------------------------------------------------- set up

    def add_process(self, nproc: int, template: ProcessTemplate) -> None:
        """Add `nproc` processes of `template`, started by the next `start()`. A template with a
        name makes one process (names are unique).

        Raises:
          InvalidArgument: nproc not an int of 1 or more, not a ProcessTemplate, or a named template
            with nproc > 1.
          DragonProcessGroupRunningError: the group is running (stop or join it first).
        """
        if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
            raise InvalidArgument(f"add_process: nproc must be an int of 1 or more, not {nproc!r}")
        if not isinstance(template, ProcessTemplate):
            raise InvalidArgument(f"add_process: template must be a dragon.native.ProcessTemplate, not {template!r}")
        if nproc > 1 and template.options.get("name"):
            raise InvalidArgument(
                f"add_process: template named {template.options['name']!r} makes one process (names are "
                f"unique), not {nproc}: leave its name out, or add one template per name"
            )
        with self._lock:
            if self._state is _State.RUNNING:
                raise DragonProcessGroupRunningError(
                    f"{self}: cannot add processes while it runs; join() or stop() it first"
                )
            self._templates.append((nproc, template))

    def init(self) -> None:
        """Make the group ready to start (a new group, or one closed since).

        Raises DragonProcessGroupAlreadyInitialized if it is initialized already.
        """
        with self._lock:
            if self._state not in (_State.NEW, _State.CLOSED):
                raise DragonProcessGroupAlreadyInitialized(
                    f"{self} is initialized already (close() it to init() again)"
                )
            self._state = _State.IDLE

    def start(self) -> None:
        """Start all the processes added; returns once they all run (initializes a new group first).
        The restarting (restart=True) and the walltime begin now.

        Raises:
          DragonProcessGroupRunningError: it runs already, or was closed (init() it first).
          DragonProcessGroupStartError: no processes were added, or one could not be started (its error
            is the cause; those started before it are stopped).
        """
        with self._lock:
            if self._state is _State.NEW:
                self._state = _State.IDLE
            if self._state is _State.RUNNING:
                raise DragonProcessGroupRunningError(
                    f"{self} runs already; join() or stop() it before starting it again"
                )
            if self._state is _State.CLOSED:
                raise DragonProcessGroupRunningError(f"{self} was closed; init() it to start it again")
            if not self._templates:
                raise DragonProcessGroupStartError(f"{self} has no processes to start: add_process() first")
            self._reset_run()
            self._placement = self._policy.over(current_policy()) if self._policy is not None else current_policy()
            self._members = [_Member(template) for nproc, template in self._templates for _ in range(nproc)]
            self._state = _State.RUNNING
            self._restarting = self._restart
            members = list(self._members)
        try:
            for member in members:
                with self._lock:
                    if self._stopping:  # stop() from another thread
                        break
                proc = self._new_process(member.template)
                with self._lock:
                    member.proc = proc
        except BaseException as failure:
            self._abandon_start(failure)
            if not isinstance(failure, Exception):  # Ctrl-C stays Ctrl-C
                raise
            raise DragonProcessGroupStartError(f"{self}: a process could not be started: {failure}") from failure
        with self._lock:
            stopped = self._stopping
            if not stopped:
                if self._walltime is not None:
                    self._deadline = time.monotonic() + self._walltime
                self._watcher = threading.Thread(target=self._watch, name=f"{self} watcher", daemon=True)
                self._watcher.start()
                _started.add(self)
        if stopped:
            self._abandon_start(None)
            raise DragonProcessGroupStartError(
                f"{self} was stopped while it started; the processes started were stopped"
            )

    def _new_process(self, template: ProcessTemplate) -> Process:
        """A started process of `template` (named as it says), under the group's placement."""
        target, args, kwargs, options = template.arguments("")
        policy = options.get("policy")
        options["policy"] = policy.over(self._placement) if policy is not None else self._placement
        proc = Process(target, args, kwargs, **options)
        proc.start()
        return proc

    def _abandon_start(self, failure: BaseException | None) -> None:
        """A start failed, was interrupted or stopped: stop what it started (after a stop() under
        way: the bring-downs take turns), leave the group idle."""
        try:
            with self._lock:
                self._stopping, self._restarting = True, False
            self._bring_down(self._patience)
        except Exception as again:  # the runtime is gone too: nothing left to stop
            if failure is not None:
                failure.add_note(f"stopping the processes started failed too: {again!r}")
        finally:
            with self._lock:
                self._state = _State.IDLE
                self._changed.notify_all()

    # ----------------------------------------------------------------------------- watching

    def _watch(self) -> None:
        """The watcher thread of a run: waits for the processes' exits (one GS request for all),
        records them, replaces exited ones while restarting, stops the group on an error or at the
        walltime, and marks the group idle once every process has ended."""
        try:
            while True:
                with self._lock:
                    running = self._running()
                    if not running:
                        return
                    join_all = not self._restarting
                    timeout = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
                ended = run(gs.join_list(running, timeout, join_all, not self._ignore))
                with self._lock:
                    self._record(ended)
                    expired = self._deadline is not None and time.monotonic() >= self._deadline
                    if expired:
                        self._deadline = None
                    down = not self._stopping and (expired or (bool(self._failed) and not self._ignore))
                    if down:
                        self._stopping, self._restarting = True, False
                    ended_places = [m for m in self._members if m.proc is not None and m.proc.p_uid in self._codes]
                if down:
                    self._bring_down(self._patience)
                elif ended_places:
                    self._replace(ended_places)
        except Exception as failure:
            self._watch_failed(failure)
        finally:
            with self._lock:
                self._state = _State.IDLE
                self._changed.notify_all()

    def _watch_failed(self, failure: Exception) -> None:
        """The watcher could not go on (a restart failed, the runtime went away): keep the error for
        join() and stop what runs (if the runtime still answers)."""
        with self._lock:
            if isinstance(failure, DragonProcessGroupError):
                self._trouble = failure
            else:
                self._trouble = DragonProcessGroupError(f"{self}: watching its processes failed: {failure!r}")
                self._trouble.__cause__ = failure
            self._stopping, self._restarting = True, False
        try:
            self._bring_down(DEFAULT_PATIENCE)
        except Exception as again:
            self._trouble.add_note(f"stopping its processes failed too: {again!r}")

    def _replace(self, places: list[_Member]) -> None:
        """While restarting, start a new process in each of `places` (their processes exited), without
        the lock (a start is a GS request); one installed after a stop began is brought down here.
        Raises DragonProcessGroupStartError if one cannot be started."""
        for member in places:
            with self._lock:
                if not self._restarting:
                    return
            try:
                proc = self._new_process(member.template)
            except Exception as failure:
                error = DragonProcessGroupStartError(f"{self}: a process could not be restarted: {failure}")
                raise error from failure
            with self._lock:
                member.proc = proc
                stopped = self._stopping
            if stopped:  # the stop under way may have signalled the places before this one was in
                self._bring_down(self._patience)
                return

    def _running(self) -> list[Process]:
        """(Lock held.) The current processes not seen to exit."""
        return [m.proc for m in self._members if m.proc is not None and m.proc.p_uid not in self._codes]

    def _record(self, ended: dict[int, int | None]) -> None:
        """(Lock held.) Record the exits in `ended` ({p_uid: exit code or None}) not recorded yet;
        judged once no signal is on its way to the process (`_signal` judges those)."""
        for p_uid, code in ended.items():
            if code is None or p_uid in self._codes:
                continue
            self._codes[p_uid] = code
            self._exited.append((p_uid, code))
            if p_uid in self._pending:
                self._undecided[p_uid] = code
            else:
                self._judge(p_uid, code)

    def _judge(self, p_uid: int, code: int) -> None:
        """(Lock held.) An exit is an error if its code is not 0 and the group did not cause it: it
        had delivered a stopping signal (SIGINT, SIGTERM, SIGKILL, SIGHUP, SIGQUIT) to the process, or
        another signal that killed it. A process that handles another signal (a checkpoint request,
        say) and later fails, or one that exited before the signal came, failed on its own."""
        sig = self._signalled.get(p_uid)
        if code != 0 and not (sig is not None and (sig in STOPPING_SIGNALS or code == -sig)):
            self._failed.append((p_uid, code))

    def _look(self) -> None:
        """Record the exits GS knows of now (one request), for the properties."""
        with self._lock:
            running = self._running() if self._state is _State.RUNNING else []
        if running:
            ended = run(gs.join_list(running, 0, False, False))
            with self._lock:
                self._record(ended)

    # ----------------------------------------------------------------------------- stopping

    def _bring_down(self, patience: float) -> None:
        """SIGINT to every running process, then SIGTERM to those still running `patience` seconds
        later, then SIGKILL to the rest, and wait until all have exited. Their stderr is no longer
        shown once signalled (as the reference does): a traceback of KeyboardInterrupt from each
        worker stopped says nothing. A process that cannot be signalled is waited for all the same."""
        with self._down:
            for sig, timeout in ((signal.SIGINT, patience), (signal.SIGTERM, patience), (signal.SIGKILL, None)):
                with self._lock:
                    running = self._running()
                if not running:
                    return
                self._signal(running, sig, hide_stderr=True)
                ended = run(gs.join_list(running, timeout, True, False))
                with self._lock:
                    self._record(ended)

    def _signal(self, procs: list[Process], sig: int, hide_stderr: bool) -> ProcessSignalFailed | None:
        """Send `sig` to each of `procs`: the first refusal, if any (the others are signalled all
        the same). An exit seen while the signal is on its way is judged once the answer says
        whether it was delivered (`_judge`)."""
        puids = [p.p_uid for p in procs if p.p_uid is not None]
        with self._lock:
            self._pending.update(dict.fromkeys(puids, sig))
        refused: ProcessSignalFailed | None = None
        try:
            for p_uid in puids:
                code: int | None = None
                try:
                    code = run(gs.process_kill(p_uid, sig, hide_stderr))
                except ProcessSignalFailed as failure:
                    refused = refused or failure
                else:
                    with self._lock:
                        if code is None:
                            self._signalled[p_uid] = sig
                finally:
                    with self._lock:
                        self._settle(p_uid, code)
        finally:
            with self._lock:  # those not reached (the runtime went away): judged as not signalled
                for p_uid in puids:
                    if p_uid in self._pending:
                        self._settle(p_uid, None)
        return refused

    def _settle(self, p_uid: int, exit_code: int | None) -> None:
        """(Lock held.) The signal to `p_uid` was answered: record the exit code the answer gave (it
        had exited before), and judge an exit seen meanwhile."""
        self._pending.pop(p_uid, None)
        if exit_code is not None:
            self._record({p_uid: exit_code})
        if p_uid in self._undecided:
            self._judge(p_uid, self._undecided.pop(p_uid))

    def _stop_restarting(self) -> None:
        with self._lock:
            self._restarting = False

    def _await_idle(self, timeout: float | None) -> bool:
        """Wait until no process of the group runs (the watcher is done); False if `timeout` passed."""
        with self._lock:
            if not self._changed.wait_for(lambda: self._state is not _State.RUNNING, timeout):
                return False
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join()
        return True

    def send_signal(self, sig: int, hide_stderr: bool = False) -> None:
        """Send signal `sig` to every running process of the group (restarting goes on: see
        `terminate`); an exit it causes is no error (see the module). With `hide_stderr`, their
        stderr is no longer shown (the tracebacks of interrupted workers). A process that exits
        meanwhile is left alone.

        Raises:
          DragonProcessGroupSignalError: `sig` is not a signal of this system, or a process refused it
            (the others were signalled all the same).
          DragonProcessGroupRunningError: the group was not initialized, or was closed.
        """
        self._require_open("send_signal")
        if sig not in signal.valid_signals():
            raise DragonProcessGroupSignalError(f"{self}: {sig!r} is not a signal of this system")
        with self._lock:
            running = self._running() if self._state is _State.RUNNING else []
        refused = self._signal(running, sig, hide_stderr)
        if refused is not None:
            raise DragonProcessGroupSignalError(f"{self}: {refused}") from refused

    def terminate(self, hide_stderr: bool = False) -> None:
        """Stop restarting, then send SIGTERM to every running process (see `send_signal`)."""
        self._require_open("terminate")
        self._stop_restarting()
        self.send_signal(signal.SIGTERM, hide_stderr)

    def kill(self, hide_stderr: bool = False) -> None:
        """Stop restarting, then send SIGKILL to every running process (see `send_signal`)."""
        self._require_open("kill")
        self._stop_restarting()
        self.send_signal(signal.SIGKILL, hide_stderr)

    def stop_restart(self) -> None:
        """Replace no more processes as they exit (restart=True); those running go on."""
        self._require_open("stop_restart")
        self._stop_restarting()

    def stop(self, patience: float = DEFAULT_PATIENCE) -> None:
        """Stop restarting and bring every running process down: SIGINT, then SIGTERM to those still
        running `patience` seconds later, then SIGKILL after as long again; returns once all have
        exited. Their stderr is hidden from the first signal on (see the module); their exits are no
        errors. The group can be started again.

        Raises DragonProcessGroupRunningError if the group was not initialized or was closed.
        """
        self._require_open("stop")
        if not (isinstance(patience, int | float) and patience >= 0):
            raise InvalidArgument(f"stop: patience must be a number of seconds >= 0, not {patience!r}")
        self._stop(patience)

    def _stop(self, patience: float) -> None:
        with self._lock:
            self._restarting = False
            running = self._state is _State.RUNNING
            if running:
                self._stopping, self._patience = True, patience
        if running:
            self._bring_down(patience)
            self._await_idle(None)

    def close(self, patience: float = DEFAULT_PATIENCE) -> None:
        """Stop the group if it runs (see `stop`) and close it; calling it again does nothing. Does not
        raise for its processes' errors (`join` does; `in_error_state` tells)."""
        with self._lock:
            if self._state in (_State.NEW, _State.CLOSED):
                self._state = _State.CLOSED
                return
        self._stop(patience)
        with self._lock:
            self._state = _State.CLOSED
        _started.discard(self)

    def join(self, timeout: float | None = None) -> None:
        """Stop restarting, and wait until every process of the group has exited, at most `timeout`
        seconds (None: no limit). The restarting stays stopped when it times out (as the reference's):
        a `join(0)` is no way to look, `puids` is.

        Raises:
          DragonProcessGroupJoinError (a TimeoutError): processes still run after `timeout`.
          DragonUserCodeError: processes failed (ignore_error_on_exit=False; see the module).
          DragonProcessGroupStartError: a process could not be restarted (the group was stopped).
          DragonProcessGroupError: the runtime went away while the group ran.
          DragonProcessGroupRunningError: the group was not initialized, or was closed.
        """
        self._require_open("join")
        self._stop_restarting()
        if not self._await_idle(timeout):
            raise DragonProcessGroupJoinError(f"{self}: processes {self.puids} still run after {timeout} s")
        with self._lock:
            if self._trouble is not None:  # a new error each time: the kept one's traceback would grow
                trouble = type(self._trouble)(str(self._trouble))
                trouble.__notes__ = list(getattr(self._trouble, "__notes__", []))
                raise trouble from self._trouble.__cause__
            if self._failed and not self._ignore:
                self._raise_failed()

    def _raise_failed(self) -> NoReturn:
        failed = list(self._failed)
        text = ", ".join(f"p_uid {p_uid} exited {code}" for p_uid, code in failed)
        raise DragonUserCodeError(f"{self}: processes failed: {text} (their stderr has what they said)", failed)

    def _require_open(self, what: str) -> None:
        with self._lock:
            state = self._state
        if state is _State.NEW:
            raise DragonProcessGroupRunningError(
                f"cannot {what} {self}: it was not initialized; init() or start() it first"
            )
        if state is _State.CLOSED:
            raise DragonProcessGroupRunningError(f"cannot {what} {self}: it was closed; init() it to use it again")

    # ----------------------------------------------------------------------------- state

    @property
    def puids(self) -> list[int]:
        """The p_uids of the group's processes that run now (asks GS which have exited)."""
        self._look()
        with self._lock:
            return [p.p_uid for p in self._running() if p.p_uid is not None]

    @property
    def inactive_puids(self) -> list[tuple[int, int]]:
        """[(p_uid, exit code)] of the group's processes that have exited since `start()`, in the order
        seen (killed by signal N: -N)."""
        self._look()
        with self._lock:
            return list(self._exited)

    exit_status = inactive_puids

    @property
    def in_error_state(self) -> bool:
        """Whether a process failed (and errors are not ignored), or restarting or watching failed:
        `join()` raises for it."""
        self._look()
        with self._lock:
            return self._trouble is not None or (bool(self._failed) and not self._ignore)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise InvalidArgument(
            f"{self} is managed by the process that made it and cannot be pickled; pass its puids "
            "(dragon.native.Process.from_puid) to follow its processes elsewhere"
        )

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name else ""
        count = sum(n for n, _ in self._templates)
        return f"<ProcessGroup{name} of {count} processes, {self._state.value}>"
