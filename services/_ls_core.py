"""Local Services' state and the requests it answers at once (spec §4.5): channels, pools, status.

`LSCore` holds what LS's main loop works on (its links, its table of managed processes, the shm
objects it made for Global Services) and how it answers (`reply`) or breaks the runtime
(`abnormal`, spec §3.2). Running processes is services/_ls_processes.py, their stdio
services/_ls_stdio.py, bringup, dispatch and teardown services/local_services.py.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from dataclasses import dataclass, field

import msgspec
import trio

from dragon import _rundir, _runs
from dragon.descriptors import NodeDescriptor
from dragon.ids import (
    BE_CUID,
    DEFAULT_SEG_SZ,
    GS_INPUT_CUID,
    INF_SEG_SZ,
    LaunchParameters,
)
from dragon.messages import (
    AbnormalTermination,
    GSHalted,
    GSInbound,
    LAInbound,
    LSErr,
    LSInbound,
    LSStdinInbound,
    ProcessUsage,
    SHChannelCreate,
    SHChannelCreateResponse,
    SHChannelDestroy,
    SHChannelDestroyResponse,
    SHPoolCreate,
    SHPoolCreateResponse,
    SHPoolDestroy,
    SHPoolDestroyResponse,
    SHStatus,
    SHStatusResponse,
)
from dragon.transport import (
    Channel,
    ChannelDestroyed,
    MessageChannel,
    Pool,
    clip,
)

from ._fast_start import ForkServer, ServedChild
from ._gs_monitor import GSMonitor
from ._stdin import ForwardedStdin
from ._tool_replies import is_user_managed, reply_once

log = logging.getLogger(__name__)

LAPipe = MessageChannel[LSStdinInbound]
"""LS's stdin and stdout: the launcher's pipe (spec §2 m0, m1, m8, m9)."""


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
    launcher's loop in a call that waits for a process's exit (dragon.client.embedded), which would then
    never come."""
    fork_server: list[str] = []
    """`[executable, *interpreter flags]` of the multiprocessing children (start method "dragon") that
    the runtime's first Python program is expected to start: the head of `dragon my.py` whose
    source names multiprocessing and dragon (cli.fork_server_for), or the program of a background
    runtime (a start brings it up). LS then boots its fork server at once, while the runtime comes
    up, instead of PRESTART_DELAY_S after that program starts (services/_fast_start.py): it is
    ready for the program's first start."""
    node_idx: int = 0
    """This node's index (many nodes; the primary node, 0, runs Global Services)."""
    nodes: int = 1
    """How many nodes the runtime has: with more than one, LS also makes its transport agent's
    channel, and the LS of a node other than the primary runs no GS: its GS channel is a local
    stand-in that the transport agent carries to the primary node (MULTINODE §4)."""
    host_name: str = ""
    """This node's name, as the frontend calls it ("" = the machine's host name)."""
    primary_run_id: str = ""
    """On a node other than the primary: the primary node's run id (runtime.json says it)."""
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


class LSCore:
    """The state of the trio main loop of LS (after its bringup)."""

    def __init__(
        self,
        config: LSConfig,
        infra: Infra,
        monitor: GSMonitor | None,
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
        if monitor is not None:
            monitor.report = self.from_gs_monitor

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
        destroy_channel(desc)
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
        """Spec §8 SHDumpState: LS's tables into `filename`, or its log (no reply). Any process may
        ask, so a file that cannot be written is only logged."""
        lines = ["Procs"] + [f"  {p}:{mp.proc.pid}" for p, mp in self.procs.items()]
        lines += ["Chans"] + [f"  {c}" for c in self.channels] + ["Pools"] + [f"  {m}" for m in self.pools]
        if not filename:
            log.info("state:\n%s", "\n".join(lines))
            return
        try:
            with open(filename, "w") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.warning("SHDumpState: cannot write %s: %s", filename, exc)


def destroy_channel(desc: str, *, find_side_files: bool = True) -> None:
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
