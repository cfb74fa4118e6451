"""Managed processes through Global Services, for plain Python code (spec §4.2, §5.1, §7.2).

`Process` is a handle on one process in GS's table: made by `Process(...).start()`, or looked up
with `Process.from_puid` / `Process.from_name` / `current()`. Every method is one blocking GS
request (`dragon._gs_client`), usable from any thread of any managed process. Failures raise the
`ProcessError` subclass for GS's answer, with GS's text.
"""

from __future__ import annotations

import builtins
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from dragon import _gs_common as gs
from dragon._gs_client import connection, launch_parameters
from dragon._gs_pipe import PipeConnection
from dragon.descriptors import ProcessDescriptor, StdioOption
from dragon.errors import InvalidArgument
from dragon.ids import LAUNCHER_PUID, stdio_channel_name
from dragon.messages import Response

R = TypeVar("R", bound=Response)
T = TypeVar("T")


def _run(call: gs.GSCall[R, T]) -> T:
    """Carry out one GS call over this process's connection (see dragon._gs_common)."""
    return call.finish(connection().call(call.request, call.response_type))


class Process:
    """A managed process: created through GS, run by Local Services, known to GS forever (spec §5.1).

    `Process(target, args, ...)` describes a process; `start()` creates it. `target` is an executable
    (a path, or a name looked up on PATH) and `args` its arguments (argv[1:]). Python callables as
    targets are not supported yet: run `sys.executable` with a script instead.

    Args:
      env: variables merged over this process's own environment (as Dragon merges it over Local
        Services'); the child's launch parameters (DRAGON_*) are always its own.
      cwd: working directory; None = this process's current directory.
      name: a unique name for lookups with `from_name`; "" = `dragon_process_<p_uid>`.
      stdin: None (fed by the launcher's stdin forwarding) or DEVNULL.
      stdout / stderr: None (forwarded to the launcher's output), DEVNULL, a file path (appended to),
        or for stderr STDOUT (merged into stdout), or PIPE: then `stdin_conn` / `stdout_conn` /
        `stderr_conn` of the started process are its ends (dragon._gs_pipe.PipeConnection).
      user / group: numeric ids to run as (None: the runtime's; another needs the privilege to).
      umask: the process's umask, 0 .. 0o777 (-1: the runtime's).
      initial_stdin: bytes written to its stdin before anything else (stdin None or PIPE).
    Raises:
      InvalidArgument: a target, argument or stdio option that cannot be used.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        args: Sequence[str | os.PathLike[str]] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str = "",
        stdin: StdioOption = None,
        stdout: StdioOption = None,
        stderr: StdioOption = None,
        user: int | None = None,
        group: int | None = None,
        umask: int = -1,
        initial_stdin: bytes = b"",
    ) -> None:
        self._spec: gs.ProcessSpec | None = gs.process_spec(
            target,
            args,
            env=env,
            cwd=cwd,
            name=name,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            user=user,
            group=group,
            umask=umask,
            initial_stdin=initial_stdin,
        )
        self._exe = self._spec.exe
        self._name = name
        self._desc: ProcessDescriptor | None = None
        self._returncode: int | None = None
        self._pipes: dict[str, PipeConnection] = {}

    def _pipe(self, stream: str) -> PipeConnection | None:
        if self._desc is None:
            return None
        if stream not in self._pipes:
            sdesc = getattr(self._desc, f"{stream}_sdesc")
            if sdesc is None:
                return None
            self._pipes[stream] = PipeConnection(
                sdesc,
                stdio_channel_name(stream, self._desc.p_uid),  # type: ignore[arg-type]
                writable=stream == "stdin",
            )
        return self._pipes[stream]

    @property
    def stdin_conn(self) -> PipeConnection | None:
        """With stdin=PIPE, the started process's stdin to write to (close it for end of file)."""
        return self._pipe("stdin")

    @property
    def stdout_conn(self) -> PipeConnection | None:
        """With stdout=PIPE, the started process's output to read."""
        return self._pipe("stdout")

    @property
    def stderr_conn(self) -> PipeConnection | None:
        """With stderr=PIPE, the started process's error output to read."""
        return self._pipe("stderr")

    @classmethod
    def _attached(cls, desc: ProcessDescriptor) -> Process:
        """A handle on an existing process, from its descriptor."""
        proc = cls.__new__(cls)
        proc._spec, proc._exe = None, ""
        proc._name = desc.name
        proc._desc = desc
        proc._returncode = gs.exit_code_of(desc)
        proc._pipes = {}
        return proc

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickles as the descriptor: unpickled in another process it is a handle on the same process."""
        if self._desc is None:
            raise InvalidArgument("a Process that was not started cannot be pickled; start() it first")
        return (_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    # ----------------------------------------------------------------------------- lookups

    @classmethod
    def from_puid(cls, p_uid: int) -> Process:
        """A handle on the process with this p_uid (alive or dead). Raises UnknownProcess."""
        return cls._attached(_run(gs.process_query(p_uid)))

    @classmethod
    def from_name(cls, name: str) -> Process:
        """A handle on the process with this name (alive or dead). Raises UnknownProcess."""
        return cls._attached(_run(gs.process_query(name=name)))

    @staticmethod
    def list() -> list[int]:
        """The p_uid of every process GS ever created in this runtime, dead ones included, and Global Services (1)."""
        return _run(gs.process_list())

    # ----------------------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Ask GS to create the process; returns once it runs (or failed to start).

        Raises:
          InvalidArgument: it was started already, or is a looked-up handle.
          ProcessNameInUse: a live process has this name (its p_uid is in `.uid`).
          ProcessStartFailed: Local Services could not start it (e.g. no such executable).
          RuntimeNotRunning: not under `dragon`, or the runtime is gone.
        """
        if self._desc is not None or self._spec is None:
            raise InvalidArgument(f"process {self.p_uid} was started already; make a new Process")
        self._desc = _run(gs.process_create(self._spec))
        self._name = self._desc.name

    def join(self, timeout: float | None = None) -> int | None:
        """Wait until the process exits, at most `timeout` seconds (None: no limit; <= 0: just look).

        Returns:
          its exit code (killed by signal N: -N), or None if it still runs after `timeout`.
        Raises:
          JoinSelf: this is the calling process itself.
          UnknownProcess: GS does not know it; InvalidArgument: not started, or it is Global
            Services (p_uid 1), which runs as long as the runtime.
        """
        desc = self._started("join")
        if self._returncode is not None:
            return self._returncode
        self._returncode = _run(gs.process_join(desc.p_uid, timeout))
        return self._returncode

    def send_signal(self, sig: int) -> None:
        """Send signal `sig` to the process; a process that has exited already is left alone.

        Returns once the signal was delivered, not once the process died (use `join`).
        Raises:
          ProcessSignalFailed: it is still starting, the OS refused the signal (e.g. an invalid one), or
            it is Global Services (p_uid 1), which stops only with the runtime.
          UnknownProcess: GS does not know it; InvalidArgument: not started.
        """
        desc = self._started("signal")
        exit_code = _run(gs.process_kill(desc.p_uid, sig))
        if exit_code is not None:
            self._returncode = exit_code

    def terminate(self) -> None:
        """Send SIGTERM (see `send_signal`)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL (see `send_signal`)."""
        self.send_signal(signal.SIGKILL)

    # ----------------------------------------------------------------------------- state

    @property
    def p_uid(self) -> int | None:
        """The runtime's id of the process; None until started."""
        return None if self._desc is None else self._desc.p_uid

    puid = p_uid

    @property
    def pid(self) -> int | None:
        """The OS pid; None until started."""
        return None if self._desc is None else self._desc.pid

    @property
    def name(self) -> str:
        """Its unique name (the one given, or `dragon_process_<p_uid>` once started)."""
        return self._name

    @property
    def returncode(self) -> int | None:
        """The exit code (killed by signal N: -N) once it has exited; None while it runs or before start.

        Asks GS unless the exit code is known already.
        """
        if self._returncode is None and self._desc is not None:
            self._refresh()
        return self._returncode

    @property
    def is_alive(self) -> bool:
        """Whether it was started and has not exited (asks GS)."""
        return self._desc is not None and self.returncode is None

    def descriptor(self) -> ProcessDescriptor:
        """GS's current record of the process (spec §5.1). Raises InvalidArgument if not started."""
        self._started("describe")
        return self._refresh()

    def parent(self) -> Process | None:
        """The process that created this one, or None if the launcher did (the head process)."""
        desc = self._desc if self._desc is not None and self._desc.p_p_uid else self.descriptor()
        return None if desc.p_p_uid == LAUNCHER_PUID else Process.from_puid(desc.p_p_uid)

    def children(self) -> builtins.list[Process]:
        """Handles on its children that are still alive, as GS knows them."""
        return [Process.from_puid(p) for p in self.descriptor().live_children]

    def _refresh(self) -> ProcessDescriptor:
        assert self._desc is not None
        self._desc = _run(gs.process_query(self._desc.p_uid))
        if (exit_code := gs.exit_code_of(self._desc)) is not None:
            self._returncode = exit_code
        return self._desc

    def _started(self, what: str) -> ProcessDescriptor:
        if self._desc is None:
            raise InvalidArgument(f"cannot {what} a process that was not started: call start() first")
        return self._desc

    def __repr__(self) -> str:
        if self._desc is None:
            return f"<Process {self._exe!r} not started>"
        state = "running" if self._returncode is None else f"exited {self._returncode}"
        return f"<Process p_uid={self._desc.p_uid} name={self._name!r} pid={self._desc.pid} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Process) and self._desc is not None and other.p_uid == self.p_uid

    def __hash__(self) -> int:
        return hash(("Process", self.p_uid if self._desc is not None else id(self)))


def current() -> Process:
    """A handle on the calling process. Raises RuntimeNotRunning when not under `dragon`."""
    return Process.from_puid(launch_parameters().my_puid)


def current_puid() -> int:
    """The calling process's p_uid, from its launch parameters (no GS request)."""
    return launch_parameters().my_puid


def parent_puid() -> int:
    """The p_uid of the process that created the calling one (0: the launcher), with no GS request."""
    return launch_parameters().parent_puid


def _from_msgpack(data: bytes) -> Process:
    return Process._attached(msgspec.msgpack.decode(data, type=ProcessDescriptor))
