"""The services' message links that are not a trio `MessageChannel` (STYLE §4, layers L2/L3).

Every message a service sends or receives is logged (`log_message`), so that `dragon --log-level
debug` can write the whole sequence of the spec (§2, §3), with times and actors, into the run's log
file. Once trio runs, every link is a `dragon.transport.MessageChannel`; before that, and for a
tool's reply channel used once:

- `send_blocking` / `receive_blocking`: messages over the blocking face of a shm channel, for the
  steps Local Services runs before its event loop starts;
- `write_frame` / `read_frame`: length-prefixed frames on a pipe fd with blocking I/O, for the bootstrap
  pipe before trio runs;
- `reply_once`: one answer on a tool's own reply channel (`dragon status`).
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

import msgspec
import trio

from dragon.ids import FIRST_USER_MANAGED_CUID
from dragon.transport import Channel, ProtocolError, TrioChannel, decode, log_message
from dragon.transport._errors import excerpt
from dragon.transport._framing import _PREFIX, MAX_FRAME_BYTES

log = logging.getLogger("dragon.messages")

T = TypeVar("T")


def is_user_managed(c_uid: int) -> bool:
    """A c_uid of the user-managed range (spec §1.3: 2**54 .. 2**55-1), as tools such as `dragon
    status` use for a reply channel they make themselves, under `_rundir.channel_name`."""
    return FIRST_USER_MANAGED_CUID <= c_uid < 2 * FIRST_USER_MANAGED_CUID


async def reply_once(sdesc: str, msg: msgspec.Struct, where: str, timeout_s: float = 10.0) -> None:
    """Answer on a channel used once (a tool's reply channel): attach, send, let go.

    A service keeps no handle on such a channel, so a tool called in a loop costs it nothing.
    Failures (the tool gave up and removed its channel, or nobody reads it) are only logged.
    """
    try:
        async with TrioChannel.attach(sdesc) as chan:
            log_message("sent", f"on {where}", msg)
            with trio.move_on_after(timeout_s):
                await chan.send(msgspec.msgpack.encode(msg))
                return
            log.warning("reply on %s timed out (nobody reads it)", where)
    except Exception as exc:
        log.warning("reply on %s failed: %s", where, exc)


_blocking_enc = msgspec.msgpack.Encoder()


def send_blocking(chan: Channel, msg: msgspec.Struct, where: str, timeout_s: float | None) -> None:
    log_message("sent", f"on {where}", msg)
    chan.send(_blocking_enc.encode(msg), timeout_s)


def receive_blocking(chan: Channel, decoder: msgspec.msgpack.Decoder[T], where: str, timeout_s: float | None) -> T:
    msg = decode(decoder, chan.recv(timeout_s), where=where)
    log_message("received", f"on {where}", msg)
    return msg


def write_frame(fd: int, msg: msgspec.Struct, where: str) -> None:
    """Write one message as a length-prefixed frame with blocking writes (pre-trio bootstrap)."""
    log_message("sent", f"on {where}", msg)
    data = _blocking_enc.encode(msg)
    view = memoryview(_PREFIX.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int, where: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            if buf or n == 0:
                raise ProtocolError(f"{where} ended inside a frame: {len(buf)} of {n} bytes: {excerpt(buf)}")
            raise EOFError(f"{where} was closed")
        buf += chunk
    return bytes(buf)


def read_frame(fd: int, decoder: msgspec.msgpack.Decoder[T], where: str) -> T:
    """Read one framed message with blocking reads. EOFError on EOF between frames."""
    (size,) = _PREFIX.unpack(_read_exact(fd, _PREFIX.size, where))
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes on {where} is over the {MAX_FRAME_BYTES} maximum")
    msg = decode(decoder, _read_exact(fd, size, where) if size else b"", where=where)
    log_message("received", f"on {where}", msg)
    return msg
