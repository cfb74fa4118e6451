"""Frames for a channel on another node, handed to this node's transport agent (many nodes).

A channel lives on its home node (MULTINODE §5). A service that must put a message into a channel of
another node (Global Services answering a process there, or asking that node's Local Services)
writes the frame, unchanged, into its own node's transport-agent channel, behind a small header that
names the destination: the node index and the channel's attach descriptor, which only that node can
attach. The agent sends header and frame to the agent of that node, which attaches the descriptor
and puts the frame in. The frame is encoded once, by the sender; nobody on the way decodes it.

`transport.remote_frames.RemoteFrames` is that path as a trio channel, for the services. The same
frames carry a process's operations on a channel of another node (`ChannelOp`, answered with a
`ChannelReply`: `dragon.client.remote`). No ZeroMQ and no trio here: processes import this module;
ZeroMQ only the agent.
"""

from __future__ import annotations

import struct
from typing import Final

import msgspec

_HEADER: Final = struct.Struct("<BII")  # kind, node index, length of the attach descriptor
DELIVER: Final = 0
"""Put the frame into channel `sdesc` of the node."""
OP: Final = 1
"""The frame is a `ChannelOp` for that node's agent to carry out on one of its channels (sdesc "")."""
REPLY: Final = 2
"""The frame is a `ChannelReply` for the requester's reply channel `sdesc`; if that channel is gone
(the requester died), the messages it carries go back into the channel they were taken from."""
KINDS: Final = (DELIVER, OP, REPLY)


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


SEND: Final = 1
RECV: Final = 2
DEPTH: Final = 3
"""How many messages wait in the channel (`ChannelReply.count`)."""
RECORD: Final = 4
"""An operation on a synchronization object's record, carried out at its home (`dragon.mp.at_home`):
one msgpack request in `payloads`, answered OK with one msgpack result (`home_sdesc` "": the answer
carries no message to put back)."""
OK: Final = 0
TIMEOUT: Final = 1
DESTROYED: Final = 2
FAILED: Final = 3


class ChannelOp(msgspec.Struct, array_like=True, frozen=True):
    """A process's operation on a channel of another node, carried out there by that node's agent
    (`services.transport_agent`), which answers with a `ChannelReply` in the requester's reply channel.

    SEND puts `payloads` in order (waiting while the channel is full, at most `timeout` s: < 0 = no
    limit; all or, at the deadline, those that fit: `ChannelReply.count` says how many). RECV takes
    1 to `max_n` messages (waiting for the first at most `timeout` s). `reply_node == -1`: no reply
    (a put-back)."""

    op: int
    req_id: int
    sdesc: str
    reply_node: int
    reply_sdesc: str
    timeout: float
    max_n: int = 1
    payloads: list[bytes] = []


class ChannelReply(msgspec.Struct, array_like=True, frozen=True):
    """The answer to a `ChannelOp`: `status` OK, TIMEOUT, DESTROYED or FAILED (`text` says why);
    `count` messages sent (SEND) or the messages taken (RECV, in `payloads`). `home_node`/`home_sdesc`
    name the channel they came from, for the put-back when the requester is gone."""

    req_id: int
    status: int
    home_node: int
    home_sdesc: str
    count: int = 0
    payloads: list[bytes] = []
    text: str = ""
