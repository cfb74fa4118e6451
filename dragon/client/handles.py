"""What a handle of `dragon.native` and one of `dragon.aio` share: its state and everything read from it.

A handle on a process, channel or pool of Global Services is the same thing in both flavours: the
descriptor GS gave (spec §5), what this process holds of it (a shared-memory channel, a pool's
mapping) and the properties read from those. Only what talks to GS, or waits, differs, blocking or
async, and is written in `dragon.native` and `dragon.aio` on top of these classes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

import msgspec

from dragon.client.python_child import callable_text
from dragon.client.requests import ProcessSpec, process_spec
from dragon.descriptors import ChannelDescriptor, ObjectState, PoolDescriptor, ProcessDescriptor, StdioOption
from dragon.errors import ChannelDestroyed, InvalidArgument
from dragon.policy import Policy
from dragon.transport import HeapStatistics
from dragon.transport import Pool as ShmPool


class ProcessOptionArgs(TypedDict, total=False):
    """The keyword arguments of `Process(...)` after its target and args (see `ProcessHandle`)."""

    env: Mapping[str, str] | None
    cwd: str | os.PathLike[str] | None
    name: str
    stdin: StdioOption
    stdout: StdioOption
    stderr: StdioOption
    user: int | None
    group: int | None
    umask: int
    initial_stdin: bytes
    policy: Policy | None


class ProcessHandle:
    """A managed process: created through GS, run by Local Services, known to GS forever (spec §5.1).

    `Process(target, args, kwargs, ...)` describes a process; `start()` creates it. `target` is an
    executable (a path, or a name looked up on PATH) and `args` its arguments (argv[1:], strings), or
    a Python callable that the process runs as `target(*args, **kwargs)` in an interpreter like this
    one, as multiprocessing's spawn would (`dragon.client.python_child`: the target and arguments are
    pickled at `start()`, a target of the main script needs its `if __name__ == "__main__":` guard;
    the exit code is 0 when it returns, `sys.exit`'s code, or 1 after an exception).

    Args:
      kwargs: keyword arguments of a callable target (None for an executable).
      env: variables merged over this process's own environment (as Dragon merges it over Local
        Services'); the child's launch parameters (DRAGON_*) are always its own.
      cwd: working directory; None = this process's current directory.
      name: a unique name for lookups with `from_name`; "" = `dragon_process_<p_uid>`.
      stdin: None (fed by the launcher's stdin forwarding) or DEVNULL.
      stdout / stderr: None (forwarded to the launcher's output), DEVNULL, a file path (appended to),
        or for stderr STDOUT (merged into stdout), or PIPE: then `stdin_conn` / `stdout_conn` /
        `stderr_conn` of the started process are its ends (dragon.client.pipes.PipeConnection).
      user / group: numeric ids to run as (None: the runtime's; another needs the privilege to).
      umask: the process's umask, 0 .. 0o777 (-1: the runtime's).
      initial_stdin: bytes written to its stdin before anything else (stdin None or PIPE).
      policy: where it runs (`dragon.native.Policy`: node or host, CPUs), over the policy of the
        `with Policy(...)` blocks current when it is started; None = theirs, or the default placement.
    Raises:
      InvalidArgument: a target, argument or stdio option that cannot be used.
    """

    _kind = "Process"  # in repr

    def __init__(
        self,
        target: str | os.PathLike[str] | Callable[..., object],
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
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
        policy: Policy | None = None,
    ) -> None:
        self._spec: ProcessSpec | None = process_spec(
            target,
            args,
            kwargs,
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
            policy=policy,
        )
        self._name = name
        self._desc: ProcessDescriptor | None = None
        self._returncode: int | None = None

    def _attach(self, desc: ProcessDescriptor) -> None:
        """Make this (bare) handle one on an existing process, from its descriptor."""
        self._spec, self._name, self._desc = None, desc.name, desc
        self._returncode = exit_code_of(desc)

    def _started(self, what: str) -> ProcessDescriptor:
        if self._desc is None:
            raise InvalidArgument(f"cannot {what} a process that was not started: call start() first")
        return self._desc

    def _record(self, desc: ProcessDescriptor) -> ProcessDescriptor:
        """GS's newer record of the process: keep it, and its exit code once it has exited."""
        self._desc, self._name = desc, desc.name
        if (exit_code := exit_code_of(desc)) is not None:
            self._returncode = exit_code
        return desc

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

    def __repr__(self) -> str:
        kind = self._kind
        if self._desc is None:
            spec = self._spec
            what = "" if spec is None else spec.exe if spec.call is None else callable_text(spec.call[0])
            return f"<{kind} {what!r} not started>"
        state = "running" if self._returncode is None else f"exited {self._returncode}"
        return f"<{kind} p_uid={self._desc.p_uid} name={self._name!r} pid={self._desc.pid} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and self._desc is not None and other.p_uid == self.p_uid

    def __hash__(self) -> int:
        return hash(("Process", self.p_uid if self._desc is not None else id(self)))


class ProcessTemplate:
    """A process described once, to start many like it (spec §7.2): the arguments of `Process`,
    checked now (InvalidArgument as there); `Process.from_template(template, name=...)` makes an
    unstarted process of it. A callable target and its arguments are pickled at each start (and a
    lambda refused there, as by `Process`)."""

    def __init__(
        self,
        target: str | os.PathLike[str] | Callable[..., object],
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[ProcessOptionArgs],
    ) -> None:
        args = tuple(args or ())  # before the checks: an iterator is read once
        ProcessHandle(target, args, kwargs, **options)  # the checks, nothing else
        self.target, self.args, self.kwargs, self.options = target, args, dict(kwargs or {}), options

    def arguments(self, name: str) -> tuple[Any, tuple[Any, ...], dict[str, Any], ProcessOptionArgs]:
        """`Process`'s arguments for a process of this template named `name` ("": the template's)."""
        options: ProcessOptionArgs = {**self.options}
        if name:
            options["name"] = name
        return self.target, self.args, self.kwargs, options

    def __repr__(self) -> str:
        return f"ProcessTemplate({self.target!r}, {self.args!r}, {self.kwargs!r})"


def exit_code_of(desc: ProcessDescriptor) -> int | None:
    """The exit code GS recorded, or None while the process has not exited."""
    return desc.ecode if desc.state == ObjectState.DEAD else None


class ChannelHandle:
    """A GS-managed channel's descriptor and its identity; the flavours add the shared memory."""

    _kind = "Channel"  # in repr

    def __init__(self, desc: ChannelDescriptor) -> None:
        """Raises ChannelDestroyed if GS recorded the channel as destroyed."""
        if desc.state == ObjectState.DEAD:
            raise ChannelDestroyed(f"channel {desc.name} (c_uid {desc.c_uid}) was destroyed")
        self._desc = desc

    @property
    def c_uid(self) -> int:
        return self._desc.c_uid

    @property
    def name(self) -> str:
        return self._desc.name

    @property
    def m_uid(self) -> int:
        """The pool the channel belongs to."""
        return self._desc.m_uid

    @property
    def descriptor(self) -> ChannelDescriptor:
        """GS's record of the channel when this handle was made (spec §5.2)."""
        return self._desc

    def _destroyed(self) -> None:
        self._desc = msgspec.structs.replace(self._desc, state=ObjectState.DEAD)

    def __repr__(self) -> str:
        return f"<{self._kind} c_uid={self._desc.c_uid} name={self._desc.name!r}>"


class PoolHandle:
    """A GS-managed memory pool's descriptor and this process's mapping of it (spec §5.3).

    The mapping is made only when needed (`memory`, `statistics`), so holding many handles costs no
    fds; neither it nor `close` waits on anything, so both flavours share them as they are.
    """

    _kind = "Pool"  # in repr

    def __init__(self, desc: PoolDescriptor) -> None:
        """Internal: a handle on the pool `desc` describes (use the classmethods)."""
        self._desc = desc
        self._lock = threading.Lock()
        self._shm: ShmPool | None = None

    @property
    def m_uid(self) -> int:
        return self._desc.m_uid

    @property
    def name(self) -> str:
        return self._desc.name

    @property
    def descriptor(self) -> PoolDescriptor:
        """GS's record of the pool when this handle was made (spec §5.3)."""
        return self._desc

    def memory(self) -> ShmPool:
        """This process's mapping of the pool (made on first use) to allocate from.

        Raises PoolError if the pool was destroyed.
        """
        with self._lock:
            if self._shm is None:
                self._shm = ShmPool.attach(self._desc.sdesc)
            return self._shm

    def statistics(self) -> HeapStatistics:
        """Size, use and free space of the pool right now (from the shared memory)."""
        return self.memory().statistics()

    def close(self) -> None:
        """Drop this process's mapping; the pool lives on. Idempotent."""
        with self._lock:
            shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()

    def _destroyed(self) -> None:
        self._desc = msgspec.structs.replace(self._desc, state=ObjectState.DEAD)

    def __repr__(self) -> str:
        return f"<{self._kind} m_uid={self._desc.m_uid} name={self._desc.name!r}>"
