"""Local Services (LS, "the Shepherd"): owns the node's shm objects and every managed process.

Spec §2 (bringup), §3 (teardown), §4.5 (its messages). LS talks to the launcher (LA) over its
stdin/stdout pipe before channels exist and at the very end, and over shm channels in between.

Two phases, because of how the runtime starts quickly (services/_process.py):

1. `bringup` runs *before* `trio.run`, with blocking I/O and a deadline per step: read BENodeIdxSH
   (m0), create the pools and the LS/LA/GS channels (A2), SHPingBE (m1), wait for BEPingSH (m2),
   SHChannelsUp (m3), start GS (A4) by forking it (it inherits the imported trio), wait for GSPingSH
   (m4), SHPingGS (m5). A failure at any step removes what was made, writes AbnormalTermination on
   stdout for LA, and exits 1.
2. `serve` is the trio main loop: its root nursery supervises one task per managed process (spawn,
   output forwarding, exit watching), the GS monitor (GS's stdout, stderr and exit; spec §3.2
   "GSMonitor"), the stdin watcher (BEHalted, or EOF when LA died) and the LS-channel dispatcher.

Teardown (spec §3.1 a6-a8): on SHTeardown LS stops every remaining managed process (SIGTERM, then
SIGKILL after a grace period, naming them in the log; the reference SIGKILLs at once **[quirk]**),
sends SHHaltBE, waits for BEHalted, destroys every shm object of the run, and writes SHHalted. If its
stdin reaches EOF first, the launcher is gone, and LS does all of that alone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec
import trio

from dragon import _faults, _log, _rundir, _runs
from dragon.descriptors import DEVNULL, STDOUT, NodeDescriptor, StdioOption
from dragon.ids import (
    BE_CUID, DEFAULT_POOL_MUID, DEFAULT_SEG_SZ, GS_INPUT_CUID, GS_PUID, INF_POOL_MUID, INF_SEG_SZ,
    SHEP_CUID, LaunchParameters,
)
from dragon.messages import (
    AbnormalTermination, BEHalted, BENodeIdxSH, BEPingSH, FdNum, GSHalted, GSPingSH, GSStdoutOutbound,
    LSErr, LSInbound, LSStdinInbound, SHChannelCreate, SHChannelCreateResponse, SHChannelDestroy,
    SHChannelDestroyResponse, SHChannelsUp, SHDumpState, SHFwdInput, SHFwdOutput, SHHaltBE, SHHalted,
    SHPingBE, SHPingGS, SHPoolCreate, SHPoolCreateResponse, SHPoolDestroy, SHPoolDestroyResponse,
    ProcessUsage, SHProcessCreate, SHProcessCreateResponse, SHProcessExit, SHProcessKill,
    SHProcessKillResponse, SHStatus, SHStatusResponse, SHTeardown,
)
from dragon.transport import Channel, ChannelDestroyed, ChannelEmpty, Pool, ProtocolError, TrioChannel, decode
from dragon.transport._framing import FrameStream
from dragon.transport._shm import entries, run_prefix, unlink_quietly

from . import global_services
from ._links import (
    Inbox, Outbox, is_user_managed, log_message, read_frame, receive_blocking, reply_once, send_blocking,
    write_frame,
)
from ._fast_start import ForkServer, ForkServerFailed, ServedChild
from ._output import READ_SIZE, LineAssembler
from ._process import ForkedChild, describe_exit, fork_service, stop_process

log = logging.getLogger(__name__)

DRAIN_AFTER_EXIT_S: Final = 1.0  # output still arriving after a process exited (its children's)
BEHALTED_WAIT_S: Final = 10.0
LA_CHANNEL_CAPACITY: Final = 256
LA_CHANNEL_BLOCK: Final = 8192
INPUT_BUFFER_MSGS: Final = 65536  # SHFwdInput chunks buffered per process that does not read stdin


class LSConfig(msgspec.Struct, kw_only=True):
    """How the launcher configures LS (passed as JSON in argv when LS is exec'd)."""

    run_id: str
    bringup_timeout_s: float = 30.0
    inf_seg_sz: int = INF_SEG_SZ
    default_seg_sz: int = DEFAULT_SEG_SZ
    launcher_pid: int = 0


@dataclass
class Infra:
    """What bringup made: the pools, the channels (blocking handles) and GS."""

    config: LSConfig
    pools: list[Pool]
    shep: Channel
    be: Channel
    gs_chan: Channel
    gs: ForkedChild
    gs_stdin: int  # our end of GS's stdin pipe: GS sees EOF when LS dies
    gs_stdout: int
    gs_stderr: int
    params: LaunchParameters
    node: NodeDescriptor


def run(config: LSConfig) -> int:
    """The whole life of LS in this process: bringup, then the trio main loop. Returns the exit code."""
    _log.set_actor("LS")
    sys.stdout = sys.stderr  # fd 1 is the protocol pipe to LA: a stray print() must not reach it
    try:
        infra = bringup(config)
    except BaseException as exc:
        log.error("bringup failed: %s", exc, exc_info=True)
        try:
            write_frame(1, AbnormalTermination(err_info=f"Local Services bringup failed: {exc}"),
                        "LS stdout")
        except OSError:
            pass
        return 1
    return trio.run(serve, infra)


# ------------------------------------------------------------------------------------------ bringup


def bringup(config: LSConfig) -> Infra:
    """Spec §2 A2-m5, with blocking I/O; everything made is removed again if a step fails."""
    deadline = time.monotonic() + config.bringup_timeout_s

    def left(step: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"bringup did not finish within {config.bringup_timeout_s} s ({step})")
        return remaining

    first = read_frame(0, msgspec.msgpack.Decoder(LSStdinInbound), "LS stdin")  # m0
    if not isinstance(first, BENodeIdxSH) or first.node_idx != 0:
        raise ProtocolError(f"expected BENodeIdxSH(node_idx=0) first on LS stdin, got {first!r}")
    if _faults.active("ls-hang-bringup"):
        time.sleep(3600)
    made_pools: list[Pool] = []
    made_chans: list[Channel] = []
    gs: ForkedChild | None = None
    try:
        rid = config.run_id
        made_pools.append(Pool.create(_rundir.infra_name(rid, f"m{INF_POOL_MUID}"), config.inf_seg_sz))
        made_pools.append(Pool.create(_rundir.infra_name(rid, f"m{DEFAULT_POOL_MUID}"), config.default_seg_sz))
        shep = Channel.create(_rundir.infra_name(rid, f"c{SHEP_CUID}"), capacity=256, block_size=4096)
        made_chans.append(shep)
        be = Channel.create(_rundir.infra_name(rid, f"c{BE_CUID}"), capacity=LA_CHANNEL_CAPACITY,
                            block_size=LA_CHANNEL_BLOCK)
        made_chans.append(be)
        gs_chan = Channel.create(_rundir.infra_name(rid, f"c{GS_INPUT_CUID}"), capacity=256, block_size=4096)
        made_chans.append(gs_chan)
        params = LaunchParameters(
            mode="single", gs_cd=gs_chan.descriptor, local_shep_cd=shep.descriptor,
            local_be_cd=be.descriptor, default_pd=made_pools[1].descriptor, inf_pd=made_pools[0].descriptor,
            default_seg_sz=config.default_seg_sz, inf_seg_sz=config.inf_seg_sz, run_id=rid)
        write_frame(1, SHPingBE(shep_cd=shep.descriptor, be_cd=be.descriptor, gs_cd=gs_chan.descriptor,
                                default_pd=params.default_pd, inf_pd=params.inf_pd), "LS stdout")  # m1
        msg = receive_blocking(shep, msgspec.msgpack.Decoder(LSInbound), "LS channel", left("BEPingSH"))
        if not isinstance(msg, BEPingSH):  # m2
            raise ProtocolError(f"expected BEPingSH on the LS channel, got {type(msg).__name__}")
        node = NodeDescriptor(host_name=socket.gethostname(), num_cpus=os.cpu_count() or 1,
                              physical_mem_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                              shep_cd=shep.descriptor)
        send_blocking(be, SHChannelsUp(node_desc=node, gs_cd=gs_chan.descriptor), "LA channel",
                      left("SHChannelsUp"))  # m3
        gs, gs_stdin, gs_stdout, gs_stderr = _start_global_services(params)  # A4
        msg = _wait_gs_ping(shep, gs, left)  # m4
        # runtime.json first: once SHPingGS is sent GS says GSIsUp, and whoever then holds the
        # runtime (the command, a `dragon.serve` caller, `dragon status`) may look for the file.
        _rundir.write_info(_rundir.RunInfo(
            run_id=rid, launcher_pid=config.launcher_pid or os.getppid(), ls_pid=os.getpid(),
            gs_pid=gs.pid, pgid=os.getpgid(0), gs_cd=gs_chan.descriptor, la_cd=be.descriptor,
            shep_cd=shep.descriptor, started=time.time(), log_file=os.environ.get("DRAGON_LOG_FILE", "")))
        send_blocking(gs_chan, SHPingGS(node_sdesc=node), "GS channel", left("SHPingGS"))  # m5
        return Infra(config=config, pools=made_pools, shep=shep, be=be, gs_chan=gs_chan, gs=gs,
                     gs_stdin=gs_stdin, gs_stdout=gs_stdout, gs_stderr=gs_stderr, params=params, node=node)
    except BaseException:
        if gs is not None:
            gs.send_signal(signal.SIGKILL)
            gs.wait_blocking(5.0)
        for chan in made_chans:
            chan.destroy()
        for pool in made_pools:
            pool.destroy()
        raise


def _start_global_services(params: LaunchParameters) -> tuple[ForkedChild, int, int, int]:
    """Fork GS (spec §2 A4) with pipes for its stdin (our liveness), stdout and stderr (GSMonitor).

    GS stays in LS's process group (killpg of the runtime reaches it). Returns GS and our pipe ends.
    """
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child = fork_service(lambda: global_services.run(params), new_session=False,
                         keep_fds={in_r: 0, out_w: 1, err_w: 2})
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return child, in_w, out_r, err_r


def _wait_gs_ping(shep: Channel, gs: ForkedChild, left: Callable[[str], float]) -> GSPingSH:
    """Wait for GSPingSH (m4), noticing at once if GS dies instead."""
    decoder = msgspec.msgpack.Decoder(LSInbound)
    while True:
        try:
            msg = receive_blocking(shep, decoder, "LS channel", min(0.1, left("GSPingSH")))
        except ChannelEmpty:
            code = gs.poll()
            if code is not None:
                raise RuntimeError(f"Global Services exited during bringup with code {code}") from None
            continue
        if not isinstance(msg, GSPingSH):
            raise ProtocolError(f"expected GSPingSH on the LS channel, got {type(msg).__name__}")
        return msg


# ------------------------------------------------------------------------------------------ main loop


@dataclass
class ManagedProcess:
    """LS's view of one managed process (spec §5.1 "LS's own view")."""

    p_uid: int
    create_tag: int
    proc: trio.Process | ServedChild
    stdin_send: trio.MemorySendChannel[bytes] | None = None
    forwarders_done: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    hide_stderr: bool = False
    pipes: dict[str, str] = field(default_factory=dict)
    """Spec §5.5 PIPE: the channel (attach descriptor) of each stdio stream that goes to one."""


class LocalServices:
    """The state of the trio main loop of LS."""

    def __init__(self, infra: Infra, nursery: trio.Nursery) -> None:
        self.infra = infra
        self.nursery = nursery
        self.inbox: Inbox[LSInbound] = Inbox(TrioChannel(infra.shep), LSInbound, "LS channel")
        self.to_la = Outbox(TrioChannel(infra.be), "LA channel")
        self.to_gs = Outbox(TrioChannel(infra.gs_chan), "GS channel")
        self.procs: dict[int, ManagedProcess] = {}
        self.forkserver = ForkServer(nursery)
        self.channels: dict[int, Channel] = {}
        self.pools: dict[int, Pool] = {}
        self.gs_halted = trio.Event()
        self.gs_stdout_done = trio.Event()
        self.gs_exited = trio.Event()
        self.abnormal_sent = False
        self.tearing_down = False
        self.stdin_eof = trio.Event()
        self.be_halted = trio.Event()
        self.started = time.time()

    # ---------------------------------------------------------------- abnormal termination (§3.2)

    async def abnormal(self, err_info: str) -> None:
        """Tell LA the runtime is broken (once); LA then runs the teardown of §3.1."""
        log.error("abnormal termination: %s", err_info)
        if self.abnormal_sent or self.tearing_down:
            return
        self.abnormal_sent = True
        with trio.move_on_after(5):
            await self.to_la.send(AbnormalTermination(err_info=err_info))

    # ---------------------------------------------------------------- GS monitor (§3.2)

    async def monitor_gs_stdout(self) -> None:
        try:
            await self._read_gs_stdout()
        finally:
            self.gs_stdout_done.set()

    async def _read_gs_stdout(self) -> None:
        frames = FrameStream(trio.lowlevel.FdStream(self.infra.gs_stdout), name="GS stdout")
        decoder = msgspec.msgpack.Decoder(GSStdoutOutbound)
        try:
            async for frame in frames:
                try:
                    msg = decode(decoder, frame, where="GS stdout")
                except ProtocolError as exc:
                    await self.abnormal(f"Global Services wrote garbage on its stdout: {exc}")
                    return
                log_message("received", "on GS stdout", msg)
                if isinstance(msg, GSHalted):
                    self.gs_halted.set()
                    await self.to_la.send(GSHalted())  # spec §3.1 m5
                    return
                await self.to_la.send(msg)  # an AbnormalTermination of GS's: forward it as it is
                self.abnormal_sent = True
        except ProtocolError as exc:
            await self.abnormal(f"Global Services wrote garbage on its stdout: {exc}")

    async def monitor_gs_stderr(self) -> None:
        stream = trio.lowlevel.FdStream(self.infra.gs_stderr)
        text = b""
        while chunk := await stream.receive_some(65536):
            text += chunk
            if len(text) > 4096:
                break
        if text:  # spec §3.2: output of a critical process on stderr is fatal
            log.error("Global Services wrote on stderr:\n%s", text.decode(errors="replace"))
            await self.abnormal("Global Services wrote on its stderr: " + text.decode(errors="replace")[-2000:])

    async def watch_gs_exit(self) -> None:
        code = await self.infra.gs.wait()
        self.gs_exited.set()
        with trio.move_on_after(1.0):  # GSHalted, written just before GS exited, may still be in the pipe
            await self.gs_stdout_done.wait()
        if not self.gs_halted.is_set():
            if not self.tearing_down:
                await self.abnormal(f"Global Services (pid {self.infra.gs.pid}) died {describe_exit(code)}")
            # GS is gone, so it has halted: say so, and LA's teardown need not wait for it (§3.1 m5).
            self.gs_halted.set()
            with trio.move_on_after(5):
                await self.to_la.send(GSHalted())

    # ---------------------------------------------------------------- LA's pipe

    async def watch_stdin(self) -> None:
        """BEHalted (spec §3.1 m8) or EOF: the launcher has gone away."""
        frames = FrameStream(trio.lowlevel.FdStream(os.dup(0)), name="LS stdin")
        decoder = msgspec.msgpack.Decoder(LSStdinInbound)
        try:
            async for frame in frames:
                msg = decode(decoder, frame, where="LS stdin")
                log_message("received", "on LS stdin", msg)
                if isinstance(msg, BEHalted):
                    self.be_halted.set()
                    return
        except (ProtocolError, trio.BrokenResourceError) as exc:
            log.error("LS stdin broke: %s", exc)
        finally:
            await frames.aclose()
        if not self.be_halted.is_set():
            log.error("the launcher went away (stdin closed): tearing down alone")
            self.stdin_eof.set()

    # ---------------------------------------------------------------- dispatch

    async def dispatch(self) -> None:
        """Handle messages on the LS channel until SHTeardown (returns) or LA's disappearance."""
        while True:
            try:
                msg = await self.inbox.receive()
            except ProtocolError as exc:  # spec §3.2: a message LS cannot parse breaks the runtime
                await self.abnormal(f"Local Services received a message it cannot parse: {exc}")
                continue
            match msg:
                case SHProcessCreate():
                    await self.nursery.start(self.run_process, msg)
                case SHProcessKill():
                    await self.reply(msg.r_c_uid, self.kill(msg))
                case SHFwdInput():
                    self.forward_input(msg)
                case SHChannelCreate():
                    await self.reply(msg.r_c_uid, self.create_channel(msg))
                case SHChannelDestroy():
                    await self.reply(msg.r_c_uid, self.destroy_channel(msg))
                case SHPoolCreate():
                    await self.reply(msg.r_c_uid, self.create_pool(msg))
                case SHPoolDestroy():
                    await self.reply(msg.r_c_uid, self.destroy_pool(msg))
                case SHDumpState():
                    self.dump_state(msg.filename)
                case SHStatus():
                    await self.reply(msg.r_c_uid, self.status(msg))
                case SHTeardown():
                    return
                case AbnormalTermination():
                    await self.to_la.send(msg)
                case _:
                    log.warning("ignored unexpected %s on the LS channel", type(msg).__name__)

    async def reply(self, r_c_uid: int, msg: msgspec.Struct) -> None:
        """Spec §4.5: LS only answers GS (c_uid 2) or LA (2**57); anything else is a broken runtime."""
        if r_c_uid == GS_INPUT_CUID:
            await self.to_gs.send(msg)
        elif r_c_uid == BE_CUID:
            await self.to_la.send(msg)
        elif is_user_managed(r_c_uid):  # a tool's own reply channel (`dragon status`): our extension
            await reply_once(_rundir.channel_name(self.infra.config.run_id, r_c_uid), msg, f"channel {r_c_uid}")
        else:
            await self.abnormal(f"LS was asked to reply to unknown r_c_uid {r_c_uid}")

    # ---------------------------------------------------------------- processes

    async def run_process(self, req: SHProcessCreate, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn one managed process, answer SHProcessCreate, forward its output, report its exit."""
        if req.t_p_uid in self.procs:
            task_status.started()
            await self.reply(req.r_c_uid, SHProcessCreateResponse(
                ref=req.tag, err=LSErr.FAIL, err_info=f"p_uid {req.t_p_uid} is already running"))
            return
        gs_ret = None
        if req.gs_ret_chan_msg is not None:
            gs_ret = self.create_channel(req.gs_ret_chan_msg)
            if gs_ret.err != LSErr.SUCCESS:
                task_status.started()
                await self.reply(req.r_c_uid, SHProcessCreateResponse(
                    ref=req.tag, err=LSErr.FAIL, err_info=gs_ret.err_info, gs_ret_chan_resp=gs_ret))
                return
        pipe_resps: dict[str, SHChannelCreateResponse] = {}
        for stream, pipe_msg in (("stdin", req.stdin_msg), ("stdout", req.stdout_msg), ("stderr", req.stderr_msg)):
            if pipe_msg is not None:  # spec §4.2: GS asks for the PIPE channels along with the process
                pipe_resps[stream] = self.create_channel(pipe_msg)
        failed = [r for r in pipe_resps.values() if r.err != LSErr.SUCCESS]
        if failed:
            task_status.started()
            await self.reply(req.r_c_uid, SHProcessCreateResponse(
                ref=req.tag, err=LSErr.FAIL, err_info=failed[0].err_info, gs_ret_chan_resp=gs_ret,
                stdin_resp=pipe_resps.get("stdin"), stdout_resp=pipe_resps.get("stdout"),
                stderr_resp=pipe_resps.get("stderr")))
            return
        env = dict(os.environ)
        env.update(req.env)
        params = msgspec.structs.replace(
            self.infra.params, my_puid=req.t_p_uid, gs_ret_cd=gs_ret.desc if gs_ret else "",
            gs_ret_cuid=req.gs_ret_chan_msg.c_uid if gs_ret and req.gs_ret_chan_msg else 0,
            parent_puid=int(req.env.get("DRAGON_PARENT_PUID", "0") or 0))
        env.update(params.to_env())
        argv = [req.exe, *req.args]
        if req.exe == sys.executable:  # a Python program, usually the head: ready the fork server for its children
            self.forkserver.prestart(req.exe, env)
        proc: trio.Process | ServedChild | None = None
        try:
            if self.forkserver.ready_for(argv, env):
                proc = await self._start_served(req, argv, env)
            if proc is None:
                stdio = [_stdin_option(req.stdin), _out_option(req.stdout), _out_option(req.stderr, is_stderr=True)]
                try:
                    proc = await trio.lowlevel.open_process(
                        argv, cwd=req.rundir or None, env=env, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
                finally:
                    for fd in stdio:
                        if fd >= 0:  # a file opened for a stdio option: the child has its own copy now
                            os.close(fd)
        except OSError as exc:
            task_status.started()
            await self.reply(req.r_c_uid, SHProcessCreateResponse(
                ref=req.tag, err=LSErr.FAIL, err_info=f"cannot start {req.exe}: {exc}", gs_ret_chan_resp=gs_ret))
            return
        mp = ManagedProcess(p_uid=req.t_p_uid, create_tag=req.tag, proc=proc,
                            pipes={stream: r.desc for stream, r in pipe_resps.items()})
        self.procs[req.t_p_uid] = mp
        log.info("process started p_uid=%d pid=%d argv=%s", req.t_p_uid, proc.pid, [req.exe, *req.args])
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if proc.stdin is not None and "stdin" in mp.pipes:
                    nursery.start_soon(self._feed_stdin_from_channel, mp, mp.pipes["stdin"])
                elif proc.stdin is not None:
                    send, recv = trio.open_memory_channel[bytes](INPUT_BUFFER_MSGS)
                    mp.stdin_send = send
                    nursery.start_soon(self._feed_stdin, mp, recv)
                nursery.start_soon(self._forward_all_output, mp)
                await self.reply(req.r_c_uid, SHProcessCreateResponse(
                    ref=req.tag, err=LSErr.SUCCESS, pid=proc.pid, gs_ret_chan_resp=gs_ret,
                    stdin_resp=pipe_resps.get("stdin"), stdout_resp=pipe_resps.get("stdout"),
                    stderr_resp=pipe_resps.get("stderr")))
                code = await proc.wait()
                mp.exited.set()
                with trio.move_on_after(DRAIN_AFTER_EXIT_S):
                    await mp.forwarders_done.wait()
                log.info("process exited p_uid=%d pid=%d code=%d", mp.p_uid, proc.pid, code)
                if not self.gs_exited.is_set():
                    with trio.move_on_after(5):
                        await self.to_gs.send(SHProcessExit(p_uid=mp.p_uid, creation_msg_tag=mp.create_tag,
                                                            exit_code=code))
                nursery.cancel_scope.cancel()
        finally:
            self.procs.pop(mp.p_uid, None)
            with trio.CancelScope(shield=True):
                await stop_process(proc)

    async def _start_served(self, req: SHProcessCreate, argv: list[str], env: dict[str, str]) -> ServedChild | None:
        """Start a start-method child from the fork server; None if it could not (exec it then)."""
        child_fds, ours = _stdio_fds(req)
        try:
            pid = await self.forkserver.start(argv, env, req.rundir or os.getcwd(), child_fds)
        except ForkServerFailed as exc:
            log.info("the fork server did not start p_uid=%d (%s): exec'ing it", req.t_p_uid, exc)
            for fd in ours:
                if fd is not None:
                    os.close(fd)
            return None
        finally:
            for fd in set(child_fds):
                os.close(fd)
        stdin, stdout, stderr = (None if fd is None else trio.lowlevel.FdStream(fd) for fd in ours)
        return ServedChild(pid, stdin, stdout, stderr)

    async def _forward_all_output(self, mp: ManagedProcess) -> None:
        async with trio.open_nursery() as nursery:
            for stream, fd_num in ((mp.proc.stdout, FdNum.STDOUT), (mp.proc.stderr, FdNum.STDERR)):
                if stream is not None:
                    nursery.start_soon(self._forward_output, mp, stream, fd_num)
        mp.forwarders_done.set()

    async def _forward_output(self, mp: ManagedProcess, stream: trio.abc.ReceiveStream, fd_num: FdNum) -> None:
        """Copy one output pipe into SHFwdOutput messages of whole lines (services/_output.py), or
        into the stream's PIPE channel (spec §5.5) as it comes, ending with an empty message for end
        of file.

        Sending waits while the channel is full, so a slow reader slows the program down (its pipe
        fills) instead of losing output. If the PIPE channel was destroyed, the rest of the output
        goes to the launcher, prefixed `[orphaned output]: ` (spec §5.5). A partial line still held
        when the stream ends, or when this task is cancelled (the process exited and something else
        keeps its pipe open), is forwarded before this returns.
        """
        pipe = mp.pipes.get("stdout" if fd_num == FdNum.STDOUT else "stderr")
        chan = TrioChannel.attach(pipe) if pipe else None
        lines = LineAssembler()

        async def to_launcher(messages: list[bytes]) -> None:
            for data in messages:
                await self.to_la.send(SHFwdOutput(p_uid=mp.p_uid, fd_num=fd_num, data=data, pid=mp.proc.pid))

        try:
            while True:
                chunk = None
                with trio.move_on_at(lines.deadline):
                    chunk = await stream.receive_some(READ_SIZE)
                if chunk is None:  # a partial line waited long enough: forward it as it is
                    await to_launcher(lines.flush())
                    continue
                if not chunk:
                    break
                if fd_num == FdNum.STDERR and mp.hide_stderr:
                    continue
                if chan is not None:
                    try:
                        await chan.send(bytes(chunk))
                        continue
                    except ChannelDestroyed:
                        await chan.aclose()
                        chan = None
                    chunk = b"[orphaned output]: " + bytes(chunk)
                await to_launcher(lines.feed(bytes(chunk), trio.current_time()))
            if chan is not None:
                with trio.move_on_after(5):  # end of file for the reader
                    await chan.send(b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelDestroyed):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await to_launcher(lines.flush())  # the last bytes of a process are never lost
                if chan is not None:
                    await chan.aclose()

    async def _feed_stdin_from_channel(self, mp: ManagedProcess, pipe: str) -> None:
        """Spec §5.5 stdin=PIPE: what the parent sends on the channel goes to the process's stdin; an
        empty message (or the channel's destruction) means end of file."""
        stdin = mp.proc.stdin
        assert stdin is not None
        try:
            async with TrioChannel.attach(pipe) as chan:
                while data := await chan.receive():
                    await stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelDestroyed):
            log.info("stdin of p_uid=%d is closed: input dropped", mp.p_uid)
        finally:
            await trio.aclose_forcefully(stdin)

    async def _feed_stdin(self, mp: ManagedProcess, recv: trio.MemoryReceiveChannel[bytes]) -> None:
        """Write forwarded input to the process's stdin; empty input means end of file."""
        stdin = mp.proc.stdin
        assert stdin is not None
        try:
            async for data in recv:
                if not data:
                    break
                await stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("stdin of p_uid=%d is closed: input dropped", mp.p_uid)
        finally:
            await trio.aclose_forcefully(stdin)

    def forward_input(self, msg: SHFwdInput) -> None:
        mp = self.procs.get(msg.t_p_uid)
        if mp is None or mp.stdin_send is None:
            log.warning("SHFwdInput for p_uid=%d, which has no forwarded stdin: dropped", msg.t_p_uid)
            return
        try:
            mp.stdin_send.send_nowait(msg.input)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("input for p_uid=%d dropped: it does not read its stdin", msg.t_p_uid)

    def kill(self, msg: SHProcessKill) -> SHProcessKillResponse:
        mp = self.procs.get(msg.t_p_uid)
        if mp is None or mp.exited.is_set():
            return SHProcessKillResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"no running process p_uid {msg.t_p_uid}")
        mp.hide_stderr = mp.hide_stderr or msg.hide_stderr
        try:
            mp.proc.send_signal(msg.sig)
        except (OSError, ValueError) as exc:
            return SHProcessKillResponse(ref=msg.tag, err=LSErr.FAIL, err_info=str(exc))
        return SHProcessKillResponse(ref=msg.tag, err=LSErr.SUCCESS)

    # ---------------------------------------------------------------- channels and pools

    def create_channel(self, msg: SHChannelCreate) -> SHChannelCreateResponse:
        if msg.c_uid in self.channels:
            return SHChannelCreateResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"c_uid {msg.c_uid} is in use")
        opts = msg.options.local_opts
        try:
            chan = Channel.create(_rundir.infra_name(self.infra.config.run_id, f"c{msg.c_uid}"),
                                  capacity=opts.capacity or 100, block_size=opts.block_size or 1024,
                                  packed=opts.packed)
        except (OSError, ValueError) as exc:
            return SHChannelCreateResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"cannot create channel: {exc}")
        self.channels[msg.c_uid] = chan
        return SHChannelCreateResponse(ref=msg.tag, err=LSErr.SUCCESS, desc=chan.descriptor)

    def destroy_channel(self, msg: SHChannelDestroy) -> SHChannelDestroyResponse:
        chan = self.channels.pop(msg.c_uid, None)
        if chan is None:
            return SHChannelDestroyResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"no channel c_uid {msg.c_uid}")
        try:
            chan.destroy()
        except ChannelDestroyed:
            pass
        return SHChannelDestroyResponse(ref=msg.tag, err=LSErr.SUCCESS)

    def create_pool(self, msg: SHPoolCreate) -> SHPoolCreateResponse:
        if msg.m_uid in self.pools:
            return SHPoolCreateResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"m_uid {msg.m_uid} is in use")
        try:
            pool = Pool.create(_rundir.infra_name(self.infra.config.run_id, f"m{msg.m_uid}"), msg.size)
        except (OSError, ValueError) as exc:
            return SHPoolCreateResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"cannot create pool: {exc}")
        self.pools[msg.m_uid] = pool
        return SHPoolCreateResponse(ref=msg.tag, err=LSErr.SUCCESS, desc=pool.descriptor)

    def destroy_pool(self, msg: SHPoolDestroy) -> SHPoolDestroyResponse:
        pool = self.pools.pop(msg.m_uid, None)
        if pool is None:
            return SHPoolDestroyResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"no pool m_uid {msg.m_uid}")
        pool.destroy()
        return SHPoolDestroyResponse(ref=msg.tag, err=LSErr.SUCCESS)

    def status(self, req: SHStatus) -> SHStatusResponse:
        """Spec §8: what LS sees of each process it runs (state, CPU, memory, command, from /proc)."""
        usage = []
        btime = _runs.boot_time()
        for p_uid, mp in sorted(self.procs.items()):
            proc = _runs.read_proc(mp.proc.pid, btime=btime)
            usage.append(ProcessUsage(p_uid=p_uid, pid=mp.proc.pid) if proc is None else ProcessUsage(
                p_uid=p_uid, pid=mp.proc.pid, os_state=proc.state, cpu_s=proc.cpu_s, rss_bytes=proc.rss_bytes,
                command=proc.cmdline))
        return SHStatusResponse(ref=req.tag, err=LSErr.SUCCESS, pid=os.getpid(), started=self.started,
                                processes=usage)

    def dump_state(self, filename: str | None) -> None:
        lines = ["Procs"] + [f"  {p}:{mp.proc.pid}" for p, mp in self.procs.items()]
        lines += ["Chans"] + [f"  {c}" for c in self.channels] + ["Pools"] + [f"  {m}" for m in self.pools]
        if filename:
            with open(filename, "w") as f:
                f.write("\n".join(lines) + "\n")
        else:
            log.info("state:\n%s", "\n".join(lines))

    # ---------------------------------------------------------------- teardown (§3.1 a6-a8)

    async def stop_everything(self) -> None:
        """Stop every managed process and GS; shielded and bounded."""
        self.tearing_down = True
        with trio.CancelScope(shield=True):
            if self.procs:
                log.warning("ending processes still running at teardown: %s",
                            {p: mp.proc.pid for p, mp in self.procs.items()})
            async with trio.open_nursery() as nursery:
                for mp in list(self.procs.values()):
                    nursery.start_soon(stop_process, mp.proc)
                nursery.start_soon(self.forkserver.aclose)
                if self.infra.gs.returncode is None:
                    with trio.move_on_after(2 if self.gs_halted.is_set() else 0):
                        await self.gs_exited.wait()
                    nursery.start_soon(stop_process, self.infra.gs)

    def destroy_everything(self) -> None:
        """Destroy every shm object of the run (spec §3.1 a8), including ones clients made."""
        for chan in list(self.channels.values()) + [self.infra.shep, self.infra.be, self.infra.gs_chan]:
            try:
                chan.destroy()
            except Exception:
                pass
        for pool in list(self.pools.values()) + self.infra.pools:
            pool.destroy()
        for name in entries(run_prefix(self.infra.config.run_id)):
            unlink_quietly(name)


async def serve(infra: Infra) -> int:
    """The trio main loop of LS (see the module docstring); returns LS's exit code.

    Whatever happens in it, even an unexpected exception in one of its tasks, every managed process
    and GS are stopped and every shm object of the run is destroyed before this returns or raises.
    """
    ls: LocalServices | None = None
    code = 0
    try:
        async with trio.open_nursery() as nursery:
            ls = LocalServices(infra, nursery)
            nursery.start_soon(ls.monitor_gs_stdout)
            nursery.start_soon(ls.monitor_gs_stderr)
            nursery.start_soon(ls.watch_gs_exit)
            nursery.start_soon(ls.watch_stdin)
            async with trio.open_nursery() as loop:
                async def until_teardown() -> None:
                    assert ls is not None
                    await ls.dispatch()
                    loop.cancel_scope.cancel()

                async def until_launcher_gone() -> None:
                    assert ls is not None
                    await ls.stdin_eof.wait()
                    loop.cancel_scope.cancel()

                loop.start_soon(until_teardown)
                loop.start_soon(until_launcher_gone)
            await ls.stop_everything()
            if ls.stdin_eof.is_set():
                code = 1
            else:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await ls.to_la.send(SHHaltBE())  # m7
                with trio.move_on_after(BEHALTED_WAIT_S):
                    await ls.be_halted.wait()  # m8
            nursery.cancel_scope.cancel()
    except BaseException:
        code = 1
        raise
    finally:
        if ls is not None:
            await ls.stop_everything()  # again only if something went wrong above: it is idempotent
            ls.destroy_everything()
        if code != 0:  # the launcher is gone or LS failed: nobody else will remove the directory
            _rundir.remove_run_dir(infra.config.run_id)
        os.close(infra.gs_stdin)
    if code == 0:
        try:
            write_frame(1, SHHalted(), "LS stdout")  # m9
        except OSError:
            code = 1
    log.info("Local Services halted")
    return code


def _stdio_fds(req: SHProcessCreate) -> tuple[tuple[int, int, int], tuple[int | None, int | None, int | None]]:
    """Spec §5.5 as fds, for a child that is not exec'd: (its fds 0-2, our ends of its pipes or None)."""
    made: list[int] = []
    try:
        if req.stdin == DEVNULL:
            child_in, our_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
            made.append(child_in)
        else:
            child_in, our_in = os.pipe()
            made += [child_in, our_in]
        outs: list[tuple[int, int | None]] = []
        for opt, is_stderr in ((req.stdout, False), (req.stderr, True)):
            if opt == DEVNULL:
                outs.append((os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC), None))
            elif is_stderr and opt == STDOUT:
                outs.append((outs[0][0], None))
                continue
            elif isinstance(opt, str):
                outs.append((os.open(opt, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644), None))
            else:
                r, w = os.pipe()
                outs.append((w, r))
                made.append(r)
            made.append(outs[-1][0])
    except BaseException:
        for fd in made:
            os.close(fd)
        raise
    return (child_in, outs[0][0], outs[1][0]), (our_in, outs[0][1], outs[1][1])


def _stdin_option(opt: StdioOption) -> int:
    """Spec §5.5: stdin is /dev/null or a pipe LS feeds from SHFwdInput."""
    return subprocess.DEVNULL if opt == DEVNULL else subprocess.PIPE


def _out_option(opt: StdioOption, *, is_stderr: bool = False) -> int:
    """Spec §5.5 for stdout/stderr: /dev/null, merged into stdout, a file (appended), or forwarded.

    PIPE (a channel the parent reads) is forwarded to the launcher for now.
    """
    if opt == DEVNULL:
        return subprocess.DEVNULL
    if is_stderr and opt == STDOUT:
        return subprocess.STDOUT
    if isinstance(opt, str):
        return os.open(opt, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return subprocess.PIPE


def main() -> int:
    """`python -m dragon.services.local_services CONFIG_JSON`: LS exec'd by `dragon.serve`."""
    config = msgspec.json.decode(sys.argv[1], type=LSConfig)
    _log.configure(None, None)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
