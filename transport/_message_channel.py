"""Layer 2 of STYLE §4: typed messages over any channel of frames (a framed pipe or a shm channel).

The transport knows nothing of the message catalog (that is `dragon.messages`, one layer up): it is
handed the union of message types a stream accepts and turns anything else into `ProtocolError`.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import trio

from ._codec import decode

MsgT = TypeVar("MsgT", bound=msgspec.Struct)


class MessageChannel(trio.abc.Channel[MsgT]):
    """Typed messages over a `trio.abc.Channel[bytes]` of frames, one message per frame.

    `receive()` only ever returns a member of the accepted type (`MsgT`, fixed at construction); any
    other frame raises `ProtocolError`. `send()` takes any message: the two directions of a duplex pipe
    (LS stdin/stdout) carry different unions, and the receiver's decoder is what checks the type.
    Construct it with an explicit type argument, since a union cannot be inferred from `accepts`:
    `MessageChannel[GSInbound](frames, GSInbound, name="GS channel")`.
    """

    def __init__(self, frames: trio.abc.Channel[bytes], accepts: object, *, name: str) -> None:
        self._frames = frames
        self.name = name
        self._encoder = msgspec.msgpack.Encoder()  # made once per stream (msgspec perf-tips)
        self._decoder: msgspec.msgpack.Decoder[MsgT] = msgspec.msgpack.Decoder(accepts)

    async def send(self, value: msgspec.Struct) -> None:
        """Encode `value` and send it as one frame; errors of the frames channel pass through."""
        await self._frames.send(self._encoder.encode(value))

    async def receive(self) -> MsgT:
        """Receive and decode the next frame.

        Raises:
          trio.EndOfChannel: the peer closed its end (passed through from the frames channel).
          ProtocolError: the frame is not a message this channel accepts (see `decode`).
        """
        frame = await self._frames.receive()
        return decode(self._decoder, frame, where=self.name)

    async def aclose(self) -> None:
        """Close the underlying frames channel."""
        await self._frames.aclose()
