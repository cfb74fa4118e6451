"""A channel of another node, used from this process through that node's transport agent (MULTINODE §5, issue 17).

A channel lives in its home node's shared memory. A process on another node that attaches to it (a
`dragon.native.Channel` whose descriptor names another node, a queue's channel: `dragon.mp.refs.Hold`)
gets a `RemoteChannel`: each operation is a `transport.forward.ChannelOp` sent over a socket of this
process (a ZeroMQ DEALER, a CURVE client with the run's keys: `zsecurity.process_socket`) to the home
node's agent, which carries it out on the channel and answers on the same connection. **[choice: the
spec's "measure both"]** A socket of the process's own, rather than its node's agent relaying the
operation through a channel: an operation crosses one network hop and wakes one agent instead of two
agents and two shared-memory hops (an operation's round trip between two isolated nodes went from
400-500 µs to 100-200 µs, a Queue's 8 B round trip from about 1,000 µs to 200-300 µs). Payloads travel as message parts of their own (a large one is not copied
into a header, nor by ZeroMQ on the way out). pyzmq is imported only when a process of a multi-node
run first uses a channel of another node (a single-node run never loads it).

Semantics are the channel's own: a send waits while the channel is full (backpressure: the home agent
waits, the answer comes once the messages are in) and keeps this sender's order (each operation of a
thread is answered before its next); a receive waits for a message at most its timeout; ChannelFull,
ChannelEmpty and ChannelDestroyed as on one node. Each thread has its own socket per home node, so a
thread waiting in a receive never holds up another thread's send (a queue's feeder thread, say).
A thread waiting for an answer stays awake for a moment first (`dragon.transport.hot_wait`: an
answer of a round trip comes within a couple of hundred microseconds, and a halted CPU would take
tens of them to wake), as the home agent's loop does between operations.

No message is lost [choice: written down here]: the home agent takes a message only for a receive
that still waits there (a receive that times out at home takes nothing); it keeps the messages of an
answer until the requester acknowledges them (ACK, sent as soon as the answer arrives, before the
messages are handed over), and puts them back into their channel, at its end, if the requester's
connection is gone first (it died: `services.transport_agent`). An answer that arrives after this
thread stopped waiting for it (its own margin passed: a node slower than its deadline) is kept and
given to this process's next receive on that channel, and put back into the channel at exit. What is
left: a process killed in the microseconds between receiving an answer and its ACK leaving gets its
messages put back although it had them (delivered twice, never lost). At exit every socket whose thread
is done confirms its ACKs arrived (one round trip each, FLUSH); so does the socket of a thread that
ended, before it is closed (`_Link.retire`). A node that does not answer within the
operation's timeout plus ANSWER_MARGIN_S, or that Global Services counts lost, raises ChannelError
naming it.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Sequence
from multiprocessing import util
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from dragon.ids import TRANSPORT_KEYS_VAR, LaunchParameters
from dragon.transport import (
    Buffer,
    ChannelDestroyed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    ChannelStatistics,
)
from dragon.transport.forward import (
    ACK,
    DEPTH,
    DESTROYED,
    FLUSH,
    OK,
    PROBE,
    RECORD,
    RECORD_POSTED,
    RECV,
    SEND,
    TIMEOUT,
    ChannelOp,
    ChannelReply,
    inline,
)
from dragon.transport.hot_wait import PROCESS_SPIN_MAX_S, HotWait

if TYPE_CHECKING:
    import zmq

OP_BYTES: Final = 2 << 20
"""The most bytes of messages one SEND operation carries (`RemoteChannel.send_many` splits). The
home agent gets an operation only once all of its parts arrived (ZeroMQ delivers a message whole)
and puts its messages into the channel only then, so smaller operations let it put the first ones
while the next arrive. A queue's 1 MiB items from node 1 to node 0 with CURVE (two isolated nodes,
alternate runs): 637-642 MiB/s at 4 MiB per operation, 682-750 at 2 MiB, 670-684 at 1 MiB (one
item each); in tools/bench_multinode.py's row, 0.69-0.73x -> 0.76-0.78x of raw ZeroMQ."""
NODE_CHECK_S: Final = 1.0
"""While an answer does not come, how often Global Services is asked whether its node is lost (a
wait on a channel of a lost node ends with ChannelError, MULTINODE §6)."""
ANSWER_MARGIN_S: Final = 10.0
"""How much longer than an operation's own timeout its answer may take (the agent, the network)."""
POST_WINDOW_BYTES: Final = 8 << 20
POST_WINDOW_OPS: Final = 1024
"""How many bytes and operations of posted sends (a queue's: `_Poster`) may await their answers."""
QUIET_RUN: Final = 32
"""At most this many posted object operations in a row on one record go unanswered when they succeed."""
EXIT_FLUSH_S: Final = 2.0
"""At exit, how long each socket's last round trip (FLUSH, and the put-back of kept messages) may take."""


class PostedOpFailed(ChannelError):
    """A posted operation on an object of another node failed there (`kind`, `text`: its error's class
    name and message, for `dragon.mp.away` to raise as that error); raised at the next post there."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind, self.text = kind, text


class _Socket:
    """One thread's connection to one node's agent, and the answers it stopped waiting for."""

    def __init__(self, sock: zmq.Socket[bytes], thread: threading.Thread) -> None:
        import zmq  # loaded already (this is one of its sockets); not at this module's import

        self.sock, self.thread = sock, thread
        self._events, self._pollin = zmq.EVENTS, zmq.POLLIN
        self.abandoned: dict[int, tuple[str, int]] = {}
        """Operations this thread stopped waiting for: their channels and op codes (a late RECV
        answer's messages are kept for the next receive there)."""
        self.acked = False
        """An ACK left since the last round trip (a FLUSH at exit confirms it arrived)."""
        self.hot = HotWait(PROCESS_SPIN_MAX_S)
        """Awake for a moment while an answer is on its way (`dragon.transport.hot_wait`)."""

    def ready(self) -> bool:
        """Whether an answer is there to read now: libzmq's `EVENTS` (0.9 µs here; pyzmq's `poll(0)`,
        which makes a Poller per call, 1.3 µs: a spin looks this often)."""
        return bool(cast(int, self.sock.get(self._events)) & self._pollin)


class _Poster:
    """This process's posted sends to one node (a queue's puts, `RemoteChannel(posted=True)`): one
    socket that every thread uses under `lock`, so that the sends of the process keep the order in
    which they were made, whichever thread made them (as the stdlib's feeder keeps the order of its
    buffer). A post returns once sent; its answer is collected later (`_Link.collect`)."""

    def __init__(self, sock: _Socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.waiting: dict[int, tuple[str, int, int]] = {}
        """Posted and not answered yet: req_id -> (sdesc, messages, bytes)."""
        self.bytes = 0
        self.failed: dict[str, ChannelError] = {}
        """A posted send that failed (its channel destroyed...): raised at the next post there."""
        self.quiet: dict[str, list[int]] = {}
        """Per record or channel: the posted operations there that the agent answers only if they fail
        (`quiet`: RECORD_POSTED, a quiet channel's SEND), in order. The answer of a later one there says
        they are done too (they run in order)."""
        self.in_a_row: dict[str, int] = {}
        """Per record or channel: the quiet operations posted there since the last answered one (every
        QUIET_RUN-th is answered, whether the answer of the one before has come or not)."""
        self.arrived = -1
        """The highest req_id answered on this socket: the agent reads a connection's messages in order,
        so every operation posted before it has arrived there (`_Link.flush_posted`)."""


class _Link:
    """This process's way to the agents of other nodes: a socket per thread and node, and a shared
    one per node for posted sends."""

    def __init__(self) -> None:
        params = LaunchParameters.from_env()
        if params.nodes <= 1:
            raise ChannelError("this process runs on a single node: there is no channel of another node to reach")
        self.keys = os.environ.get(TRANSPORT_KEYS_VAR, "")
        if not self.keys:
            raise ChannelError(
                f"{TRANSPORT_KEYS_VAR} is not set: only a process the runtime started can reach a channel of "
                "another node (start it with multiprocessing or dragon.native.Process)"
            )
        import zmq

        self.node, self.pid = params.index, os.getpid()
        self.zmq = zmq
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.endpoints: dict[int, str] = {}
        self.local = threading.local()
        self.sockets: list[_Socket] = []
        self.posters: dict[int, _Poster] = {}
        self.lock = threading.Lock()
        """Guards `sockets`, `endpoints` and `stash` (each socket is its thread's only)."""
        self.ids = itertools.count(1)
        self.stash: dict[str, collections.deque[bytes]] = {}
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(ChannelReply)
        self.result_decoder = msgspec.msgpack.Decoder(tuple[bool, Any])
        # At exit after a queue's feeder has posted all it had (its join: exitpriority -5), before the
        # queue's references are given back (-10). Not a plain atexit hook: atexit runs the hooks
        # registered last first, so it would run before multiprocessing's own (registered at its
        # import), while a feeder still posts; the posts after it would be lost, and the interpreter
        # would free their buffers while ZeroMQ still sends them without a copy.
        util.Finalize(self, self.close, exitpriority=-7)

    def socket(self, node: int) -> _Socket:
        """This thread's socket to the agent of `node` (made and connected on first use)."""
        mine: dict[int, _Socket] | None = getattr(self.local, "sockets", None)
        if mine is None:
            mine = self.local.sockets = {}
            self.retire()
        sock = mine.get(node)
        if sock is None:
            sock = mine[node] = self._connect(node)
        return sock

    def _connect(self, node: int, *, shared: bool = False) -> _Socket:
        """A new socket to the agent of `node`: a thread's own (listed for `close`), or `shared`: a
        poster's, which stays open to the end (`close` confirms its sends, another finalizer may post)."""
        from dragon.transport.zsecurity import process_socket

        try:
            raw = process_socket(self.ctx, self.zmq.DEALER, self.keys)
        except ValueError as exc:
            raise ChannelError(f"{TRANSPORT_KEYS_VAR}: {exc}") from None
        raw.setsockopt(self.zmq.LINGER, 0)
        raw.connect(self.endpoint(node))
        sock = _Socket(raw, threading.current_thread())
        if not shared:
            with self.lock:
                self.sockets.append(sock)
        return sock

    def poster(self, node: int) -> _Poster:
        with self.lock:
            poster = self.posters.get(node)
        if poster is None:
            sock = self._connect(node, shared=True)
            with self.lock:
                poster = self.posters.setdefault(node, _Poster(sock))
        return poster

    def post(
        self,
        node: int,
        sdesc: str,
        payloads: Sequence[Buffer],
        timeout: float | None,
        op: int = SEND,
        *,
        answered: bool = False,
        quiet: bool = False,
    ) -> bool:
        """Send `payloads` into channel `sdesc` of `node` without waiting for the answer (see
        `_Poster`): False if the window of answers awaited stayed full for `timeout` s (None: no
        limit; 0: no wait). Raises the error of an earlier posted send into that channel, if one
        failed. `op` RECORD_POSTED: `payloads` is an object's operation on record `sdesc` instead,
        quiet (`_may_be_quiet`) unless `answered`; a SEND is quiet so only with `quiet`
        (`RemoteChannel(quiet=True)`)."""
        poster = self.poster(node)
        size = sum(len(p) for p in payloads)
        deadline = None if timeout is None else time.monotonic() + timeout
        with poster.lock:
            self.collect(poster, 0)
            while self._window_full(poster, size):
                left = NODE_CHECK_S if deadline is None else min(NODE_CHECK_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                if not self.collect(poster, left) and _is_lost(node):
                    raise ChannelError(f"node {node} is lost: its channel cannot be reached any more")
            failed = poster.failed.pop(sdesc, None)
            if failed is not None:
                raise failed
            req_id = next(self.ids)
            unanswered = not answered if op == RECORD_POSTED else quiet
            quiet = unanswered and self._may_be_quiet(poster, sdesc, size)
            self._send(poster.sock, ChannelOp(op, req_id, sdesc, quiet=quiet), payloads)
            poster.waiting[req_id] = (sdesc, len(payloads), size)
            poster.bytes += size
            if quiet:
                poster.quiet.setdefault(sdesc, []).append(req_id)
                poster.in_a_row[sdesc] = poster.in_a_row.get(sdesc, 0) + 1
            else:
                poster.in_a_row.pop(sdesc, None)
        return True

    @staticmethod
    def _window_full(poster: _Poster, size: int) -> bool:
        """Whether a post of `size` bytes must wait for answers first (`poster.lock` held): the posts
        awaiting an answer that will come hold the window's bytes or operations. Quiet ones are not
        counted: they get no answer of their own unless they fail, and are bounded apart (a post is
        quiet only while the window is less than half full: `_may_be_quiet`). A post larger than
        the window goes once no answer is awaited (a queue's item of 20 MiB)."""
        if poster.bytes + size <= POST_WINDOW_BYTES and len(poster.waiting) < POST_WINDOW_OPS:
            return False
        quiet = {req_id for run in poster.quiet.values() for req_id in run}
        loud = [entry for req_id, entry in poster.waiting.items() if req_id not in quiet]
        return bool(loud) and (
            sum(entry[2] for entry in loud) + size > POST_WINDOW_BYTES or len(loud) >= POST_WINDOW_OPS
        )

    def _may_be_quiet(self, poster: _Poster, sdesc: str, size: int) -> bool:
        """Whether a posted operation may go unanswered if it succeeds: not every QUIET_RUN-th one there
        (counted from the last answered one posted, not from the last answer come: a sender faster
        than a round trip would otherwise have all its operations answered while an answer travels),
        nor while the window is more than half full (an answer must come to empty it)."""
        return (
            poster.in_a_row.get(sdesc, 0) < QUIET_RUN - 1
            and len(poster.waiting) < POST_WINDOW_OPS // 2
            and poster.bytes + size < POST_WINDOW_BYTES // 2
        )

    def collect(self, poster: _Poster, wait_s: float) -> int:
        """The answers of posted sends that have come (waiting up to `wait_s` for the first): how many."""
        sock, n = poster.sock.sock, 0
        while poster.sock.ready() or (n == 0 and wait_s > 0 and sock.poll(int(wait_s * 1000))):
            reply = self.decoder.decode(sock.recv_multipart()[0])
            poster.arrived = max(poster.arrived, reply.req_id)
            done = poster.waiting.pop(reply.req_id, None)
            if done is None:  # a probe, or the answer of the FLUSH at exit
                continue
            n += 1
            poster.bytes -= done[2]
            run = poster.quiet.get(done[0])
            while run and run[0] < reply.req_id:  # done before it (a quiet one that failed: itself)
                poster.bytes -= poster.waiting.pop(run.pop(0))[2]
            if run and run[0] == reply.req_id:
                run.pop(0)
            if reply.status == DESTROYED:
                poster.failed[done[0]] = ChannelDestroyed(f"the channel was destroyed: {reply.text}")
            elif reply.status != OK:
                poster.failed[done[0]] = ChannelError(f"a send into a channel of another node failed: {reply.text}")
            elif reply.payloads:  # a posted operation on an object: its result says whether it failed
                ok, value = self.result_decoder.decode(reply.payloads[0])
                if not ok:
                    poster.failed[done[0]] = PostedOpFailed(*value)
        return n

    def settle(self, node: int, sdesc: str, request: bytes) -> None:
        """Until every operation this process posted on record `sdesc` (of `node`) is carried out, not
        only arrived (a Pipe end's close after its posted sends: the reader sees them before EOF):
        `request` (an operation that does nothing, `dragon.mp.at_home`'s "settle") is posted after
        them, answered, if some of them are quiet. Only those posted before it are waited for: a
        quiet one that another thread posts meanwhile gets no answer of its own."""
        poster = self.posters.get(node)
        if poster is None:
            return
        if poster.quiet.get(sdesc):
            self.post(node, sdesc, [request], None, RECORD_POSTED, answered=True)
        with poster.lock:
            last = max((req_id for req_id, (chan, _, _) in poster.waiting.items() if chan == sdesc), default=0)
            while any(chan == sdesc and req_id <= last for req_id, (chan, _, _) in poster.waiting.items()):
                if not self.collect(poster, NODE_CHECK_S) and _is_lost(node):
                    raise ChannelError(f"node {node} is lost: its channel cannot be reached any more")

    def flush_posted(self, node: int) -> None:
        """Until the agent of `node` has every send this process posted to it (a FLUSH round trip on
        the posting socket: the agent takes a connection's messages in order, and carries out a send
        it has taken whether its requester lives or not). So a put into a queue, then a send that
        another process acts on (a Pool worker's result, after which the pool may terminate it), never
        loses the put. Nothing to do if every posted send is answered, or was posted before one that
        is (quiet ones: `_Poster.arrived`)."""
        poster = self.posters.get(node)
        if poster is None or not poster.waiting:
            return
        with poster.lock:
            if not poster.waiting or max(poster.waiting) < poster.arrived:
                return
            req_id = next(self.ids)
            poster.waiting[req_id] = ("", 0, 0)  # answered at once, as the posted sends are
            self._send(poster.sock, ChannelOp(FLUSH, req_id), ())
            while req_id in poster.waiting:
                if not self.collect(poster, NODE_CHECK_S) and _is_lost(node):
                    raise ChannelError(f"node {node} is lost: its channel cannot be reached any more")

    def in_flight(self, sdesc: str) -> int:
        """Messages this process posted into channel `sdesc` whose answers have not come yet."""
        node = _home_of.get(sdesc, -1)
        poster = self.posters.get(node)
        if poster is None:
            return 0
        with poster.lock:
            self.collect(poster, 0)
            return sum(n for chan, n, _ in poster.waiting.values() if chan == sdesc)

    def _send(self, sock: _Socket, request: ChannelOp, payloads: Sequence[Buffer]) -> None:
        """`request` with `payloads`: in its header when they are small, else as parts of their own."""
        if inline(payloads):
            request = msgspec.structs.replace(request, payloads=[bytes(p) for p in payloads])
            sock.sock.send(self.encoder.encode(request))
        else:
            sock.sock.send_multipart([self.encoder.encode(request), *payloads], copy=False)

    def endpoint(self, node: int) -> str:
        """Where the agent of `node` takes operations (asked of Global Services once)."""
        with self.lock:
            known = self.endpoints.get(node)
        if known:
            return known
        from dragon.client import requests as gs

        nodes = gs.run(gs.node_list(), timeout_s=30)
        if not 0 <= node < len(nodes) or not nodes[node].ta_ops_endpoint:
            raise ChannelError(f"node {node} is not a node of this runtime with a transport agent")
        with self.lock:
            self.endpoints.update((n.idx, n.ta_ops_endpoint) for n in nodes)
        return nodes[node].ta_ops_endpoint

    def call(
        self,
        node: int,
        op: int,
        sdesc: str,
        timeout: float | None,
        *,
        max_n: int = 1,
        share: int = 0,
        payloads: Sequence[Buffer] = (),
        flush: bool = True,
    ) -> tuple[ChannelReply, list[bytes]]:
        """One operation on channel `sdesc` of `node`, answered: the answer and the messages it carries.
        A send, or an object's operation (a Pipe's send, an Event's set...) unless not `flush` (one
        that changes nothing another process sees: a Pipe's receive), first makes sure the node's
        agent has this process's earlier posted sends (`flush_posted`): what the process did before
        it is there before it."""
        if flush and op in (SEND, RECORD):
            self.flush_posted(node)
        sock = self.socket(node)
        req_id = next(self.ids)
        timeout_s = -1.0 if timeout is None else max(0.0, timeout)
        self._send(sock, ChannelOp(op, req_id, sdesc, timeout_s, max_n, share=share), payloads)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout) + ANSWER_MARGIN_S
        sock.hot.spin_blocking(sock.ready)
        while True:
            left = NODE_CHECK_S if deadline is None else min(NODE_CHECK_S, deadline - time.monotonic())
            if not sock.sock.poll(max(0, int(left * 1000))):
                if deadline is not None and time.monotonic() >= deadline:
                    sock.abandoned[req_id] = (sdesc, op)
                    raise ChannelError(f"node {node} did not answer an operation on its channel in time")
                if _is_lost(node):
                    sock.abandoned[req_id] = (sdesc, op)
                    raise ChannelError(f"node {node} is lost: its channel cannot be reached any more")
                continue
            frames = sock.sock.recv_multipart()
            reply = self.decoder.decode(frames[0])
            if reply.status == PROBE:
                continue
            got = reply.payloads or frames[1:]
            mine = reply.req_id == req_id
            late = None if mine else sock.abandoned.pop(reply.req_id, None)
            # A Pipe's receive (RECORD, count 1) is acknowledged only when it is this call's: a late
            # one's message stays with the agent, which puts it back once this process is gone.
            taken = got and (
                (op if mine else late[1] if late else None) == RECV or (mine and op == RECORD and reply.count)
            )
            if taken:  # messages taken from the channel, ours now: the agent may forget them
                sock.sock.send(self.encoder.encode(ChannelOp(ACK, reply.req_id)))
                sock.acked = True
            elif mine:
                sock.acked = False  # a round trip after the ACKs: they arrived
            if mine:
                sock.hot.arrived()
                return reply, got
            if late is not None and taken:  # for the next receive on that channel
                with self.lock:
                    self.stash.setdefault(late[0], collections.deque()).extend(got)

    def take_stashed(self, sdesc: str, max_n: int) -> list[bytes]:
        with self.lock:
            kept = self.stash.get(sdesc)
            return [kept.popleft() for _ in range(min(max_n, len(kept)))] if kept else []

    def close(self) -> None:
        """At exit: kept messages back into their channels; the agents have every posted send (they
        carry them out whether this process lives or not); each socket this thread may use (its own,
        and those of threads that ended) confirms its ACKs arrived; all within EXIT_FLUSH_S each."""
        if os.getpid() != self.pid:  # a child forked with this link: its sockets are not this process's
            return
        for sdesc, kept in self.stash.items():
            node = _home_of.get(sdesc, -1)
            if kept and node >= 0:
                self._last_word(self.socket(node), ChannelOp(SEND, 0, sdesc, EXIT_FLUSH_S), list(kept))
        for poster in self.posters.values():  # the agent has every posted send once FLUSH is answered
            with poster.lock:
                if poster.waiting:
                    self._last_word(poster.sock, ChannelOp(FLUSH, 0))
                    poster.waiting.clear()  # their answers were read and let go: nothing to `settle`
                    poster.quiet.clear()
                    poster.bytes = 0
        self.retire(threading.current_thread())
        self.local.sockets = {}  # a later operation of this thread connects anew

    def retire(self, also: threading.Thread | None = None) -> None:
        """Close the sockets of the threads that ended (and those of `also`: the thread closing the
        link at exit), each after it confirmed its ACKs arrived (FLUSH): the agent puts back the
        messages of an answer it still counts unacknowledged once their requester's connection is gone.

        A thread's socket goes soon after the thread, not at the process's exit: a program that starts
        thousands of short-lived threads, each using a channel of another node, would hold a connection
        (and two fds) per thread until then. **[choice]** Retired by the next thread that makes its
        first socket (and at exit), which pays the FLUSH round trips of those that had ACKs in flight;
        not by a finalizer of the ended thread's local storage, which runs inside the interpreter's
        teardown of that thread, where a round trip that may wait EXIT_FLUSH_S has no place. So at
        most the sockets of the threads alive at the last thread's start stay open. A thread that
        `threading` did not start (a _DummyThread) counts as alive: its socket stays to the end."""
        with self.lock:
            done = [s for s in self.sockets if s.thread is also or not s.thread.is_alive()]
            self.sockets = [s for s in self.sockets if s not in done]
        for sock in done:
            if sock.acked:
                self._last_word(sock, ChannelOp(FLUSH, 0))
            sock.sock.close(linger=0)

    def _last_word(self, sock: _Socket, op: ChannelOp, payloads: list[bytes] | None = None) -> None:
        """`op` and its answer (req_id 0), within EXIT_FLUSH_S; answers of earlier operations ignored."""
        sock.sock.send_multipart([self.encoder.encode(op), *(payloads or [])])
        end = time.monotonic() + EXIT_FLUSH_S
        while (left := end - time.monotonic()) > 0 and sock.sock.poll(int(left * 1000)):
            if self.decoder.decode(sock.sock.recv_multipart()[0]).req_id == 0:
                sock.acked = False
                return


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
    operations of `transport.Channel` that a `dragon.native.Channel` uses.

    `posted`: its sends return once sent, not once answered (`_Link.post`: a window of answers
    awaited, the process's order kept across its threads); a failure is raised at the next send.
    A multiprocessing queue's items channel is used so (`posted()`): a put of the stdlib's Queue
    returns before the item is in the pipe too, and waiting for each answer would double a round
    trip between two processes (the answer to a put, then the next get's request).
    `quiet` (posted only): the agent answers a send only if it fails, and every QUIET_RUN-th (which
    also empties the window of those before it): one message fewer per send (its answer), which the
    home agent, the network and this process each had to handle. For a channel whose sends nobody
    here counts while they are on their way (`approximate_depth` would count a quiet one that is in
    as still in flight until the next answer): a Pool worker's results (`dragon.mp.pool`)."""

    def __init__(self, node: int, sdesc: str, *, posted: bool = False, quiet: bool = False) -> None:
        self.node, self.sdesc = node, sdesc
        _home_of[sdesc] = node
        self._link = _the_link()
        self._closed = False
        self._posted = posted
        self._quiet = posted and quiet

    def posted(self, *, quiet: bool = False) -> RemoteChannel:
        """A handle on the same channel whose sends are posted (quiet: see the class docstring)."""
        return RemoteChannel(self.node, self.sdesc, posted=True, quiet=quiet)

    def _post(self, messages: Sequence[Buffer], timeout: float | None) -> bool:
        if self._closed:
            raise ChannelError(f"this handle on a channel of node {self.node} is closed")
        return self._link.post(self.node, self.sdesc, messages, timeout, quiet=self._quiet)

    def _call(
        self,
        op: int,
        timeout: float | None,
        *,
        max_n: int = 1,
        share: int = 0,
        payloads: Sequence[Buffer] = (),
        flush: bool = True,
    ) -> tuple[ChannelReply, list[bytes]]:
        """Operation `op` on this channel: the answer, and the messages it carries (RECV)."""
        if self._closed:
            raise ChannelError(f"this handle on a channel of node {self.node} is closed")
        link = self._link
        reply, got = link.call(
            self.node, op, self.sdesc, timeout, max_n=max_n, share=share, payloads=payloads, flush=flush
        )
        if reply.status == DESTROYED:
            raise ChannelDestroyed(f"the channel of node {self.node} was destroyed: {reply.text}")
        if reply.status not in (OK, TIMEOUT):
            raise ChannelError(f"an operation on a channel of node {self.node} failed: {reply.text}")
        return reply, got

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        if self._posted:
            if not self._post([data], timeout):
                raise ChannelFull(
                    f"the sends posted into a channel of node {self.node} stayed unanswered for {timeout} s"
                )
        elif self._call(SEND, timeout, payloads=[data])[0].status != OK:
            raise ChannelFull(f"the channel of node {self.node} stayed full for {timeout} s")

    def send_many(self, messages: Sequence[Buffer], timeout: float | None = None) -> None:
        """In operations of at most OP_BYTES (a batch of many large messages as one frame would hold
        the link between the two agents for seconds: their heartbeats wait behind it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sent = 0
        for batch in _batches(messages, OP_BYTES):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._posted:
                count = len(batch) if self._post(batch, left) else 0
            else:
                count = self._call(SEND, left, payloads=batch)[0].count
            sent += count
            if count < len(batch):
                raise ChannelFull(
                    f"the channel of node {self.node} stayed full for {timeout} s: {sent} of {len(messages)} sent"
                )

    def recv(self, timeout: float | None = None) -> bytes:
        return self.recv_many(1, timeout)[0]

    def recv_many(self, max_messages: int, timeout: float | None = None, *, share: int = 0) -> list[bytes]:
        """Up to `max_messages` (waiting for the first at most `timeout`); with `share`, no more than the
        messages waiting divided by it, at least one (`ChannelOp.share`: a Pool's task channel)."""
        kept = self._link.take_stashed(self.sdesc, max_messages)
        if kept:
            return kept
        _, got = self._call(RECV, timeout, max_n=max_messages, share=share)
        if not got:
            raise ChannelEmpty(f"the channel of node {self.node} stayed empty for {timeout} s")
        return got

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
        """Messages waiting in it now (one round trip to its node), plus those kept here and those
        this process posted that are not in yet (a quiet handle's: not in yet for all it knows).
        Posts not answered yet are flushed first (`_Link.flush_posted`, a round trip when there are
        some): the answers of those the agent put in come before the flush's, so none is counted
        both in the channel and on its way."""
        if self._posted:
            self._link.flush_posted(self.node)
        kept = self._link.stash.get(self.sdesc)
        return self._call(DEPTH, 0)[0].count + (len(kept) if kept else 0) + self._link.in_flight(self.sdesc)

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

    def record_op(self, request: bytes, timeout: float | None, *, flush: bool = True) -> bytes:
        """One operation on the synchronization object this channel is the record of, carried out on
        its node (`dragon.mp.at_home`, waiting there at most `timeout`): its encoded result. `flush`:
        see `_Link.call`."""
        _, got = self._call(RECORD, timeout, payloads=[request], flush=flush)
        if not got:
            raise ChannelError(f"node {self.node} gave no result for an operation on its object")
        return got[0]

    def record_post(self, request: bytes) -> None:
        """`record_op` without waiting for its result (RECORD_POSTED: see `_Link.post`; carried out at
        the home after this process's earlier posted operations there). A failure is raised, as
        `PostedOpFailed`, at the next post on this record."""
        if self._closed:
            raise ChannelError(f"this handle on a channel of node {self.node} is closed")
        self._link.post(self.node, self.sdesc, [request], None, RECORD_POSTED)

    def settle(self, request: bytes) -> None:
        """Until this process's posted operations on this record are carried out (`_Link.settle`)."""
        self._link.settle(self.node, self.sdesc, request)

    def close(self) -> None:
        self._closed = True
