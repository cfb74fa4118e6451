"""The trio flavour's connections of a managed process to Global Services (`dragon.aio.connect`,
`dragon.aio.open_connection`): the `Runtime`s of a trio program running under `dragon prog.py`.

`ManagedConnection` carries each request over the process's blocking connection
(`dragon.client.gs_client`) in a worker thread: nothing to open or close. `TrioConnection` is trio-native:
TrioChannels to the GS channel and from a reply channel of its own, made through GS on entry and
destroyed on exit; no thread per request.

Why a reply channel of its own: the process's GS-return channel carries the GSPingProc handshake,
read once per process by the blocking connection, and the blocking connection's replies; a second
reader on it would take replies meant for the other. So blocking and async callers of one process
never compete for it.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import msgspec
import trio

from dragon import _rundir
from dragon.client.gs_client import LIVENESS_SLICE_S, connection
from dragon.client.requests import Runtime
from dragon.errors import ChannelDestroyed, DragonError, ProtocolError, RuntimeNotRunning
from dragon.messages import GSResponse, Response
from dragon.native import Channel as SyncChannel
from dragon.transport import PendingReplies, TrioChannel, Waiter, decode, pid_alive

log = logging.getLogger("dragon.aio")

CLOSE_TIMEOUT_S: Final = 5.0  # destroying open_connection's reply channel on the way out

R = TypeVar("R", bound=Response)


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
        return await trio.to_thread.run_sync(
            functools.partial(connection().call, req, response_type), abandon_on_cancel=True
        )


async def connect(handle: Runtime | None = None) -> Runtime:
    """The runtime to pass to this module's classes.

    With `handle` (the `RuntimeHandle` of `dragon.serve`, or any `Runtime`): that handle. Without: the
    calling process's blocking connection to GS (`dragon.client.gs_client.connection`), made now in a thread
    (a managed process reads GS's handshake). Raises RuntimeNotRunning (without a handle) if this
    process has no runtime.
    """
    if handle is not None:
        await trio.lowlevel.checkpoint()
        return handle
    client = await trio.to_thread.run_sync(connection)
    return ManagedConnection(client.p_uid)


class TrioConnection:
    """A managed process's trio-native connection to GS (see `open_connection`): requests go on a
    TrioChannel to the GS channel and answers come back on a reply channel of its own, read by
    whichever waiting task finds nobody else reading (no thread, no helper task), which files each
    answer with the request it answers (`PendingReplies`).
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
        self._pending: PendingReplies[Response] = PendingReplies(
            "the aio reply channel",
            late_is_normal=True,  # the answer to a cancelled call
        )
        self._reading = trio.Lock()
        self._parked: set[trio.CancelScope] = set()  # waiters to wake when the reader leaves

    async def call(self, req: Any, response_type: type[R]) -> R:
        """Send `req` to GS and wait for its answer; several tasks may call at once.

        Cancellation is safe: the answer to a cancelled call is dropped when it arrives.
        Raises RuntimeNotRunning if the runtime is gone; ProtocolError for an unexpected answer.
        """
        tag = next(self._tags)
        with self._pending.expect(tag) as waiter:
            try:
                await self._to_gs.send(
                    self._enc.encode(msgspec.structs.replace(req, tag=tag, p_uid=self.p_uid, r_c_uid=self.r_c_uid))
                )
            except ChannelDestroyed as exc:
                raise RuntimeNotRunning(f"the runtime is gone (the GS channel was destroyed): {exc}") from exc
            resp = await self._reply(waiter)
        if not isinstance(resp, response_type):
            raise ProtocolError(
                f"Global Services answered {type(req).__name__} with {type(resp).__name__}, "
                f"not {response_type.__name__}"
            )
        return resp

    async def _reply(self, waiter: Waiter[Response]) -> Response:
        """`waiter`'s answer. While another task reads the reply channel, wait for it to file ours;
        when it leaves first (its own answer came, or it was cancelled), one of the waiting tasks
        takes over reading."""
        while True:
            if self._reading.locked():
                with trio.CancelScope() as parked:
                    self._parked.add(parked)
                    try:
                        return await waiter.reply()
                    finally:
                        self._parked.discard(parked)
                continue  # the reader left: read ourselves, unless another waiter took over first
            async with self._reading:
                try:
                    while True:
                        resp = await self._receive()
                        self._pending.file(resp)
                        if resp.ref == waiter.tag:  # filed to our waiter, and here already
                            return resp
                finally:
                    for scope in list(self._parked):  # somebody else must take over reading
                        scope.cancel()

    async def _receive(self) -> Response:
        """One answer, checking every LIVENESS_SLICE_S that the runtime still lives (as the blocking
        connection does)."""
        while True:
            with trio.move_on_after(LIVENESS_SLICE_S):
                try:
                    frame = await self._replies.receive()
                except ChannelDestroyed as exc:
                    raise RuntimeNotRunning(f"the runtime is gone (the reply channel was destroyed): {exc}") from exc
                return decode(self._dec, frame, where="aio reply channel")
            if self._to_gs.statistics().destroyed:
                raise RuntimeNotRunning("the runtime is gone (the GS channel was destroyed)")
            if self._gs_pid and not pid_alive(self._gs_pid):  # 0: GS runs on another node
                raise RuntimeNotRunning(f"the runtime is gone (Global Services, pid {self._gs_pid}, has exited)")


@asynccontextmanager
async def open_connection() -> AsyncIterator[TrioConnection]:
    """A trio-native connection of this managed process to GS, for the body of `async with`.

    It makes a reply channel of its own through GS (using the process's blocking connection once, in
    a thread), so that it never competes with blocking callers of the same process for the
    GS-return channel; on leaving, it destroys that channel (bounded, shielded).
    Raises RuntimeNotRunning if this process was not started by the runtime.
    """
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
