"""The transport agent (TA) of one node: carries frames between this node's channels and the other nodes'.

MULTINODE §2, §4-§7. One per node, forked by the node's backend before the backend's trio loop (it
inherits trio and pyzmq already imported: a fork costs milliseconds, an exec'd interpreter with
both imports about 0.4 s on these machines) **[choice: the spec has LS start it; the backend is the
node's process that already holds ZeroMQ, and LS stays free of it]**. It talks to its backend on its
stdin/stdout (framed messages), and to the other agents over ZeroMQ:

- It binds one PULL socket (a CURVE server with the run's keys, unless security is "none") and says
  where (`TAListening`); once it has every node's endpoint (`LAChannelsInfo`) it connects one PUSH
  socket per other node and says `TAUp` when it has heard every other agent (a heartbeat each), so
  that "up" means connected, not only dialled.
- Outbound: what a service of this node writes into the agent's channel (`transport.forward`: node,
  descriptor, frame) goes to that node's agent; on a node other than the primary, what is written
  into the local stand-in of the GS channel goes to GS's channel on the primary node.
- Inbound: each frame is put, unchanged, into the channel it names (attached once, kept). A frame
  that does not parse, or names another node, is logged and dropped: the runtime goes on (§7).
- Heartbeats: every HEARTBEAT_S to every other agent, on a connection of their own (a long frame of
  data never holds one back); an agent silent for HEARTBEAT_LOST_S is reported once (`NodeLost`) to
  the backend, which tells the frontend (§6). Silence is not counted while a full channel holds this
  agent's receiving (`receive_frames`).

Order per sender is kept: one socket per pair of nodes, one task per direction. Processes operate on
this node's channels over sockets of their own (`serve_ops`, issue 17).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import struct
import sys
from collections.abc import Sequence
from typing import Final

import msgspec
import trio
import zmq

from dragon import _log
from dragon.messages import (
    AbnormalTermination,
    BETeardown,
    LAChannelsInfo,
    NodeLost,
    TAHalted,
    TAListening,
    TAStdinInbound,
    TAStdoutOutbound,
    TATraffic,
    TAUp,
)
from dragon.mp.at_home import Done as RecordDone
from dragon.mp.at_home import now as record_now
from dragon.mp.at_home import serve as serve_record_op
from dragon.transport import (
    Buffer,
    ChannelDestroyed,
    ChannelError,
    FrameStream,
    MessageChannel,
    ProtocolError,
    TrioChannel,
    decode,
    keep_freed_memory,
)
from dragon.transport.forward import (
    ACK,
    DEPTH,
    DESTROYED,
    FAILED,
    FLUSH,
    OK,
    OP,
    OP_CODES,
    ORDERED,
    PROBE,
    RECORD,
    RECORD_POSTED,
    SEND,
    TIMEOUT,
    ChannelOp,
    ChannelReply,
    inline,
    pack_forward,
    unpack_forward,
)
from dragon.transport.hot_wait import AGENT_SPIN_MAX_S, HotWait
from dragon.transport.zsecurity import Authenticator, RunKeys, client_socket, server_socket
from dragon.transport.zsock import AsyncSocket

log = logging.getLogger(__name__)

TRAFFIC_S: Final = 1.0
TRAFFIC_MAX_QUEUED: Final = 64  # a GS that reads nothing does not get its channel filled with reports
HEARTBEAT_S: Final = 0.25
HEARTBEAT_LOST_S: Final = 2.0  # MULTINODE §6: a lost node is noticed within 2 s
"""Both for the links between agents and for the frontend's link to each backend."""
PUMP_BATCH: Final = 64  # frames of this node sent to the other nodes as one message at most
DELIVER_TIMEOUT_S: Final = 10.0  # a channel nobody reads for this long loses that frame (logged)
LOCK_GRACE_S: Final = 1.0
"""How long an operation with a shorter timeout may still wait for a channel's lock that another
process keeps (`_send_all`): a lease is given up within `LEASE_POLL_S` once others want it."""
UNACKED_CHECK_S: Final = 0.5
"""How long an answer's messages may wait for the requester's ACK before the agent checks that the
requester is still connected (`Agent.check_requesters`)."""
_BEAT: Final = struct.Struct("<BI")  # heartbeat frame: 0xFF marker, sender's node index
_BEAT_MARK: Final = 0xFF


class TAConfig(msgspec.Struct, kw_only=True, frozen=True):
    """What the backend tells its agent first, on the agent's stdin."""

    node_idx: int
    bind_addr: str
    """The address the agent binds (the one the node reaches the frontend from)."""
    keys: RunKeys | None
    """The run's CURVE keys; None = `--transport-security none`."""


def run() -> int:
    """The agent's life in its forked process: stdin/stdout are the pipe to the backend."""
    _log.set_actor("TA")
    sys.stdout = sys.stderr  # fd 1 is the protocol pipe
    keep_freed_memory()  # every large message that comes in is a fresh block of ZeroMQ's (`transport._heap`)
    return trio.run(main)


async def main() -> int:
    frames = FrameStream((trio.lowlevel.FdStream(os.dup(1)), trio.lowlevel.FdStream(os.dup(0))), name="TA stdin")
    link = MessageChannel[TAStdinInbound](frames, TAStdinInbound, name="TA stdin", send_name="TA stdout")
    try:
        config = decode(msgspec.msgpack.Decoder(TAConfig), await frames.receive(), where="TA stdin")
        agent = Agent(config, link)
        await agent.serve()
    except (trio.EndOfChannel, trio.BrokenResourceError):
        log.info("the backend went away: the transport agent stops")
        return 0
    except BaseException as exc:
        log.exception("transport agent failed")
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await _say(link, AbnormalTermination(err_info=f"transport agent failed: {exc!r}"))
        return 1
    return 0


async def _say(link: MessageChannel[TAStdinInbound], msg: TAStdoutOutbound) -> None:
    try:
        await link.send(msg)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.warning("the backend is gone: %s not said", type(msg).__name__)


async def _send_all(chan: TrioChannel, payloads: Sequence[Buffer], timeout: float) -> int:
    """Send `payloads` in order, waiting while the channel is full, until `timeout`: how many went in.
    Each tries at once first (a timeout of 0 polls), never blocking the agent's loop on the send lock:
    a lock another process keeps (a queue's producer leases it: `Channel.lease_lock`) is waited for,
    without a system call in the loop, for up to LOCK_GRACE_S even past `timeout` (its holder gives a
    lease up within `LEASE_POLL_S` once it sees others want it: a full channel, not a busy lock, is
    what a timeout of 0 reports). A send cancelled at the deadline sent nothing."""
    count = 0
    deadline = trio.current_time() + timeout
    while count < len(payloads):
        if taken := chan.send_many_nowait(payloads[count:], wait_lock=False):  # the small ones, one lock
            count += taken
            continue
        message = payloads[count]
        try:
            chan.send_nowait(message, wait_lock=False)
        except trio.WouldBlock:
            sent = False
            with trio.move_on_at(max(deadline, trio.current_time() + LOCK_GRACE_S)):
                sent = await chan.try_send(message)
            if not sent:
                with trio.move_on_at(deadline):
                    await chan.send(message)
                    sent = True
            if not sent:
                break
        count += 1
    return count


def _take_waiting(chan: TrioChannel, max_n: int) -> list[bytes]:
    """Up to `max_n` of the messages waiting in `chan` now, under one lock (none if it is empty, or if
    another process has the receive lock: the agent's loop never waits for it)."""
    if max_n <= 0:
        return []
    return chan.receive_many_nowait(max_n, wait_lock=False)


def _fair_count(chan: TrioChannel, op: ChannelOp) -> int:
    """How many messages a RECV takes at most now: `max_n`, and with a `share`, no more than the
    messages waiting divided by it (at least one: `ChannelOp.share`)."""
    if op.share <= 0 or op.max_n <= 1:
        return op.max_n
    return max(1, min(op.max_n, chan.approximate_depth() // op.share))


async def _receive_some(chan: TrioChannel, op: ChannelOp, timeout: float) -> list[bytes]:
    """The first message (waiting until `timeout`; 0 polls; a busy receive lock as in `_send_all`),
    then those waiting, up to `_fair_count` in all."""
    deadline = trio.current_time() + timeout
    first: bytes | None = None
    with trio.move_on_at(max(deadline, trio.current_time() + LOCK_GRACE_S)):
        first = await chan.try_receive()
    if first is None:
        with trio.move_on_at(deadline):
            first = await chan.receive()
    return [first, *_take_waiting(chan, _fair_count(chan, op) - 1)] if first is not None else []


def _status_of(exc: ChannelError) -> int:
    return DESTROYED if isinstance(exc, ChannelDestroyed) else FAILED


class Agent:
    """One node's agent: its sockets, its channels, its view of the other agents."""

    def __init__(self, config: TAConfig, link: MessageChannel[TAStdinInbound]) -> None:
        self.config = config
        self.link = link
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.peers: dict[int, AsyncSocket] = {}
        self.beats: dict[int, AsyncSocket] = {}
        """A connection of its own to each peer for heartbeats (`serve`)."""
        self.heard: dict[int, float] = {}
        self.lost: set[int] = set()
        self.all_heard = trio.Event()
        self.channels: dict[str, TrioChannel] = {}
        self.dropped = 0
        self.traffic = TATraffic(node_idx=config.node_idx)
        """What this agent has carried (frames and bytes each way, operations running): sent to GS
        every TRAFFIC_S for `dragon status`."""
        self.gateway: TrioChannel | None = None
        self.delivering = False
        """The receiving loop waits on a channel that is full (`receive_frames`)."""
        self.received_at = 0.0
        """When a delivery that held the receiving loop ended."""
        self.idle_handles: dict[str, list[TrioChannel]] = {}
        """Handles on this node's channels that remote operations used, ready for the next ones."""
        self.ops: trio.Nursery | None = None
        """Where a `ChannelOp` that has to wait runs, in a task of its own (a receive may wait long)."""
        self.unacked: dict[bytes, dict[int, tuple[str, list[bytes], float]]] = {}
        """Per requester, the messages of each answer it has not acknowledged yet (`answer`): sdesc,
        messages, when sent."""
        self.waiting_sends: dict[tuple[bytes, str], collections.deque[tuple[ChannelOp, Sequence[Buffer]]]] = {}
        """Per requester and channel whose send waits for room (`run_sends`), its later sends there."""
        self._op_decoder = msgspec.msgpack.Decoder(ChannelOp)
        self._encoder = msgspec.msgpack.Encoder()

    async def serve(self) -> None:
        """Bind, say where, wait for every node's endpoint, connect, carry frames until told to stop."""
        cfg = self.config
        async with trio.open_nursery() as nursery:
            self.ops = nursery
            if cfg.keys is not None:
                auth = Authenticator(self.ctx, cfg.keys)
                await nursery.start(auth.serve)
            pull = AsyncSocket(server_socket(self.ctx, zmq.PULL, cfg.keys))
            port = pull.sock.bind_to_random_port(f"tcp://{cfg.bind_addr}")
            ops = AsyncSocket(server_socket(self.ctx, zmq.ROUTER, cfg.keys))
            ops.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an answer to a requester gone raises: put back
            ops_port = ops.sock.bind_to_random_port(f"tcp://{cfg.bind_addr}")
            await self.link.send(
                TAListening(endpoint=f"tcp://{cfg.bind_addr}:{port}", ops_endpoint=f"tcp://{cfg.bind_addr}:{ops_port}")
            )
            info = await self.link.receive()
            if not isinstance(info, LAChannelsInfo):
                raise ProtocolError(f"expected LAChannelsInfo on the TA's stdin, got {type(info).__name__}")
            for node in info.nodes:
                if node.idx != cfg.node_idx:
                    # Two connections to each peer: data, and heartbeats, so that a long frame of
                    # data never holds a heartbeat back (the peer's PULL takes from both in turn).
                    for conns in (self.peers, self.beats):
                        sock = client_socket(self.ctx, zmq.PUSH, cfg.keys)
                        sock.setsockopt(zmq.LINGER, 0)
                        sock.connect(node.ta_endpoint)
                        conns[node.idx] = AsyncSocket(sock)
            now = trio.current_time()
            self.heard = dict.fromkeys(self.peers, now)
            self.waiting_for = set(self.peers)
            if not self.waiting_for:  # a run of one node: nobody to hear
                self.all_heard.set()
            me = info.nodes[cfg.node_idx]
            nursery.start_soon(self.receive_frames, pull)
            nursery.start_soon(self.serve_ops, ops)
            nursery.start_soon(self.check_requesters, ops)
            nursery.start_soon(self.beat)
            if me.ta_cd:  # MULTINODE §3: c_uid 2**55 + index; a run of one node has none
                self.gateway = TrioChannel.attach(me.ta_cd)
                nursery.start_soon(self.pump, self.gateway, None)
            if me.gs_standin_cd:
                nursery.start_soon(self.pump, TrioChannel.attach(me.gs_standin_cd), info.gs_cd)
            await self.all_heard.wait()
            await self.link.send(TAUp(node_idx=cfg.node_idx))
            nursery.start_soon(self.report_traffic, info.gs_cd)
            await self.until_told_to_stop()
            nursery.cancel_scope.cancel()
        for chan in [*self.channels.values(), *(h for hs in self.idle_handles.values() for h in hs)]:
            await chan.aclose()
        self.ctx.destroy(linger=0)
        await _say(self.link, TAHalted())

    async def until_told_to_stop(self) -> None:
        """BETeardown, or the end of stdin (the backend is gone): either way the agent stops."""
        try:
            async for msg in self.link:
                if isinstance(msg, BETeardown):
                    return
        except ProtocolError as exc:
            log.error("TA stdin broke: %s", exc)

    async def pump(self, source: TrioChannel, gs_cd: str | None) -> None:
        """Frames written into a channel of this node, to the agents of their nodes. With `gs_cd`, the
        channel is the GS stand-in: everything goes to GS's channel on the primary node. The frames
        waiting at once (up to PUMP_BATCH) go to each node as one message, a part per frame (one
        wake-up of the peer, and with CURVE one sealing, for many small frames)."""
        while True:
            try:
                frames = [await source.receive()]
                while len(frames) < PUMP_BATCH:
                    frames.append(source.receive_nowait())
            except trio.WouldBlock:
                pass
            except ChannelDestroyed:  # LS is tearing the node down
                return
            batches: dict[int, list[bytes]] = {}
            for frame in frames:
                if gs_cd is not None:
                    node, out = 0, pack_forward(0, gs_cd, frame)
                else:
                    try:
                        kind, node, _sdesc, payload = unpack_forward(frame)
                    except ValueError as exc:
                        self.drop(f"from this node: {exc}")
                        continue
                    if kind == OP and node == self.config.node_idx:  # GS to the records of its own node
                        self.run_unanswered(payload)
                        continue
                    out = frame
                if node not in self.peers:
                    self.drop(f"for node {node}, which is not another node of this runtime")
                    continue
                batches.setdefault(node, []).append(out)
            for node, batch in batches.items():
                await self.send_to(node, batch)

    async def receive_frames(self, pull: AsyncSocket) -> None:
        """Frames from the other agents (a message carries one or more, `pump`), each into the channel
        it names; or a heartbeat."""
        while True:
            for frame in await pull.recv_multipart():
                await self.receive_frame(frame)

    async def receive_frame(self, frame: bytes) -> None:
        me = self.config.node_idx
        if len(frame) == _BEAT.size and frame[0] == _BEAT_MARK:
            self.heard_from(_BEAT.unpack(frame)[1])
            return
        self.count(frames_in=1, bytes_in=len(frame))
        try:
            kind, node, sdesc, payload = unpack_forward(frame)
        except ValueError as exc:
            self.drop(str(exc))
            return
        if node != me:
            self.drop(f"a frame for node {node} reached node {me}")
            return
        if kind == OP:
            self.run_unanswered(payload)
            return
        self.delivering = True  # a full channel may hold this loop: heartbeats wait behind
        began = trio.current_time()
        try:
            await self.deliver(sdesc, payload)
        finally:
            self.delivering = False
            if trio.current_time() - began > HEARTBEAT_S:
                self.received_at = trio.current_time()

    async def deliver(self, sdesc: str, payload: memoryview) -> None:
        chan = self.channels.get(sdesc)
        try:
            if chan is None:
                chan = self.channels[sdesc] = TrioChannel.attach(sdesc)
            with trio.move_on_after(DELIVER_TIMEOUT_S) as waited:
                await chan.send(payload)
            if waited.cancelled_caught:
                self.drop(f"channel {sdesc} took nothing for {DELIVER_TIMEOUT_S} s")
        except (ChannelDestroyed, ChannelError, OSError, ValueError) as exc:
            self.drop(f"channel {sdesc}: {exc}")
            gone = self.channels.pop(sdesc, None)
            if gone is not None:
                await gone.aclose()

    # ---------------------------------------------------------------- remote channels (issue 17)

    async def serve_ops(self, ops: AsyncSocket) -> None:
        """Operations of processes of other nodes on this node's channels, each on the requester's
        own connection (`dragon.client.remote`): [requester, header, payloads...]. One that can finish
        at once (a send with room, a receive with a message waiting, a depth) is answered here; one
        that must wait gets a task of its own, so that the others go on meanwhile. Between
        operations the loop stays awake for a moment (`dragon.transport.hot_wait`: the next step of
        a requester's round trip usually comes within a few hundred microseconds)."""
        assert self.ops is not None
        hot = HotWait(AGENT_SPIN_MAX_S)  # awake between the steps of a requester's round trip
        while True:
            if ops.can_recv():
                parts = await ops.recv_multipart(copy=False)
            else:
                await hot.spin(ops.can_recv, trio.lowlevel.checkpoint)
                parts = await ops.recv_multipart(copy=False)
                hot.arrived()
            if len(parts) < 2:
                self.drop(f"an operation of {len(parts)} parts (requester and header at least)")
                continue
            self.count(frames_in=1, bytes_in=sum(len(p) for p in parts))
            who = parts[0].bytes
            try:
                op = self._op_decoder.decode(parts[1].buffer)
            except msgspec.DecodeError as exc:
                self.drop(f"an operation that does not parse: {exc}")
                continue
            if op.op == ACK:
                self.unacked.get(who, {}).pop(op.req_id, None)
                continue
            if op.op not in OP_CODES:
                self.drop(f"an operation of unknown kind {op.op}")
                continue
            payloads: Sequence[Buffer] = op.payloads or [p.buffer for p in parts[2:]]
            behind = self.waiting_sends.get((who, op.sdesc)) if op.op in ORDERED else None
            if behind is not None:  # this requester's earlier send there waits for room: after it
                behind.append((op, payloads))
                continue
            sent = await self.run_now(ops, who, op, payloads)
            if sent is None:
                continue
            if op.op in ORDERED:
                self.waiting_sends[who, op.sdesc] = collections.deque()
                self.ops.start_soon(self.run_sends, ops, who, op, payloads[sent:], sent)
            else:
                self.ops.start_soon(self.run_op, ops, who, op, payloads[sent:], sent)

    def run_unanswered(self, payload: Buffer) -> None:
        """An operation that nobody waits for (kind OP: Global Services tells the home of records that
        a process ended, `dragon.mp.at_home`), in a task of its own."""
        try:
            op = self._op_decoder.decode(payload)
        except msgspec.DecodeError as exc:
            self.drop(f"an operation that does not parse: {exc}")
            return
        if op.op != RECORD:
            self.drop(f"an unanswered operation of kind {op.op} (only RECORD is)")
            return
        assert self.ops is not None
        self.ops.start_soon(serve_record_op, op)  # nothing it takes: "reclaim" only

    async def run_sends(
        self, ops: AsyncSocket, who: bytes, op: ChannelOp, payloads: Sequence[Buffer], sent: int
    ) -> None:
        """The rest of a send that met a full channel, then, in order, the sends of the same requester
        into the same channel that came meanwhile (a process posts a queue's sends without waiting
        for their answers: `dragon.client.remote`; each sender's order is kept). The same for a
        requester's posted operations on one record (RECORD_POSTED: a Pipe's sends), one after the other."""
        key = (who, op.sdesc)
        try:
            await self.run_op(ops, who, op, payloads, sent)
            while queued := self.waiting_sends[key]:
                op, payloads = queued.popleft()
                await self.run_op(ops, who, op, payloads, 0)
        finally:
            del self.waiting_sends[key]

    async def run_now(self, ops: AsyncSocket, who: bytes, op: ChannelOp, payloads: Sequence[Buffer]) -> int | None:
        """Carry out `op` as far as it goes without a wait: None if it is done and answered, else how
        many of its payloads are in the channel already (a send that met a full channel)."""
        if op.op == FLUSH:
            await self.answer(ops, who, op, ChannelReply(op.req_id, OK))
            return None
        if op.op in (RECORD, RECORD_POSTED):  # an object's operation: it may wait (a blocked acquire)
            done = record_now(op, payloads)  # a Pipe's send with room, its receive with a message waiting
            if done is None:
                return 0
            await self.record_done(ops, who, op, done)
            return None
        try:
            chan = self.handle(op.sdesc)
        except (ChannelDestroyed, ChannelError, OSError, ValueError) as exc:
            await self.answer(ops, who, op, ChannelReply(op.req_id, DESTROYED, text=str(exc)))
            return None
        got: list[bytes] = []
        sent = 0
        try:
            if op.op == DEPTH:
                reply = ChannelReply(op.req_id, OK, count=chan.statistics().depth)
            elif op.op == SEND:
                sent = chan.send_many_nowait(payloads, wait_lock=False)  # the small ones, under one lock
                for message in payloads[sent:]:
                    chan.send_nowait(message, wait_lock=False)
                    sent += 1
                reply = ChannelReply(op.req_id, OK, count=sent)
            else:
                got = _take_waiting(chan, _fair_count(chan, op))
                if not got:
                    raise trio.WouldBlock
                reply = ChannelReply(op.req_id, OK, count=len(got))
        except trio.WouldBlock:  # the rest waits, in a task
            self.idle_handles.setdefault(op.sdesc, []).append(chan)
            return sent
        except (ChannelDestroyed, ChannelError) as exc:
            await chan.aclose()
            await self.answer(ops, who, op, ChannelReply(op.req_id, _status_of(exc), count=sent, text=str(exc)))
            return None
        self.idle_handles.setdefault(op.sdesc, []).append(chan)
        await self.answer(ops, who, op, reply, got)
        return None

    async def run_op(self, ops: AsyncSocket, who: bytes, op: ChannelOp, payloads: Sequence[Buffer], sent: int) -> None:
        """Carry out the rest of `op` on its channel (`sent` of a send's payloads are in already; a
        handle of its own: a receive may wait while other operations go on) and answer the
        requester. A receive cancelled at its deadline takes nothing."""
        self.count(ops=1)
        try:
            await self._run_op(ops, who, op, payloads, sent)
        finally:
            self.count(ops=-1)

    async def _run_op(self, ops: AsyncSocket, who: bytes, op: ChannelOp, payloads: Sequence[Buffer], sent: int) -> None:
        if op.op in (RECORD, RECORD_POSTED):  # for a user of another node, at its home (`dragon.mp.at_home`)
            await self.record_done(ops, who, op, await serve_record_op(op, payloads))
            return
        got: list[bytes] = []
        timeout = float("inf") if op.timeout < 0 else op.timeout
        try:
            chan = self.handle(op.sdesc)
        except (ChannelDestroyed, ChannelError, OSError, ValueError) as exc:
            await self.answer(ops, who, op, ChannelReply(op.req_id, DESTROYED, text=str(exc)))
            return
        try:
            if op.op == SEND:
                count = await _send_all(chan, payloads, timeout)
                reply = ChannelReply(op.req_id, OK if count == len(payloads) else TIMEOUT, count=sent + count)
            else:
                got = await _receive_some(chan, op, timeout)
                reply = ChannelReply(op.req_id, OK if got else TIMEOUT, count=len(got))
        except (ChannelDestroyed, ChannelError) as exc:
            await chan.aclose()
            reply = ChannelReply(op.req_id, _status_of(exc), text=str(exc))
        else:
            self.idle_handles.setdefault(op.sdesc, []).append(chan)
        await self.answer(ops, who, op, reply, got)

    async def record_done(self, ops: AsyncSocket, who: bytes, op: ChannelOp, done: RecordDone) -> None:
        """Answer an object's operation (`dragon.mp.at_home`) with what it did."""
        if done.taken is not None:  # a Pipe's receive took a message: kept until the requester has it
            reply = ChannelReply(op.req_id, OK, count=1, payloads=[done.result])  # count 1: ACK it
            await self.answer(ops, who, op, reply, kept=(done.taken.sdesc, [done.taken.data]))
        elif not (op.quiet and done.ok):  # a quiet posted one that succeeded is not answered
            await self.answer(ops, who, op, ChannelReply(op.req_id, OK, payloads=[done.result]))

    async def answer(
        self,
        ops: AsyncSocket,
        who: bytes,
        op: ChannelOp,
        reply: ChannelReply,
        got: Sequence[bytes] = (),
        kept: tuple[str, list[bytes]] | None = None,
    ) -> None:
        """`reply` (and the messages `got`) to requester `who`. Messages are kept until it ACKs
        them; if it is not connected any more (it died), they go back into their channel at once.
        `kept`: the channel and messages to keep instead (those a Pipe's receive took, which travel
        inside its result). A quiet posted send that went in is not answered (`RemoteChannel(quiet=True)`:
        only its failure is news)."""
        if op.quiet and op.op == SEND and reply.status == OK:
            return
        if kept is None and got:
            kept = (op.sdesc, list(got))
        large = bool(got) and not inline(got)  # then sent without a copy: parts of their own
        if got and not large:
            frames = [who, self._encoder.encode(msgspec.structs.replace(reply, payloads=list(got)))]
        else:
            frames = [who, self._encoder.encode(reply), *got]
        try:
            await ops.send_multipart(frames, copy=not large)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            if kept is not None:
                assert self.ops is not None
                self.ops.start_soon(self.put_back, *kept)
            return
        self.count(frames_out=1, bytes_out=sum(len(f) for f in frames))
        if kept is not None:
            self.unacked.setdefault(who, {})[op.req_id] = (kept[0], kept[1], trio.current_time())

    async def check_requesters(self, ops: AsyncSocket) -> None:
        """Every UNACKED_CHECK_S, each requester with messages it has not acknowledged for that long
        is probed; one that is not connected any more (a process that died after its answer left
        this node, before it said it had it) gets its messages put back into their channels."""
        probe = self._encoder.encode(ChannelReply(0, PROBE))
        while True:
            await trio.sleep(UNACKED_CHECK_S)
            old = trio.current_time() - UNACKED_CHECK_S
            for who, kept in list(self.unacked.items()):
                if not kept:
                    del self.unacked[who]
                    continue
                if min(t for _, _, t in kept.values()) > old:
                    continue
                try:
                    ops.try_send_multipart([who, probe])
                except zmq.ZMQError as exc:
                    if exc.errno != errno.EHOSTUNREACH:
                        raise
                    del self.unacked[who]
                    assert self.ops is not None
                    for sdesc, got, _ in kept.values():
                        self.ops.start_soon(self.put_back, sdesc, got)

    async def put_back(self, sdesc: str, messages: Sequence[bytes]) -> None:
        """Messages taken for a requester that is gone, back into their channel (at its end: the order
        of those few changes, nothing is lost)."""
        try:
            chan = self.handle(sdesc)
        except (ChannelDestroyed, ChannelError, OSError, ValueError) as exc:
            self.drop(f"{len(messages)} messages to put back into {sdesc}: {exc}")
            return
        try:
            count = await _send_all(chan, messages, DELIVER_TIMEOUT_S)
        except (ChannelDestroyed, ChannelError) as exc:
            await chan.aclose()
            self.drop(f"{len(messages)} messages to put back into {sdesc}: {exc}")
            return
        self.idle_handles.setdefault(sdesc, []).append(chan)
        if count < len(messages):
            self.drop(f"{len(messages) - count} messages to put back into {sdesc}: it stayed full")

    async def send_to(self, node: int, frames: list[bytes]) -> None:
        """Frames to the agent of `node` (which must be a peer) as one message, counted."""
        await self.peers[node].send_multipart(frames)
        self.count(frames_out=len(frames), bytes_out=sum(len(f) for f in frames))

    def count(self, **more: int) -> None:
        for field, n in more.items():
            setattr(self.traffic, field, getattr(self.traffic, field) + n)

    async def report_traffic(self, gs_cd: str) -> None:
        """Every TRAFFIC_S, what this agent has carried, to GS (on the primary node: its channel is
        this node's; else through the primary's agent)."""
        encoder = msgspec.msgpack.Encoder()
        local = TrioChannel.attach(gs_cd) if self.config.node_idx == 0 else None
        try:
            while True:
                queued = self.gateway.statistics().depth if self.gateway is not None else 0
                report = encoder.encode(msgspec.structs.replace(self.traffic, queued=queued, dropped=self.dropped))
                if local is not None and local.statistics().depth < TRAFFIC_MAX_QUEUED:
                    with contextlib.suppress(trio.WouldBlock):
                        local.send_nowait(report)
                elif local is None and 0 in self.peers and 0 not in self.lost:
                    await self.send_to(0, [pack_forward(0, gs_cd, report)])
                await trio.sleep(TRAFFIC_S)
        finally:
            if local is not None:
                await local.aclose()

    def handle(self, sdesc: str) -> TrioChannel:
        """A handle on channel `sdesc` that no other operation uses now: an idle one kept from an
        earlier operation (attaching costs an open and a mapping), or a new one. Each operation has
        its own, so that a receive may wait while others go on."""
        idle = self.idle_handles.get(sdesc)
        return idle.pop() if idle else TrioChannel.attach(sdesc)

    def heard_from(self, node: int) -> None:
        if node not in self.heard:
            self.drop(f"a heartbeat from node {node}, which is not another node of this runtime")
            return
        self.heard[node] = trio.current_time()
        self.waiting_for.discard(node)
        if not self.waiting_for:
            self.all_heard.set()

    async def beat(self) -> None:
        """A heartbeat to every other agent each HEARTBEAT_S (never waiting on a full socket: a peer
        that takes nothing is what the heartbeats are to find), and a silent one reported once."""
        beat = _BEAT.pack(_BEAT_MARK, self.config.node_idx)
        while True:
            now = trio.current_time()
            for node, sock in self.beats.items():
                sock.try_send_multipart([beat])
                # Silence counts only while this agent reads: after a delivery held its receiving (a
                # full channel), the heartbeats queued behind it get HEARTBEAT_LOST_S to be read.
                heard = max(self.heard[node], self.received_at)
                if self.delivering or node in self.lost or not self.all_heard.is_set():
                    continue
                if now - heard > HEARTBEAT_LOST_S:
                    self.lost.add(node)
                    what = f"the transport agent of node {node} was silent for {HEARTBEAT_LOST_S:g} s"
                    log.error("%s", what)
                    await _say(self.link, NodeLost(node_idx=node, what=what))
            await trio.sleep(HEARTBEAT_S)

    def drop(self, why: str) -> None:
        """A frame that cannot be delivered: logged (the first ones), counted; the agent goes on."""
        self.dropped += 1
        if self.dropped <= 20:
            log.warning("transport agent of node %d dropped %s", self.config.node_idx, why)
