"""The backend (BE) of one node of many: runs the node's Local Services and transport agent for the frontend.

MULTINODE §2, §4, §6. `python -m dragon.services.backend`, started by the frontend through the
workload manager (srun, ssh, or a child process for a virtual node). It reads its `BEConfig` (the
run's keys among it) from stdin, never from its command line (§7), then:

1. forks its node's Local Services (exactly as the single-node launcher does, with this node's index)
   and its transport agent (services/transport_agent.py), both before its trio loop starts;
2. connects to the frontend (a ZeroMQ DEALER, CURVE client), says `BEIsUp` with the agent's endpoint,
   and brings its LS up as a launcher does (`Launcher`, m0-m3); everything that arrives on its LA
   channel goes on to the frontend unchanged (`Launcher.upstream`): output, exits, GS's answers;
3. hands the agent the frontend's `LAChannelsInfo`, and says `TAUp` once the agent does;
4. then carries the frontend's messages into its node's channels (`FEForward`: an encoded frame
   into the GS or LS channel, untouched), a Ctrl-C (`BEInterrupt`) to its node's processes, and
   heartbeats both ways;
5. tears its node down when the frontend says (`BETeardown`), or alone when the frontend is lost
   (stdin closed, or no heartbeat for HEARTBEAT_LOST_S): LS's teardown, the agent stopped, the sweep
   of its node (process group, /dev/shm entries, runtime directory); `BEDone` is its last word.

A failure of its LS or agent is said to the frontend (AbnormalTermination or NodeLost, naming the
node), which decides; the backend itself writes nothing on stdout or stderr but its log.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Final

import msgspec
import trio
import zmq

from dragon import _log, _pool_sizes, _rundir, wlm
from dragon.ids import TRANSPORT_KEYS_VAR
from dragon.messages import (
    AbnormalTermination,
    BEDone,
    BEInbound,
    BEInterrupt,
    BEIsUp,
    BENodeIdxSH,
    BETeardown,
    FEForward,
    Heartbeat,
    LAChannelsInfo,
    NodeLost,
    SHChannelsUp,
    TAHalted,
    TAListening,
    TAStdoutOutbound,
    TAUp,
)
from dragon.transport import FrameStream, MessageChannel, ProtocolError, TrioChannel, decode
from dragon.transport.zsecurity import NO_KEYS, RunKeys, client_socket
from dragon.transport.zsock import AsyncSocket

from . import transport_agent
from ._process import ForkedChild, describe_exit, fork_service, signal_group
from .launcher import Launcher, LSStart, prefork_local_services
from .local_services import LSConfig
from .transport_agent import HEARTBEAT_LOST_S, HEARTBEAT_S

log = logging.getLogger(__name__)

TA_STOP_S: Final = 3.0


class BEConfig(msgspec.Struct, kw_only=True, frozen=True):
    """What the frontend tells a backend on its stdin (never on a command line: it holds the keys)."""

    node_idx: int
    """-1 under Slurm: one srun step gets one configuration for every node, and each backend finds
    its index from its Slurm node name in `hosts` (`wlm.slurm_node_index`)."""
    nodes: int
    host_name: str
    """The node's name in the frontend's plan (`dragon status`, placement by host)."""
    fe_endpoint: str
    keys: RunKeys | None
    bringup_timeout_s: float
    log_level: str | None = None
    log_file: str | None = None
    hosts: list[str] = []
    """Every node's name, node 0 first (for a backend that finds its own index: Slurm)."""
    fork_server: list[str] = []
    fork_server_env: dict[str, str] = {}
    """`LSConfig.fork_server` and its environment: every node boots the fork server for the
    program's multiprocessing children while it comes up (its first start there finds it ready)."""
    primary_run_id: str = ""
    """The primary node's run id, chosen by the frontend: node 0 runs under it, every node's
    runtime.json names it (so `dragon status` on any node knows whose run it is part of)."""


def main() -> int:
    """`python -m dragon.services.backend`: read the config, fork LS and the agent, run the loop."""
    _log.set_actor("BE")
    try:  # one line of JSON; stdin then stays open: its end means the frontend is gone
        config = msgspec.json.decode(sys.stdin.buffer.readline(), type=BEConfig)
    except (ValueError, msgspec.DecodeError) as exc:
        print(f"dragon backend: error: no valid configuration on stdin: {exc}", file=sys.stderr)
        return 2
    if config.node_idx < 0:
        try:
            idx = wlm.slurm_node_index(wlm.NodePlan(wlm="slurm", hosts=tuple(config.hosts)))
        except wlm.WLMError as exc:
            print(f"dragon backend: error: {exc}", file=sys.stderr)
            return 2
        config = msgspec.structs.replace(config, node_idx=idx, host_name=config.hosts[idx])
    if not logging.getLogger("dragon").handlers:  # a forked virtual node has the frontend's already
        _log.configure(config.log_level, config.log_file)
    sizes = _pool_sizes.pool_sizes()
    run_id = config.primary_run_id if config.node_idx == 0 and config.primary_run_id else _rundir.new_run_id()
    _rundir.create_run_dir(run_id)
    ls_config = LSConfig(
        run_id=run_id,
        bringup_timeout_s=config.bringup_timeout_s,
        launcher_pid=os.getpid(),
        inf_seg_sz=sizes.inf_seg_sz,
        default_seg_sz=sizes.default_seg_sz,
        node_idx=config.node_idx,
        nodes=config.nodes,
        host_name=config.host_name,
        primary_run_id=config.primary_run_id if config.node_idx != 0 else "",
        fork_server=config.fork_server,
        fork_server_env=config.fork_server_env,
    )
    # Every process of the node reaches other nodes' agents with these (zsecurity.process_socket).
    os.environ[TRANSPORT_KEYS_VAR] = config.keys.for_processes() if config.keys is not None else NO_KEYS
    preforked = prefork_local_services(ls_config)  # also makes this process a subreaper
    ta_in_r, ta_in_w = os.pipe()
    ta_out_r, ta_out_w = os.pipe()
    ta = fork_service(transport_agent.run, new_session=False, keep_fds={ta_in_r: 0, ta_out_w: 1})
    os.close(ta_in_r)
    os.close(ta_out_w)
    return trio.run(Backend(config, run_id, preforked, ta, ta_in_w, ta_out_r).serve)


class Backend:
    """One node's backend: the link to the frontend, the node's launcher, its agent."""

    def __init__(
        self,
        config: BEConfig,
        run_id: str,
        preforked: tuple[ForkedChild, int, int],
        ta: ForkedChild,
        ta_in: int,
        ta_out: int,
    ) -> None:
        self.config = config
        self.run_id = run_id
        child, to_ls, from_ls = preforked
        self.ls = LSStart(
            proc=child, to_ls=trio.lowlevel.FdStream(to_ls), from_ls=trio.lowlevel.FdStream(from_ls), pgid=child.pid
        )
        self.ta = ta
        self.ta_frames = FrameStream((trio.lowlevel.FdStream(ta_in), trio.lowlevel.FdStream(ta_out)), name="TA stdout")
        self.ta_link = MessageChannel[TAStdoutOutbound](
            self.ta_frames,
            TAStdoutOutbound,
            name="TA stdout",
            send_name="TA stdin",
        )
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.fe = AsyncSocket(client_socket(self.ctx, zmq.DEALER, config.keys))
        self.encoder = msgspec.msgpack.Encoder()
        self.la: Launcher | None = None
        self.heard = 0.0
        self.stop = trio.Event()
        self.force = False
        self.why_stop = ""
        self.ta_endpoint = ""
        self.ta_ops_endpoint = ""
        self.addr = ""
        """This node's address that reaches the frontend (its agent binds it)."""
        self.ta_listening = trio.Event()
        self.introduced = trio.Event()
        """Set once BEIsUp is sent: the frontend knows this backend by it, so nothing goes before it."""
        self.ta_halted = trio.Event()
        self.ta_exited = trio.Event()

    async def to_fe(self, msg: msgspec.Struct) -> None:
        """One message to the frontend (queued by ZeroMQ while the link reconnects)."""
        await self.fe.send_multipart([self.encoder.encode(msg)])

    async def serve(self) -> int:
        """The backend's whole life in its trio loop; 0 once its node is torn down in order."""
        cfg = self.config
        self.fe.sock.setsockopt(zmq.LINGER, 2000)
        self.fe.sock.connect(cfg.fe_endpoint)
        self.heard = trio.current_time()
        node = BENodeIdxSH(node_idx=cfg.node_idx, host_name=cfg.host_name, primary=cfg.node_idx == 0)
        la = self.la = Launcher(
            self.run_id, self.ls, self._no_output, owns_descendants=True, node=node, upstream=self.relay
        )
        ok = True
        async with trio.open_nursery() as nursery:
            la.start_helper(nursery, la.read_ls_stdout)
            la.start_helper(nursery, la.watch_ls_exit)
            nursery.start_soon(self.watch_ta)
            nursery.start_soon(self.watch_ta_exit)
            nursery.start_soon(self.from_fe)
            nursery.start_soon(self.watch_stdin)
            nursery.start_soon(self.beat)
            nursery.start_soon(self.watch_broken)
            try:
                await self.bringup(nursery)
            except Exception as exc:
                ok = False
                await self.to_fe(AbnormalTermination(err_info=f"node {cfg.node_idx} ({cfg.host_name}): {exc}"))
            await self.stop.wait()
            if self.force:
                la.force_stop()
            la.events["gs_halted"].set()  # the frontend has stopped GS (on the primary) or given up on it
            await self.stop_ta()  # first: nothing crosses nodes once GS has halted, and LS removes its channels
            await la.teardown()
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.to_fe(BEDone(node_idx=cfg.node_idx, ok=ok and la.failure is None))
        self.fe.close(linger_ms=1000)
        self.ctx.term()
        return 0 if ok and la.failure is None else 1

    async def bringup(self, nursery: trio.Nursery) -> None:
        """MULTINODE §4 steps 3-4 from this node's side, the two halves at once: the agent binds and
        BEIsUp says where; LS comes up as under a launcher (what it says goes to the frontend only
        after BEIsUp, which introduces this backend). The agent gets its channels with LAChannelsInfo."""
        cfg = self.config
        assert self.la is not None
        la = self.la

        async def introduce() -> None:
            # The keys go on the agent's stdin as raw bytes: a message would be logged, keys and all.
            self.addr = bind_address(cfg.fe_endpoint)
            config = transport_agent.TAConfig(node_idx=cfg.node_idx, bind_addr=self.addr, keys=cfg.keys)
            await self.ta_frames.send(msgspec.msgpack.encode(config))
            await self.ta_listening.wait()
            await self.to_fe(
                BEIsUp(
                    node_idx=cfg.node_idx,
                    host_name=cfg.host_name,
                    ta_endpoint=self.ta_endpoint,
                    num_cpus=len(os.sched_getaffinity(0)),
                    physical_mem_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                    run_id=self.run_id,
                    pid=os.getpid(),
                )
            )
            self.introduced.set()

        async with trio.open_nursery() as both:
            both.start_soon(introduce)
            both.start_soon(la.bringup, nursery, cfg.bringup_timeout_s)

    async def relay(self, msg: msgspec.Struct) -> None:
        """What arrives on this node's LA channel goes to the frontend; SHChannelsUp with this node's
        address (where the other nodes reach it: `Node.ip_addrs`), agent endpoint and GS stand-in
        added to its node descriptor."""
        await self.introduced.wait()  # and with it the agent's endpoint, which SHChannelsUp carries
        if isinstance(msg, SHChannelsUp):
            standin = msg.gs_cd if self.config.node_idx != 0 else ""
            desc = msgspec.structs.replace(
                msg.node_desc,
                ip_addrs=[self.addr],
                ta_endpoint=self.ta_endpoint,
                ta_ops_endpoint=self.ta_ops_endpoint,
                gs_standin_cd=standin,
            )
            msg = msgspec.structs.replace(msg, node_desc=desc, idx=self.config.node_idx)
        await self.to_fe(msg)

    # ---------------------------------------------------------------- the transport agent

    async def watch_ta(self) -> None:
        """What the agent says: where it listens, that it is up, a lost peer, its failure or halt."""
        try:
            async for msg in self.ta_link:
                match msg:
                    case TAListening():
                        self.ta_endpoint, self.ta_ops_endpoint = msg.endpoint, msg.ops_endpoint
                        self.ta_listening.set()
                    case TAUp():
                        await self.to_fe(msg)
                    case NodeLost():
                        await self.to_fe(msg)
                    case AbnormalTermination():
                        await self.to_fe(
                            NodeLost(node_idx=self.config.node_idx, what=f"node {self.config.node_idx}: {msg.err_info}")
                        )
                    case TAHalted():
                        self.ta_halted.set()
        except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.warning("the agent's stdout broke: %s", exc)

    async def watch_ta_exit(self) -> None:
        """The agent exiting before the node tears down is a lost node (MULTINODE §6)."""
        code = await self.ta.wait()
        self.ta_exited.set()
        if not self.stop.is_set():
            what = f"node {self.config.node_idx} ({self.config.host_name}): its transport agent (pid {self.ta.pid}) died {describe_exit(code)}"
            log.error("%s", what)
            await self.to_fe(NodeLost(node_idx=self.config.node_idx, what=what))

    async def stop_ta(self) -> None:
        """BETeardown on its stdin, then a bounded wait; then SIGKILL."""
        with trio.CancelScope(shield=True):
            try:
                await self.ta_link.send(BETeardown())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(TA_STOP_S):
                await self.ta_exited.wait()
            if not self.ta_exited.is_set():
                log.warning("the transport agent did not stop in time: killing it")
                try:
                    os.kill(self.ta.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                with trio.move_on_after(TA_STOP_S):
                    await self.ta_exited.wait()
            await trio.aclose_forcefully(self.ta_link)

    async def _no_output(self, msg: object) -> None:
        raise AssertionError("a backend relays output to the frontend")

    async def start_ta(self, info: LAChannelsInfo) -> None:
        await self.ta_link.send(info)

    # ---------------------------------------------------------------- the frontend's messages

    async def from_fe(self) -> None:
        decoder = msgspec.msgpack.Decoder(BEInbound)
        raw: dict[str, TrioChannel] = {}
        while True:
            parts = await self.fe.recv_multipart()
            self.heard = trio.current_time()
            try:
                msg = decode(decoder, parts[-1], where="the frontend's link")
            except ProtocolError as exc:
                log.error("skipped a message from the frontend: %s", exc)
                continue
            match msg:
                case Heartbeat():
                    pass
                case FEForward():
                    chan = raw.get(msg.to)
                    if chan is None:
                        chan = raw[msg.to] = self.channel_for(msg.to)
                    await chan.send(msg.frame)
                case LAChannelsInfo():
                    await self.start_ta(msg)
                case BEInterrupt():
                    signal_group(self.ls.pgid, signal.SIGINT)
                case BETeardown():
                    self.end(force=msg.force, why="the frontend said so")

    async def watch_stdin(self) -> None:
        """The end of stdin: the frontend (or the ssh or srun that started us) is gone."""
        stdin = trio.lowlevel.FdStream(os.dup(0))
        try:
            while await stdin.receive_some(4096):
                pass
        except (trio.BrokenResourceError, OSError):
            pass
        self.end(force=True, why="its stdin closed: the frontend is gone")

    def channel_for(self, to: str) -> TrioChannel:
        assert self.la is not None and self.la.ping is not None
        return TrioChannel.attach(self.la.ping.gs_cd if to == "gs" else self.la.ping.shep_cd)

    def end(self, *, force: bool, why: str) -> None:
        if not self.stop.is_set():
            log.info("node %d tears down: %s", self.config.node_idx, why)
            self.why_stop = why
        self.force = self.force or force
        self.stop.set()

    async def beat(self) -> None:
        """Heartbeats to the frontend, to the end (a node's teardown may take seconds: the frontend must
        not take it for lost); a frontend silent for HEARTBEAT_LOST_S is gone: tear down alone."""
        while True:
            self.fe.try_send_multipart([self.encoder.encode(Heartbeat())])
            if not self.stop.is_set() and trio.current_time() - self.heard > HEARTBEAT_LOST_S:
                self.end(force=True, why=f"the frontend was silent for {HEARTBEAT_LOST_S:g} s")
            await trio.sleep(HEARTBEAT_S)

    async def watch_broken(self) -> None:
        """A failure of this node's LS (it died, or said AbnormalTermination) goes to the frontend."""
        assert self.la is not None
        await self.la.events["broken"].wait()
        if not self.stop.is_set():
            what = f"node {self.config.node_idx} ({self.config.host_name}): {self.la.failure}"
            await self.to_fe(NodeLost(node_idx=self.config.node_idx, what=what))


def bind_address(fe_endpoint: str) -> str:
    """The address of this machine that reaches the frontend: the agent binds it, so the other
    nodes reach the agent the way this node reaches the frontend (a UDP socket's connect only picks
    the route; nothing is sent)."""
    host, _, _port = fe_endpoint.removeprefix("tcp://").rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


if __name__ == "__main__":
    sys.exit(main())
