"""The async (trio) client API: `Process`, `Channel` and `Pool` through Global Services (spec §4, §7.2),
and `Queue`, the trio face of a `dragon.native.Queue`.

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
  requests travel the process's blocking connection, `dragon.client.gs_client`, in a worker thread).
  Either way blocking and async callers of one process never compete for its GS-return channel.

So one piece of code serves both:

    async def work(rt: dragon.aio.Runtime) -> int | None:
        proc = dragon.aio.Process(rt, sys.executable, ["-c", "print('hi')"])
        await proc.start()
        return await proc.join()

Requests are built and answers translated by `dragon.client.requests` (carried out by its `run_async`),
and the handles' state and properties are `dragon.client.handles`', both shared with the blocking flavour;
the connections of a managed process are `dragon.client.aio_connection`. Cancelling a call abandons it: GS may still carry the request out (a cancelled `start` may have
created the process; a cancelled `join` just stops waiting).

Differences forced by `async`: `Process.returncode` is the last exit code seen (no request; use
`await poll()` to ask GS), and `is_alive`, `descriptor`, `parent` and `children` are coroutines.
`Channel.close` is a coroutine (also named `aclose`); `Pool.close` does not wait and stays plain, with
`aclose` next to it. Handles are `async with` context managers. Channel handles are not picklable
(pass the c_uid or name, and `attach` on the other side).
"""

from __future__ import annotations

import builtins
import functools
import math
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

import trio

from dragon.client import requests as gs
from dragon.client.aio_connection import ManagedConnection, TrioConnection, connect, open_connection
from dragon.client.handles import ChannelHandle, PoolHandle, ProcessHandle, ProcessOptionArgs, ProcessTemplate
from dragon.client.nodes import ChannelOnAnotherNode
from dragon.client.remote import RemoteChannel
from dragon.client.requests import HasPuid, Runtime, run_async
from dragon.descriptors import ChannelDescriptor, PoolDescriptor, ProcessDescriptor
from dragon.errors import ChannelEmpty, ChannelError, ChannelFull, InvalidArgument
from dragon.ids import DEFAULT_POOL_MUID, LAUNCHER_PUID
from dragon.mp.codec import decode, encode
from dragon.transport import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, Buffer, ChannelStatistics, TrioChannel

if TYPE_CHECKING:
    from dragon.native import Queue as NativeQueue

__all__ = [
    "Channel",
    "ManagedConnection",
    "Pool",
    "Process",
    "ProcessTemplate",
    "Queue",
    "Runtime",
    "TrioConnection",
    "connect",
    "open_connection",
]


async def wait(
    runtime: Runtime,
    processes: Sequence[HasPuid],
    timeout: float | None = None,
    *,
    join_all: bool = False,
    return_on_bad_exit: bool = False,
) -> dict[int, int | None]:
    """`dragon.native.wait` for trio: one GSProcessJoinList for several processes (any or all)."""
    return await run_async(runtime, gs.join_list(processes, timeout, join_all, return_on_bad_exit))


# ------------------------------------------------------------------------------------------- processes


class Process(ProcessHandle):
    """A managed process (see `dragon.native.Process`): `Process(runtime, target, args, kwargs, ...)`,
    then `await start()`.

    Args and Raises: those of `dragon.native.Process`, after `runtime` (see the module docstring).
    """

    _kind = "aio.Process"

    def __init__(
        self,
        runtime: Runtime,
        target: str | os.PathLike[str] | Callable[..., object],
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[ProcessOptionArgs],
    ) -> None:
        super().__init__(target, args, kwargs, **options)
        self._rt = runtime

    @classmethod
    def _attached(cls, runtime: Runtime, desc: ProcessDescriptor) -> Process:
        proc = cls.__new__(cls)
        proc._rt = runtime
        proc._attach(desc)
        return proc

    # ----------------------------------------------------------------------------- lookups

    @classmethod
    def from_template(cls, runtime: Runtime, template: ProcessTemplate, name: str = "") -> Process:
        """An unstarted process as `template` describes it (see `dragon.native.Process.from_template`)."""
        target, args, kwargs, options = template.arguments(name)
        return cls(runtime, target, args, kwargs, **options)

    @classmethod
    async def from_puid(cls, runtime: Runtime, p_uid: int) -> Process:
        """A handle on the process with this p_uid (alive or dead). Raises UnknownProcess."""
        return cls._attached(runtime, await run_async(runtime, gs.process_query(p_uid)))

    @classmethod
    async def from_name(cls, runtime: Runtime, name: str) -> Process:
        """A handle on the process with this name (alive or dead). Raises UnknownProcess."""
        return cls._attached(runtime, await run_async(runtime, gs.process_query(name=name)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The p_uid of every process GS ever created in this runtime, dead ones included, and Global Services (1)."""
        return await run_async(runtime, gs.process_list())

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
        self._desc = await run_async(self._rt, gs.process_create(self._spec))
        self._name = self._desc.name

    async def join(self, timeout: float | None = None) -> int | None:
        """Wait until the process exits, at most `timeout` seconds (None: no limit; <= 0: just look).

        Returns its exit code (killed by signal N: -N), or None if it still runs after `timeout`.
        Cancelling the wait leaves the process alone.
        Raises JoinSelf, UnknownProcess; InvalidArgument if not started, or if it is Global Services.
        """
        desc = self._started("join")
        if self._returncode is None:
            self._returncode = await run_async(self._rt, gs.process_join(desc.p_uid, timeout))
        else:
            await trio.lowlevel.checkpoint()
        return self._returncode

    async def send_signal(self, sig: int, hide_stderr: bool = False) -> None:
        """Send signal `sig`; a process that has exited already is left alone (see `dragon.native`,
        also for `hide_stderr`).

        Raises ProcessSignalFailed, UnknownProcess; InvalidArgument if not started.
        """
        desc = self._started("signal")
        exit_code = await run_async(self._rt, gs.process_kill(desc.p_uid, sig, hide_stderr))
        if exit_code is not None:
            self._returncode = exit_code

    async def terminate(self, hide_stderr: bool = False) -> None:
        """Send SIGTERM (see `send_signal`)."""
        await self.send_signal(signal.SIGTERM, hide_stderr)

    async def kill(self, hide_stderr: bool = False) -> None:
        """Send SIGKILL (see `send_signal`)."""
        await self.send_signal(signal.SIGKILL, hide_stderr)

    # ----------------------------------------------------------------------------- state

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
        return self._record(await run_async(self._rt, gs.process_query(self._started("describe").p_uid)))


# ------------------------------------------------------------------------------------------- channels


class Channel(ChannelHandle):
    """A handle on a GS-managed channel (see `dragon.native.Channel`), with a trio face on the shared
    memory (`dragon.transport.TrioChannel`): `send`/`recv` wait without blocking the event loop and can
    be cancelled without losing a message.

    One handle may be used by several tasks. `aclose()` drops this handle; `destroy()` ends the channel
    for everybody.
    """

    _kind = "aio.Channel"

    def __init__(self, runtime: Runtime, desc: ChannelDescriptor) -> None:
        """Internal: attach to the channel `desc` describes (use the classmethods).

        Raises ChannelDestroyed if the channel is dead or gone.
        """
        super().__init__(desc)
        self._rt = runtime
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
        return cls(runtime, await run_async(runtime, call))

    @classmethod
    async def attach(cls, runtime: Runtime, c_uid: int | None = None, *, name: str = "") -> Channel:
        """Attach to an existing channel by c_uid or by name. Raises UnknownChannel, ChannelDestroyed,
        InvalidArgument (neither or both of c_uid and name)."""
        return cls(runtime, await run_async(runtime, gs.channel_attach(c_uid, name)))

    @classmethod
    async def wait_created(cls, runtime: Runtime, name: str, timeout: float | None = None) -> Channel:
        """Attach to the channel `name` as soon as it exists, waiting up to `timeout` s (None: no limit).

        Raises ChannelWaitTimeout, ChannelDestroyed.
        """
        return cls(runtime, await run_async(runtime, gs.channel_wait_created(name, timeout)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The c_uid of every channel GS knows in this runtime, destroyed ones included."""
        return await run_async(runtime, gs.channel_list())

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
        err = await run_async(self._rt, gs.channel_destroy(self._desc))  # ChannelBusy: still there, keep the handle
        with trio.CancelScope(shield=True):
            await self._chan.aclose()
        if err is not None:
            raise err
        self._destroyed()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ------------------------------------------------------------------------------------------- pools


class Pool(PoolHandle):
    """A handle on a GS-managed memory pool (see `dragon.native.Pool`).

    GS requests (`create`, `attach`, `list`, `destroy`) are async; the local mapping (`memory`,
    `statistics`, `close`) never waits and is the blocking flavour's, unchanged.
    """

    _kind = "aio.Pool"

    def __init__(self, runtime: Runtime, desc: PoolDescriptor) -> None:
        """Internal: a handle on the pool `desc` describes (use the classmethods)."""
        super().__init__(desc)
        self._rt = runtime

    @classmethod
    async def create(cls, runtime: Runtime, size_bytes: int, *, name: str = "", soft: bool = False) -> Pool:
        """Create a pool of `size_bytes` through GS (GSPoolCreate; see `dragon.native.Pool.create`).

        Raises InvalidArgument, PoolNameInUse, PoolCreateFailed.
        """
        return cls(runtime, await run_async(runtime, gs.pool_create(size_bytes, name=name, soft=soft)))

    @classmethod
    async def attach(cls, runtime: Runtime, m_uid: int | None = None, *, name: str = "") -> Pool:
        """A handle on an existing pool, by m_uid or by name. Raises UnknownPool, PoolGone,
        InvalidArgument."""
        return cls(runtime, await run_async(runtime, gs.pool_attach(m_uid, name)))

    @staticmethod
    async def list(runtime: Runtime) -> builtins.list[int]:
        """The m_uid of every pool GS made in this runtime, destroyed ones included."""
        return await run_async(runtime, gs.pool_list())

    async def aclose(self) -> None:
        """`close()`, for `async with`."""
        await trio.lowlevel.checkpoint()
        self.close()

    async def destroy(self) -> None:
        """Destroy the pool for everybody (GSPoolDestroy) and close this handle.

        Raises PoolGone, UnknownPool, PoolBusy, PoolDestroyFailed.
        """
        err = await run_async(self._rt, gs.pool_destroy(self._desc))  # PoolBusy: keep the handle
        self.close()
        if err is not None:
            raise err
        self._destroyed()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ------------------------------------------------------------------------------------------- queues


class Queue:
    """The trio face of a `dragon.native.Queue`: `await put(obj)`, `await get()` wait without blocking
    the event loop and can be cancelled without losing or duplicating an item; the queue itself (its
    channels, references, pickling, life) is the native one, `queue`, which other processes get.

    Make one with `await Queue.create(maxsize, joinable=...)`, or `Queue(native_queue)`. Unlike the
    other handles here it takes no runtime: the queue is made through this process's blocking
    connection (in a worker thread), as `dragon.native` makes it; its items then travel through
    `TrioChannel`s on the same channels, so native and trio processes share one queue. A native handle
    in this process that puts or gets itself keeps the channels' locks between calls (a lease: see
    `dragon.transport.TrioChannel`), which the trio face waits out once (about 10 ms).

    `task_done` is a step under the task record's lock (microseconds, not awaited); `join` waits in a
    worker thread on the record (`Record.wait_for` has no trio face), which a cancellation releases.
    `Value` and `Array` need no trio face: an access is a load or a store in shared memory (make them
    with `trio.to_thread.run_sync`; take their lock there too).
    """

    def __init__(self, native: NativeQueue) -> None:
        """The trio face of `native`, a queue of this node (its TrioChannels map the queue's channels);
        ChannelOnAnotherNode for a queue of another node."""
        if isinstance(native._chan, RemoteChannel):
            raise ChannelOnAnotherNode(
                f"dragon.aio.Queue({native!r}): the queue lives on node {native._chan.node}, this process on "
                f"node {os.environ.get('DRAGON_INDEX', '?')}: its trio face is made on the queue's node only; "
                "here use the dragon.native.Queue itself in a worker thread (trio.to_thread.run_sync(queue.get))"
            )
        self.queue = native
        self._items = TrioChannel.attach(native._chan.name)
        self._slots = None if native._slots is None else TrioChannel.attach(native._slots.name)

    @classmethod
    async def create(cls, maxsize: int = 0, *, joinable: bool = False) -> Queue:
        """A new `dragon.native.Queue(maxsize, joinable=joinable)` with its trio face."""
        from dragon.native import Queue as NativeQueue

        return cls(await trio.to_thread.run_sync(functools.partial(NativeQueue, maxsize, joinable=joinable)))

    async def put(self, obj: object, timeout: float | None = None) -> None:
        """Queue `obj` (pickled now). A bounded queue waits while full, at most `timeout` s (None: no
        limit), then queue.Full. Cancelled, it has put nothing."""
        self.queue._check_usable()
        data = encode(obj)
        slots = self._slots
        if slots is not None:
            with trio.move_on_after(math.inf if timeout is None else max(0.0, timeout)) as scope:
                await slots.send(b"")
            if scope.cancelled_caught:
                raise queue.Full
        try:
            self.queue._count_task()
            try:
                await self._items.send(data)
            except BaseException:
                self.queue._count_task(-1)
                raise
        except BaseException:
            if slots is not None:
                slots.receive_nowait()
            raise

    def put_nowait(self, obj: object) -> None:
        """Queue `obj` now, or queue.Full if a bounded queue is full."""
        self.queue._check_usable()
        data = encode(obj)
        if self._slots is not None:
            try:
                self._slots.send_nowait(b"")
            except trio.WouldBlock:
                raise queue.Full from None
        self.queue._count_task()
        try:
            self._items.send_nowait(data)
        except trio.WouldBlock:  # the ring is full (of an unbounded queue: native puts' feeders wait there)
            self.queue._count_task(-1)
            if self._slots is not None:
                self._slots.receive_nowait()
            raise queue.Full from None

    async def get(self, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting at most `timeout` s (None: no limit), then
        queue.Empty. Cancelled, it has taken nothing."""
        self.queue._check_usable()
        with trio.move_on_after(math.inf if timeout is None else max(0.0, timeout)):
            return self._got(await self._items.receive())
        raise queue.Empty

    def get_nowait(self) -> Any:
        """The oldest item now, or queue.Empty."""
        self.queue._check_usable()
        try:
            return self._got(self._items.receive_nowait())
        except trio.WouldBlock:
            raise queue.Empty from None

    def _got(self, data: bytes) -> Any:
        if self._slots is not None:
            try:
                self._slots.receive_nowait()
            except trio.WouldBlock:  # as `dragon.mp.queues.Queue._give_slot`
                pass
        return decode(data)

    def qsize(self) -> int:
        return self.queue.qsize()

    size = qsize

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    def task_done(self) -> None:
        """See `dragon.native.Queue.task_done`."""
        self.queue.task_done()

    async def join(self, timeout: float | None = None) -> None:
        """Wait until every task is done (see `dragon.native.Queue.join`): TimeoutError after `timeout`
        s. Cancelled, its worker thread is told to stop and returns at once."""
        native, stop = self.queue, threading.Event()
        try:
            done = await trio.to_thread.run_sync(native._joined_within, timeout, stop.is_set, abandon_on_cancel=True)
        except BaseException:
            stop.set()
            native._wake_joiners()
            raise
        if not done:
            raise TimeoutError(f"tasks of {native!r} still unfinished after {timeout} s")

    async def aclose(self) -> None:
        """Close the trio face's handles and the native queue's hold in this process."""
        with trio.CancelScope(shield=True):
            await self._items.aclose()
            if self._slots is not None:
                await self._slots.aclose()
        self.queue.close()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
