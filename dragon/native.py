"""The native Python API (spec §7.2): managed processes, channels and pools through Global Services.

Works in any process the runtime started (`dragon prog.py` and the processes it creates with
`Process`), in a program that runs a runtime with `dragon.serve` (`dragon.client.embedded`; in its trio
code, call it through `trio.to_thread.run_sync`, or use `dragon.aio` with the handle), and in a plain
`python prog.py` program once the multiprocessing start method "dragon" has brought up a runtime for
it (`dragon.client.background`); elsewhere every call raises `RuntimeNotRunning`, saying how to get a
runtime. Blocking and thread-safe, and light to import: no trio. Errors are the classes of
`dragon.errors` (`ProcessError`, `GSChannelError`, `GSPoolError` and their subclasses, one per failure
answer of Global Services).

Each method that talks to GS is one request, built and read by `dragon.client.requests` and carried out
by its `run` over this process's connection (`dragon.client.gs_client`). The state and properties of the
handles are `dragon.client.handles`', shared with the async flavour `dragon.aio`. Channels: GS names and
counts them and Local Services makes the shared memory; `send`/`recv` then go through this process's
own handle on it (`dragon.transport.Channel`), without GS.
"""

from __future__ import annotations

import builtins
import pickle
import signal
from collections.abc import Sequence
from typing import Any

import msgspec

from dragon.client import requests as gs
from dragon.client.gs_client import launch_parameters
from dragon.client.handles import ChannelHandle, PoolHandle, ProcessHandle
from dragon.client.pipes import PipeConnection
from dragon.client.requests import HasPuid, run
from dragon.descriptors import DEVNULL as DEVNULL
from dragon.descriptors import PIPE as PIPE
from dragon.descriptors import STDOUT as STDOUT
from dragon.descriptors import ChannelDescriptor, PoolDescriptor, ProcessDescriptor
from dragon.errors import InvalidArgument
from dragon.ids import DEFAULT_POOL_MUID, LAUNCHER_PUID, stdio_channel_name
from dragon.transport import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, Buffer, ChannelStatistics
from dragon.transport import Channel as ShmChannel

__all__ = ["DEVNULL", "PIPE", "STDOUT", "Channel", "Pool", "Process", "current", "current_puid", "parent_puid", "wait"]


class Process(ProcessHandle):
    """A managed process: `Process(target, args, ...)`, then `start()` (arguments: see
    `dragon.client.handles.ProcessHandle`). Every method is one blocking GS request, usable from any thread.
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

    def send_signal(self, sig: int) -> None:
        """Send signal `sig` to the process; a process that has exited already is left alone.

        Returns once the signal was delivered, not once the process died (use `join`).
        Raises:
          ProcessSignalFailed: it is still starting, the OS refused the signal (e.g. an invalid one), or
            it is Global Services (p_uid 1), which stops only with the runtime.
          UnknownProcess: GS does not know it; InvalidArgument: not started.
        """
        desc = self._started("signal")
        exit_code = run(gs.process_kill(desc.p_uid, sig))
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


# ------------------------------------------------------------------------------------------- channels


class Channel(ChannelHandle):
    """A handle on a GS-managed channel: an ordered, bounded, many-to-many message queue (spec §6).

    Make one with `Channel.create`, or reach an existing one with `Channel.attach` (by c_uid or name)
    or `Channel.wait_created` (by name, waiting for its creation). Pickled, a handle re-attaches in
    the other process by descriptor. Thread-safe, like the transport handle underneath.
    `close()` drops this handle; `destroy()` ends the channel for everybody.
    """

    def __init__(self, desc: ChannelDescriptor) -> None:
        """Internal: attach to the channel `desc` describes (use the classmethods).

        Raises ChannelDestroyed if the channel is dead or gone.
        """
        super().__init__(desc)
        self._chan = ShmChannel.attach(desc.sdesc)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_channel_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    @classmethod
    def create(
        cls,
        *,
        capacity: int = DEFAULT_CAPACITY,
        block_size: int = DEFAULT_BLOCK_SIZE,
        name: str = "",
        m_uid: int = DEFAULT_POOL_MUID,
        soft: bool = False,
    ) -> Channel:
        """Create a channel through GS (GSChannelCreate) and attach to it.

        Args:
          capacity: messages it holds before a send blocks (>= 1).
          block_size: bytes per message block (>= 256); larger messages take several blocks.
          name: a unique name ("" = `dragon_channel_<c_uid>`).
          m_uid: the pool it belongs to (default pool, or one made with `Pool.create`).
          soft: with a name, attach to a live channel of that name instead of failing (get-or-create).
        Raises:
          InvalidArgument: a capacity or block size out of range, or soft without a name.
          ChannelNameInUse: a live channel has that name (not soft).
          ChannelCreateFailed: GS or Local Services could not make it (e.g. an unknown m_uid).
        """
        return cls(run(gs.channel_create(capacity=capacity, block_size=block_size, name=name, m_uid=m_uid, soft=soft)))

    @classmethod
    def attach(cls, c_uid: int | None = None, *, name: str = "") -> Channel:
        """Attach to an existing channel by c_uid or by name (GSChannelQuery).

        Raises:
          UnknownChannel: GS knows no such channel.
          ChannelDestroyed: it was destroyed.
          InvalidArgument: neither or both of c_uid and name.
        """
        return cls(run(gs.channel_attach(c_uid, name)))

    @classmethod
    def wait_created(cls, name: str, timeout: float | None = None) -> Channel:
        """Attach to the channel `name` as soon as it exists: waits up to `timeout` s (None: no limit)
        for somebody to create it (GSChannelJoin).

        Raises:
          ChannelWaitTimeout: none appeared in time.
          ChannelDestroyed: a channel of that name existed and was destroyed.
        """
        return cls(run(gs.channel_wait_created(name, timeout)))

    @staticmethod
    def list() -> list[int]:
        """The c_uid of every channel GS knows in this runtime, destroyed ones included."""
        return run(gs.channel_list())

    # ----------------------------------------------------------------------------- messages

    def send_bytes(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one message of any size; blocks while the channel is full, at most `timeout` s.

        Raises ChannelFull on timeout, ChannelDestroyed if the channel is (or gets) destroyed,
        ChannelError if this handle was closed.
        """
        self._chan.send(data, timeout)

    def recv_bytes(self, timeout: float | None = None) -> bytes:
        """Receive the oldest message; blocks while the channel is empty, at most `timeout` s.

        Raises ChannelEmpty on timeout, ChannelDestroyed if the channel is (or gets) destroyed.
        """
        return self._chan.recv(timeout)

    def send(self, obj: object, timeout: float | None = None) -> None:
        """Pickle `obj` and send it as one message (see `send_bytes`)."""
        self._chan.send(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), timeout)

    def recv(self, timeout: float | None = None) -> Any:
        """Receive one message and unpickle it (see `recv_bytes`)."""
        return pickle.loads(self._chan.recv(timeout))

    def statistics(self) -> ChannelStatistics:
        """Depth, capacity and waiters right now (from the shared memory, not from GS)."""
        return self._chan.statistics()

    # ----------------------------------------------------------------------------- end

    def close(self) -> None:
        """Drop this process's handle; the channel lives on. Idempotent."""
        self._chan.close()

    def destroy(self) -> None:
        """Destroy the channel for everybody (GSChannelDestroy): queued messages are dropped and
        every blocked sender or receiver wakes with ChannelDestroyed. Closes this handle (unless BUSY).

        Raises:
          UnknownChannel: it was destroyed already (or GS does not know it).
          ChannelBusy: another request is creating or destroying it right now.
        """
        err = run(gs.channel_destroy(self._desc))  # ChannelBusy: still there, keep the handle
        self._chan.close()
        if err is not None:
            raise err
        self._destroyed()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _channel_from_msgpack(data: bytes) -> Channel:
    return Channel(msgspec.msgpack.decode(data, type=ChannelDescriptor))


# ------------------------------------------------------------------------------------------- pools


class Pool(PoolHandle):
    """A handle on a GS-managed memory pool (spec §5.3).

    Make one with `Pool.create`, or reach an existing one with `Pool.attach` (by m_uid or name).
    Pickled, a handle re-attaches in the other process by descriptor. `close()` drops this
    process's mapping; `destroy()` removes the pool for everybody.
    """

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_pool_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    @classmethod
    def create(cls, size_bytes: int, *, name: str = "", soft: bool = False) -> Pool:
        """Create a pool of `size_bytes` through GS (GSPoolCreate).

        Args:
          name: a unique name ("" = `D<m_uid>`).
          soft: with a name, return the live pool of that name instead of failing (get-or-create).
        Raises:
          InvalidArgument: a size that is not positive, or soft without a name.
          PoolNameInUse: a live pool has that name (not soft).
          PoolCreateFailed: Local Services could not make it (e.g. too small for a heap, no memory).
        """
        return cls(run(gs.pool_create(size_bytes, name=name, soft=soft)))

    @classmethod
    def attach(cls, m_uid: int | None = None, *, name: str = "") -> Pool:
        """A handle on an existing pool, by m_uid or by name (GSPoolQuery).

        Raises:
          UnknownPool: GS knows no such pool.
          PoolGone: it was destroyed.
          InvalidArgument: neither or both of m_uid and name.
        """
        return cls(run(gs.pool_attach(m_uid, name)))

    @staticmethod
    def list() -> list[int]:
        """The m_uid of every pool GS made in this runtime, destroyed ones included."""
        return run(gs.pool_list())

    def destroy(self) -> None:
        """Destroy the pool for everybody (GSPoolDestroy) and close this handle.

        Raises:
          PoolGone: it was destroyed already.
          UnknownPool: GS does not know it.
          PoolBusy: another request is creating or destroying it right now.
          PoolDestroyFailed: Local Services failed to destroy it.
        """
        err = run(gs.pool_destroy(self._desc))  # PoolBusy: still there, keep the handle
        self.close()
        if err is not None:
            raise err
        self._destroyed()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pool_from_msgpack(data: bytes) -> Pool:
    return Pool(msgspec.msgpack.decode(data, type=PoolDescriptor))
