"""Typed, logged message links of the services (STYLE §4, layers L2/L3).

Every message a service sends or receives passes through here, so that `dragon --log-level debug`
can write the whole sequence of the spec (§2, §3), with times and actors, into the run's log file.
Three kinds of link:

- `Outbox` / `Inbox`: messages over a shared-memory channel (trio face), one encoder or one typed
  decoder per link, made once;
- `send_blocking` / `receive_blocking`: the same over the blocking face, for the steps Local Services
  runs before its event loop starts;
- `write_frame` / `read_frame`: length-prefixed frames on a pipe fd with blocking I/O, for the bootstrap
  pipe before trio runs (after that, `FrameStream` from the transport layer carries them).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Generic, TypeVar

import msgspec
import trio

from dragon.ids import FIRST_USER_MANAGED_CUID
from dragon.transport import FRAME_PREFIX as _PREFIX
from dragon.transport import MAX_FRAME_BYTES, Channel, ProtocolError, TrioChannel, decode, excerpt

log = logging.getLogger("dragon.messages")

T = TypeVar("T")


def log_message(direction: str, where: str, msg: object) -> None:
    """One DEBUG line per message: `sent GSIsUp on LA channel: GSIsUp(tag=3)`.

    A process's environment (`env` of GSProcessCreate, SHProcessCreate) is logged by variable name
    only, unless DRAGON_LOG_ENV_VALUES=1: it often holds tokens and passwords (dragon._log).
    """
    if log.isEnabledFor(logging.DEBUG):
        env = getattr(msg, "env", None)
        if isinstance(env, dict) and env and os.environ.get("DRAGON_LOG_ENV_VALUES") != "1":
            msg = msgspec.structs.replace(msg, env=dict.fromkeys(env, "..."))  # type: ignore[type-var]
        log.debug("%s %s %s: %r", direction, type(msg).__name__, where, msg)


class Outbox:
    """Sends messages on one shm channel (spec: "every message is a Struct of the catalog")."""

    def __init__(self, chan: TrioChannel, where: str) -> None:
        self.chan, self.where = chan, where
        self._enc = msgspec.msgpack.Encoder()

    async def send(self, msg: msgspec.Struct) -> None:
        log_message("sent", f"on {self.where}", msg)
        await self.chan.send(self._enc.encode(msg))

    def send_nowait(self, msg: msgspec.Struct) -> None:
        """Send without waiting; trio.WouldBlock if the channel is full."""
        self.chan.send_nowait(self._enc.encode(msg))
        log_message("sent", f"on {self.where}", msg)


class Inbox(Generic[T]):
    """Receives the messages one actor accepts (`accepts`: a union) from one shm channel."""

    def __init__(self, chan: TrioChannel, accepts: Any, where: str) -> None:
        self.chan, self.where = chan, where
        self._dec: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(accepts)

    async def receive(self) -> T:
        """The next message; ProtocolError if what arrived is not one this actor accepts."""
        msg = decode(self._dec, await self.chan.receive(), where=self.where)
        log_message("received", f"on {self.where}", msg)
        return msg


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
