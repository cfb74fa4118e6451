"""Side files: a message larger than a channel's ring travels in a file of its own.

The sender writes it once with write(2) to ``NAME.x<16 hex digits>``, the ring carries only that name
suffix (a record flagged SIDE), and the receiver reads it once with read(2) and unlinks it. A receiver
that dies after taking the record and before reading the file loses that message, and the file stays
until the channel is destroyed (which lists and removes them).
"""

from __future__ import annotations

import errno
import os
import re
from typing import Final

from ._errors import ChannelCorrupted, ChannelDestroyed, excerpt
from ._heap import keep_freed_memory
from ._layout import Buffer
from ._shm import NoSharedMemory, open_own, shm_path, unlink_quietly

_SUFFIX: Final = re.compile(rb"\.x[0-9a-f]{16}")  # the name suffix of a side file (`write_side_file`)


def write_side_file(channel: str, data: Buffer) -> bytes:
    """Write `data` to a new side file of `channel`; returns its name suffix."""
    while True:
        # unguessable: /dev/shm is listed and shared (_shm.py); os.urandom is what secrets.token_hex
        # uses, without importing secrets (hmac, hashlib) into every user process (issue 12.4)
        suffix = f".x{os.urandom(8).hex()}"
        try:
            fd = os.open(shm_path(channel + suffix), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:  # a one in 2**64 chance
            continue
    try:
        mv, done = memoryview(data), 0
        while done < len(mv):
            done += os.write(fd, mv[done:])
    except BaseException as exc:
        os.close(fd)
        unlink_quietly(channel + suffix)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise NoSharedMemory(len(data)) from None
        raise
    os.close(fd)
    return suffix.encode()


def read_side_file(channel: str, suffix: bytes) -> bytes:
    """The message in `channel`'s side file `suffix` (from a taken record); the file is removed."""
    if _SUFFIX.fullmatch(suffix) is None:
        raise ChannelCorrupted(
            f"channel {channel} is corrupt: a record names a side file {excerpt(suffix)} "
            "that no sender makes (something other than the runtime wrote into it)"
        )
    name = channel + suffix.decode()
    try:
        fd = open_own(name, os.O_RDONLY)
    except FileNotFoundError:
        raise ChannelDestroyed(f"channel {channel} was destroyed") from None
    try:
        unlink_quietly(name)
        size = os.fstat(fd).st_size
        keep_freed_memory()  # a side file's message is large: reuse its memory for the next (`_heap`)
        data = os.read(fd, size)
        if len(data) < size:  # rare: read(2) may return less than asked on a huge file
            data += b"".join(iter(lambda: os.read(fd, size), b""))
        return data
    finally:
        os.close(fd)


def discard_side_file(channel: str, suffix: Buffer) -> None:
    """Remove a side file whose message was not sent after all."""
    unlink_quietly(channel + bytes(suffix).decode())
