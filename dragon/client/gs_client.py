"""The blocking connection of a managed process to Global Services (spec §2 handshake, §4, §7.2).

Every process the runtime starts with `make_inf_channels` finds in its launch parameters (spec §1.4)
the GS input channel (`DRAGON_GS_CD`), its own GS-return channel (`DRAGON_GS_RET_CD`) and that
channel's c_uid (`DRAGON_GS_RET_CUID`, the `r_c_uid` of its requests). `connection()` attaches to
both on first use and reads the handshake, GSPingProc, which GS puts on the return channel before
any reply. `GSClient.call` then sends one request and returns the response whose `ref` is its tag.

The GS-return channel **[choice]** is made by Local Services together with the process (the client
API always asks for `make_inf_channels`), not on the process's first request: it costs little per
process, spares every first request a round trip, and lets GS deliver the handshake's arguments
(the multiprocessing start method needs them before anything else). GS destroys it when the process
exits.

Plain Python, no trio: user processes import this, and `import trio` alone costs more than the
interpreter's own start.

Several threads may have requests outstanding at once. There is no reader thread: the first waiting
caller becomes the reader of the return channel and files every reply it takes by `ref`; the others
sleep on a Condition and are woken when their reply is filed. When the reader's own reply arrives it
gives up the role, and a still-waiting caller takes it over.

A dead runtime never makes a call hang: every blocking wait is cut into slices of
`LIVENESS_SLICE_S`, and between slices the caller checks that the GS channel was not destroyed and
that the GS process (pid from the run's runtime.json) is alive; if not, RuntimeNotRunning.

External clients (`GSClient.external`): a process the runtime did not start, i.e. a program that
runs a runtime with `dragon.serve` (`dragon.client.embedded`) or a plain `python my.py` program that owns a
background runtime (`dragon.client.background`), talks to GS through the same class, without a handshake:
it makes its own reply channel in the user-managed c_uid range under the name GS derives from the
c_uid (`_rundir.user_reply_channel`, as `dragon status` does), sends its requests
as the launcher (p_uid 0, which GS records as the parent of the processes it creates), and destroys
the channel when it closes. `connection()` returns such a
client in a process without launch parameters: for the runtime it embeds, else for its background
runtime, which it brings up first when asked to (`start_runtime=True`, the multiprocessing start
method). The runtime's end closes it; the next call connects anew.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

from dragon import _rundir
from dragon.descriptors import ArgMode
from dragon.errors import (
    ChannelDestroyed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    EventLoopBlocked,
    ProtocolError,
    RequestTimeout,
    RuntimeNotRunning,
)
from dragon.ids import CONNECTED_PID_VAR, LAUNCHER_PUID, LaunchParameters
from dragon.messages import GSPingProc, ProcessInbound, Request, Response, decode
from dragon.transport import Channel, PendingReplies, Waiter, pid_alive

R = TypeVar("R", bound=Response)

LIVENESS_SLICE_S: Final = 1.0  # how often a blocked call checks that the runtime still exists
HANDSHAKE_TIMEOUT_S: Final = 60.0  # GSPingProc is sent right after the spawn; this is only a backstop
EXTERNAL_REPLY_CAPACITY: Final = 64  # an external client's reply channel: as a managed process's GS-return channel
EXTERNAL_REPLY_BLOCK: Final = 4096

NOT_UNDER_DRAGON: Final = (
    "this process was not started by the Dragon runtime (no launch parameters "
    "in its environment): run the program with `dragon prog.py`"
)


_INBOUND: Final[msgspec.msgpack.Decoder[GSPingProc | Response]] = msgspec.msgpack.Decoder(ProcessInbound)
"""What a process receives from GS. Made once per process, here: making it costs about 1 ms (msgspec
reads the annotations of every message type), which a child of the fork server then inherits done."""


class GSClient:
    """A managed process's connection to GS: its GS-channel sender and GS-return-channel receiver.

    Get the process's one instance from `connection()`. Thread-safe. `handshake` is the GSPingProc
    read when connecting (its `mode`/`argdata` carry the process's Python arguments, spec §2); when
    the mode is PYTHON_CHANNEL, `argdata` holds the bytes of the message that followed it. An
    external client (`external`) reads none: its `handshake` is an empty GSPingProc (mode NONE).
    """

    def __init__(
        self,
        params: LaunchParameters,
        to_gs: Channel,
        replies: Channel,
        gs_pid: int | None,
        *,
        handshake: bool = True,
        owns_replies: bool = False,
        loop_thread: int | None = None,
    ) -> None:
        """Internal: use `GSClient.connect` (which attaches the channels and reads the handshake) or
        `GSClient.external`. With `owns_replies`, `close()` destroys the reply channel."""
        self.params = params
        self._loop_thread = loop_thread
        self.p_uid = params.my_puid
        self.r_c_uid = params.gs_ret_cuid
        self._to_gs, self._replies, self._gs_pid = to_gs, replies, gs_pid
        self._enc = msgspec.msgpack.Encoder()
        self._dec: msgspec.msgpack.Decoder[GSPingProc | Response] = _INBOUND
        self._tags = itertools.count(1)
        self._cond = threading.Condition()
        self._pending = PendingReplies[Response]("the GS-return channel", late_is_normal=True)  # under _cond
        self._reader_busy = False
        self._calling = threading.local()  # depth: this thread's calls under way (`in_call`)
        self._closed = False
        self._owns_replies = owns_replies
        self.handshake = self._read_handshake() if handshake else GSPingProc()

    @classmethod
    def connect(cls, params: LaunchParameters) -> GSClient:
        """Attach to the GS channel and this process's GS-return channel, then read GSPingProc.

        Raises:
          RuntimeNotRunning: the channels are gone (the runtime ended), or no GSPingProc arrived within
            HANDSHAKE_TIMEOUT_S.
          ProtocolError: the first message on the return channel is not GSPingProc.
        """
        info = _rundir.read_info(params.run_id) if params.run_id else None
        try:
            to_gs = Channel.attach(params.gs_cd)
        except ChannelDestroyed as exc:
            raise RuntimeNotRunning(f"the runtime is gone (its GS channel does not exist): {exc}") from exc
        try:
            replies = Channel.attach(params.gs_ret_cd)
        except ChannelDestroyed as exc:
            to_gs.close()
            raise RuntimeNotRunning(
                f"the runtime is gone (this process's GS-return channel does not exist): {exc}"
            ) from exc
        try:
            return cls(params, to_gs, replies, info.gs_pid if info is not None else None)
        except BaseException:
            to_gs.close()
            replies.close()
            raise

    @classmethod
    def external(cls, info: _rundir.RunInfo, *, loop_thread: int | None = None) -> GSClient:
        """Connect a process the runtime did not start (the owner of a background runtime, or the
        program that runs it with `dragon.serve`) to GS.

        Creates this client's reply channel (`_rundir.user_reply_channel`) and attaches the GS channel named
        in the run's runtime.json; no handshake. Requests go as the launcher's (p_uid 0): GS makes the
        processes they create top-level processes of the run. `params` are launch parameters made up
        from `info` (so that `dragon.aio` finds the run and the GS channel as in a managed process).
        `loop_thread`: the thread whose trio loop runs the runtime's launcher (`dragon.serve`), where a
        waiting call must not hold the runtime up (EventLoopBlocked, see `_check_launcher_loop`).

        Raises:
          RuntimeNotRunning: the GS channel does not exist (the runtime has ended).
          OSError: /dev/shm refused the reply channel.
        """
        c_uid, replies = _rundir.user_reply_channel(
            info.run_id, capacity=EXTERNAL_REPLY_CAPACITY, block_size=EXTERNAL_REPLY_BLOCK
        )
        try:
            to_gs = Channel.attach(info.gs_cd)
        except ChannelDestroyed as exc:
            _destroy_quietly(replies)
            raise RuntimeNotRunning(f"the runtime is gone (its GS channel does not exist): {exc}") from exc
        params = LaunchParameters(
            mode="single",
            my_puid=LAUNCHER_PUID,
            gs_cd=info.gs_cd,
            gs_ret_cd=replies.name,
            gs_ret_cuid=c_uid,
            local_shep_cd=info.shep_cd,
            local_be_cd=info.la_cd,
            run_id=info.run_id,
        )
        return cls(params, to_gs, replies, info.gs_pid, handshake=False, owns_replies=True, loop_thread=loop_thread)

    def _read_handshake(self) -> GSPingProc:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S

        def expired() -> Exception:
            return RuntimeNotRunning(
                f"no GSPingProc handshake arrived within {HANDSHAKE_TIMEOUT_S} s (did "
                "another process read this process's GS-return channel?)"
            )

        frame = self._receive_frame(deadline, expired)
        first = decode(self._dec, frame, where="GS-return channel")
        if not isinstance(first, GSPingProc):
            raise ProtocolError(f"expected GSPingProc first on the GS-return channel, got {type(first).__name__}")
        if first.mode == ArgMode.PYTHON_CHANNEL:  # spec §2: the argument bytes are the next message
            first = msgspec.structs.replace(first, argdata=self._receive_frame(deadline, expired))
        return first

    # ----------------------------------------------------------------------------------- requests

    def call(self, request: Request, response_type: type[R], timeout_s: float | None = None) -> R:
        """Send `request` to GS and wait for its response.

        Fills in `tag` (unique in this process), `p_uid` (this process) and `r_c_uid` (its GS-return
        channel); the caller's object is not changed. Waits at most `timeout_s` seconds (None: as long
        as the runtime lives). Thread-safe: other threads' calls proceed meanwhile.

        Returns:
          the response whose `ref` is the request's tag.
        Raises:
          RuntimeNotRunning: the runtime went away (or this handle was closed).
          RequestTimeout: no response within `timeout_s` (GS may still carry the request out).
          ProtocolError: GS answered with another response type than `response_type`.
        """
        depth = getattr(self._calling, "depth", 0)
        self._calling.depth = depth + 1
        try:
            return self._call(request, response_type, timeout_s)
        finally:
            self._calling.depth = depth

    def post(self, request: Request) -> None:
        """Send `request` to GS without waiting for anything: for a request that asks for no answer
        (GSChannelDestroy with `reply_req` False). Fills in `tag`, `p_uid` and `r_c_uid` as `call`
        does. Raises RuntimeNotRunning if the runtime went away."""

        def expired() -> Exception:
            return RuntimeNotRunning("the channel to Global Services stayed full")

        with self._cond:
            if self._closed:
                raise RuntimeNotRunning("the connection to Global Services was closed")
            tag = next(self._tags)
        msg = msgspec.structs.replace(request, tag=tag, p_uid=self.p_uid, r_c_uid=self.r_c_uid)
        self._send(self._enc.encode(msg), None, expired)

    def in_call(self) -> bool:
        """Whether this thread is inside `call`: then a finalizer that the garbage collector runs in
        the middle of it cannot make a call and wait (this thread may be the one reading replies)."""
        return bool(getattr(self._calling, "depth", 0))

    def _call(self, request: Request, response_type: type[R], timeout_s: float | None) -> R:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def expired() -> Exception:
            return RequestTimeout(f"Global Services did not answer {type(request).__name__} within {timeout_s} s")

        with self._cond:
            if self._closed:
                raise RuntimeNotRunning("the connection to Global Services was closed")
            waiter = self._pending.register(next(self._tags))
        try:
            msg = msgspec.structs.replace(request, tag=waiter.tag, p_uid=self.p_uid, r_c_uid=self.r_c_uid)
            self._send(self._enc.encode(msg), deadline, expired)
            resp = self._wait_reply(waiter, deadline, expired)
        finally:
            with self._cond:
                self._pending.forget(waiter)
        if not isinstance(resp, response_type):
            raise ProtocolError(
                f"Global Services answered {type(request).__name__} with "
                f"{type(resp).__name__}, not {response_type.__name__}"
            )
        return resp

    def _send(self, frame: bytes, deadline: float | None, expired: Callable[[], Exception]) -> None:
        while True:
            try:
                self._to_gs.send(frame, self._slice(deadline, expired))
                return
            except ChannelFull:
                self._check_alive()
            except ChannelDestroyed as exc:
                raise RuntimeNotRunning(f"the runtime is gone (the GS channel was destroyed): {exc}") from exc

    def _wait_reply(
        self, waiter: Waiter[Response], deadline: float | None, expired: Callable[[], Exception]
    ) -> Response:
        """One thread at a time reads the return channel and files every reply it finds (its own ends
        its turn); the others sleep on the condition until theirs is filed or the reader's turn is free."""
        with self._cond:
            while (filed := waiter.arrived) is None:
                if not self._reader_busy:
                    self._reader_busy = True
                    break
                self._cond.wait(self._slice(deadline, expired))
            else:
                return filed
        try:  # this thread reads the return channel until its own reply arrives
            while True:
                frame = self._receive_frame(deadline, expired)
                msg = decode(self._dec, frame, where="GS-return channel")
                if not isinstance(msg, Response):
                    raise ProtocolError(f"unexpected {type(msg).__name__} on the GS-return channel")
                with self._cond:
                    if self._pending.file(msg) and msg.ref != waiter.tag:
                        self._cond.notify_all()
                if (own := waiter.arrived) is not None:
                    return own
        finally:
            with self._cond:
                self._reader_busy = False
                self._cond.notify_all()

    def _receive_frame(self, deadline: float | None, expired: Callable[[], Exception]) -> bytes:
        """One message from the return channel, checking between slices that the runtime lives."""
        while True:
            try:
                return self._replies.recv(self._slice(deadline, expired))
            except ChannelEmpty:
                self._check_alive()
            except ChannelDestroyed as exc:
                raise RuntimeNotRunning(f"the runtime is gone (the GS-return channel was destroyed): {exc}") from exc

    @staticmethod
    def _slice(deadline: float | None, expired: Callable[[], Exception]) -> float:
        """The next wait: LIVENESS_SLICE_S, or less to end at `deadline`; raises `expired()` after it."""
        if deadline is None:
            return LIVENESS_SLICE_S
        left = deadline - time.monotonic()
        if left <= 0:
            raise expired()
        return min(LIVENESS_SLICE_S, left)

    def _check_alive(self) -> None:
        """RuntimeNotRunning if the GS channel was destroyed or the GS process has exited."""
        try:
            destroyed = self._to_gs.statistics().destroyed
        except Exception:  # the handle was closed under us: this connection is over
            destroyed = True
        if destroyed:
            raise RuntimeNotRunning("the runtime is gone (the GS channel was destroyed)")
        if self._gs_pid and not pid_alive(self._gs_pid):  # 0: GS runs on another node
            raise RuntimeNotRunning(f"the runtime is gone (Global Services, pid {self._gs_pid}, has exited)")
        if self._loop_thread == threading.get_ident():
            self._check_launcher_loop()

    def _check_launcher_loop(self) -> None:
        """EventLoopBlocked if Local Services waits to send into the launcher's channel, full because
        the launcher's trio loop, blocked in this call, takes nothing from it.

        What would follow is a deadlock: a process whose output cannot be forwarded blocks in its
        write, and the call waits for it (a join) or for GS (whose requests to LS can wait behind
        it). The channel is attached for the look only: this runs at most once per LIVENESS_SLICE_S.
        """
        try:
            with Channel.attach(self.params.local_be_cd) as la:
                waiting = la.statistics().blocked_senders
        except (ChannelError, OSError):  # the runtime is going away: the next check says so
            return
        if waiting:
            raise EventLoopBlocked(
                "this blocking call was made in the trio loop that runs `dragon.serve`, and the runtime "
                "waits for that loop (the output of its processes cannot reach it): make the call in a "
                "thread, `await trio.to_thread.run_sync(...)`, or use dragon.aio with the runtime's handle"
            )

    def close(self) -> None:
        """Drop both channel handles; later calls raise RuntimeNotRunning. The channels live on,
        except an external client's own reply channel, which is destroyed."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._to_gs.close()
        if self._owns_replies:
            _destroy_quietly(self._replies)
        else:
            self._replies.close()


def _destroy_quietly(chan: Channel) -> None:
    """Destroy a channel this process made; if the runtime's teardown removed it already, let go."""
    try:
        chan.destroy()
    except (ChannelError, OSError):
        chan.close()


# --------------------------------------------------------------------------------------- the process's one


_lock = threading.Lock()
_client: GSClient | None = None


class InheritedLaunchParameters(RuntimeNotRunning):
    """The launch parameters in this process's environment are another process's: it is a child that
    process made itself (`subprocess`, `os.fork`), not a process of the runtime."""


def launch_parameters() -> LaunchParameters:
    """This process's launch parameters (spec §1.4), checked to allow GS requests.

    They are this process's own only if Local Services started it: every managed process is a child
    of Local Services from its first instruction on (exec'd by it, or re-parented to it before it
    runs, `dragon._forkserver`). A process that merely inherited them from a managed ancestor is not
    managed, whether or not that ancestor has connected yet (two readers of one GS-return channel
    would take each other's replies).

    Raises:
      InheritedLaunchParameters: it is a fork (or an unmanaged child) of a managed process.
      RuntimeNotRunning: the process was not started by the runtime, or without a GS-return channel;
        the text says what to do.
    """
    env = os.environ
    if not env.get("DRAGON_GS_CD"):
        raise RuntimeNotRunning(NOT_UNDER_DRAGON)
    owner = env.get(CONNECTED_PID_VAR)
    if owner and owner != str(os.getpid()):
        raise InheritedLaunchParameters(_inherited_from(f"managed process pid {owner}"))
    if not env.get("DRAGON_GS_RET_CD") or not env.get("DRAGON_GS_RET_CUID"):
        raise RuntimeNotRunning(
            "this process has no GS-return channel (it was created without "
            "make_inf_channels), so it cannot make runtime requests"
        )
    try:
        params = LaunchParameters.from_env(env)
    except ValueError as exc:
        raise RuntimeNotRunning(f"{NOT_UNDER_DRAGON}; {exc}") from exc
    info = _rundir.read_info(params.run_id) if params.run_id else None
    if info is not None and os.getppid() != info.ls_pid:
        raise InheritedLaunchParameters(
            _inherited_from(
                f"managed process p_uid {params.my_puid} (its parent, pid {os.getppid()}, is not Local Services)"
            )
        )
    return params


def _inherited_from(whom: str) -> str:
    return (
        f"this process (pid {os.getpid()}) inherited the launch parameters of {whom} but is not a "
        "managed process: create processes with dragon.native.Process"
    )


def in_call_here() -> bool:
    """Whether this thread is inside a call of this process's connection (`GSClient.in_call`)."""
    client = _client
    return client is not None and client.in_call()


def connection(*, start_runtime: bool = False) -> GSClient:
    """This process's connection to GS, made on first use (thread-safe).

    A managed process (launch parameters of its own in its environment) connects to its runtime. Any
    other process connects as an external client: to the runtime it runs with `dragon.serve` (the
    oldest, if several: `dragon.client.embedded`), else to its background runtime (`dragon.client.background`),
    which `start_runtime` brings up if there is none yet (the multiprocessing start method asks for
    this; the native API does not, see that module's docstring). That includes a program a managed
    process started itself (e.g. `subprocess.run([sys.executable, "x.py"])`): its inherited launch
    parameters are not its own, so the start method makes it a runtime of its own, as under plain
    `python`, and its children's output reaches its own stdout and stderr.

    Raises:
      RuntimeNotRunning: see `launch_parameters`; or no runtime and not `start_runtime` (`_background.NO_RUNTIME`);
        or the runtime is gone.
      BringupError: `start_runtime` and the background runtime did not come up.
      ProtocolError: the handshake was not GSPingProc.
    """
    global _client
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None:
            try:
                params = launch_parameters() if os.environ.get("DRAGON_GS_CD") else None
            except InheritedLaunchParameters:
                if not start_runtime:
                    raise
                params = None  # a plain program started by a managed one: a runtime of its own, as for any
            if params is not None:
                _client = GSClient.connect(params)
                os.environ[CONNECTED_PID_VAR] = str(os.getpid())
            else:
                _client = _connect_external(start_runtime)
        return _client


def _connect_external(start_runtime: bool) -> GSClient:
    """Connect to the runtime this program embeds, or else to its background runtime (bringing it up
    if `start_runtime`); called under `_lock`. The runtime's end closes the connection first."""
    # Here, not at the top, for start-up cost: a managed process never needs these (_background
    # imports subprocess and socket), and neither imports this module (imports only go down).
    from dragon.client import background as _background
    from dragon.client import embedded as _embedded

    embedded = _embedded.current()
    if embedded is not None:
        info = _rundir.read_info(embedded.run_id)
        if info is None:
            raise RuntimeNotRunning(f"the runtime {embedded.run_id} of dragon.serve has ended (no runtime.json)")
        client = GSClient.external(info, loop_thread=embedded.loop_thread)
        if not _embedded.add_stop_hook(embedded, functools.partial(_release, client)):
            client.close()
            raise RuntimeNotRunning(f"the runtime {embedded.run_id} of dragon.serve has ended")
        return client
    rt = _background.runtime(start=start_runtime)
    client = GSClient.external(rt.info)
    _background.add_stop_hook(functools.partial(_release, client))
    return client


def _release(client: GSClient) -> None:
    """Close `client` (its runtime is ending); the next call connects anew."""
    global _client
    with _lock:
        if _client is client:
            _client = None
    client.close()


def _forget_after_fork() -> None:
    """In a forked child the parent's connection is not ours: drop it (without closing shared fds)."""
    global _client, _lock
    _client = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
