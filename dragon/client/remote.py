"""A channel of another node, used from this process through the transport agents (MULTINODE §5, issue 17).

A channel lives in its home node's shared memory. A process on another node that attaches to it (a
`dragon.native.Channel` whose descriptor names another node) gets a `RemoteChannel`: each operation is
a `transport.forward.ChannelOp` written into this node's transport-agent channel, carried to the home
node's agent, carried out there on the channel, and answered (`ChannelReply`) into this process's
reply channel (a channel of this node, made through Global Services on first use, one per process).

Semantics are the channel's own: a send waits while the channel is full (backpressure: the home
agent waits, the answer comes once the message is in) and keeps this sender's order (one operation
of this process at a time, each answered before the next: [choice] simple and ordered; concurrent
threads of a process take turns); a receive waits for a message at most its timeout; ChannelFull,
ChannelEmpty and ChannelDestroyed as on one node.

No message is lost [choice: written down here]: the home agent takes a message only for a receive
that still waits there (a receive that times out at home takes nothing); a message taken for a
requester whose answer then cannot be delivered (the process died and its reply channel with it) goes
back into its channel, at its end (`services.transport_agent`); an answer that arrives after this
process stopped waiting for it (its own margin passed, a node slower than its deadline) is kept and
given to this process's next receive on that channel, and put back into the channel when the process
exits. A node that does not answer within the operation's timeout plus ANSWER_MARGIN_S raises
ChannelError naming it.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Final

import msgspec

from dragon.ids import LaunchParameters
from dragon.transport import (
    Buffer,
    Channel,
    ChannelDestroyed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    ChannelStatistics,
)
from dragon.transport.forward import (
    DEPTH,
    DESTROYED,
    OK,
    OP,
    RECORD,
    RECV,
    SEND,
    TIMEOUT,
    ChannelOp,
    ChannelReply,
    pack_forward,
)

OP_BYTES: Final = 4 << 20
"""The most bytes of messages one SEND operation carries (`RemoteChannel.send_many` splits)."""
NODE_CHECK_S: Final = 1.0
"""While an answer does not come, how often Global Services is asked whether its node is lost (a
wait on a channel of a lost node ends with ChannelError, MULTINODE §6)."""
ANSWER_MARGIN_S: Final = 10.0
"""How much longer than an operation's own timeout its answer may take (the two agents, the network)."""
REPLY_CAPACITY: Final = 64
REPLY_BLOCK: Final = 64 * 1024


class _Link:
    """This process's way to the agents: its node's agent channel and its own reply channel."""

    def __init__(self) -> None:
        from dragon.client import requests as gs

        params = LaunchParameters.from_env()
        if params.nodes <= 1 or not params.ta_cd:
            raise ChannelError("this process runs on a single node: there is no channel of another node to reach")
        self.node = params.index
        self.gateway = Channel.attach(params.ta_cd)
        self.reply_desc = gs.run(
            gs.channel_create(
                capacity=REPLY_CAPACITY, block_size=REPLY_BLOCK, label="replies of other nodes", owned=True
            )
        )
        self.replies = Channel.attach(self.reply_desc.sdesc)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.abandoned: set[int] = set()
        self.stash: dict[str, collections.deque[bytes]] = {}
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(ChannelReply)
        atexit.register(self.close)

    def call(
        self, node: int, op: int, sdesc: str, timeout: float | None, *, max_n: int = 1, payloads: Sequence[Buffer] = ()
    ) -> ChannelReply:
        """One operation on channel `sdesc` of `node`, answered (under the lock: one at a time)."""
        with self.lock:
            req_id = next(self.ids)
            request = ChannelOp(
                op=op,
                req_id=req_id,
                sdesc=sdesc,
                reply_node=self.node,
                reply_sdesc=self.reply_desc.sdesc,
                timeout=-1.0 if timeout is None else max(0.0, timeout),
                max_n=max_n,
                payloads=[bytes(p) for p in payloads],
            )
            self.gateway.send(pack_forward(node, "", self.encoder.encode(request), OP))
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout) + ANSWER_MARGIN_S
            while True:
                left = NODE_CHECK_S if deadline is None else min(NODE_CHECK_S, deadline - time.monotonic())
                try:
                    reply = self.decoder.decode(self.replies.recv(max(0.0, left)))
                except ChannelEmpty:
                    if deadline is not None and time.monotonic() >= deadline:
                        self.abandoned.add(req_id)
                        raise ChannelError(f"node {node} did not answer an operation on its channel in time") from None
                    if _is_lost(node):
                        self.abandoned.add(req_id)
                        raise ChannelError(f"node {node} is lost: its channel cannot be reached any more") from None
                    continue
                if reply.req_id == req_id:
                    return reply
                if reply.req_id in self.abandoned and reply.payloads:  # late: for the next receive
                    self.abandoned.discard(reply.req_id)
                    self.stash.setdefault(reply.home_sdesc, collections.deque()).extend(reply.payloads)

    def take_stashed(self, sdesc: str, max_n: int) -> list[bytes]:
        with self.lock:
            kept = self.stash.get(sdesc)
            return [kept.popleft() for _ in range(min(max_n, len(kept)))] if kept else []

    def close(self) -> None:
        """At exit: stashed messages back into their channels (no answer awaited)."""
        for sdesc, kept in self.stash.items():
            if kept:
                node = _home_of.get(sdesc, -1)
                back = ChannelOp(
                    op=SEND, req_id=0, sdesc=sdesc, reply_node=-1, reply_sdesc="", timeout=-1, payloads=list(kept)
                )
                if node >= 0:
                    self.gateway.send(pack_forward(node, "", self.encoder.encode(back), OP))
        # The reply channel is `owned`: GS destroys it when this process exits.


def _is_lost(node: int) -> bool:
    """Whether Global Services counts `node` lost (or cannot be asked: then the run is ending)."""
    from dragon.client import requests as gs
    from dragon.descriptors import ObjectState
    from dragon.errors import DragonError

    try:
        nodes = gs.run(gs.node_list(), timeout_s=5)
    except DragonError:
        return True
    return not 0 <= node < len(nodes) or nodes[node].state == ObjectState.DEAD


_link: _Link | None = None
_link_pid = 0
_link_lock = threading.Lock()
_home_of: dict[str, int] = {}
"""The home node of each remote channel this process used (for the put-back at exit)."""


def _the_link() -> _Link:
    """This process's link (a child forked after it was made gets its own)."""
    global _link, _link_pid
    with _link_lock:
        if _link is None or _link_pid != os.getpid():
            _link, _link_pid = _Link(), os.getpid()
        return _link


def _batches(messages: Sequence[Buffer], max_bytes: int) -> list[Sequence[Buffer]]:
    """`messages` in runs of at most `max_bytes` (a larger message alone); none for none."""
    runs: list[Sequence[Buffer]] = []
    start, size = 0, 0
    for i, m in enumerate(messages):
        n = len(memoryview(m))
        if i > start and size + n > max_bytes:
            runs.append(messages[start:i])
            start, size = i, 0
        size += n
    if start < len(messages):
        runs.append(messages[start:])
    return runs


class RemoteChannel:
    """A channel of node `node` (its attach descriptor `sdesc`), reached through the agents; the
    operations of `transport.Channel` that a `dragon.native.Channel` uses."""

    def __init__(self, node: int, sdesc: str) -> None:
        self.node, self.sdesc = node, sdesc
        _home_of[sdesc] = node
        self._link = _the_link()
        self._closed = False

    def _call(self, op: int, timeout: float | None, **kw: object) -> ChannelReply:
        if self._closed:
            raise ChannelError(f"this handle on a channel of node {self.node} is closed")
        reply = self._link.call(self.node, op, self.sdesc, timeout, **kw)  # type: ignore[arg-type]
        if reply.status == DESTROYED:
            raise ChannelDestroyed(f"the channel of node {self.node} was destroyed: {reply.text}")
        if reply.status not in (OK, TIMEOUT):
            raise ChannelError(f"an operation on a channel of node {self.node} failed: {reply.text}")
        return reply

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        if self._call(SEND, timeout, payloads=[data]).status != OK:
            raise ChannelFull(f"the channel of node {self.node} stayed full for {timeout} s")

    def send_many(self, messages: Sequence[Buffer], timeout: float | None = None) -> None:
        """In operations of at most OP_BYTES (a batch of many large messages as one frame would hold
        the link between the two agents for seconds: their heartbeats wait behind it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sent = 0
        for batch in _batches(messages, OP_BYTES):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self._call(SEND, left, payloads=batch)
            sent += reply.count
            if reply.count < len(batch):
                raise ChannelFull(
                    f"the channel of node {self.node} stayed full for {timeout} s: {sent} of {len(messages)} sent"
                )

    def recv(self, timeout: float | None = None) -> bytes:
        return self.recv_many(1, timeout)[0]

    def recv_many(self, max_messages: int, timeout: float | None = None) -> list[bytes]:
        kept = self._link.take_stashed(self.sdesc, max_messages)
        if kept:
            return kept
        reply = self._call(RECV, timeout, max_n=max_messages)
        if not reply.payloads:
            raise ChannelEmpty(f"the channel of node {self.node} stayed empty for {timeout} s")
        return list(reply.payloads)

    # What a multiprocessing queue uses (`dragon.mp.queues`, `dragon.mp.pool`).

    def stage(self, data: Buffer) -> Buffer:
        """The message as it will travel: a remote channel carries its bytes (no side file here)."""
        return data

    def send_nowait(self, data: Buffer) -> None:
        self.send(data, 0)

    def try_send(self, data: Buffer) -> bool:
        try:
            self.send(data, 0)
        except ChannelFull:
            return False
        return True

    def recv_nowait(self) -> bytes:
        return self.recv(0)

    def approximate_depth(self) -> int:
        """Messages waiting in it now (one round trip to its node), plus those kept here."""
        kept = self._link.stash.get(self.sdesc)
        return self._call(DEPTH, 0).count + (len(kept) if kept else 0)

    def hold_lock(self, side: str) -> None:
        """Nothing to keep here: the channel's locks are taken on its node, per operation."""

    def lease_lock(self, side: str) -> None:
        """As `hold_lock`: nothing to lease here."""

    def limit_spin(self, max_s: float) -> None:
        """Nothing spins here: a remote operation waits for its answer."""

    def statistics(self) -> ChannelStatistics:
        raise ChannelError(
            f"the statistics of a channel of node {self.node} are read on that node (dragon status there)"
        )

    def record_op(self, request: bytes, timeout: float | None) -> bytes:
        """One operation on the synchronization object this channel is the record of, carried out on
        its node (`dragon.mp.at_home`, waiting there at most `timeout`): its encoded result."""
        reply = self._call(RECORD, timeout, payloads=[request])
        if not reply.payloads:
            raise ChannelError(f"node {self.node} gave no result for an operation on its object")
        return reply.payloads[0]

    def close(self) -> None:
        self._closed = True
