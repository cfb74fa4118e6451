"""The frontend (FE) of a run of many nodes: the `dragon` command when it has more than one node.

MULTINODE §2, §4, §6, §7. It starts one backend per node through the workload manager
(`dragon.wlm`: srun, ssh, or child processes for virtual nodes), talks to them over one ZeroMQ
ROUTER socket (a CURVE server with keys made for this run, unless `--transport-security none`), and
does for the whole run what the single-node launcher does for one node: bringup (every step bounded,
the nodes' steps in parallel), the head's requests to Global Services (through the primary node's
backend), output of every process on every node (written here, whole lines, `--label` prefixing
`[node:pid] `), stdin to the head, Ctrl-C, teardown in order, and the faults of §6 (a node whose
backend, Local Services or transport agent dies, or that goes silent, is named on one `dragon: error:`
line, its processes are reported dead to GS, and the run tears down).

Choices (MULTINODE's **[choice]** marks, and where we part from the reference):
- Keys: one server key pair and one client key pair per run (`transport.zsecurity`): every bound
  socket (this ROUTER, each agent's PULL) is a CURVE server that admits only the run's client key
  (a ZAP authenticator); the keys reach each backend in its configuration on stdin (ssh, local; srun
  copies its stdin to every task), never on a command line or in a file.
- Node indices are the plan's (`dragon.wlm`: node 0 the primary, `--primary` reorders), known to each
  backend from its configuration (or, under Slurm, from its node name): no FENodeIdxBE round trip.
- Each node's transport agent is forked by its backend, not started by its LS: the backend already
  has ZeroMQ, LS stays free of it, and a fork costs milliseconds where an interpreter costs ~0.4 s.
- Agents connect eagerly once LAChannelsInfo is known, and "TAUp" means every other agent was heard.
- Exits follow output across nodes: a node's SHProcessExit comes here after that process's output
  and goes on to GS through the primary's backend, so a join never returns before the output of the
  process it waited for is written (as on one node).
- The default placement is round robin over every node (the head on the primary); a lost node ends
  the run unless `--on-node-loss continue`.
- Virtual nodes (`--wlm local`) are forked from this process before its trio loop (they inherit trio
  and ZeroMQ imported); with DRAGON_LOCAL_WRAP (a command prefix, e.g. a network namespace) they are
  exec'd through it.

`FrontendHandle` has the methods of the single-node `RuntimeHandle` that the `dragon` command uses
(`call`, `send_input`, `wait_head_exit`, `interrupt`, `force_stop`), so `dragon.cli` runs a program
the same way on one node and on many.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
import trio
import zmq

from dragon import _rundir, wlm
from dragon.errors import BringupError, InputNotDelivered
from dragon.ids import BE_CUID, LAUNCHER_PUID
from dragon.messages import (
    AbnormalTermination,
    BEDone,
    BEInterrupt,
    BEIsUp,
    BETeardown,
    FdNum,
    FEForward,
    FEInbound,
    GSHalted,
    GSHeadExit,
    GSIsUp,
    GSTeardown,
    Heartbeat,
    LAChannelsInfo,
    LSErr,
    NodeLost,
    Response,
    SHChannelsUp,
    SHFwdInput,
    SHFwdInputErr,
    SHFwdOutput,
    SHProcessExit,
    TAUp,
)
from dragon.transport import PendingReplies, ProtocolError, clip, decode
from dragon.transport.zsecurity import Authenticator, RunKeys, server_socket
from dragon.transport.zsock import AsyncSocket

from ._output import write_lines
from ._process import ForkedChild, describe_exit, fork_service
from .backend import BEConfig
from .launcher import INPUT_CHUNK, RuntimeBroken, ask_as_launcher, write_to_own_stdio
from .transport_agent import HEARTBEAT_LOST_S, HEARTBEAT_S

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Response)
SSH_ENV: Final = "DRAGON_SSH"
"""The ssh command of `--wlm ssh` ("ssh" by default; e.g. "ssh -F my_config -p 2222")."""
TEARDOWN_STEP_S: Final = 5.0
NODE_TEARDOWN_S: Final = 20.0  # a node's own teardown: SHTeardown ... sweep (its steps are bounded too)


@dataclass
class Node:
    """The frontend's view of one node."""

    idx: int
    host: str
    proc: trio.Process | ForkedChild | None = None
    identity: bytes = b""
    up: BEIsUp | None = None
    channels: SHChannelsUp | None = None
    ta_up: bool = False
    heard: float = 0.0
    done: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    lost: bool = False


class Frontend:
    """One run of many nodes, from the frontend's side."""

    def __init__(
        self,
        plan: wlm.NodePlan,
        keys: RunKeys | None,
        *,
        label: bool,
        bringup_timeout_s: float,
        keep_going: bool = False,
    ) -> None:
        self.plan = plan
        self.keep_going = keep_going
        self.keys = keys
        self.label = label
        self.bringup_timeout_s = bringup_timeout_s
        self.nodes = [Node(i, host) for i, host in enumerate(plan.hosts)]
        self.by_identity: dict[bytes, Node] = {}
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.router = AsyncSocket(server_socket(self.ctx, zmq.ROUTER, keys))
        self.encoder = msgspec.msgpack.Encoder()
        self.heartbeat_frame = self.encoder.encode(Heartbeat())
        self.pending = PendingReplies[Response]("the primary node's backend")
        self.next_tag = 0
        self.failure: str | None = None
        self.up = False
        self.broken = trio.Event()
        self.gs_up = trio.Event()
        self.gs_halted = trio.Event()
        self.head_exited = trio.Event()
        self.head_exit: GSHeadExit | None = None
        self.changed = trio.Event()
        """Set (and replaced) whenever a node reports a bringup step."""
        self.ready: Callable[[Node], bool] = lambda node: True
        """What the bringup step under way waits for of each node (`wait_all`)."""
        self.forced = False
        self.tearing_down = False
        """The run is ending (its head exited, or it failed): a node that another finds silent from then
        on fails nothing (on 2 CPUs, one node's teardown can stall or outlast another's agent by the
        heartbeat bound: "the transport agent of node 0 was silent for 2 s" failed runs whose program
        had finished); one that does not finish is named by the teardown's own bounds."""
        self.helper_scopes: list[trio.CancelScope] = []

    def start_helper(self, nursery: trio.Nursery, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` shielded from outside cancellation: the link, the heartbeats and the backends'
        stdin and watchers are needed to the end of teardown; `stop_helpers` ends them."""
        scope = trio.CancelScope(shield=True)
        self.helper_scopes.append(scope)

        async def run() -> None:
            with scope:
                await fn(*args)

        nursery.start_soon(run)

    def stop_helpers(self) -> None:
        for scope in self.helper_scopes:
            scope.cancel()

    # ------------------------------------------------------------------ failures

    def fail(self, what: str) -> None:
        """The run's first failure: said on one `dragon: error:` line once the run is up (during
        bringup the BringupError carries it), and every pending request ends."""
        if self.failure is None:
            self.failure = what = clip(what)
            log.error("%s", what)
            if self.up:
                os.write(2, f"dragon: error: {what}\n".encode())
        self.broken.set()
        self.pending.fail_all(self.failure)

    def node_lost(self, node: Node, what: str) -> None:
        """MULTINODE §6. [choice] By default a lost node ends the run (`fail`); with `--on-node-loss
        continue`, a node other than the primary is given up on alone: one warning line, its processes
        reported dead to GS (their joiners get -9 at once), the node told to tear itself down if it
        still hears us, and the run goes on with the others."""
        if node.lost or (self.broken.is_set() and node.done.is_set()):
            return
        if self.tearing_down:  # the run is ending: a silence now loses nothing (see `teardown`)
            log.info("while the run tears down: %s", what)
            return
        if node.idx != 0 and self.nodes[0].identity:  # its processes are dead for whoever joins them
            self.forward(self.nodes[0], "gs", NodeLost(node_idx=node.idx, what=what))
        if self.keep_going and node.idx != 0 and not self.tearing_down:
            log.error("%s", what)
            os.write(2, f"dragon: warning: {clip(what)}: its processes are reported dead; the run goes on\n".encode())
            self.send(node, BETeardown(force=True))
            node.lost = True
            return
        node.lost = True
        self.fail(what)

    # ------------------------------------------------------------------ the link

    def send(self, node: Node, msg: msgspec.Struct) -> None:
        """One message to a node's backend; never waits (ZeroMQ queues it; a lost node's are dropped)."""
        if node.identity and not node.lost:
            self.router.try_send_multipart([node.identity, self.encoder.encode(msg)])

    def forward(self, node: Node, to: str, msg: msgspec.Struct) -> None:
        """A message for the GS ("gs") or LS ("ls") channel of a node, encoded once here."""
        self.send(node, FEForward(to=to, frame=self.encoder.encode(msg)))

    async def receive(self) -> None:
        """Everything the backends say, in order per backend."""
        decoder = msgspec.msgpack.Decoder(FEInbound)
        up_decoder = msgspec.msgpack.Decoder(BEIsUp)
        while True:
            parts = await self.router.recv_multipart()
            if len(parts) != 2:
                log.warning("skipped a message of %d parts from a backend", len(parts))
                continue
            identity, frame = parts
            node = self.by_identity.get(identity)
            if node is None:  # only BEIsUp introduces a backend (a heartbeat may come first)
                try:
                    hello = decode(up_decoder, frame, where="a new backend's link")
                except ProtocolError as exc:
                    if frame != self.heartbeat_frame:
                        log.warning("skipped a message from an unknown backend: %s", exc)
                    continue
                if not 0 <= hello.node_idx < len(self.nodes) or self.nodes[hello.node_idx].identity:
                    log.warning("skipped BEIsUp of node %d: no such node, or it said so already", hello.node_idx)
                    continue
                node = self.nodes[hello.node_idx]
                node.identity, node.up, node.heard = identity, hello, trio.current_time()
                self.by_identity[identity] = node
                self.step()
                continue
            node.heard = trio.current_time()
            try:
                msg = decode(decoder, frame, where=f"the link of node {node.idx}")
            except ProtocolError as exc:  # §7: rejected and logged; the run goes on
                log.warning("%s", exc)
                continue
            await self.dispatch(node, msg)

    async def dispatch(self, node: Node, msg: msgspec.Struct) -> None:
        match msg:
            case Heartbeat():
                pass
            case SHFwdOutput():
                await self.output(node, msg)
            case SHProcessExit():  # after that process's output, written above: now GS may know
                self.forward(self.nodes[0], "gs", msg)
            case Response():
                self.pending.file(msg)
            case GSHeadExit():
                self.head_exit = msg
                self.head_exited.set()
            case GSIsUp():
                self.gs_up.set()
                self.step()
            case GSHalted():
                self.gs_halted.set()
            case SHChannelsUp():
                node.channels = msg
                self.step()
            case TAUp():
                node.ta_up = True
                self.step()
            case NodeLost():
                self.node_lost(self.nodes[msg.node_idx] if 0 <= msg.node_idx < len(self.nodes) else node, msg.what)
            case AbnormalTermination():
                self.fail(msg.err_info if msg.err_info.startswith("node ") else f"node {node.idx}: {msg.err_info}")
            case BEDone():
                node.done.set()
            case _:
                log.warning("ignored unexpected %s from node %d", type(msg).__name__, node.idx)

    async def output(self, node: Node, msg: SHFwdOutput) -> None:
        if not self.label:
            await write_to_own_stdio(msg)
            return
        prefix = f"[{node.idx}:{msg.pid}] ".encode()
        lines = msg.data.splitlines(keepends=True)
        data = b"".join(prefix + line for line in lines)
        fd = 2 if msg.fd_num == FdNum.STDERR else 1
        try:
            await trio.to_thread.run_sync(write_lines, fd, data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def step(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def beat(self) -> None:
        """Heartbeats to every backend; a backend silent for HEARTBEAT_LOST_S is a lost node (§6)."""
        beat = Heartbeat()
        while True:
            now = trio.current_time()
            for node in self.nodes:
                if not node.identity or node.lost or node.done.is_set():
                    continue
                self.send(node, beat)
                # In teardown, the bounded waits for each node's BEDone judge it (named if it stays silent).
                if now - node.heard > HEARTBEAT_LOST_S and not self.tearing_down:
                    self.node_lost(node, f"node {node.idx} ({node.host}) was silent for {HEARTBEAT_LOST_S:g} s")
            await trio.sleep(HEARTBEAT_S)

    async def watch_backend(self, node: Node) -> None:
        """A backend that exits before its node is torn down: the node is lost (or never came)."""
        assert node.proc is not None
        code = await node.proc.wait()
        node.exited.set()
        if self.tearing_down:  # its BEDone, sent just before it exited, may still be on its way
            with trio.move_on_after(1.0):
                await node.done.wait()
        if node.done.is_set():
            return
        died = f"its backend (pid {node.proc.pid}) died {describe_exit(code)}"
        if node.up is not None and trio.current_time() - node.heard > HEARTBEAT_LOST_S:  # cut off: gave up on us first
            self.node_lost(node, f"node {node.idx} ({node.host}) was silent for {HEARTBEAT_LOST_S:g} s ({died})")
        else:
            self.node_lost(node, f"node {node.idx} ({node.host}): {died}")

    # ------------------------------------------------------------------ bringup (§4)

    async def wait_all(self, what: str, ready: Callable[[Node], bool]) -> None:
        """Until every node is `ready` (kept as `self.ready`: at the deadline, `bringup` names the
        nodes that are not); BringupError at once if the run breaks first."""
        self.ready = ready
        while not all(ready(n) for n in self.nodes):
            if self.broken.is_set():
                raise BringupError("frontend", what, str(self.failure))
            changed = self.changed
            async with trio.open_nursery() as race:

                async def until(event: trio.Event) -> None:
                    await event.wait()
                    race.cancel_scope.cancel()

                race.start_soon(until, changed)
                race.start_soon(until, self.broken)

    async def bringup(self, endpoint: str, nursery: trio.Nursery, start_backends: Callable[[str], Any]) -> None:
        """MULTINODE §4 steps 2-7, every wait under the bringup deadline."""
        step = "starting the backends"
        try:
            with trio.fail_after(self.bringup_timeout_s):
                await start_backends(endpoint)
                step = "BEIsUp from every backend"
                await self.wait_all(step, lambda n: n.up is not None)
                step = "SHChannelsUp from every node's Local Services"
                await self.wait_all(step, lambda n: n.channels is not None)
                info = self.channels_info()
                for node in self.nodes:
                    self.send(node, info)
                step = "TAUp from every node's transport agent"
                await self.wait_all(step, lambda n: n.ta_up)
                if len(self.nodes) > 1:
                    self.forward(self.nodes[0], "gs", info)
                step = "GSIsUp from Global Services"
                await self.wait_all(step, lambda n: n.idx != 0 or self.gs_up.is_set())  # GS runs on node 0
        except trio.TooSlowError:
            late = [n for n in self.nodes if not self.ready(n)]
            names = ", ".join(f"node {n.idx} ({n.host})" for n in late)
            raise BringupError(
                "frontend", step, self.failure or f"{names} did not report within {self.bringup_timeout_s:g} s"
            ) from None
        self.up = True

    def channels_info(self) -> LAChannelsInfo:
        descs = []
        for node in self.nodes:
            assert node.channels is not None and node.up is not None
            desc = msgspec.structs.replace(node.channels.node_desc, idx=node.idx, run_id=node.up.run_id)
            descs.append(desc)
        primary = self.nodes[0].channels
        assert primary is not None
        return LAChannelsInfo(nodes=descs, gs_cd=primary.gs_cd, security="none" if self.keys is None else "curve")

    # ------------------------------------------------------------------ requests

    async def call(self, req: Any, response_type: type[R], *, to: str = "gs") -> R:
        """A request as the launcher (p_uid 0, answered on the primary node's LA channel)."""
        if not self.up:
            raise RuntimeBroken("the runtime is not up")
        self.next_tag += 1

        async def send(msg: Any) -> None:
            self.forward(self.nodes[0], to, msg)
            await trio.lowlevel.checkpoint()

        return await ask_as_launcher(self.pending, self.next_tag, req, send, response_type, lambda: self.failure)

    # ------------------------------------------------------------------ teardown (§6)

    async def teardown(self) -> None:
        """GS first (on the primary node), then every node at once; each step bounded; a node that
        does not finish is named and its backend stopped through the workload manager (here: its
        process, which the ssh or srun carrying it passes on)."""
        self.tearing_down = True
        with trio.CancelScope(shield=True):
            primary = self.nodes[0]
            if self.up and not primary.lost and not self.gs_halted.is_set() and not self.forced:
                self.forward(primary, "gs", GSTeardown())
                with trio.move_on_after(TEARDOWN_STEP_S):
                    await self.gs_halted.wait()
            for node in self.nodes:
                self.send(node, BETeardown(force=self.forced))
            with trio.move_on_after(NODE_TEARDOWN_S):
                for node in self.nodes:
                    if node.identity and not node.lost:
                        await node.done.wait()
            stubborn = [n for n in self.nodes if n.proc is not None and not n.exited.is_set()]
            for node in stubborn:
                with trio.move_on_after(TEARDOWN_STEP_S if node.done.is_set() else 1.0):
                    await node.exited.wait()
                if not node.exited.is_set():
                    if not node.done.is_set():
                        log.warning(
                            "node %d (%s) did not finish its teardown: stopping its backend", node.idx, node.host
                        )
                    stop_backend(node)
                    with trio.move_on_after(TEARDOWN_STEP_S):
                        await node.exited.wait()


def stop_backend(node: Node) -> None:
    """SIGKILL to a backend's process group (a forked or exec'd virtual node leads its own; for ssh
    and srun it is the client, whose end closes the remote backend's stdin)."""
    if node.proc is None:
        return
    pid = node.proc.pid
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------------ starting backends


@dataclass
class Launch:
    """How the frontend runs: the plan, the run's keys, what the user asked."""

    plan: wlm.NodePlan
    keys: RunKeys | None
    label: bool = False
    keep_going: bool = False
    """`--on-node-loss continue` (`Frontend.node_lost`)."""
    bringup_timeout_s: float = 30.0
    frontend_addr: str = ""
    """Where the backends reach the frontend ("" = wlm's default)."""
    log_level: str | None = None
    log_file: str | None = None
    fork_server: list[str] = field(default_factory=list)
    fork_server_env: dict[str, str] = field(default_factory=dict)
    """The head's hint (`dragon.cli.fork_server_for`), for every node (`BEConfig.fork_server`)."""
    run_id: str = field(default_factory=_rundir.new_run_id)
    """The run's id: the primary node's (`BEConfig.primary_run_id`)."""
    forked: list[tuple[ForkedChild, int]] = field(default_factory=list)
    """Virtual nodes forked before the loop (`fork_backends`): each backend and the write end of its
    stdin, where its configuration goes."""


def fork_backends(n: int) -> list[tuple[ForkedChild, int]]:
    """Fork the backends of `n` virtual nodes before trio runs: each inherits trio and pyzmq already
    imported (an exec'd backend imports both again: about 0.4 s of CPU per node on these machines)
    and waits for its configuration on its stdin. Each leads its own process group."""
    from . import backend

    children = []
    for _ in range(n):
        r, w = os.pipe()
        child = fork_service(backend.main, new_session=True, keep_fds={r: 0})
        os.close(r)
        children.append((child, w))
    return children


async def start_backends(fe: Frontend, launch: Launch, endpoint: str, nursery: trio.Nursery) -> None:
    """One backend per node through the workload manager, its configuration on its stdin (§7: never
    on a command line), and a watcher of each."""
    plan = launch.plan
    configs = [
        BEConfig(
            node_idx=node.idx,
            nodes=plan.n,
            host_name=node.host,
            fe_endpoint=endpoint,
            keys=launch.keys,
            bringup_timeout_s=launch.bringup_timeout_s,
            log_level=launch.log_level,
            log_file=launch.log_file,
            primary_run_id=launch.run_id,
            fork_server=launch.fork_server,
            fork_server_env=launch.fork_server_env,
        )
        for node in fe.nodes
    ]
    if launch.forked:
        for node, (child, stdin) in zip(fe.nodes, launch.forked, strict=True):
            node.proc = child
            line = msgspec.json.encode(configs[node.idx]) + b"\n"
            try:
                await trio.to_thread.run_sync(os.write, stdin, line)
            except BrokenPipeError:
                pass  # it exited already: its watcher says how
            fe.start_helper(nursery, _hold_stdin, stdin)
            fe.start_helper(nursery, fe.watch_backend, node)
        return
    if plan.wlm == "slurm":  # one srun step for every node, one configuration on its stdin for all
        shared = msgspec.structs.replace(configs[0], node_idx=-1, host_name="", hosts=list(plan.hosts))
        try:
            srun = await trio.lowlevel.open_process(
                wlm.slurm_command(plan, wlm.backend_argv()), stdin=subprocess.PIPE, start_new_session=True
            )
        except OSError as exc:
            raise BringupError("frontend", "starting the backends with srun", str(exc)) from None
        assert srun.stdin is not None
        try:
            await srun.stdin.send_all(msgspec.json.encode(shared) + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # srun exited already: the watchers say how
        fe.start_helper(nursery, _hold_stream, srun.stdin)
        for node in fe.nodes:
            node.proc = srun
            fe.start_helper(nursery, fe.watch_backend, node)
        return
    for node in fe.nodes:
        argv = (
            wlm.local_command(node.idx, wlm.backend_argv())
            if plan.wlm == "local"
            else wlm.ssh_command(node.host, wlm.backend_argv(), ssh=os.environ.get(SSH_ENV) or "ssh")
        )
        try:
            proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise BringupError("frontend", f"starting the backend of node {node.idx} ({node.host})", str(exc)) from None
        node.proc = proc
        assert proc.stdin is not None
        try:
            await proc.stdin.send_all(msgspec.json.encode(configs[node.idx]) + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it exited already: its watcher says how
        fe.start_helper(nursery, _hold_stream, proc.stdin)
        fe.start_helper(nursery, fe.watch_backend, node)


async def _hold_stdin(fd: int) -> None:
    """Keep a backend's stdin open while the run lasts: its end tells the backend we are gone."""
    try:
        await trio.sleep_forever()
    finally:
        os.close(fd)


async def _hold_stream(stream: trio.abc.SendStream) -> None:
    try:
        await trio.sleep_forever()
    finally:
        await trio.aclose_forcefully(stream)


# ------------------------------------------------------------------------------------------ the handle


class FrontendHandle:
    """What `dragon.cli` drives a run of many nodes with: the methods of the single-node
    `RuntimeHandle` it uses."""

    def __init__(self, fe: Frontend) -> None:
        self._fe = fe

    async def call(self, req: Any, response_type: type[R]) -> R:
        return await self._fe.call(req, response_type)

    async def send_input(self, p_uid: int, data: bytes, *, confirm: bool = False) -> None:
        """The head's stdin (on the primary node): SHFwdInput to its LS, as the launcher sends it."""
        chunks = [data[i : i + INPUT_CHUNK] for i in range(0, len(data), INPUT_CHUNK)] or [b""]
        for chunk in chunks:
            msg = SHFwdInput(p_uid=LAUNCHER_PUID, r_c_uid=BE_CUID, t_p_uid=p_uid, input=chunk, confirm=confirm)
            if not confirm:
                self._fe.forward(self._fe.nodes[0], "ls", msg)
                continue
            resp = await self._fe.call(msg, SHFwdInputErr, to="ls")
            if resp.err != LSErr.SUCCESS:
                raise InputNotDelivered(resp.err_info)
        await trio.lowlevel.checkpoint()

    async def wait_head_exit(self) -> GSHeadExit:
        fe = self._fe
        async with trio.open_nursery() as race:

            async def until(event: trio.Event) -> None:
                await event.wait()
                race.cancel_scope.cancel()

            race.start_soon(until, fe.head_exited)
            race.start_soon(until, fe.broken)
        if fe.head_exit is None:
            raise RuntimeBroken(fe.failure or "the runtime broke")
        return fe.head_exit

    def force_stop(self) -> None:
        """The second Ctrl-C: every node kills its processes at once."""
        fe = self._fe
        fe.forced = True
        for node in fe.nodes:
            fe.send(node, BETeardown(force=True))

    def interrupt(self) -> None:
        """Ctrl-C for the program: SIGINT to the processes of every node (each backend signals its own)."""
        for node in self._fe.nodes:
            self._fe.send(node, BEInterrupt())


async def serve(launch: Launch, *, task_status: trio.TaskStatus[FrontendHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Bring the nodes up, report a `FrontendHandle`, keep the run until cancelled, then tear it
    down. Raises BringupError (which step, which nodes) or RuntimeBroken; whatever happens, every
    backend has finished or been stopped when this returns."""
    fe = Frontend(
        launch.plan,
        launch.keys,
        label=launch.label,
        bringup_timeout_s=launch.bringup_timeout_s,
        keep_going=launch.keep_going,
    )
    addr = launch.frontend_addr or wlm.default_frontend_addr(launch.plan)
    async with trio.open_nursery() as nursery:
        if launch.keys is not None:
            await nursery.start(Authenticator(fe.ctx, launch.keys).serve)
        port = fe.router.sock.bind_to_random_port(f"tcp://{addr}")
        fe.start_helper(nursery, fe.receive)
        fe.start_helper(nursery, fe.beat)
        try:
            await fe.bringup(f"tcp://{addr}:{port}", nursery, lambda ep: start_backends(fe, launch, ep, nursery))
            task_status.started(FrontendHandle(fe))
            await fe.broken.wait()
            raise RuntimeBroken(fe.failure or "the runtime broke")
        finally:
            try:
                await fe.teardown()
            finally:
                fe.stop_helpers()
    fe.ctx.destroy(linger=0)
