"""Managed processes through Global Services (`dragon.native.Process`, `wait`, `current`): see the
package docstring. Each method that talks to GS is one request, built and read by
`dragon.client.requests` and carried out by its `run`; the handle's state and properties are
`dragon.client.handles`', shared with the async flavour `dragon.aio`.
"""

from __future__ import annotations

import builtins
import signal
from collections.abc import Sequence
from typing import Any

import msgspec

from dragon.client import requests as gs
from dragon.client.gs_client import launch_parameters
from dragon.client.handles import ProcessHandle
from dragon.client.handles import ProcessTemplate as ProcessTemplate
from dragon.client.pipes import PipeConnection
from dragon.client.requests import HasPuid, run
from dragon.descriptors import ProcessDescriptor
from dragon.errors import InvalidArgument
from dragon.ids import LAUNCHER_PUID, stdio_channel_name


class Process(ProcessHandle):
    """A managed process: `Process(target, args, kwargs, ...)` of an executable or a Python callable,
    then `start()` (arguments: see `dragon.client.handles.ProcessHandle`). Every method is one blocking GS request, usable from any thread.
    Failures raise the `ProcessError` subclass for GS's answer, with GS's text."""

    _pipes: dict[str, PipeConnection] | None = None  # the PIPE ends, made on first use

    def _pipe(self, stream: str) -> PipeConnection | None:
        if self._desc is None:
            return None
        if self._pipes is None:
            self._pipes = {}
        pipes = self._pipes
        if stream not in pipes:
            sdesc = getattr(self._desc, f"{stream}_sdesc")
            if sdesc is None:
                return None
            pipes[stream] = PipeConnection(
                sdesc,
                stdio_channel_name(stream, self._desc.p_uid),  # type: ignore[arg-type]
                writable=stream == "stdin",
            )
        return pipes[stream]

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
        proc._attach(desc)
        return proc

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickles as the descriptor: unpickled in another process it is a handle on the same process."""
        if self._desc is None:
            raise InvalidArgument("a Process that was not started cannot be pickled; start() it first")
        return (_process_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    # ----------------------------------------------------------------------------- lookups

    @classmethod
    def from_template(cls, template: ProcessTemplate, name: str = "") -> Process:
        """An unstarted process as `template` describes it, named `name` ("": the template's name,
        else GS's default)."""
        target, args, kwargs, options = template.arguments(name)
        return cls(target, args, kwargs, **options)

    @classmethod
    def from_puid(cls, p_uid: int) -> Process:
        """A handle on the process with this p_uid (alive or dead). Raises UnknownProcess."""
        return cls._attached(run(gs.process_query(p_uid)))

    @classmethod
    def from_name(cls, name: str) -> Process:
        """A handle on the process with this name (alive or dead). Raises UnknownProcess."""
        return cls._attached(run(gs.process_query(name=name)))

    @staticmethod
    def list() -> list[int]:
        """The p_uid of every process GS ever created in this runtime, dead ones included, and Global Services (1)."""
        return run(gs.process_list())

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
        self._desc = run(gs.process_create(self._spec))
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
        if self._returncode is None:
            self._returncode = run(gs.process_join(desc.p_uid, timeout))
        return self._returncode

    def send_signal(self, sig: int, hide_stderr: bool = False) -> None:
        """Send signal `sig` to the process; a process that has exited already is left alone. With
        `hide_stderr`, no more of its stderr is shown (e.g. the traceback of a worker interrupted).

        Returns once the signal was delivered, not once the process died (use `join`).
        Raises:
          ProcessSignalFailed: it is still starting, the OS refused the signal (e.g. an invalid one), or
            it is Global Services (p_uid 1), which stops only with the runtime.
          UnknownProcess: GS does not know it; InvalidArgument: not started.
        """
        desc = self._started("signal")
        exit_code = run(gs.process_kill(desc.p_uid, sig, hide_stderr))
        if exit_code is not None:
            self._returncode = exit_code

    def terminate(self, hide_stderr: bool = False) -> None:
        """Send SIGTERM (see `send_signal`)."""
        self.send_signal(signal.SIGTERM, hide_stderr)

    def kill(self, hide_stderr: bool = False) -> None:
        """Send SIGKILL (see `send_signal`)."""
        self.send_signal(signal.SIGKILL, hide_stderr)

    # ----------------------------------------------------------------------------- state

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
        return self._record(run(gs.process_query(self._started("describe").p_uid)))


def current() -> Process:
    """A handle on the calling process. Raises RuntimeNotRunning when not under `dragon`."""
    return Process.from_puid(launch_parameters().my_puid)


def current_puid() -> int:
    """The calling process's p_uid, from its launch parameters (no GS request)."""
    return launch_parameters().my_puid


def parent_puid() -> int:
    """The p_uid of the process that created the calling one (0: the launcher), with no GS request."""
    return launch_parameters().parent_puid


def wait(
    processes: Sequence[HasPuid],
    timeout: float | None = None,
    *,
    join_all: bool = False,
    return_on_bad_exit: bool = False,
) -> dict[int, int | None]:
    """Wait until one (or, with `join_all`, every) process of `processes` has exited: one request to
    Global Services (spec §4.2 GSProcessJoinList), so that a parent with many children needs neither
    a thread per child nor a polling loop.

    Waits at most `timeout` seconds (None: no limit; 0: just look). With `return_on_bad_exit`, returns
    as soon as any of them has exited with a non-zero code.

    Returns:
      {p_uid: exit code} for every process given, None for those still running.
    Raises:
      InvalidArgument: a process was not started, or is Global Services (it runs as long as the
      runtime); UnknownProcess: GS does not know one; JoinSelf: the calling process is among them
      (it would wait for itself).
    """
    return run(gs.join_list(processes, timeout, join_all, return_on_bad_exit))


def _process_from_msgpack(data: bytes) -> Process:
    return Process._attached(msgspec.msgpack.decode(data, type=ProcessDescriptor))
