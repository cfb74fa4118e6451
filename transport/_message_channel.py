"""Layer 2 of STYLE §4: typed, logged messages over any channel of frames (a framed pipe or a shm channel).

The transport knows nothing of the message catalog (that is `dragon.messages`, one layer up): it is
handed the union of message types a stream accepts and turns anything else into `ProtocolError`.
Every service link is one of these, so that `dragon --log-level debug` writes each message sent or
received, with its link, into the run's log (`log_message`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec
import trio

from ._codec import decode
from ._msglog import log_message
from ._trio_channel import TrioChannel

MsgT = TypeVar("MsgT", bound=msgspec.Struct)


class MessageChannel(trio.abc.Channel[MsgT], Generic[MsgT]):
    """Typed messages over a `trio.abc.Channel[bytes]` of frames, one message per frame.

    `receive()` only ever returns a member of the accepted type (`MsgT`, fixed at construction); any
    other frame raises `ProtocolError`. `send()` takes any message: the two directions of a duplex pipe
    (LS stdin/stdout) carry different unions, and the receiver's decoder is what checks the type.
    Construct it with an explicit type argument, since a union cannot be inferred from `accepts`:
    `MessageChannel[GSInbound](frames, GSInbound, name="GS channel")`. The decoder is made on the first
    `receive`, so a link that only sends (a reply channel) costs no decoder.
    """

    def __init__(
        self, frames: trio.abc.Channel[bytes], accepts: object, *, name: str, send_name: str | None = None
    ) -> None:
        """`name` names the link in logs and errors; `send_name` the sending direction of a duplex pipe
        when it has a name of its own ("LS stdin" of a link that receives on "LS stdout")."""
        self._frames = frames
        self.name = name
        self._where = f"on {send_name or name}"
        self._accepts = accepts
        self._encoder = msgspec.msgpack.Encoder()  # made once per stream (msgspec perf-tips)
        self._decoder: msgspec.msgpack.Decoder[MsgT] | None = None

    async def send(self, value: msgspec.Struct) -> None:
        """Encode `value` and send it as one frame; errors of the frames channel pass through."""
        log_message("sent", self._where, value)
        await self._frames.send(self._encoder.encode(value))

    def send_nowait(self, value: msgspec.Struct) -> None:
        """Send without waiting (shm channels only): trio.WouldBlock if the channel is full."""
        if not isinstance(self._frames, TrioChannel):
            raise TypeError(f"{self.name} is not a shared-memory channel: it has no send_nowait")
        self._frames.send_nowait(self._encoder.encode(value))
        log_message("sent", self._where, value)

    async def receive(self) -> MsgT:
        """Receive and decode the next frame.

        Raises:
          trio.EndOfChannel: the peer closed its end (passed through from the frames channel).
          ProtocolError: the frame is not a message this channel accepts (see `decode`).
        """
        frame = await self._frames.receive()
        if self._decoder is None:
            self._decoder = msgspec.msgpack.Decoder(self._accepts)
        msg = decode(self._decoder, frame, where=self.name)
        log_message("received", f"on {self.name}", msg)
        return msg

    async def aclose(self) -> None:
        """Close the underlying frames channel."""
        await self._frames.aclose()
