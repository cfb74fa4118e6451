"""Forwarded output in whole lines: how Local Services cuts it and how the launcher writes it.

Under "spawn" every process of a program writes to the one shared stdout (or stderr), and the kernel
keeps each write of up to PIPE_BUF (4096) bytes to a pipe whole: a line written with one `write`, as
`logging` and a flushed `print` do, is never cut by another process's output. Under the runtime each
managed process has a pipe of its own, which Local Services reads and forwards to the launcher as
SHFwdOutput messages; the launcher writes them to its own stdout and stderr. Two rules keep lines
whole on that path:

- Local Services forwards whole lines (`LineAssembler`): a message ends at a newline. The bytes after
  the last newline of what it read (a partial line) are held until the rest of the line comes, and
  forwarded anyway `PARTIAL_LINE_S` after they arrived (a prompt, a progress bar drawn with `\\r`,
  `print(..., end="")`), when the held bytes reach `MAX_MESSAGE`, and at the end of the stream (a
  process's last bytes are never lost). Messages carry up to `MAX_MESSAGE` bytes; only a line longer
  than that is cut (spawn keeps only lines up to 4096 bytes whole).
- The launcher writes a message to a pipe or socket in pieces of whole lines of at most PIPE_BUF
  bytes (`write_lines`): other writers may share that pipe (the program itself, under the
  background runtime), and the kernel keeps only writes of up to PIPE_BUF whole. A regular file or a
  terminal gets each message in one write.

One process's output stays byte for byte what it wrote, in order; only where messages are cut changes.
"""

from __future__ import annotations

import math
import os
import select
import stat
from typing import Final

PARTIAL_LINE_S: Final = 0.05
"""At most this long after its first byte arrived, a line without its newline is forwarded as it is."""
MAX_MESSAGE: Final = 65536
"""Bytes of one SHFwdOutput message at most [choice]: the spec's 5000 would cut lines of 5-64 KiB,
and fewer, larger messages forward a fast writer's output with less work per byte."""
READ_SIZE: Final = 65536
PIPE_BUF: Final = select.PIPE_BUF


class LineAssembler:
    """Cuts one output stream into messages that end at a newline (no I/O here: LS's forwarder
    feeds it what it reads, sends what it returns, and flushes it at `deadline`)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._held = bytearray()
        self.deadline = math.inf
        """When the partial line held now must be forwarded even without its newline (trio time)."""

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """Take `data` (read at time `now`); return the messages that are ready: whole lines, or
        pieces of a partial line that reached `max_message`."""
        fresh = not self._held
        self._held += data
        cut = self._held.rfind(b"\n") + 1
        if cut == 0 and len(self._held) >= self.max_message:
            cut = len(self._held) - len(self._held) % self.max_message
        if cut == 0:
            ready = []
        else:
            ready = split_at_lines(bytes(self._held[:cut]), self.max_message)
            del self._held[:cut]
            fresh = True
        if not self._held:
            self.deadline = math.inf
        elif fresh:
            self.deadline = now + PARTIAL_LINE_S
        return ready

    def flush(self) -> list[bytes]:
        """Everything held, as it is (its deadline passed, or the stream ended)."""
        ready = bytes(self._held)
        self._held.clear()
        self.deadline = math.inf
        return split_at_lines(ready, self.max_message) if ready else []


def split_at_lines(data: bytes, limit: int) -> list[bytes]:
    """`data` in pieces of at most `limit` bytes, each ending at a newline where one is in reach
    (a line longer than `limit` is cut into `limit`-byte pieces)."""
    if len(data) <= limit:
        return [data]
    pieces = []
    start = 0
    while len(data) - start > limit:
        end = data.rfind(b"\n", start, start + limit) + 1
        if end <= start:
            end = start + limit
        pieces.append(data[start:end])
        start = end
    pieces.append(data[start:])
    return pieces


_shared_kinds: dict[int, bool] = {}


def _is_pipe_or_socket(fd: int) -> bool:
    """Whether writes to `fd` can interleave with other writers' (a FIFO or a socket); asked once."""
    shared = _shared_kinds.get(fd)
    if shared is None:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = 0
        shared = _shared_kinds[fd] = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    return shared


def write_lines(fd: int, data: bytes) -> None:
    """Write `data` completely with blocking writes; to a pipe or socket in whole-line pieces of at
    most PIPE_BUF bytes, so that no other writer's output lands inside a line."""
    pieces = split_at_lines(data, PIPE_BUF) if _is_pipe_or_socket(fd) else [data]
    for piece in pieces:
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view) :]
