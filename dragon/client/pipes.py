"""A stdio stream of a managed process that its parent reads or writes (spec §5.5 PIPE).

`Process(..., stdout=PIPE)` gives the started process a `stdout_conn`: the parent reads what the
process writes, to the end of file, after the process has exited too (the channel outlives it until
the parent closes its end). `stdin=PIPE` gives a `stdin_conn` to write to; closing it is the end of
file for the process. Closing any of them lets Global Services destroy the channel
(GSChannelDestroy with dec_ref: the process's own reference went when it exited).
"""

from __future__ import annotations

from dragon.client.requests import channel_release, run
from dragon.errors import InvalidArgument
from dragon.transport import Channel, ChannelDestroyed


class PipeConnection:
    """One end of a PIPE channel: `read`/`read_chunk` for stdout and stderr, `write` for stdin."""

    def __init__(self, sdesc: str, name: str, *, writable: bool) -> None:
        self._chan: Channel | None = Channel.attach(sdesc)
        self.name = name
        self.writable = writable
        self._eof = False

    def _open(self) -> Channel:
        if self._chan is None:
            raise InvalidArgument(f"the pipe {self.name} was closed")
        return self._chan

    def read_chunk(self, timeout: float | None = None) -> bytes:
        """The next piece of output as the process wrote it; b"" at the end of file.

        Raises ChannelEmpty after `timeout` seconds without output."""
        if self.writable:
            raise InvalidArgument(f"{self.name} is the process's stdin: write to it")
        if self._eof:
            return b""
        chunk = self._open().recv(timeout)
        self._eof = not chunk
        return chunk

    def read(self, timeout: float | None = None) -> bytes:
        """Everything up to the end of file (the process closed the stream, or exited)."""
        parts = []
        while chunk := self.read_chunk(timeout):
            parts.append(chunk)
        return b"".join(parts)

    def write(self, data: bytes, timeout: float | None = None) -> None:
        """Send `data` to the process's stdin (any size; it waits while the pipe is full)."""
        if not self.writable:
            raise InvalidArgument(f"{self.name} is output of the process: read from it")
        if data:  # an empty message would be the end of file
            self._open().send(data, timeout)

    def send_eof(self, timeout: float | None = None) -> None:
        """End of file for the process's stdin (an empty message), once: it needs room in the pipe,
        so it waits while the pipe is full, at most `timeout` seconds (then ChannelFull)."""
        if not self.writable:
            raise InvalidArgument(f"{self.name} is output of the process: it has its own end of file")
        if not self._eof:
            self._open().send(b"", timeout)
            self._eof = True

    def close(self, eof: bool = True) -> None:
        """Let go of the pipe (for stdin: end of file first, unless `send_eof` gave it or `eof` is
        False, e.g. for a process that has exited; it waits up to 5 s for room). Idempotent."""
        if self._chan is None:
            return
        chan, self._chan = self._chan, None
        try:
            if self.writable and eof and not self._eof:
                chan.send(b"", 5.0)
        except ChannelDestroyed:
            pass
        finally:
            chan.close()
            run(channel_release(name=self.name, dec_ref=True))

    def __enter__(self) -> PipeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
