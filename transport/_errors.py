"""Errors of the transport layer, and the root of every error the runtime raises.

`DragonError` lives here, in the lowest layer, so that a transport error is a `DragonError` too and
`dragon.errors` can re-export these classes unchanged (imports only ever go down).
"""

from __future__ import annotations


class DragonError(Exception):
    """Base of every error raised by the runtime and its client libraries."""


class ProtocolError(DragonError):
    """Bytes arrived that are not a valid frame or message; the text shows a short, safe excerpt."""


class ChannelError(DragonError):
    """Base of the errors of a shared-memory channel."""


class ChannelDestroyed(ChannelError):
    """The channel was destroyed: raised by every operation on it and in every waiter it woke."""


class ChannelCorrupted(ChannelError):
    """The channel's shared memory holds what no sender of the runtime writes (a record longer than
    the ring, a head behind its tail, a side file name of no side file): something else wrote into it.
    Its contents cannot be trusted: every receive raises this until it is destroyed."""


class ChannelFull(ChannelError):
    """A send found no room: the non-blocking form, or the blocking one after its timeout."""


class ChannelEmpty(ChannelError):
    """A receive found no message: the non-blocking form, or the blocking one after its timeout."""


class PoolError(DragonError):
    """Base of the errors of a managed memory pool."""


class PoolExhausted(PoolError, MemoryError):
    """An allocation cannot be met; the text gives the size asked for and what the pool has free."""


def excerpt(data: bytes | bytearray | memoryview, limit: int = 64) -> str:
    """A short, printable rendering of raw bytes for error messages (never the whole buffer)."""
    raw = bytes(data[:limit])
    more = f" ... ({len(data)} bytes in all)" if len(data) > limit else ""
    return f"{raw!r}{more}"


def clip(text: str, limit: int = 2000) -> str:
    """`text` cut to about `limit` characters (its start and its end, which say the most), for a
    message that ends up in one line of someone's terminal."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters ...] {text[-half:]}"
