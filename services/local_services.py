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

This module is LS's life (bringup, dispatch, teardown); its state and the requests it answers at once
are services/_ls_core.py, running processes services/_ls_processes.py, their stdio services/_ls_stdio.py.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Final

import msgspec
import trio

from dragon import _faults, _log, _rundir
from dragon.descriptors import NodeDescriptor
from dragon.ids import (
    BE_CUID,
    DEFAULT_POOL_MUID,
    GS_INPUT_CUID,
    INF_POOL_MUID,
    SHEP_CUID,
    TA_CUID,
    LaunchParameters,
)
from dragon.messages import (
    AbnormalTermination,
    BEHalted,
    BENodeIdxSH,
    BEPingSH,
    GSHalted,
    GSInbound,
    GSPingSH,
    LAInbound,
    LSInbound,
    LSStdinInbound,
    SHChannelCreate,
    SHChannelDestroy,
    SHChannelsUp,
    SHDumpState,
    SHFwdInput,
    SHHaltBE,
    SHHalted,
    SHPingBE,
    SHPingGS,
    SHPoolCreate,
    SHPoolDestroy,
    SHProcessCreate,
    SHProcessKill,
    SHStatus,
    SHTeardown,
)
from dragon.transport import (
    RESERVED_AT_CREATE,
    Channel,
    ChannelCorrupted,
    FrameStream,
    MessageChannel,
    NoSharedMemory,
    Pool,
    ProtocolError,
    TrioChannel,
    entries,
    run_prefix,
    segment_bytes,
    shm_space,
    unlink_own,
)

from . import global_services
from ._fast_start import ForkServer
from ._gs_monitor import GSMonitor
from ._ls_core import Infra, LAPipe, destroy_channel
from ._ls_core import LSConfig as LSConfig  # LS's launch configuration: its users import it from here
from ._ls_processes import ProcessRunner
from ._process import (
    ForkedChild,
    become_subreaper,
    fork_service,
    ignore_interrupts,
    raise_fd_limit,
    stop_descendants,
    stop_process,
)

log = logging.getLogger(__name__)


BEHALTED_WAIT_S: Final = 10.0
LS_DEADLINE_MARGIN_S: Final = 1.0  # LS's bringup deadline is the launcher's plus this: LA reports first
LA_CHANNEL_CAPACITY: Final = 256
TA_CHANNEL_CAPACITY: Final = 1024
LA_CHANNEL_BLOCK: Final = 8192
INFRA_CHANNELS: Final = (
    (SHEP_CUID, 256, 4096),
    (BE_CUID, LA_CHANNEL_CAPACITY, LA_CHANNEL_BLOCK),
    (GS_INPUT_CUID, 256, 4096),
)
"""(c_uid, capacity, block size) of the LS, LA and GS channels (spec §2 A2)."""


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
    gs: GSStart | str | None = None  # the LS of a node other than the primary runs no GS
    if config.node_idx == 0:
        try:
            gs = fork_global_services()
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
    config: LSConfig,
    la: LAPipe,
    to_gs_stdin: MessageChannel[LaunchParameters] | None,
    gs_pid: int,
    monitor: GSMonitor | None,
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

    if monitor is not None:
        monitor.report = gs_failed
    made_pools: list[Pool] = []
    made_chans: list[Channel] = []
    try:
        with scope:
            await _node_index(la, config)  # m0
            step = "creating the pools and channels of the runtime"
            params = _make_infrastructure(config, made_pools, made_chans)
            shep, be, gs_chan = made_chans[:3]
            if to_gs_stdin is not None:
                step = "handing Global Services its launch parameters"
                await to_gs_stdin.send(params)  # A4: GS attaches while LA does
            step = "SHPingBE to the launcher"
            await la.send(_ping_be(params))  # m1
            infra = Infra(
                pools=made_pools,
                channels=made_chans,
                inbox=MessageChannel[LSInbound](TrioChannel(shep), LSInbound, name="LS channel"),
                to_la=MessageChannel[LAInbound](TrioChannel(be), LAInbound, name="LA channel"),
                to_gs=MessageChannel[GSInbound](TrioChannel(gs_chan), GSInbound, name="GS channel"),
                params=params,
                node=_node_descriptor(config, params, made_chans),
            )
            waiting: dict[type, str] = {
                BEPingSH: "BEPingSH from the launcher",
                GSPingSH: "GSPingSH from Global Services",
            }
            while waiting:  # m2 and m4, in whichever order they come
                step = " and ".join(waiting.values())
                if isinstance(await _one_of(infra.inbox, waiting), BEPingSH):
                    step = "SHChannelsUp to the launcher"
                    await infra.to_la.send(SHChannelsUp(node_desc=infra.node, gs_cd=params.gs_cd))  # m3
            # runtime.json first: once SHPingGS is sent GS says GSIsUp, and whoever then holds the
            # runtime (the command, a `dragon.serve` caller, `dragon status`) may look for the file.
            _rundir.write_info(_run_info(config, params, gs_pid))
            step = "SHPingGS to Global Services"
            await infra.to_gs.send(SHPingGS(node_sdesc=infra.node))  # m5
            if not failure:  # GS may fail while a step finishes (after its last checkpoint): not lost
                return infra
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


async def _node_index(la: LAPipe, config: LSConfig) -> None:
    """m0: the launcher's BENodeIdxSH, the first message on LS's stdin, naming this node."""
    first = await la.receive()
    if not isinstance(first, BENodeIdxSH) or first.node_idx != config.node_idx:
        raise ProtocolError(f"expected BENodeIdxSH(node_idx={config.node_idx}) first on LS stdin, got {first!r}")
    if _faults.active("ls-hang-bringup"):
        await trio.sleep_forever()


def _make_infrastructure(config: LSConfig, made_pools: list[Pool], made_chans: list[Channel]) -> LaunchParameters:
    """A2: the two pools and the three infrastructure channels (LS, launcher, GS input), each added
    to `made_*` as soon as it exists, so that a failure half-way removes what was made."""
    channels = infra_channels(config)
    need = sum(segment_bytes(c, b) for _, c, b in channels) + 2 * RESERVED_AT_CREATE
    if shm_space()[0] < need:  # said before anything is made (reserving would say it too)
        raise NoSharedMemory(need)
    rid = config.run_id
    made_pools.append(Pool.create(_rundir.entry_name(rid, f"m{INF_POOL_MUID}"), config.inf_seg_sz))
    made_pools.append(Pool.create(_rundir.entry_name(rid, f"m{DEFAULT_POOL_MUID}"), config.default_seg_sz))
    for c_uid, capacity, block in channels:
        made_chans.append(Channel.create(_rundir.entry_name(rid, f"c{c_uid}"), capacity=capacity, block_size=block))
    shep, be, gs_chan = made_chans[:3]
    return LaunchParameters(
        mode="single" if config.nodes == 1 else "crayhpe-multi",
        index=config.node_idx,
        nodes=config.nodes,
        ta_cd=made_chans[3].descriptor if len(made_chans) > 3 else "",
        gs_cd=gs_chan.descriptor,
        local_shep_cd=shep.descriptor,
        local_be_cd=be.descriptor,
        default_pd=made_pools[1].descriptor,
        inf_pd=made_pools[0].descriptor,
        default_seg_sz=config.default_seg_sz,
        inf_seg_sz=config.inf_seg_sz,
        run_id=rid,
    )


def _ping_be(params: LaunchParameters) -> SHPingBE:
    """m1: where the launcher finds the runtime's channels and pools."""
    return SHPingBE(
        shep_cd=params.local_shep_cd,
        be_cd=params.local_be_cd,
        gs_cd=params.gs_cd,
        default_pd=params.default_pd,
        inf_pd=params.inf_pd,
    )


def infra_channels(config: LSConfig) -> tuple[tuple[int, int, int], ...]:
    """INFRA_CHANNELS, and with many nodes the transport agent's input channel (2**55 + node index,
    MULTINODE §3) last. [choice] The others keep node 0's c_uids on every node (each node names its
    entries with its own run id, and requests on a node name its own LS and launcher channels)."""
    ta = ((TA_CUID + config.node_idx, TA_CHANNEL_CAPACITY, LA_CHANNEL_BLOCK),) if config.nodes > 1 else ()
    return INFRA_CHANNELS + ta


def _node_descriptor(config: LSConfig, params: LaunchParameters, chans: list[Channel]) -> NodeDescriptor:
    """This node as SHChannelsUp and SHPingGS describe it."""
    return NodeDescriptor(
        idx=config.node_idx,
        is_primary=config.node_idx == 0,
        host_name=config.host_name or socket.gethostname(),
        num_cpus=len(os.sched_getaffinity(0)),
        physical_mem_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        shep_cd=params.local_shep_cd,
        ta_cd=chans[3].descriptor if len(chans) > 3 else "",
        run_id=config.run_id,
    )


async def _one_of(inbox: MessageChannel[LSInbound], waiting: dict[type, str]) -> LSInbound:
    """The next message on LS's channel, which must be one of `waiting`'s types (then taken off it)."""
    msg = await inbox.receive()
    if type(msg) not in waiting:
        expected = " or ".join(t.__name__ for t in waiting)
        raise ProtocolError(f"expected {expected} on the LS channel, got {type(msg).__name__}")
    del waiting[type(msg)]
    return msg


def _run_info(config: LSConfig, params: LaunchParameters, gs_pid: int) -> _rundir.RunInfo:
    """runtime.json's content: how tools and clients outside the runtime find it."""
    return _rundir.RunInfo(
        run_id=config.run_id,
        launcher_pid=config.launcher_pid or os.getppid(),
        ls_pid=os.getpid(),
        gs_pid=gs_pid,
        pgid=os.getpgid(0),
        gs_cd=params.gs_cd,
        la_cd=params.local_be_cd,
        shep_cd=params.local_shep_cd,
        started=time.time(),
        log_file=os.environ.get("DRAGON_LOG_FILE", ""),
        inf_pd=params.inf_pd,
        default_pd=params.default_pd,
        node_idx=config.node_idx,
        nodes=config.nodes,
        primary_run_id=config.primary_run_id,
    )


# ------------------------------------------------------------------------------------------ main loop


class LocalServices(ProcessRunner):
    """LS's main loop: dispatch, LA's pipe, teardown (its state: services/_ls_core.py)."""

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
                monitor = self.monitor
                if monitor is not None and monitor.proc.returncode is None:
                    with trio.move_on_after(2 if monitor.halted.is_set() else 0):
                        await monitor.exited.wait()
                    nursery.start_soon(stop_process, monitor.proc)
            # What the run's processes started outside its process group, or that outlived them
            # (reparented to LS, a subreaper): nothing of the run outlives it.
            gs_pids = [self.monitor.proc.pid] if self.monitor is not None else []
            owned = frozenset([*gs_pids, *(mp.proc.pid for mp in self.procs.values())])
            await stop_descendants(exclude=owned)

    def destroy_everything(self) -> None:
        """Destroy every shm object of the run (spec §3.1 a8), including ones clients made."""
        for desc in self.channels.values():
            destroy_channel(desc, find_side_files=False)  # the run's every entry goes below
        for chan in self.infra.channels:
            try:
                chan.destroy()
            except Exception:
                pass
        for pool in list(self.pools.values()) + self.infra.pools:
            pool.destroy()
        for name in entries(run_prefix(self.config.run_id)):
            unlink_own(name)


async def serve(config: LSConfig, gs: GSStart | str | None) -> int:
    """The life of LS in its trio loop (see the module docstring); returns LS's exit code.

    `gs` is Global Services as forked before the loop, or why it could not be, or None on a node other
    than the primary (many nodes). Whatever happens here,
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
                monitor = None
                if gs is not None:
                    to_gs_stdin = MessageChannel(
                        FrameStream(trio.lowlevel.FdStream(gs.stdin), name="GS stdin"),
                        LaunchParameters,
                        name="GS stdin",
                    )
                    monitor = GSMonitor(gs.proc, gs.stdout, gs.stderr, report=_not_yet)
                    nursery.start_soon(monitor.watch)  # GS is supervised from our first step
                infra = await bringup(config, la, to_gs_stdin, gs.proc.pid if gs else 0, monitor)
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
                if isinstance(gs, GSStart):
                    await stop_process(gs.proc)
            if code != 0:  # the launcher is gone or LS failed: nobody else may remove the directory
                _rundir.remove_run_dir(config.run_id)
            if to_gs_stdin is not None:
                await trio.aclose_forcefully(to_gs_stdin)
            elif isinstance(gs, GSStart):
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


def main() -> int:
    """`python -m dragon.services.local_services CONFIG_JSON`: LS exec'd by `dragon.serve`."""
    config = msgspec.json.decode(sys.argv[1], type=LSConfig)
    _log.configure(None, None)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
