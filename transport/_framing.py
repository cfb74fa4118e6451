"""Length-prefixed frames over a byte stream: layer L1 of the bootstrap pipes (spec §2).

Spec §2 decides that "on pipes each message is one length-prefixed binary frame": LS stdin, LS stdout
and GS stdout carry frames, each a 4-byte little-endian unsigned length followed by that many payload
bytes. `FrameStream` turns any `trio.abc.Stream` (a pipe, a `StapledStream` of a child's stdin and
stdout, an in-memory test stream) into a `trio.abc.Channel[bytes]` of such frames. It gives frames no
meaning; decoding them into messages is the next layer's job.
"""

from __future__ import annotations

import struct
from typing import Final

import trio

from ._errors import ProtocolError, excerpt

MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
"""Default largest payload accepted, both ways: bounds what a corrupt or hostile length prefix can make
us allocate, while leaving room for any control message (bulk data travels in shm, not on pipes)."""

FRAME_PREFIX: Final = struct.Struct("<I")  # spec §2: 4-byte little-endian unsigned payload length
_READ_BYTES: Final = 256 * 1024  # one receive_some reads ahead this much: many small frames per syscall


class FrameStream(trio.abc.Channel[bytes]):
    """A channel of whole frames over a byte stream, which it owns (closing one closes the other).

    One task may send while another receives, but two tasks sending at once, or two receiving at once,
    is a bug in the caller and raises `trio.BusyResourceError`, as trio's own streams do.
    """

    def __init__(
        self,
        stream: trio.abc.Stream | tuple[trio.abc.SendStream, trio.abc.ReceiveStream],
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        name: str,
    ) -> None:
        """Wrap `stream`, or a (send, receive) pair of one-way streams such as a child's stdin and stdout.

        Args:
            stream: the byte stream to frame; from now on only this object may use it.
            max_frame_bytes: largest payload sent or accepted; at most 2**32 - 1, the prefix's range.
            name: names this stream in error messages (e.g. "LS stdout").

        Raises:
            ValueError: if `max_frame_bytes` is negative or does not fit the 4-byte prefix.
        """
        if not 0 <= max_frame_bytes < 2**32:
            raise ValueError(f"max_frame_bytes must be in [0, 2**32), not {max_frame_bytes}")
        if isinstance(stream, tuple):
            send_stream, receive_stream = stream
            stream = trio.StapledStream(send_stream, receive_stream)
        self._stream: trio.abc.Stream = stream
        self.max_frame_bytes: Final = max_frame_bytes
        self.name: Final = name
        self._buffer = bytearray()  # bytes received but not yet returned as a frame
        self._sending = False  # the two flags are trio's ConflictDetector, written out
        self._receiving = False
        self._closed = False

    async def send(self, value: bytes) -> None:
        """Send `value` as one frame; returns once the stream has taken all of it.

        If cancelled, part of the frame may have been written, so the stream is no longer usable:
        close it (trio's rule for `send_all`).

        Raises:
            ProtocolError: if `value` is longer than `max_frame_bytes`; nothing was written then.
            trio.BusyResourceError: if another task is sending on this stream.
            trio.ClosedResourceError: if this stream was closed.
            trio.BrokenResourceError: if the peer or the OS broke the underlying stream.
        """
        if self._sending:
            raise trio.BusyResourceError(f"another task is already sending on {self.name}")
        self._sending = True
        try:
            if self._closed:
                raise trio.ClosedResourceError(f"{self.name} was closed")
            if len(value) > self.max_frame_bytes:
                raise ProtocolError(
                    f"cannot send a frame of {len(value)} bytes on {self.name}: the maximum is "
                    f"{self.max_frame_bytes} bytes; frame starts {excerpt(value)}"
                )
            await self._stream.send_all(FRAME_PREFIX.pack(len(value)) + value)
        finally:
            self._sending = False

    async def receive(self) -> bytes:
        """Wait for the next whole frame and return its payload.

        Cancellation loses nothing: bytes already read stay buffered, and the next call goes on
        from there.

        Raises:
            trio.EndOfChannel: if the peer closed the stream exactly between two frames.
            ProtocolError: if the stream ended inside a frame, or a length prefix is over
                `max_frame_bytes` (garbage or a peer of another protocol); the stream is unusable after.
            trio.BusyResourceError: if another task is receiving on this stream.
            trio.ClosedResourceError: if this stream was closed.
            trio.BrokenResourceError: if the OS broke the underlying stream.
        """
        if self._receiving:
            raise trio.BusyResourceError(f"another task is already receiving on {self.name}")
        self._receiving = True
        try:
            if self._closed:
                raise trio.ClosedResourceError(f"{self.name} was closed")
            if not await self._fill(FRAME_PREFIX.size):
                if not self._buffer:
                    raise trio.EndOfChannel
                raise ProtocolError(
                    f"{self.name} ended inside a length prefix: {len(self._buffer)} of "
                    f"{FRAME_PREFIX.size} bytes arrived: {excerpt(self._buffer)}"
                )
            (length,) = FRAME_PREFIX.unpack_from(self._buffer)
            if length > self.max_frame_bytes:
                raise ProtocolError(
                    f"{self.name} announced a frame of {length} bytes, over the maximum of "
                    f"{self.max_frame_bytes} bytes; stream starts {excerpt(self._buffer)}"
                )
            end = FRAME_PREFIX.size + length
            if not await self._fill(end):
                payload = memoryview(self._buffer)[FRAME_PREFIX.size :]
                with payload:
                    raise ProtocolError(
                        f"{self.name} ended inside a frame: {len(payload)} of {length} payload bytes "
                        f"arrived: {excerpt(payload)}"
                    )
            with memoryview(self._buffer) as view:
                frame = bytes(view[FRAME_PREFIX.size : end])
            del self._buffer[:end]
            return frame
        finally:
            self._receiving = False

    async def _fill(self, size_bytes: int) -> bool:
        """Read until the buffer holds `size_bytes`; False if the stream ended before that."""
        while len(self._buffer) < size_bytes:
            chunk = await self._stream.receive_some(_READ_BYTES)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def aclose(self) -> None:
        """Close the underlying stream (both directions); idempotent, like every trio `aclose`."""
        self._closed = True
        await self._stream.aclose()
