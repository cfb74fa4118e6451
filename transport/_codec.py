"""Decoding frames into typed messages: the one place where bad bytes become `ProtocolError`.

Kept apart from the trio-based stream wrappers so that plain user processes can decode messages
without importing trio.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from ._errors import ProtocolError, excerpt

T = TypeVar("T")


def decode(decoder: msgspec.msgpack.Decoder[T], frame: bytes | bytearray | memoryview, *, where: str) -> T:
    """Decode one frame with `decoder`, the single place where undecodable bytes become `ProtocolError`.

    Args:
      decoder: a typed decoder, made once per stream, e.g. `msgspec.msgpack.Decoder(GSInbound)`.
      frame: the raw bytes of exactly one message.
      where: the stream it came from (e.g. "LS stdin"), named in the error text.

    Raises:
      ProtocolError: the frame is not msgpack, is truncated, has an unknown `_tc` type code, or holds a
        message type (or a field value) that this stream does not accept. The text says where the frame
        came from, what msgspec found wrong, and shows a short excerpt of the bytes (never all of them).
    """
    try:
        return decoder.decode(frame)
    # ValidationError is a DecodeError (wrong type, tag or field value); a str field holding invalid
    # UTF-8 raises UnicodeDecodeError instead, which msgspec does not wrap.
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"undecodable message on {where}: {exc}; frame: {excerpt(frame)}") from exc
