"""Local Services (LS, "the Shepherd"): owns the node's shm objects and every managed process.

Spec §2 (bringup), §3 (teardown), §4.5 (its messages). LS talks to the launcher (LA) over its
stdin/stdout pipe before channels exist and at the very end, and over shm channels in between.

Everything LS does runs in its trio loop, under its root nursery (`serve`), from the first step:

1. Before the loop starts, LS only forks Global Services (`fork_global_services`): forking inside a
   running trio loop is unsafe, and a forked GS inherits the imported trio (one import per runtime,
   services/_process.py). GS starts its own loop at once and waits on its stdin for its launch
   parameters (as the reference passes LAChannelsInfo to GS over stdin).
2. `serve` puts GS under supervision at once (its exit, its stdout and stderr: spec §3.2
   "GSMonitor"), then runs `bringup` under one cancel scope whose deadline is the bringup timeout and
   which a failure of GS cancels: read BENodeIdxSH (m0), create the pools and the LS/LA/GS channels
   (A2), hand GS its launch parameters on its stdin (A4 **[choice]**: GS attaches to its channels
   while the launcher does, instead of after SHChannelsUp), SHPingBE (m1), then BEPingSH (m2, answered
   by SHChannelsUp, m3) and GSPingSH (m4) in whichever order they come, SHPingGS (m5). A failure at
   any step removes what was made, writes AbnormalTermination on stdout for LA, and exits 1.
3. The main loop: the root nursery supervises one task per managed process (spawn, output
   forwarding, exit watching), the GS monitor, the stdin watcher (BEHalted, or EOF when LA died) and
   the LS-channel dispatcher.

Teardown (spec §3.1 a6-a8): on SHTeardown LS stops every remaining managed process (SIGTERM, then
SIGKILL after a grace period, naming them in the log; the reference SIGKILLs at once **[quirk]**),
sends SHHaltBE, waits for BEHalted, destroys every shm object of the run, and writes SHHalted. If its
stdin reaches EOF first, the launcher is gone, and LS does all of that alone.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Final

import msgspec
import trio

from dragon import _faults, _log, _rundir, _runs
from dragon.descriptors import DEVNULL, STDOUT, NodeDescriptor, StdioOption, fs_env, fs_str, shown
from dragon.ids import (
    BE_CUID,
    DEFAULT_POOL_MUID,
    DEFAULT_SEG_SZ,
    GS_INPUT_CUID,
    INF_POOL_MUID,
    INF_SEG_SZ,
    SHEP_CUID,
    LaunchParameters,
)
from dragon.messages import (
    AbnormalTermination,
    BEHalted,
    BENodeIdxSH,
    BEPingSH,
    FdNum,
    GSHalted,
    GSInbound,
    GSPingSH,
    LAInbound,
    LSErr,
    LSInbound,
    LSStdinInbound,
    ProcessUsage,
    SHChannelCreate,
    SHChannelCreateResponse,
    SHChannelDestroy,
    SHChannelDestroyResponse,
    SHChannelsUp,
    SHDumpState,
    SHFwdInput,
    SHFwdInputErr,
    SHFwdOutput,
    SHHaltBE,
    SHHalted,
    SHPingBE,
    SHPingGS,
    SHPoolCreate,
    SHPoolCreateResponse,
    SHPoolDestroy,
    SHPoolDestroyResponse,
    SHProcessCreate,
    SHProcessCreateResponse,
    SHProcessExit,
    SHProcessKill,
    SHProcessKillResponse,
    SHStatus,
    SHStatusResponse,
    SHTeardown,
)
from dragon.transport import (
    Channel,
    ChannelCorrupted,
    ChannelDestroyed,
    MessageChannel,
    Pool,
    ProtocolError,
    TrioChannel,
)
from dragon.transport._channel import segment_bytes
from dragon.transport._errors import clip
from dragon.transport._framing import FrameStream
from dragon.transport._pool import RESERVED_AT_CREATE
from dragon.transport._shm import NoSharedMemory, entries, run_prefix, shm_space, unlink_own

from . import global_services
from ._fast_start import ForkServer, ForkServerFailed, ServedChild
from ._gs_monitor import GSMonitor
from ._links import is_user_managed, reply_once
from ._output import READ_SIZE, LineAssembler
from ._process import (
    ForkedChild,
    become_subreaper,
    fork_service,
    give_back_fd_limit,
    ignore_interrupts,
    raise_fd_limit,
    stop_descendants,
    stop_process,
)
from ._stdin import Chunk, ForwardedStdin, InputRefused

log = logging.getLogger(__name__)

LAPipe = MessageChannel[LSStdinInbound]
"""LS's stdin and stdout: the launcher's pipe (spec §2 m0, m1, m8, m9)."""

DRAIN_AFTER_EXIT_S: Final = 1.0  # output still arriving after a process exited (its children's)
BEHALTED_WAIT_S: Final = 10.0
LS_DEADLINE_MARGIN_S: Final = 1.0  # LS's bringup deadline is the launcher's plus this: LA reports first
LA_CHANNEL_CAPACITY: Final = 256
LA_CHANNEL_BLOCK: Final = 8192
INFRA_CHANNELS: Final = (
    (SHEP_CUID, 256, 4096),
    (BE_CUID, LA_CHANNEL_CAPACITY, LA_CHANNEL_BLOCK),
    (GS_INPUT_CUID, 256, 4096),
)
"""(c_uid, capacity, block size) of the LS, LA and GS channels (spec §2 A2)."""


class LSConfig(msgspec.Struct, kw_only=True):
    """How the launcher configures LS (passed as JSON in argv when LS is exec'd)."""

    run_id: str
    bringup_timeout_s: float = 30.0
    inf_seg_sz: int = INF_SEG_SZ
    default_seg_sz: int = DEFAULT_SEG_SZ
    launcher_pid: int = 0
    exits_follow_output: bool = True
    """Send SHProcessExit of a process whose output went to the launcher by way of the launcher
    (messages.SHProcessExit says why). Off for `dragon.serve` [choice]: its program may block the
    launcher's loop in a call that waits for a process's exit (dragon._embedded), which would then
    never come."""
    fork_server: list[str] = []
    """`[executable, *interpreter flags]` of the multiprocessing children (start method "dragon") that
    the runtime's first Python program is expected to start: the head of `dragon my.py` whose
    source names multiprocessing and dragon (cli.fork_server_for), or the program of a background
    runtime (a start brings it up). LS then boots its fork server at once, while the runtime comes
    up, instead of PRESTART_DELAY_S after that program starts (services/_fast_start.py): it is
    ready for the program's first start."""
    fork_server_env: dict[str, str] = {}
    """What that program's environment adds to LS's own (`dragon` adds PYTHONUNBUFFERED=1 at a terminal)."""


@dataclass
class Infra:
    """What bringup made: the pools, the channels and LS's links on them, the launch parameters."""

    pools: list[Pool]
    channels: list[Channel]
    """The LS, LA and GS channels (spec §2 A2), destroyed at the end of the run."""
    inbox: MessageChannel[LSInbound]
    to_la: MessageChannel[LAInbound]
    to_gs: MessageChannel[GSInbound]
    params: LaunchParameters
    node: NodeDescriptor


@dataclass
class GSStart:
    """Global Services as forked before LS's loop: the process and LS's ends of its pipes."""

    proc: ForkedChild
    stdin: int
    """LS writes GS's launch parameters here, then keeps it open: its EOF tells GS that LS died."""
    stdout: int
    stderr: int


class BringupFailed(Exception):
    """A step of LS's bringup failed; the text says which and why."""


def run(config: LSConfig) -> int:
    """The whole life of LS in this process: fork GS, then the trio loop. Returns the exit code."""
    _log.set_actor("LS")
    sys.stdout = sys.stderr  # fd 1 is the protocol pipe to LA: a stray print() must not reach it
    ignore_interrupts()  # before GS is forked: it inherits this
    become_subreaper()  # what the run's processes leave behind comes back to LS (stop_descendants)
    raise_fd_limit()  # three pipes and a pidfd per managed process
    try:
        gs: GSStart | str = fork_global_services()
    except OSError as exc:
        gs = f"cannot start Global Services: {exc}"
    return trio.run(serve, config, gs)


def fork_global_services() -> GSStart:
    """Fork GS (spec §2 A4) with pipes for its stdin (its launch parameters, then our liveness),
    stdout and stderr (GSMonitor). Called before LS's loop starts; GS stays in LS's process group
    (killpg of the runtime reaches it)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        child = fork_service(global_services.run, new_session=False, keep_fds={in_r: 0, out_w: 1, err_w: 2})
    except OSError:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return GSStart(child, in_w, out_r, err_r)


# ------------------------------------------------------------------------------------------ bringup


async def bringup(
    config: LSConfig, la: LAPipe, to_gs_stdin: MessageChannel[LaunchParameters], gs_pid: int, monitor: GSMonitor
) -> Infra:
    """Spec §2 A2-m5 (see the module docstring), under one cancel scope: its deadline is the bringup
    timeout (plus a margin, so that the launcher, which waits for the same steps with the same
    timeout, reports first when both give up), and a failure of GS cancels it at once.

    Raises BringupFailed naming the step; everything made is removed again first.
    """
    step = "BENodeIdxSH from the launcher"
    failure: list[str] = []
    scope = trio.CancelScope(deadline=trio.current_time() + config.bringup_timeout_s + LS_DEADLINE_MARGIN_S)

    async def gs_failed(msg: GSHalted | AbnormalTermination) -> None:
        failure.append(msg.err_info if isinstance(msg, AbnormalTermination) else "Global Services halted")
        scope.cancel()

    monitor.report = gs_failed
    made_pools: list[Pool] = []
    made_chans: list[Channel] = []
    try:
        with scope:
            first = await la.receive()  # m0
            if not isinstance(first, BENodeIdxSH) or first.node_idx != 0:
                raise ProtocolError(f"expected BENodeIdxSH(node_idx=0) first on LS stdin, got {first!r}")
            if _faults.active("ls-hang-bringup"):
                await trio.sleep_forever()
            step = "creating the pools and channels of the runtime"
            need = sum(segment_bytes(c, b) for _, c, b in INFRA_CHANNELS) + 2 * RESERVED_AT_CREATE
            if shm_space()[0] < need:  # said before anything is made (reserving would say it too)
                raise NoSharedMemory(need)
            rid = config.run_id
            made_pools.append(Pool.create(_rundir.entry_name(rid, f"m{INF_POOL_MUID}"), config.inf_seg_sz))
            made_pools.append(Pool.create(_rundir.entry_name(rid, f"m{DEFAULT_POOL_MUID}"), config.default_seg_sz))
            for c_uid, capacity, block in INFRA_CHANNELS:
                made_chans.append(
                    Channel.create(_rundir.entry_name(rid, f"c{c_uid}"), capacity=capacity, block_size=block)
                )
            shep, be, gs_chan = made_chans
            params = LaunchParameters(
                mode="single",
                gs_cd=gs_chan.descriptor,
                local_shep_cd=shep.descriptor,
                local_be_cd=be.descriptor,
                default_pd=made_pools[1].descriptor,
                inf_pd=made_pools[0].descriptor,
                default_seg_sz=config.default_seg_sz,
                inf_seg_sz=config.inf_seg_sz,
                run_id=rid,
            )
            step = "handing Global Services its launch parameters"
            await to_gs_stdin.send(params)  # A4: GS attaches while LA does
            step = "SHPingBE to the launcher"
            ping = SHPingBE(
                shep_cd=shep.descriptor,
                be_cd=be.descriptor,
                gs_cd=gs_chan.descriptor,
                default_pd=params.default_pd,
                inf_pd=params.inf_pd,
            )
            await la.send(ping)  # m1
            inbox = MessageChannel[LSInbound](TrioChannel(shep), LSInbound, name="LS channel")
            node = NodeDescriptor(
                host_name=socket.gethostname(),
                num_cpus=os.cpu_count() or 1,
                physical_mem_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                shep_cd=shep.descriptor,
            )
            to_la = MessageChannel[LAInbound](TrioChannel(be), LAInbound, name="LA channel")
            to_gs = MessageChannel[GSInbound](TrioChannel(gs_chan), GSInbound, name="GS channel")
            waiting = {BEPingSH: "BEPingSH from the launcher", GSPingSH: "GSPingSH from Global Services"}
            while waiting:  # m2 and m4, in whichever order they come
                step = " and ".join(waiting.values())
                msg = await inbox.receive()
                if type(msg) not in waiting:
                    raise ProtocolError(
                        f"expected {' or '.join(t.__name__ for t in waiting)} on the LS "
                        f"channel, got {type(msg).__name__}"
                    )
                del waiting[type(msg)]
                if isinstance(msg, BEPingSH):
                    step = "SHChannelsUp to the launcher"
                    await to_la.send(SHChannelsUp(node_desc=node, gs_cd=gs_chan.descriptor))  # m3
            # runtime.json first: once SHPingGS is sent GS says GSIsUp, and whoever then holds the
            # runtime (the command, a `dragon.serve` caller, `dragon status`) may look for the file.
            _rundir.write_info(
                _rundir.RunInfo(
                    run_id=rid,
                    launcher_pid=config.launcher_pid or os.getppid(),
                    ls_pid=os.getpid(),
                    gs_pid=gs_pid,
                    pgid=os.getpgid(0),
                    gs_cd=gs_chan.descriptor,
                    la_cd=be.descriptor,
                    shep_cd=shep.descriptor,
                    started=time.time(),
                    log_file=os.environ.get("DRAGON_LOG_FILE", ""),
                    inf_pd=params.inf_pd,
                    default_pd=params.default_pd,
                )
            )
            step = "SHPingGS to Global Services"
            await to_gs.send(SHPingGS(node_sdesc=node))  # m5
            if not failure:  # GS may fail while a step finishes (after its last checkpoint): not lost
                return Infra(
                    pools=made_pools,
                    channels=made_chans,
                    inbox=inbox,
                    to_la=to_la,
                    to_gs=to_gs,
                    params=params,
                    node=node,
                )
        if failure:
            raise BringupFailed(failure[0])
        raise BringupFailed(f"bringup did not finish within {config.bringup_timeout_s} s (at: {step})")
    except BaseException as exc:
        for chan in made_chans:
            chan.destroy()
        for pool in made_pools:
            pool.destroy()
        if isinstance(exc, (BringupFailed, trio.Cancelled)) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, trio.EndOfChannel):
            raise BringupFailed(f"the launcher closed LS's stdin (at: {step})") from None
        raise BringupFailed(f"{step}: {exc}") from exc


# ------------------------------------------------------------------------------------------ main loop


@dataclass
class ManagedProcess:
    """LS's view of one managed process (spec §5.1 "LS's own view")."""

    p_uid: int
    create_tag: int
    proc: trio.Process | ServedChild
    stdin: ForwardedStdin | None = None
    """Its stdin, when fed by SHFwdInput (spec §5.5: not DEVNULL, not PIPE)."""
    forwarders_done: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    hide_stderr: bool = False
    printed: bool = False
    """Some of its output went to the launcher (SHProcessExit then follows it that way)."""
    pipes: dict[str, str] = field(default_factory=dict)
    """Spec §5.5 PIPE: the channel (attach descriptor) of each stdio stream that goes to one."""


class LocalServices:
    """The state of the trio main loop of LS (after its bringup)."""

    def __init__(
        self,
        config: LSConfig,
        infra: Infra,
        monitor: GSMonitor,
        la: LAPipe,
        nursery: trio.Nursery,
        forkserver: ForkServer,
    ) -> None:
        self.config = config
        self.infra = infra
        self.monitor = monitor
        self.la = la
        self.nursery = nursery
        self.inbox, self.to_la, self.to_gs = infra.inbox, infra.to_la, infra.to_gs
        self.procs: dict[int, ManagedProcess] = {}
        self.forkserver = forkserver
        self.channels: dict[int, str] = {}
        """The descriptor of each channel LS made for GS, by c_uid (spec §4.5)."""
        self.pools: dict[int, Pool] = {}
        self.abnormal_sent = False
        self.tearing_down = False
        self.stdin_eof = trio.Event()
        self.be_halted = trio.Event()
        self.started = time.time()
        monitor.report = self.from_gs_monitor

    async def main(self) -> int:
        """The main loop, then teardown (spec §3.1 a6-m8). 0, or 1 if the launcher went away."""
        self.nursery.start_soon(self.watch_stdin)
        async with trio.open_nursery() as loop:

            async def until_teardown() -> None:
                await self.dispatch()
                loop.cancel_scope.cancel()

            async def until_launcher_gone() -> None:
                await self.stdin_eof.wait()
                loop.cancel_scope.cancel()

            loop.start_soon(until_teardown)
            loop.start_soon(until_launcher_gone)
        await self.stop_everything()
        if self.stdin_eof.is_set():
            return 1
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.to_la.send(SHHaltBE())  # m7
        with trio.move_on_after(BEHALTED_WAIT_S):
            await self.be_halted.wait()  # m8
        return 0

    # ---------------------------------------------------------------- abnormal termination (§3.2)

    async def abnormal(self, err_info: str) -> None:
        """Tell LA the runtime is broken (once); LA then runs the teardown of §3.1."""
        err_info = clip(err_info)
        log.error("abnormal termination: %s", err_info)
        if self.abnormal_sent or self.tearing_down:
            return
        self.abnormal_sent = True
        with trio.move_on_after(5):
            await self.to_la.send(AbnormalTermination(err_info=err_info))

    async def from_gs_monitor(self, msg: GSHalted | AbnormalTermination) -> None:
        """What the GS monitor saw: GSHalted goes to LA (spec §3.1 m5), a failure breaks the runtime."""
        if isinstance(msg, GSHalted):
            with trio.move_on_after(5):
                await self.to_la.send(msg)
        else:
            await self.abnormal(msg.err_info)

    # ---------------------------------------------------------------- LA's pipe

    async def watch_stdin(self) -> None:
        """BEHalted (spec §3.1 m8) or EOF: the launcher has gone away."""
        try:
            async for msg in self.la:
                if isinstance(msg, BEHalted):
                    self.be_halted.set()
                    return
        except (ProtocolError, trio.BrokenResourceError) as exc:
            log.error("LS stdin broke: %s", exc)
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
            except ChannelCorrupted as exc:  # nothing more can be read: the runtime ends in order
                await self.abnormal(f"Local Services cannot go on: {exc}")
                return
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
            await reply_once(_rundir.channel_name(self.config.run_id, r_c_uid), msg, f"channel {r_c_uid}")
        else:
            await self.abnormal(f"LS was asked to reply to unknown r_c_uid {r_c_uid}")

    # ---------------------------------------------------------------- processes

    async def run_process(
        self, req: SHProcessCreate, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Spawn one managed process, answer SHProcessCreate, forward its output, report its exit."""
        if req.t_p_uid in self.procs:
            task_status.started()
            await self.reply(
                req.r_c_uid,
                SHProcessCreateResponse(
                    ref=req.tag, err=LSErr.FAIL, err_info=f"p_uid {req.t_p_uid} is already running"
                ),
            )
            return
        gs_ret = None
        if req.gs_ret_chan_msg is not None:
            gs_ret = self.create_channel(req.gs_ret_chan_msg)
            if gs_ret.err != LSErr.SUCCESS:
                task_status.started()
                await self.reply(
                    req.r_c_uid,
                    SHProcessCreateResponse(
                        ref=req.tag, err=LSErr.FAIL, err_info=gs_ret.err_info, gs_ret_chan_resp=gs_ret
                    ),
                )
                return
        pipe_resps: dict[str, SHChannelCreateResponse] = {}
        for stream, pipe_msg in (("stdin", req.stdin_msg), ("stdout", req.stdout_msg), ("stderr", req.stderr_msg)):
            if pipe_msg is not None:  # spec §4.2: GS asks for the PIPE channels along with the process
                pipe_resps[stream] = self.create_channel(pipe_msg)
        failed = [r for r in pipe_resps.values() if r.err != LSErr.SUCCESS]
        if failed:
            task_status.started()
            await self.reply(
                req.r_c_uid,
                SHProcessCreateResponse(
                    ref=req.tag,
                    err=LSErr.FAIL,
                    err_info=failed[0].err_info,
                    gs_ret_chan_resp=gs_ret,
                    stdin_resp=pipe_resps.get("stdin"),
                    stdout_resp=pipe_resps.get("stdout"),
                    stderr_resp=pipe_resps.get("stderr"),
                ),
            )
            return
        # What the OS takes as Python holds it (undecodable bytes as surrogates: os_text).
        argv = [fs_str(a) for a in (req.exe, *req.args)]
        rundir = fs_str(req.rundir)
        env = dict(os.environ)
        env.update(fs_env(req.env, req.env_raw))
        params = msgspec.structs.replace(
            self.infra.params,
            my_puid=req.t_p_uid,
            gs_ret_cd=gs_ret.desc if gs_ret else "",
            gs_ret_cuid=req.gs_ret_chan_msg.c_uid if gs_ret and req.gs_ret_chan_msg else 0,
            parent_puid=int(env.get("DRAGON_PARENT_PUID", "0") or 0),
        )
        env.update(params.to_env())
        proc: trio.Process | ServedChild | None = None
        try:
            as_ls = req.user is None and req.group is None and req.umask == -1  # what the fork server can do
            if as_ls and self.forkserver.ready_for(argv, env):
                proc = await self._start_served(req, argv, env, rundir)
            if proc is None:
                stdio = [_stdin_option(req.stdin), _out_option(req.stdout), _out_option(req.stderr, is_stderr=True)]
                try:
                    proc = await trio.lowlevel.open_process(
                        argv,
                        cwd=rundir or None,
                        env=env,
                        stdin=stdio[0],
                        stdout=stdio[1],
                        stderr=stdio[2],
                        user=req.user,
                        group=req.group,
                        umask=req.umask,
                    )
                finally:
                    for fd in stdio:
                        if fd >= 0:  # a file opened for a stdio option: the child has its own copy now
                            os.close(fd)
        except (OSError, subprocess.SubprocessError) as exc:
            task_status.started()
            await self.reply(
                req.r_c_uid,
                SHProcessCreateResponse(
                    ref=req.tag,
                    err=LSErr.FAIL,
                    err_info=f"cannot start {shown(argv[0])}: {os_error_text(exc)}",
                    gs_ret_chan_resp=gs_ret,
                ),
            )
            return
        give_back_fd_limit(proc.pid)
        mp = ManagedProcess(
            p_uid=req.t_p_uid, create_tag=req.tag, proc=proc, pipes={stream: r.desc for stream, r in pipe_resps.items()}
        )
        self.procs[req.t_p_uid] = mp
        log.info("process started p_uid=%d pid=%d argv=%s", req.t_p_uid, proc.pid, argv)
        if argv[0] == sys.executable:  # a Python program, usually the head: ready the fork server for its children
            self.forkserver.prestart(argv[0], env, exited=mp.exited)
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if proc.stdin is not None and "stdin" in mp.pipes:
                    nursery.start_soon(self._feed_stdin_from_channel, mp, mp.pipes["stdin"], req.initial_stdin)
                elif proc.stdin is not None:
                    mp.stdin = ForwardedStdin(mp.p_uid, proc.stdin)
                    if req.initial_stdin:
                        mp.stdin.put(req.initial_stdin)
                    nursery.start_soon(mp.stdin.feed)
                nursery.start_soon(self._forward_all_output, mp)
                await self.reply(
                    req.r_c_uid,
                    SHProcessCreateResponse(
                        ref=req.tag,
                        err=LSErr.SUCCESS,
                        pid=proc.pid,
                        gs_ret_chan_resp=gs_ret,
                        stdin_resp=pipe_resps.get("stdin"),
                        stdout_resp=pipe_resps.get("stdout"),
                        stderr_resp=pipe_resps.get("stderr"),
                    ),
                )
                code = await proc.wait()
                mp.exited.set()
                with trio.move_on_after(DRAIN_AFTER_EXIT_S):
                    await mp.forwarders_done.wait()
                log.info("process exited p_uid=%d pid=%d code=%d", mp.p_uid, proc.pid, code)
                if not self.monitor.exited.is_set():
                    exit_msg = SHProcessExit(p_uid=mp.p_uid, creation_msg_tag=mp.create_tag, exit_code=code)
                    with trio.move_on_after(5):
                        # After output to the launcher, the exit goes the same way, and the launcher hands it
                        # to GS once that output is written: a join never returns before the output of the
                        # process it waited for is out (spawn's order, where the process writes itself).
                        via_la = mp.printed and self.config.exits_follow_output
                        await (self.to_la if via_la else self.to_gs).send(exit_msg)
                nursery.cancel_scope.cancel()
        finally:
            self.procs.pop(mp.p_uid, None)
            with trio.CancelScope(shield=True):
                await stop_process(proc)

    async def _start_served(
        self, req: SHProcessCreate, argv: list[str], env: dict[str, str], rundir: str
    ) -> ServedChild | None:
        """Start a start-method child from the fork server; None if it could not (exec it then)."""
        child_fds, ours = _stdio_fds(req)
        try:
            pid = await self.forkserver.start(argv, env, rundir or os.getcwd(), child_fds)
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
                mp.printed = True
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

    async def _feed_stdin_from_channel(self, mp: ManagedProcess, pipe: str, initial: bytes) -> None:
        """Spec §5.5 stdin=PIPE: `initial` (initial_stdin), then what the parent sends on the channel
        goes to the process's stdin; an empty message (or the channel's destruction) means end of file."""
        stdin = mp.proc.stdin
        assert stdin is not None
        try:
            if initial:
                await stdin.send_all(initial)
            async with TrioChannel.attach(pipe) as chan:
                while data := await chan.receive():
                    await stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelDestroyed):
            log.info("stdin of p_uid=%d is closed: input dropped", mp.p_uid)
        finally:
            await trio.aclose_forcefully(stdin)

    def forward_input(self, msg: SHFwdInput) -> None:
        """Spec §4.5: queue the input for the process's stdin; with `confirm`, answer SHFwdInputErr
        once it is written or has failed (services/_stdin.py)."""
        mp = self.procs.get(msg.t_p_uid)
        try:
            if mp is None or mp.exited.is_set():
                raise InputRefused(f"no running process p_uid {msg.t_p_uid}")
            if mp.stdin is None:
                raise InputRefused(f"the stdin of process {msg.t_p_uid} is not forwarded (it is /dev/null or PIPE)")
            chunk = mp.stdin.put(msg.input, confirm=msg.confirm)
        except InputRefused as exc:
            log.warning("SHFwdInput for p_uid=%d dropped: %s", msg.t_p_uid, exc)
            if msg.confirm:
                self.nursery.start_soon(
                    self.reply, msg.r_c_uid, SHFwdInputErr(ref=msg.tag, err=LSErr.FAIL, err_info=str(exc))
                )
            return
        if msg.confirm:
            self.nursery.start_soon(self._confirm_input, msg, mp.stdin, chunk)

    async def _confirm_input(self, msg: SHFwdInput, stdin: ForwardedStdin, chunk: Chunk) -> None:
        problem = await stdin.confirmed(chunk)
        await self.reply(
            msg.r_c_uid, SHFwdInputErr(ref=msg.tag, err=LSErr.FAIL if problem else LSErr.SUCCESS, err_info=problem)
        )

    def kill(self, msg: SHProcessKill) -> SHProcessKillResponse:
        mp = self.procs.get(msg.t_p_uid)
        if mp is None or mp.exited.is_set():
            return SHProcessKillResponse(
                ref=msg.tag, err=LSErr.FAIL, err_info=f"no running process p_uid {msg.t_p_uid}"
            )
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
            chan = Channel.create(
                _rundir.entry_name(self.config.run_id, f"c{msg.c_uid}"),
                capacity=opts.capacity or 100,
                block_size=opts.block_size or 1024,
                packed=opts.packed,
            )
        except (OSError, ValueError) as exc:
            return SHChannelCreateResponse(
                ref=msg.tag, err=LSErr.FAIL, err_info=f"cannot create channel: {os_error_text(exc)}"
            )
        chan.close()  # LS keeps no handle (no fds) on the channels it owns: it attaches to destroy one
        self.channels[msg.c_uid] = chan.descriptor
        return SHChannelCreateResponse(ref=msg.tag, err=LSErr.SUCCESS, desc=chan.descriptor)

    def destroy_channel(self, msg: SHChannelDestroy) -> SHChannelDestroyResponse:
        desc = self.channels.pop(msg.c_uid, None)
        if desc is None:
            return SHChannelDestroyResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"no channel c_uid {msg.c_uid}")
        _destroy_channel(desc)
        return SHChannelDestroyResponse(ref=msg.tag, err=LSErr.SUCCESS)

    def create_pool(self, msg: SHPoolCreate) -> SHPoolCreateResponse:
        if msg.m_uid in self.pools:
            return SHPoolCreateResponse(ref=msg.tag, err=LSErr.FAIL, err_info=f"m_uid {msg.m_uid} is in use")
        try:
            pool = Pool.create(_rundir.entry_name(self.config.run_id, f"m{msg.m_uid}"), msg.size)
        except (OSError, ValueError) as exc:
            return SHPoolCreateResponse(
                ref=msg.tag, err=LSErr.FAIL, err_info=f"cannot create pool: {os_error_text(exc)}"
            )
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
            usage.append(
                ProcessUsage(p_uid=p_uid, pid=mp.proc.pid)
                if proc is None
                else ProcessUsage(
                    p_uid=p_uid,
                    pid=mp.proc.pid,
                    os_state=proc.state,
                    cpu_s=proc.cpu_s,
                    rss_bytes=proc.rss_bytes,
                    command=proc.cmdline,
                )
            )
        return SHStatusResponse(ref=req.tag, err=LSErr.SUCCESS, pid=os.getpid(), started=self.started, processes=usage)

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
        """Stop every managed process, GS and every other descendant of LS; shielded and bounded."""
        self.tearing_down = True
        with trio.CancelScope(shield=True):
            if self.procs:
                log.warning(
                    "ending processes still running at teardown: %s", {p: mp.proc.pid for p, mp in self.procs.items()}
                )
            async with trio.open_nursery() as nursery:
                for mp in list(self.procs.values()):
                    nursery.start_soon(stop_process, mp.proc)
                nursery.start_soon(self.forkserver.aclose)
                if self.monitor.proc.returncode is None:
                    with trio.move_on_after(2 if self.monitor.halted.is_set() else 0):
                        await self.monitor.exited.wait()
                    nursery.start_soon(stop_process, self.monitor.proc)
            # What the run's processes started outside its process group, or that outlived them
            # (reparented to LS, a subreaper): nothing of the run outlives it.
            owned = frozenset([self.monitor.proc.pid, *(mp.proc.pid for mp in self.procs.values())])
            await stop_descendants(exclude=owned)

    def destroy_everything(self) -> None:
        """Destroy every shm object of the run (spec §3.1 a8), including ones clients made."""
        for desc in self.channels.values():
            _destroy_channel(desc, find_side_files=False)  # the run's every entry goes below
        for chan in self.infra.channels:
            try:
                chan.destroy()
            except Exception:
                pass
        for pool in list(self.pools.values()) + self.infra.pools:
            pool.destroy()
        for name in entries(run_prefix(self.config.run_id)):
            unlink_own(name)


def _destroy_channel(desc: str, *, find_side_files: bool = True) -> None:
    """Destroy a channel LS made (waking its waiters), if nobody has yet."""
    try:
        Channel.attach(desc).destroy(find_side_files=find_side_files)
    except (ChannelDestroyed, OSError) as exc:
        log.debug("channel %s: gone already (%s)", desc, exc)


def os_error_text(exc: Exception) -> str:
    """What went wrong, said so that the user knows what to do when LS has no file descriptors left."""
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            f"Local Services has no file descriptors left (its limit is {soft}): end some processes, or "
            "raise the limit (ulimit -n) before starting dragon"
        )
    return str(exc)


async def serve(config: LSConfig, gs: GSStart | str) -> int:
    """The life of LS in its trio loop (see the module docstring); returns LS's exit code.

    `gs` is Global Services as forked before the loop, or why it could not be. Whatever happens here,
    even an unexpected exception in one of the tasks, every managed process and GS are stopped and
    every shm object of the run is destroyed before this returns or raises.
    """
    la = LAPipe(
        FrameStream((trio.lowlevel.FdStream(os.dup(1)), trio.lowlevel.FdStream(os.dup(0))), name="LS stdin"),
        LSStdinInbound,
        name="LS stdin",
        send_name="LS stdout",
    )
    ls: LocalServices | None = None
    to_gs_stdin: MessageChannel[LaunchParameters] | None = None
    code = 1
    try:
        async with trio.open_nursery() as nursery:
            forkserver = ForkServer(nursery)
            if config.fork_server:  # booted while the runtime comes up, for the program's first start
                forkserver.prestart(
                    config.fork_server[0],
                    {**os.environ, **config.fork_server_env},
                    flags=config.fork_server[1:],
                    delay_s=0.0,
                )
            try:
                if isinstance(gs, str):
                    raise BringupFailed(gs)
                to_gs_stdin = MessageChannel(
                    FrameStream(trio.lowlevel.FdStream(gs.stdin), name="GS stdin"), LaunchParameters, name="GS stdin"
                )
                monitor = GSMonitor(gs.proc, gs.stdout, gs.stderr, report=_not_yet)
                nursery.start_soon(monitor.watch)  # GS is supervised from our first step
                infra = await bringup(config, la, to_gs_stdin, gs.proc.pid, monitor)
            except BringupFailed as exc:
                log.error("bringup failed: %s", exc)
                with trio.move_on_after(5):
                    await _tell_launcher(la, AbnormalTermination(err_info=f"Local Services bringup failed: {exc}"))
            else:
                ls = LocalServices(config, infra, monitor, la, nursery, forkserver)
                code = await ls.main()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if ls is not None:
                await ls.stop_everything()  # again only if something went wrong: it is idempotent
                ls.destroy_everything()
            else:
                await forkserver.aclose()
                if not isinstance(gs, str):
                    await stop_process(gs.proc)
            if code != 0:  # the launcher is gone or LS failed: nobody else may remove the directory
                _rundir.remove_run_dir(config.run_id)
            if to_gs_stdin is not None:
                await trio.aclose_forcefully(to_gs_stdin)
            elif not isinstance(gs, str):
                os.close(gs.stdin)
    if code == 0:
        with trio.move_on_after(5):
            await _tell_launcher(la, SHHalted())  # m9
    await trio.aclose_forcefully(la)
    log.info("Local Services halted")
    return code


async def _not_yet(msg: GSHalted | AbnormalTermination) -> None:
    """The GS monitor's report before bringup takes it over (bringup starts at once)."""
    log.warning("Global Services: %r before bringup started", msg)


async def _tell_launcher(la: LAPipe, msg: SHHalted | AbnormalTermination) -> None:
    """A message on LS's stdout; a launcher that is gone is no error (LS tears down alone then)."""
    try:
        await la.send(msg)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.warning("the launcher is gone: %s not delivered", type(msg).__name__)


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
