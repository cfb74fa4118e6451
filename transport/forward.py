"""Frames for a channel on another node, handed to this node's transport agent (many nodes).

A channel lives on its home node (MULTINODE §5). A service that must put a message into a channel of
another node (Global Services answering a process there, or asking that node's Local Services)
writes the frame, unchanged, into its own node's transport-agent channel, behind a small header that
names the destination: the node index and the channel's attach descriptor, which only that node can
attach. The agent sends header and frame to the agent of that node, which attaches the descriptor
and puts the frame in. The frame is encoded once, by the sender; nobody on the way decodes it.

`transport.remote_frames.RemoteFrames` is that path as a trio channel, for the services. A
process's own operations on a channel of another node go another way (below: `ChannelOp`). No
ZeroMQ and no trio here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import msgspec

from ._layout import Buffer

_HEADER: Final = struct.Struct("<BII")  # kind, node index, length of the attach descriptor
DELIVER: Final = 0
"""Put the frame into channel `sdesc` of the node."""
OP: Final = 1
"""The frame is a `ChannelOp` for that node's agent to carry out, unanswered: Global Services tells the
homes of synchronization objects of a process's exit (`dragon.mp.at_home`, op RECORD)."""
KINDS: Final = (DELIVER, OP)


def pack_forward(node: int, sdesc: str, frame: bytes | bytearray | memoryview, kind: int = DELIVER) -> bytes:
    """One transport-agent frame of `kind` for node `node` (DELIVER: put `frame` into its channel `sdesc`)."""
    target = sdesc.encode()
    return b"".join((_HEADER.pack(kind, node, len(target)), target, frame))


def unpack_forward(buf: bytes | bytearray | memoryview) -> tuple[int, int, str, memoryview]:
    """(kind, node, attach descriptor, frame) of a `pack_forward` frame.

    Raises ValueError naming what is wrong if `buf` is not one (a transport agent logs and drops it).
    """
    view = memoryview(buf)
    if len(view) < _HEADER.size:
        raise ValueError(f"a forwarded frame of {len(view)} bytes is shorter than its header")
    kind, node, n = _HEADER.unpack_from(view)
    if kind not in KINDS:
        raise ValueError(f"a forwarded frame of unknown kind {kind}")
    end = _HEADER.size + n
    if len(view) < end:
        raise ValueError(f"a forwarded frame of {len(view)} bytes is too short for its {n}-byte descriptor")
    try:
        sdesc = bytes(view[_HEADER.size : end]).decode()
    except UnicodeDecodeError:
        raise ValueError("the descriptor of a forwarded frame is not text") from None
    return kind, node, sdesc, view[end:]


# --------------------------------------------------------------------------- operations on remote channels
#
# A process operates on a channel of another node over a socket of its own to that node's agent (a
# ZeroMQ DEALER to the agent's ROUTER: `dragon.client.remote`, `services.transport_agent`). A message
# is the header (a `ChannelOp` or `ChannelReply`, msgpack) with the payloads in it when each is smaller
# than INLINE_MAX (many small messages are one ZeroMQ part: a part costs as much as a small message,
# and with CURVE each is sealed on its own), else followed by one part per payload: a large payload is
# never copied into a header.

INLINE_MAX: Final = 64 * 1024


def inline(payloads: Sequence[Buffer]) -> bool:
    """Whether `payloads` go in the header (every one smaller than INLINE_MAX) rather than as parts."""
    return all(len(p) < INLINE_MAX for p in payloads)


SEND: Final = 1
RECV: Final = 2
DEPTH: Final = 3
"""How many messages wait in the channel (`ChannelReply.count`)."""
ACK: Final = 4
"""The requester has the messages of its answer `req_id` (not answered): the agent forgets them."""
FLUSH: Final = 5
"""Answered at once: everything the requester sent before (its ACKs) has arrived (`dragon.client.remote`
at exit)."""
RECORD: Final = 6
"""An operation on a synchronization object's record, carried out at its home (`dragon.mp.at_home`):
one msgpack request in `payloads`, answered OK with one msgpack result in `ChannelReply.payloads`."""
RECORD_POSTED: Final = 7
"""A RECORD operation whose requester goes on before its answer (a Pipe's send, `dragon.mp.pipe_away`):
the agent runs a requester's posted operations on one record in the order they came, each after the
one before it is done, as it runs a requester's SENDs into one channel."""
ORDERED: Final = (SEND, RECORD_POSTED)
"""The operations the agent runs in order per requester and channel."""
OP_CODES: Final = (SEND, RECV, DEPTH, ACK, FLUSH, RECORD, RECORD_POSTED)
OK: Final = 0
TIMEOUT: Final = 1
DESTROYED: Final = 2
FAILED: Final = 3
PROBE: Final = 4
"""Not an answer: the agent checks that the requester is still connected (`ChannelReply.status`)."""


class ChannelOp(msgspec.Struct, array_like=True, frozen=True):
    """A process's operation on a channel of another node, carried out there by that node's agent
    (`services.transport_agent`), which answers with a `ChannelReply`; the payloads follow as parts.

    SEND puts the payloads in order (waiting while the channel is full, at most `timeout` s: < 0 = no
    limit; all or, at the deadline, those that fit: `ChannelReply.count` says how many). RECV takes
    1 to `max_n` messages (waiting for the first at most `timeout` s; with `share`, at most the
    messages waiting divided by `share`, at least one). DEPTH counts the messages waiting. ACK: the
    answer `req_id` arrived (its messages are the requester's now)."""

    op: int
    req_id: int
    sdesc: str = ""
    timeout: float = -1.0
    max_n: int = 1
    payloads: list[bytes] = []
    """SEND's messages when they are small (`inline`); else they follow as parts."""
    quiet: bool = False
    """RECORD_POSTED, or a posted SEND into a quiet channel (`RemoteChannel(quiet=True)`): answer only
    if it fails (the answer of a later one of the same requester on the same record or channel says
    that this one is done too: they run in order)."""
    share: int = 0
    """RECV: > 0 bounds a take of several messages to the messages waiting divided by it, at least one (a
    Pool worker of another node takes a few tasks at once only while many wait: `dragon.mp.pool`)."""


class ChannelReply(msgspec.Struct, array_like=True, frozen=True):
    """The answer to a `ChannelOp`: `status` OK, TIMEOUT, DESTROYED or FAILED (`text` says why);
    `count` messages sent (SEND), waiting (DEPTH) or taken (RECV: they follow as parts, and the
    requester ACKs them)."""

    req_id: int
    status: int
    count: int = 0
    text: str = ""
    payloads: list[bytes] = []
    """RECV's messages when they are small (`inline`); else they follow as parts."""
