"""The async (trio) client API: `Process`, `Channel` and `Pool` through Global Services (spec §4, §7.2).

The same names, arguments, results and errors as the blocking `dragon.native` flavour, with every
method that talks to GS or waits being `async`. What differs is where requests go: the blocking
flavour uses the calling process's own connection, found in its environment; here the *runtime* is
passed explicitly, as the first argument of a constructor or classmethod (the way trio passes a
nursery), and every handle made from it keeps it. A runtime is anything with the method
`async call(request, response_type) -> response` (`Runtime`):

- embedding: the `RuntimeHandle` of `handle = await nursery.start(dragon.serve)` (requests go as the
  launcher, answered on the launcher's channel), or `await dragon.aio.connect(handle)`, which returns it;
- a trio program running as a managed process (under `dragon prog.py`), either of:
  `async with dragon.aio.open_connection() as rt:` (`TrioConnection`, trio-native: TrioChannels to
  the GS channel and from a reply channel of its own, made through GS on entry and destroyed on exit;
  no thread per request), or `rt = await dragon.aio.connect()` (`ManagedConnection`: nothing to close; its
  requests travel the process's blocking connection, `dragon._gs_client`, in a worker thread).
  Either way blocking and async callers of one process never compete for its GS-return channel.

So one piece of code serves both:

    async def work(rt: dragon.aio.Runtime) -> int | None:
        proc = dragon.aio.Process(rt, sys.executable, ["-c", "print('hi')"])
        await proc.start()
        return await proc.join()

Requests are built and answers translated by `dragon._gs_common`, shared with the blocking flavour.
Cancelling a call abandons it: GS may still carry the request out (a cancelled `start` may have
created the process; a cancelled `join` just stops waiting).

Differences forced by `async`: `Process.returncode` is the last exit code seen (no request; use
`await poll()` to ask GS), and `is_alive`, `descriptor`, `parent` and `children` are coroutines.
`Channel.close` is a coroutine (also named `aclose`); `Pool.close` does not wait and stays plain, with
`aclose` next to it. Handles are `async with` context managers. Channel handles are not picklable
(pass the c_uid or name, and `attach` on the other side).

Why a reply channel of its own: the process's GS-return channel carries the GSPingProc handshake,
read once per process by the blocking connection, and the blocking connection's replies; a second
reader on it would take replies meant for the other.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import logging
import math
import os
import pickle
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, TypeVar

import msgspec
import trio

from dragon import _gs_common as gs
from dragon import _rundir
from dragon._gs_pool import Pool as _LocalPool
from dragon._gs_wait import HasPuid, join_list
from dragon.descriptors import ChannelDescriptor, PoolDescriptor, ProcessDescriptor, StdioOption
from dragon.errors import (
    ChannelDestroyed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    DragonError,
    InvalidArgument,
    ProtocolError,
    RuntimeNotRunning,
)
from dragon.ids import DEFAULT_POOL_MUID, LAUNCHER_PUID
from dragon.messages import GSResponse, Response
from dragon.transport import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CAPACITY,
    Buffer,
    ChannelStatistics,
    HeapStatistics,
    TrioChannel,
    decode,
    pid_alive,
)
from dragon.transport import Pool as ShmPool

__all__ = ["Channel", "ManagedConnection", "Pool", "Process", "Runtime", "TrioConnection", "connect", "open_connection"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S: Final = 5.0  # destroying open_connection's reply channel on the way out

R = TypeVar("R", bound=Response)
T = TypeVar("T")


class Runtime(Protocol):
    """Where requests to Global Services go: a `RuntimeHandle` (from `dragon.serve`) or a
    `ManagedConnection` (from `connect()` in a managed process)."""

    async def call(self, req: Any, response_type: type[R]) -> R:
        """Send `req` to GS and return its response, of type `response_type`."""
        ...


class ManagedConnection:
    """The async face of a managed process's own connection to GS (see `connect`)."""

    def __init__(self, p_uid: int) -> None:
        """Internal: use `await connect()`."""
        self.p_uid = p_uid

    async def call(self, req: Any, response_type: type[R]) -> R:
        """Send `req` to GS on this process's connection (in a worker thread) and return the answer.

        Cancellation abandons the thread, which still takes the answer (and drops it).
        Raises RuntimeNotRunning if the runtime is gone; ProtocolError for an unexpected answer.
        """
        from dragon._gs_client import connection

        return await trio.to_thread.run_sync(
            functools.partial(connection().call, req, response_type), abandon_on_cancel=True
        )


async def connect(handle: Runtime | None = None) -> Runtime:
    """The runtime to pass to this module's classes.

    With `handle` (the `RuntimeHandle` of `dragon.serve`, or any `Runtime`): that handle. Without: the
    calling process's blocking connection to GS (`dragon._gs_client.connection`), made now in a thread
    (a managed process reads GS's handshake). Raises RuntimeNotRunning (without a handle) if this
    process has no runtime.
    """
    if handle is not None:
        await trio.lowlevel.checkpoint()
        return handle
    from dragon._gs_client import connection

    client = await trio.to_thread.run_sync(connection)
    return ManagedConnection(client.p_uid)


class TrioConnection:
    """A managed process's trio-native connection to GS (see `open_connection`): requests go on a
    TrioChannel to the GS channel and answers come back on a reply channel of its own, read by
    whichever waiting task finds nobody else reading (no thread, no helper task).
    """

    def __init__(
        self, p_uid: int, gs_pid: int | None, to_gs: TrioChannel, replies: TrioChannel, reply_c_uid: int
    ) -> None:
        """Internal: use `open_connection()`."""
        self.p_uid = p_uid
        self.r_c_uid = reply_c_uid
        self._gs_pid = gs_pid
        self._to_gs, self._replies = to_gs, replies
        self._enc = msgspec.msgpack.Encoder()
        self._dec: msgspec.msgpack.Decoder[Response] = msgspec.msgpack.Decoder(GSResponse)
        self._tags = itertools.count(1)
        self._wakeups: dict[int, trio.Event] = {}
        self._filed: dict[int, Response] = {}
        self._reading = trio.Lock()

    async def call(self, req: Any, response_type: type[R]) -> R:
        """Send `req` to GS and wait for its answer; several tasks may call at once.

        Cancellation is safe: the answer to a cancelled call is dropped when it arrives.
        Raises RuntimeNotRunning if the runtime is gone; ProtocolError for an unexpected answer.
        """
        tag = next(self._tags)
        self._wakeups[tag] = trio.Event()
        try:
            try:
                await self._to_gs.send(
                    self._enc.encode(msgspec.structs.replace(req, tag=tag, p_uid=self.p_uid, r_c_uid=self.r_c_uid))
                )
            except ChannelDestroyed as exc:
                raise RuntimeNotRunning(f"the runtime is gone (the GS channel was destroyed): {exc}") from exc
            while tag not in self._filed:
                if self._reading.locked():  # another task reads: it files our answer, or wakes us on leaving
                    self._wakeups[tag] = trio.Event()
                    await self._wakeups[tag].wait()
                    continue
                async with self._reading:
                    try:
                        while tag not in self._filed:
                            self._file(await self._receive())
                    finally:
                        for event in self._wakeups.values():  # somebody else must take over reading
                            event.set()
            resp = self._filed.pop(tag)
        finally:
            self._wakeups.pop(tag, None)
            self._filed.pop(tag, None)
        if not isinstance(resp, response_type):
            raise ProtocolError(
                f"Global Services answered {type(req).__name__} with {type(resp).__name__}, "
                f"not {response_type.__name__}"
            )
        return resp

    def _file(self, resp: Response) -> None:
        event = self._wakeups.get(resp.ref)
        if event is not None:
            self._filed[resp.ref] = resp
            event.set()

    async def _receive(self) -> Response:
        """One answer, checking every LIVENESS_SLICE_S that the runtime still lives (as the blocking
        connection does)."""
        from dragon._gs_client import LIVENESS_SLICE_S

        while True:
            with trio.move_on_after(LIVENESS_SLICE_S):
                try:
                    frame = await self._replies.receive()
                except ChannelDestroyed as exc:
                    raise RuntimeNotRunning(f"the runtime is gone (the reply channel was destroyed): {exc}") from exc
                return decode(self._dec, frame, where="aio reply channel")
            if self._to_gs.statistics().destroyed:
                raise RuntimeNotRunning("the runtime is gone (the GS channel was destroyed)")
            if self._gs_pid is not None and not pid_alive(self._gs_pid):
                raise RuntimeNotRunning(f"the runtime is gone (Global Services, pid {self._gs_pid}, has exited)")


@asynccontextmanager
async def open_connection() -> AsyncIterator[TrioConnection]:
    """A trio-native connection of this managed process to GS, for the body of `async with`.

    It makes a reply channel of its own through GS (using the process's blocking connection once, in
    a thread), so that it never competes with blocking callers of the same process for the
    GS-return channel; on leaving, it destroys that channel (bounded, shielded).
    Raises RuntimeNotRunning if this process was not started by the runtime.
    """
    from dragon._gs_channel import Channel as SyncChannel
    from dragon._gs_client import connection

    client = await trio.to_thread.run_sync(connection)
    reply = await trio.to_thread.run_sync(functools.partial(SyncChannel.create, capacity=64))
    try:
        reply.close()
        info = _rundir.read_info(client.params.run_id) if client.params.run_id else None
        to_gs = TrioChannel.attach(client.params.gs_cd)
        try:
            replies = TrioChannel.attach(reply.descriptor.sdesc)
        except BaseException:
            await trio.aclose_forcefully(to_gs)
            raise
        conn = TrioConnection(client.p_uid, info.gs_pid if info is not None else None, to_gs, replies, reply.c_uid)
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True):
                await to_gs.aclose()
                await replies.aclose()
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await trio.to_thread.run_sync(_destroy_quietly, reply, abandon_on_cancel=True)


def _destroy_quietly(chan: Any) -> None:
    try:
        chan.destroy()
    except DragonError as exc:  # the runtime is going away: it removes the channel itself
        log.debug("could not destroy the aio reply channel: %s", exc)


async def _run(runtime: Runtime, call: gs.GSCall[R, T]) -> T:
    """Carry out one GS call (see dragon._gs_common)."""
    return call.finish(await runtime.call(call.request, call.response_type))


async def wait(
    runtime: Runtime,
    processes: Sequence[HasPuid],
    timeout: float | None = None,
    *,
    join_all: bool = False,
    return_on_bad_exit: bool = False,
) -> dict[int, int | None]:
    """`dragon.native.wait` for trio: one GSProcessJoinList for several processes (any or all)."""
    return await _run(runtime, join_list(processes, timeout, join_all, return_on_bad_exit))


# ------------------------------------------------------------------------------------------- processes


class Process:
    """A managed process (see `dragon.native.Process`): `Process(runtime, target, args, ...)`, then
    `await start()`.

    Args and Raises: those of `dragon.native.Process`, after `runtime` (see the module docstring).
    """

    def __init__(
        self,
        runtime: Runtime,
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
        self._rt = runtime
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
        self._name = name
        self._desc: ProcessDescriptor | None = None
        self._returncode: int | None = None

    @classmethod
    def _attached(cls, runtime: Runtime, desc: ProcessDescriptor) -> Process:
        proc = cls.__new__(cls)
        proc._rt, proc._spec, proc._name, proc._desc = runtime, None, desc.name, desc
        proc._returncode = gs.exit_code_of(desc)
        return proc

    # ----------------------------------------------------------------------------- lookups

    @classmethod
    async def from_puid(cls, runtime: Runtime, p_uid: int) -> Process:
        """A handle on the process with this p_uid (alive or dead). Raises UnknownProcess."""
        return cls._attached(runtime, await _run(runtime, gs.process_query(p_uid)))

    @classmethod
    async def from_name(cls, runtime: Runtime, name: str) -> Process:
        """A handle on the process with this name (alive or dead). Raises UnknownProcess."""
        return cls._attached(runtime, await _run(runtime, gs.process_query(name=name)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The p_uid of every process GS ever created in this runtime, dead ones included, and Global Services (1)."""
        return await _run(runtime, gs.process_list())

    # ----------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Ask GS to create the process; returns once it runs (or failed to start).

        Raises:
          InvalidArgument: it was started already, or is a looked-up handle.
          ProcessNameInUse: a live process has this name (its p_uid is in `.uid`).
          ProcessStartFailed: Local Services could not start it (e.g. no such executable).
        """
        if self._desc is not None or self._spec is None:
            raise InvalidArgument(f"process {self.p_uid} was started already; make a new Process")
        self._desc = await _run(self._rt, gs.process_create(self._spec))
        self._name = self._desc.name

    async def join(self, timeout: float | None = None) -> int | None:
        """Wait until the process exits, at most `timeout` seconds (None: no limit; <= 0: just look).

        Returns its exit code (killed by signal N: -N), or None if it still runs after `timeout`.
        Cancelling the wait leaves the process alone.
        Raises JoinSelf, UnknownProcess; InvalidArgument if not started, or if it is Global Services.
        """
        desc = self._started("join")
        if self._returncode is None:
            self._returncode = await _run(self._rt, gs.process_join(desc.p_uid, timeout))
        else:
            await trio.lowlevel.checkpoint()
        return self._returncode

    async def send_signal(self, sig: int) -> None:
        """Send signal `sig`; a process that has exited already is left alone (see `dragon.native`).

        Raises ProcessSignalFailed, UnknownProcess; InvalidArgument if not started.
        """
        desc = self._started("signal")
        exit_code = await _run(self._rt, gs.process_kill(desc.p_uid, sig))
        if exit_code is not None:
            self._returncode = exit_code

    async def terminate(self) -> None:
        """Send SIGTERM (see `send_signal`)."""
        await self.send_signal(signal.SIGTERM)

    async def kill(self) -> None:
        """Send SIGKILL (see `send_signal`)."""
        await self.send_signal(signal.SIGKILL)

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
        """The exit code last seen by this handle (no request: `await poll()` asks GS)."""
        return self._returncode

    async def poll(self) -> int | None:
        """The exit code once it has exited, None while it runs or before start (asks GS)."""
        if self._returncode is None and self._desc is not None:
            await self._refresh()
        return self._returncode

    async def is_alive(self) -> bool:
        """Whether it was started and has not exited (asks GS)."""
        return self._desc is not None and await self.poll() is None

    async def descriptor(self) -> ProcessDescriptor:
        """GS's current record of the process (spec §5.1). Raises InvalidArgument if not started."""
        self._started("describe")
        return await self._refresh()

    async def parent(self) -> Process | None:
        """The process that created this one, or None if the launcher did (the head process)."""
        desc = self._desc if self._desc is not None and self._desc.p_p_uid else await self.descriptor()
        return None if desc.p_p_uid == LAUNCHER_PUID else await Process.from_puid(self._rt, desc.p_p_uid)

    async def children(self) -> builtins.list[Process]:
        """Handles on its children that are still alive, as GS knows them."""
        return [await Process.from_puid(self._rt, p) for p in (await self.descriptor()).live_children]

    async def _refresh(self) -> ProcessDescriptor:
        assert self._desc is not None
        self._desc = await _run(self._rt, gs.process_query(self._desc.p_uid))
        if (exit_code := gs.exit_code_of(self._desc)) is not None:
            self._returncode = exit_code
        return self._desc

    def _started(self, what: str) -> ProcessDescriptor:
        if self._desc is None:
            raise InvalidArgument(f"cannot {what} a process that was not started: call start() first")
        return self._desc

    def __repr__(self) -> str:
        if self._desc is None:
            return f"<aio.Process {self._spec.exe if self._spec else ''!r} not started>"
        state = "running" if self._returncode is None else f"exited {self._returncode}"
        return f"<aio.Process p_uid={self._desc.p_uid} name={self._name!r} pid={self._desc.pid} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Process) and self._desc is not None and other.p_uid == self.p_uid

    def __hash__(self) -> int:
        return hash(("Process", self.p_uid if self._desc is not None else id(self)))


# ------------------------------------------------------------------------------------------- channels


class Channel:
    """A handle on a GS-managed channel (see `dragon.native.Channel`), with a trio face on the shared
    memory (`dragon.transport.TrioChannel`): `send`/`recv` wait without blocking the event loop and can
    be cancelled without losing a message.

    One handle may be used by several tasks. `aclose()` drops this handle; `destroy()` ends the channel
    for everybody.
    """

    def __init__(self, runtime: Runtime, desc: ChannelDescriptor) -> None:
        """Internal: attach to the channel `desc` describes (use the classmethods).

        Raises ChannelDestroyed if the channel is dead or gone.
        """
        self._rt = runtime
        self._desc = gs.live_channel(desc)
        self._chan = TrioChannel.attach(desc.sdesc)

    @classmethod
    async def create(
        cls,
        runtime: Runtime,
        *,
        capacity: int = DEFAULT_CAPACITY,
        block_size: int = DEFAULT_BLOCK_SIZE,
        name: str = "",
        m_uid: int = DEFAULT_POOL_MUID,
        soft: bool = False,
    ) -> Channel:
        """Create a channel through GS (GSChannelCreate) and attach to it (see `dragon.native.Channel.create`).

        Raises InvalidArgument, ChannelNameInUse, ChannelCreateFailed.
        """
        call = gs.channel_create(capacity=capacity, block_size=block_size, name=name, m_uid=m_uid, soft=soft)
        return cls(runtime, await _run(runtime, call))

    @classmethod
    async def attach(cls, runtime: Runtime, c_uid: int | None = None, *, name: str = "") -> Channel:
        """Attach to an existing channel by c_uid or by name. Raises UnknownChannel, ChannelDestroyed,
        InvalidArgument (neither or both of c_uid and name)."""
        return cls(runtime, await _run(runtime, gs.channel_attach(c_uid, name)))

    @classmethod
    async def wait_created(cls, runtime: Runtime, name: str, timeout: float | None = None) -> Channel:
        """Attach to the channel `name` as soon as it exists, waiting up to `timeout` s (None: no limit).

        Raises ChannelWaitTimeout, ChannelDestroyed.
        """
        return cls(runtime, await _run(runtime, gs.channel_wait_created(name, timeout)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The c_uid of every channel GS knows in this runtime, destroyed ones included."""
        return await _run(runtime, gs.channel_list())

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

    # ----------------------------------------------------------------------------- messages

    async def send_bytes(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one message of any size; waits while the channel is full, at most `timeout` s (None:
        no limit; 0: do not wait).

        Raises ChannelFull on timeout, ChannelDestroyed if the channel is (or gets) destroyed,
        ChannelError if this handle was closed.
        """
        try:
            if timeout is not None and timeout <= 0:
                await trio.lowlevel.checkpoint()
                self._chan.send_nowait(data)
                return
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await self._chan.send(data)
                return
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError as exc:
            raise ChannelError(f"this handle on channel {self.name} was closed") from exc
        raise ChannelFull(f"channel {self.name} stayed full for {timeout} s")

    async def recv_bytes(self, timeout: float | None = None) -> bytes:
        """Receive the oldest message; waits while the channel is empty, at most `timeout` s.

        Raises ChannelEmpty on timeout, ChannelDestroyed if the channel is (or gets) destroyed,
        ChannelError if this handle was closed.
        """
        try:
            if timeout is not None and timeout <= 0:
                await trio.lowlevel.checkpoint()
                return self._chan.receive_nowait()
            with trio.move_on_after(math.inf if timeout is None else timeout):
                return await self._chan.receive()
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError as exc:
            raise ChannelError(f"this handle on channel {self.name} was closed") from exc
        raise ChannelEmpty(f"channel {self.name} stayed empty for {timeout} s")

    async def send(self, obj: object, timeout: float | None = None) -> None:
        """Pickle `obj` and send it as one message (see `send_bytes`)."""
        await self.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), timeout)

    async def recv(self, timeout: float | None = None) -> Any:
        """Receive one message and unpickle it (see `recv_bytes`)."""
        return pickle.loads(await self.recv_bytes(timeout))

    def statistics(self) -> ChannelStatistics:
        """Depth, capacity and waiters right now (from the shared memory, not from GS)."""
        return self._chan.statistics()

    # ----------------------------------------------------------------------------- end

    async def aclose(self) -> None:
        """Drop this handle (tasks waiting on it get ChannelError); the channel lives on. Idempotent."""
        await self._chan.aclose()

    close = aclose

    async def destroy(self) -> None:
        """Destroy the channel for everybody (GSChannelDestroy): queued messages are dropped and every
        blocked sender or receiver wakes with ChannelDestroyed. Closes this handle (unless BUSY).

        Raises UnknownChannel (destroyed already), ChannelBusy.
        """
        err = await _run(self._rt, gs.channel_destroy(self._desc))  # ChannelBusy: still there, keep the handle
        with trio.CancelScope(shield=True):
            await self._chan.aclose()
        if err is not None:
            raise err
        self._desc = gs.dead(self._desc)

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<aio.Channel c_uid={self._desc.c_uid} name={self._desc.name!r}>"


# ------------------------------------------------------------------------------------------- pools


class Pool:
    """A handle on a GS-managed memory pool (see `dragon.native.Pool`).

    GS requests (`create`, `attach`, `list`, `destroy`) are async; the local mapping (`memory`,
    `statistics`, `close`) never waits and is the blocking flavour's, unchanged.
    """

    def __init__(self, runtime: Runtime, desc: PoolDescriptor) -> None:
        """Internal: a handle on the pool `desc` describes (use the classmethods)."""
        self._rt = runtime
        self._local = _LocalPool(desc)

    @classmethod
    async def create(cls, runtime: Runtime, size_bytes: int, *, name: str = "", soft: bool = False) -> Pool:
        """Create a pool of `size_bytes` through GS (GSPoolCreate; see `dragon.native.Pool.create`).

        Raises InvalidArgument, PoolNameInUse, PoolCreateFailed.
        """
        return cls(runtime, await _run(runtime, gs.pool_create(size_bytes, name=name, soft=soft)))

    @classmethod
    async def attach(cls, runtime: Runtime, m_uid: int | None = None, *, name: str = "") -> Pool:
        """A handle on an existing pool, by m_uid or by name. Raises UnknownPool, PoolGone,
        InvalidArgument."""
        return cls(runtime, await _run(runtime, gs.pool_attach(m_uid, name)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The m_uid of every pool GS made in this runtime, destroyed ones included."""
        return await _run(runtime, gs.pool_list())

    @property
    def m_uid(self) -> int:
        return self._local.m_uid

    @property
    def name(self) -> str:
        return self._local.name

    @property
    def descriptor(self) -> PoolDescriptor:
        """GS's record of the pool when this handle was made (spec §5.3)."""
        return self._local.descriptor

    def memory(self) -> ShmPool:
        """This process's mapping of the pool (made on first use). Raises PoolError if destroyed."""
        return self._local.memory()

    def statistics(self) -> HeapStatistics:
        """Size, use and free space of the pool right now (from the shared memory)."""
        return self._local.statistics()

    def close(self) -> None:
        """Drop this process's mapping; the pool lives on. Idempotent."""
        self._local.close()

    async def aclose(self) -> None:
        """`close()`, for `async with`."""
        await trio.lowlevel.checkpoint()
        self.close()

    async def destroy(self) -> None:
        """Destroy the pool for everybody (GSPoolDestroy) and close this handle.

        Raises PoolGone, UnknownPool, PoolBusy, PoolDestroyFailed.
        """
        err = await _run(self._rt, gs.pool_destroy(self._local.descriptor))  # PoolBusy: keep the handle
        self.close()
        if err is not None:
            raise err
        self._local = _LocalPool(gs.dead(self._local.descriptor))

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<aio.Pool m_uid={self.m_uid} name={self.name!r}>"
