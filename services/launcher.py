"""The launcher (LA): brings a runtime up, routes its messages, and tears it down in order.

Spec §2 (its side of bringup: m0, m1, m2, m3, m6), §3.1 (teardown m3-a9) and §3.2 (abnormal
termination). `serve` is the one code path behind both `dragon my.py` (via `run_program`) and
`trio.run(dragon.serve)`: the command only adds a head process, stdin forwarding and signals.

Local Services is started in one of two ways: forked by the `dragon` command before `trio.run` (it
then inherits the imported trio and starts in milliseconds; see services/_process.py), or exec'd as
`python -m dragon.services.local_services` when `serve` runs inside a program's own trio loop (one
trio import). Either way it leads its own session and process group, which also holds Global Services
and every managed process, so that a terminal's Ctrl-C reaches only the launcher and `killpg` reaches
everything.

Teardown is bounded at every step and shielded from cancellation; whatever happened before, it ends by
stopping the runtime's process group (SIGTERM, then SIGKILL), removing every /dev/shm entry of the run
and its runtime directory. `force_stop` (called on the second Ctrl-C) cuts the polite steps short.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
import trio

from dragon import _rundir
from dragon._pool_sizes import pool_sizes
from dragon.errors import BringupError, DragonError, InputNotDelivered
from dragon.ids import BE_CUID, LAUNCHER_PUID
from dragon.messages import (
    AbnormalTermination,
    BEHalted,
    BENodeIdxSH,
    BEPingSH,
    FdNum,
    GSHalted,
    GSHeadExit,
    GSInbound,
    GSIsUp,
    GSTeardown,
    LAInbound,
    LAStdoutInbound,
    LSErr,
    LSInbound,
    Response,
    SHChannelsUp,
    SHFwdInput,
    SHFwdInputErr,
    SHFwdOutput,
    SHHaltBE,
    SHHalted,
    SHPingBE,
    SHProcessExit,
    SHTeardown,
)
from dragon.transport import (
    ChannelCorrupted,
    ChannelDestroyed,
    FrameStream,
    LinkDown,
    MessageChannel,
    PendingReplies,
    TrioChannel,
    clip,
    entries,
    run_prefix,
    unlink_own,
)

from ._output import write_lines
from ._process import (
    ForkedChild,
    Waitable,
    become_subreaper,
    describe_exit,
    fork_service,
    group_members,
    signal_group,
    stop_descendants,
    stop_group,
)

log = logging.getLogger(__name__)

INPUT_CHUNK: Final = 1024  # spec §4.5: SHFwdInput carries at most 1024 bytes
TEARDOWN_STEP_S: Final = 5.0  # spec §3.1 waits 1 s windows [quirk]: a slow GS made it give up and leak
LS_STOP_PROCS_S: Final = 10.0  # LS stops leftover processes: SIGTERM + grace + SIGKILL
DEFAULT_BRINGUP_TIMEOUT_S: Final = 30.0
LS_REPORT_WAIT_S: Final = 2.0  # how long a failure of LS's bringup may take to be said on its stdout

R = TypeVar("R", bound=Response)


class RuntimeBroken(DragonError):
    """The runtime failed while running (a service died, AbnormalTermination); says what happened."""


@dataclass
class LSStart:
    """How Local Services was started: the process, the pipe ends of its stdin/stdout, its group."""

    proc: Waitable
    to_ls: trio.abc.SendStream
    from_ls: trio.abc.ReceiveStream
    pgid: int


def prefork_local_services(config: Any) -> tuple[ForkedChild, int, int]:
    """Fork Local Services before trio runs (the `dragon` command, the background runtime's launcher).
    Returns it and our pipe ends. Makes this process a subreaper first: should LS die, what it leaves
    comes here and the sweep stops it (`Launcher.owns_descendants`)."""
    from . import local_services

    become_subreaper()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    child = fork_service(lambda: local_services.run(config), new_session=True, keep_fds={in_r: 0, out_w: 1})
    os.close(in_r)
    os.close(out_w)
    return child, in_w, out_r


async def exec_local_services(config: Any) -> LSStart:
    """Start Local Services as a fresh interpreter (for `dragon.serve` inside a running trio loop)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "dragon.services.local_services", msgspec.json.encode(config).decode()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    return LSStart(proc=proc, to_ls=proc.stdin, from_ls=proc.stdout, pgid=proc.pid)


OutputSink = Callable[[SHFwdOutput], Awaitable[None]]


_closed_fds: set[int] = set()


async def write_to_own_stdio(msg: SHFwdOutput) -> None:
    """Default output sink: the bytes go to our stdout or stderr unchanged (in a thread, so that a
    slow reader blocks only this, and never makes the shared file description non-blocking).

    Once a reader has gone (`dragon prog | head -1`), further output to that stream is dropped
    quietly, as the shell's pipeline expects; the program itself runs on to its end.
    """
    fd = 2 if msg.fd_num == FdNum.STDERR else 1
    if fd in _closed_fds:
        return
    try:
        await trio.to_thread.run_sync(write_lines, fd, msg.data)
    except (BrokenPipeError, ConnectionResetError):
        _closed_fds.add(fd)
        log.info("the reader of fd %d has gone: dropping the rest of that output", fd)


class Launcher:
    """LA's side of one runtime; `serve` drives it."""

    def __init__(
        self,
        run_id: str,
        ls: LSStart,
        output: OutputSink,
        *,
        owns_descendants: bool = False,
        node: BENodeIdxSH | None = None,
        upstream: Callable[[msgspec.Struct], Awaitable[None]] | None = None,
    ) -> None:
        self.run_id = run_id
        self.node = node or BENodeIdxSH(node_idx=0, host_name=socket.gethostname())
        """What LS is told first: its node (a node of many, for a backend)."""
        self.upstream = upstream
        """A backend's (many nodes): where everything on the LA channel goes, to the frontend, which
        decides; the launcher then only runs its node's LS (no GS bringup, no error lines of its own)."""
        self.owns_descendants = owns_descendants
        """This process is a launcher and nothing else (the `dragon` command, the background runtime's),
        a subreaper: every descendant of it at teardown is the run's, to be stopped."""
        self.ls = ls
        self.output = output
        self.ls_pipe = MessageChannel[LAStdoutInbound](
            FrameStream(trio.StapledStream(ls.to_ls, ls.from_ls), name="LS stdout"),
            LAStdoutInbound,
            name="LS stdout",
            send_name="LS stdin",
        )
        self.inbox: MessageChannel[LAInbound] | None = None
        self.to_ls: MessageChannel[LSInbound] | None = None
        self.to_gs: MessageChannel[GSInbound] | None = None
        self.ping: SHPingBE | None = None
        self.events = {
            name: trio.Event()
            for name in (
                "sh_ping_be",
                "channels_up",
                "gs_up",
                "gs_halted",
                "halt_be",
                "sh_halted",
                "ls_exited",
                "ls_stdout_done",
                "head_exited",
                "broken",
                "la_channel_broken",
            )
        }
        self.head_exit: GSHeadExit | None = None
        self.failure: str | None = None
        self.up = False
        self.expect_ls_exit = False
        self.pending = PendingReplies[Response]("LA channel")
        self.next_tag = 0
        self.helper_scopes: list[trio.CancelScope] = []
        self.teardown_scope = trio.CancelScope()
        self.forced = False

    # ------------------------------------------------------------------ failures

    def fail(self, what: str) -> None:
        """Record the first failure of the runtime; once it is up, also say it on stderr (once).

        During bringup the BringupError raised to the caller carries the text instead."""
        if self.failure is None:
            self.failure = what = clip(what)
            log.error("%s", what)
            if self.up and self.upstream is None:
                os.write(2, f"dragon: error: {what}\n".encode())
        self.events["broken"].set()
        self.pending.fail_all(self.failure)

    async def first_of(self, *names: str, timeout_s: float = float("inf")) -> None:
        """Wait until any of the events `names` is set, or `timeout_s` passes. Never raises: the
        caller looks at the events afterwards (so no ExceptionGroup reaches an embedding program)."""
        with trio.move_on_after(timeout_s):
            async with trio.open_nursery() as race:

                async def watch(name: str) -> None:
                    await self.events[name].wait()
                    race.cancel_scope.cancel()

                for name in names:
                    race.start_soon(watch, name)

    async def wait_unless_ls_gone(self, name: str, timeout_s: float) -> None:
        """Wait for a teardown event, at most `timeout_s`, and no longer once LS has exited or the LA
        channel, where the event would come, is broken."""
        await self.first_of(name, "ls_exited", "la_channel_broken", timeout_s=timeout_s)

    # ------------------------------------------------------------------ helper tasks (shielded)

    def start_helper(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` shielded from outside cancellation: teardown needs these tasks to the very end;
        `stop_helpers` ends them."""
        scope = trio.CancelScope(shield=True)
        self.helper_scopes.append(scope)

        async def run() -> None:
            with scope:
                await fn()

        nursery.start_soon(run)

    def stop_helpers(self) -> None:
        for scope in self.helper_scopes:
            scope.cancel()

    async def read_ls_stdout(self) -> None:
        """SHPingBE (m1), SHHalted (m9) or an AbnormalTermination on LS's stdout; EOF is noted."""
        try:
            await self._read_ls_stdout()
        finally:
            self.events["ls_stdout_done"].set()

    async def _read_ls_stdout(self) -> None:
        try:
            async for msg in self.ls_pipe:
                match msg:
                    case SHPingBE():
                        self.ping = msg
                        self.events["sh_ping_be"].set()
                    case SHHalted():
                        self.events["sh_halted"].set()
                    case AbnormalTermination():
                        self.fail(msg.err_info)
        except (DragonError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if not self.expect_ls_exit:
                self.fail(f"the pipe from Local Services broke: {exc}")

    async def watch_ls_exit(self) -> None:
        code = await self.ls.proc.wait()
        self.events["ls_exited"].set()
        with trio.move_on_after(1.0):  # what LS wrote just before exiting says more than its death
            await self.events["ls_stdout_done"].wait()
        if not self.expect_ls_exit:
            self.fail(f"Local Services (pid {self.ls.proc.pid}) died {describe_exit(code)}")

    async def route(self) -> None:
        """Everything that arrives on the LA channel, in order (spec §2, §3)."""
        assert self.inbox is not None
        while True:
            try:
                msg = await self.inbox.receive()
            except trio.ClosedResourceError:  # teardown closed our handle: the run is over
                return
            except ChannelDestroyed:
                # Local Services destroyed it: it is tearing down, or it failed and says why on its
                # stdout, or it died and `watch_ls_exit` says so. Nothing more to say here.
                return
            except ChannelCorrupted as exc:  # nothing more can be read from it: teardown must not wait on it
                self.fail(str(exc))
                self.events["la_channel_broken"].set()
                return
            except DragonError as exc:  # one undecodable message: say so, and go on with the next
                self.fail(f"bad message on the launcher's channel: {exc}")
                continue
            if self.upstream is not None and not isinstance(msg, SHHaltBE):
                if isinstance(msg, SHChannelsUp):
                    self.events["channels_up"].set()
                await self.upstream(msg)
                continue
            match msg:
                case SHFwdOutput():
                    await self.output(msg)
                case SHProcessExit():  # after the output of a process: it is written now, GS may know
                    if self.to_gs is not None:
                        await self.to_gs.send(msg)
                case Response():
                    self.pending.file(msg)
                case GSHeadExit():
                    self.head_exit = msg
                    self.events["head_exited"].set()
                case GSHalted():
                    self.events["gs_halted"].set()
                case SHHaltBE():
                    self.events["halt_be"].set()
                case AbnormalTermination():
                    self.fail(msg.err_info)
                case SHChannelsUp():
                    self.events["channels_up"].set()
                case GSIsUp():
                    self.events["gs_up"].set()
                case _:
                    log.warning("ignored unexpected %s on the LA channel", type(msg).__name__)

    # ------------------------------------------------------------------ bringup (§2)

    async def wait_event(self, name: str, what: str) -> None:
        """Wait for a bringup event, or fail at once if the runtime broke first."""
        await self.first_of(name, "broken")
        if not self.events[name].is_set():
            raise BringupError("launcher", what, str(self.failure))

    async def bringup(self, nursery: trio.Nursery, timeout_s: float) -> None:
        """Spec §2 m0-m6 from LA's side. Raises BringupError naming the step that did not finish."""
        step = "starting Local Services"
        try:
            with trio.fail_after(timeout_s):
                try:
                    await self.ls_pipe.send(self.node)
                except trio.BrokenResourceError:
                    pass  # LS is already gone: `watch_ls_exit` says why, and the wait below ends
                step = "waiting for SHPingBE from Local Services"
                await self.wait_event("sh_ping_be", "Local Services bringup")
                assert self.ping is not None
                step = "attaching to the channels of Local Services"
                try:
                    self.to_ls = MessageChannel(TrioChannel.attach(self.ping.shep_cd), LSInbound, name="LS channel")
                    self.to_gs = MessageChannel(TrioChannel.attach(self.ping.gs_cd), GSInbound, name="GS channel")
                    self.inbox = MessageChannel(TrioChannel.attach(self.ping.be_cd), LAInbound, name="LA channel")
                    self.start_helper(nursery, self.route)
                    await self.to_ls.send(BEPingSH())  # m2
                except DragonError as exc:  # LS failed right after SHPingBE and removed them
                    # It says why on its stdout, maybe a moment from now: that says more than "destroyed".
                    await self.first_of("broken", "ls_stdout_done", timeout_s=LS_REPORT_WAIT_S)
                    raise BringupError("launcher", step, str(self.failure or exc)) from None
                step = "waiting for SHChannelsUp from Local Services"
                await self.wait_event("channels_up", "Local Services bringup")  # m3
                if self.upstream is None:  # a backend's GS comes up when the frontend says (MULTINODE §4)
                    step = "waiting for GSIsUp from Global Services"
                    await self.wait_event("gs_up", "Global Services bringup")  # m6
        except trio.TooSlowError:
            raise BringupError(
                "launcher", step, self.failure or f"the runtime did not come up within {timeout_s} s"
            ) from None
        self.up = True
        if self.failure is not None and self.upstream is None:  # it broke just as it came up: `fail` kept quiet
            os.write(2, f"dragon: error: {self.failure}\n".encode())

    # ------------------------------------------------------------------ requests to GS

    async def call(self, req: Any, response_type: type[R], *, to_ls: bool = False) -> R:
        """Send a request as the launcher (p_uid 0, replies on the LA channel) to Global Services (or
        with `to_ls`, to Local Services) and await the answer.

        Raises RuntimeBroken if the runtime fails first."""
        outbox = self.to_ls if to_ls else self.to_gs
        if outbox is None:
            raise RuntimeBroken("the runtime is not up")
        self.next_tag += 1
        return await ask_as_launcher(self.pending, self.next_tag, req, outbox.send, response_type, lambda: self.failure)

    # ------------------------------------------------------------------ teardown (§3.1)

    def force_stop(self) -> None:
        """Cut teardown short: SIGKILL the whole runtime now (the second Ctrl-C)."""
        self.forced = True
        log.warning("forced stop: killing the runtime's process group %d", self.ls.pgid)
        try:
            os.killpg(self.ls.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.teardown_scope.cancel()

    async def teardown(self) -> None:
        """Spec §3.1 m3-a9, each step bounded; then the sweep that always runs. Shielded."""
        with trio.CancelScope(shield=True):
            if self.up:  # a runtime that never came up has nobody to ask: straight to the sweep
                with self.teardown_scope:
                    await self._polite_teardown()
            await self._sweep()

    async def _polite_teardown(self) -> None:
        ls_alive = not self.events["ls_exited"].is_set()
        if ls_alive and self.to_gs is not None and not self.events["gs_halted"].is_set():
            try:
                with trio.move_on_after(TEARDOWN_STEP_S):  # a full channel of a hung GS: go on
                    await self.to_gs.send(GSTeardown())  # m3
                await self.wait_unless_ls_gone("gs_halted", TEARDOWN_STEP_S)  # m5
            except DragonError as exc:
                log.warning("GSTeardown failed: %s", exc)
        if ls_alive and self.to_ls is not None:
            try:
                with trio.move_on_after(TEARDOWN_STEP_S):
                    await self.to_ls.send(SHTeardown())  # m6
                await self.wait_unless_ls_gone("halt_be", LS_STOP_PROCS_S)  # m7
            except DragonError as exc:
                log.warning("SHTeardown failed: %s", exc)
        for link in (self.to_ls, self.to_gs, self.inbox):
            if link is not None:
                await link.aclose()
        self.expect_ls_exit = True
        if not self.events["ls_exited"].is_set():
            try:
                await self.ls_pipe.send(BEHalted())  # m8
                await self.wait_unless_ls_gone("sh_halted", TEARDOWN_STEP_S)  # m9
                with trio.move_on_after(TEARDOWN_STEP_S):
                    await self.events["ls_exited"].wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if not self.events["ls_exited"].is_set():
            self.fail("Local Services did not halt in time: stopping it")

    async def _sweep(self) -> None:
        """Nothing of the run may remain: its process group, its /dev/shm entries, its directory."""
        self.expect_ls_exit = True
        with trio.move_on_after(2 * TEARDOWN_STEP_S):
            if group_members(self.ls.pgid):
                stubborn = await stop_group(self.ls.pgid, grace_s=0.2 if self.forced else 2.0)
                if stubborn:
                    log.warning("killed leftover processes of the run: %s", stubborn)
            with trio.move_on_after(TEARDOWN_STEP_S):
                await self.events["ls_exited"].wait()
        if self.owns_descendants:  # what escaped LS's group, orphaned when LS died: ours as subreaper
            await stop_descendants(exclude=frozenset([self.ls.proc.pid]))
        leftovers = [name for name in entries(run_prefix(self.run_id)) if unlink_own(name)]
        if leftovers and not self.forced and self.failure is None:
            log.warning("removed shared memory left behind: %s", leftovers)
        _rundir.remove_run_dir(self.run_id)
        self.stop_helpers()
        await trio.aclose_forcefully(self.ls_pipe)


async def ask_as_launcher(
    pending: PendingReplies[Response],
    tag: int,
    req: Any,
    send: Callable[[Any], Awaitable[None]],
    response_type: type[R],
    failure: Callable[[], str | None],
) -> R:
    """`req` as the launcher's (p_uid 0, answered on the LA channel, `tag`), sent with `send`; its
    answer, which must be a `response_type`. RuntimeBroken (saying `failure()`) if the runtime fails
    first. The single-node launcher's and the frontend's requests (services/frontend.py)."""
    req = msgspec.structs.replace(req, tag=tag, p_uid=LAUNCHER_PUID, r_c_uid=BE_CUID)
    with pending.expect(tag) as waiter:
        await send(req)
        try:
            resp = await waiter.reply()
        except LinkDown:
            raise RuntimeBroken(f"the runtime broke while waiting for an answer: {failure()}") from None
    if not isinstance(resp, response_type):
        raise RuntimeBroken(f"expected {response_type.__name__}, got {type(resp).__name__}")
    return resp


@dataclass
class RuntimeHandle:
    """What `dragon.serve` hands to its caller once the runtime takes requests."""

    run_id: str
    ls_pid: int
    _launcher: Launcher  # not the caller's: every use goes through the methods below

    async def call(self, req: Any, response_type: type[R]) -> R:
        """A request to Global Services, answered on the launcher's channel."""
        return await self._launcher.call(req, response_type)

    async def send_input(self, p_uid: int, data: bytes, *, confirm: bool = False) -> None:
        """Write `data` to the stdin of process `p_uid` (SHFwdInput, at most INPUT_CHUNK bytes each;
        b"" closes it). With `confirm`, return once it is written into the process's stdin.

        Raises:
          InputNotDelivered: (`confirm` only) no such running process, its stdin is not forwarded or
            is closed, or it did not take the input in time (its stdin is closed then, spec §4.5).
          RuntimeBroken: the runtime failed.
        """
        chunks = [data[i : i + INPUT_CHUNK] for i in range(0, len(data), INPUT_CHUNK)] or [b""]
        for chunk in chunks:
            msg = SHFwdInput(p_uid=LAUNCHER_PUID, r_c_uid=BE_CUID, t_p_uid=p_uid, input=chunk, confirm=confirm)
            if not confirm:
                if self._launcher.to_ls is None:
                    raise RuntimeBroken("the runtime is not up")
                await self._launcher.to_ls.send(msg)
                continue
            resp = await self._launcher.call(msg, SHFwdInputErr, to_ls=True)
            if resp.err != LSErr.SUCCESS:
                raise InputNotDelivered(resp.err_info)

    async def wait_head_exit(self) -> GSHeadExit:
        """Wait for GSHeadExit; RuntimeBroken if the runtime fails first."""
        await self._launcher.first_of("head_exited", "broken")
        if self._launcher.head_exit is None:
            raise RuntimeBroken(self._launcher.failure or "the runtime broke")
        return self._launcher.head_exit

    def force_stop(self) -> None:
        self._launcher.force_stop()

    def interrupt(self) -> None:
        """Ctrl-C for the program: SIGINT to every process of the runtime's process group, as a
        terminal sends it to every process of `python my.py`. The services ignore it (they stop
        when the program does); the head and the program's processes get KeyboardInterrupt."""
        signal_group(self._launcher.ls.pgid, signal.SIGINT)


async def serve(
    *,
    run_id: str | None = None,
    bringup_timeout_s: float = DEFAULT_BRINGUP_TIMEOUT_S,
    output: OutputSink = write_to_own_stdio,
    preforked: tuple[ForkedChild, int, int] | None = None,
    before_teardown: Callable[[], None] | None = None,
    task_status: trio.TaskStatus[RuntimeHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bring a runtime up, report a `RuntimeHandle`, keep it until cancelled, then tear it down.

    `before_teardown` is called (in this task, blocking) before teardown begins, whether the runtime
    came up or not: `dragon.serve` lets this process's blocking connection go there (dragon.client.embedded).
    Raises BringupError if the runtime does not come up (what step, and why), RuntimeBroken if it
    fails while running. Whatever happens, nothing of the run is left when this returns or raises.
    """
    from .local_services import LSConfig

    if preforked is None:
        try:
            sizes = pool_sizes()
        except ValueError as exc:
            raise BringupError("launcher", "reading its settings", str(exc)) from None
        run_id = run_id or _rundir.new_run_id()
        try:
            _rundir.create_run_dir(run_id)
        except OSError as exc:
            raise BringupError("launcher", "making the runtime directory", str(exc)) from None
        try:
            ls = await exec_local_services(
                LSConfig(
                    run_id=run_id,
                    bringup_timeout_s=bringup_timeout_s,
                    launcher_pid=os.getpid(),
                    inf_seg_sz=sizes.inf_seg_sz,
                    default_seg_sz=sizes.default_seg_sz,
                    exits_follow_output=False,
                )
            )
        except BaseException:
            _rundir.remove_run_dir(run_id)
            raise
    else:
        assert run_id is not None
        child, to_ls, from_ls = preforked
        ls = LSStart(
            proc=child, to_ls=trio.lowlevel.FdStream(to_ls), from_ls=trio.lowlevel.FdStream(from_ls), pgid=child.pid
        )
    la = Launcher(run_id, ls, output, owns_descendants=preforked is not None)
    async with trio.open_nursery() as nursery:
        la.start_helper(nursery, la.read_ls_stdout)
        la.start_helper(nursery, la.watch_ls_exit)
        try:
            await la.bringup(nursery, bringup_timeout_s)
            task_status.started(RuntimeHandle(run_id, ls.proc.pid, la))
            await la.events["broken"].wait()
            raise RuntimeBroken(la.failure or "the runtime broke")
        finally:
            try:
                if before_teardown is not None:
                    before_teardown()
            finally:
                try:
                    await la.teardown()
                finally:
                    la.stop_helpers()  # whatever happened, the shielded helpers must end with the run
