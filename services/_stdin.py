"""A managed process's stdin as Local Services feeds it: SHFwdInput and initial_stdin (spec §4.5, §5.5).

Input arrives in SHFwdInput messages, in order, and is queued (up to `INPUT_BUFFER_MSGS` chunks) for
a task that writes it into the process's stdin pipe, so a process that reads its stdin late holds up
nobody. An empty input is end of file: the pipe is closed. `initial_stdin` of SHProcessCreate is the
first chunk.

With `confirm`, the sender is told whether its input was written (SHFwdInputErr). Spec §4.5 fails a
confirmed input that is not written within 10 ms; here **[choice]** it is `CONFIRM_WITHIN_S`: 10 ms
fails a process that is merely busy for a moment. As the spec says, a failed input closes the
process's stdin (the rest of what was queued is dropped), so the sender never sees a later input of
the same stream arrive after one it was told had failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import trio

log = logging.getLogger(__name__)

INPUT_BUFFER_MSGS: Final = 65536  # SHFwdInput chunks queued per process that does not read its stdin
CONFIRM_WITHIN_S: Final = 1.0


@dataclass
class Chunk:
    """One input, queued; with confirmation, `done` is set once it is in the pipe or `error` says why not."""

    data: bytes
    done: trio.Event | None = None
    error: str = ""


@dataclass
class ForwardedStdin:
    """The stdin pipe of one process, fed from its queue by `feed` (a task of the process's nursery)."""

    p_uid: int
    stream: trio.abc.SendStream
    failed: str = ""
    """Why the stdin is closed for good ("" while input is taken)."""
    _queue: tuple[trio.MemorySendChannel[Chunk], trio.MemoryReceiveChannel[Chunk]] = field(
        default_factory=lambda: trio.open_memory_channel[Chunk](INPUT_BUFFER_MSGS)
    )

    def put(self, data: bytes, *, confirm: bool = False) -> Chunk:
        """Queue `data` (b"" = end of file); with `confirm`, `confirmed` then waits for it.

        Raises:
          InputRefused: the stdin is closed, or its queue is full; nothing was queued.
        """
        if self.failed:
            raise InputRefused(f"the stdin of process {self.p_uid} is closed ({self.failed})")
        chunk = Chunk(data, trio.Event() if confirm else None)
        try:
            self._queue[0].send_nowait(chunk)
        except trio.WouldBlock:
            raise InputRefused(
                f"process {self.p_uid} does not read its stdin: {INPUT_BUFFER_MSGS} inputs wait for it already"
            ) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise InputRefused(f"the stdin of process {self.p_uid} is closed") from None
        return chunk

    async def confirmed(self, chunk: Chunk) -> str:
        """ "" once `chunk` (put with `confirm`) is in the pipe; else why not, having closed the stdin."""
        assert chunk.done is not None
        with trio.move_on_after(CONFIRM_WITHIN_S):
            await chunk.done.wait()
        if not chunk.done.is_set():
            chunk.error = f"it was not written within {CONFIRM_WITHIN_S} s"
            self.failed = self.failed or chunk.error
            log.info("stdin of p_uid=%d: %s: closing it", self.p_uid, chunk.error)
            await trio.aclose_forcefully(self.stream)
        return f"input for process {self.p_uid} not written: {chunk.error}" if chunk.error else ""

    async def feed(self) -> None:
        """Write what is queued, in order, until end of file or a broken pipe; then close the pipe.
        Waiters of confirmed chunks are released either way."""
        receive = self._queue[1]
        pending: list[Chunk] = []  # the chunk being written, if the pipe breaks under it
        try:
            async for chunk in receive:
                pending = [chunk]
                if chunk.data:
                    await self.stream.send_all(chunk.data)
                pending = []
                if chunk.done is not None:
                    chunk.done.set()
                if not chunk.data:
                    self.failed = "end of file was sent"
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.failed = self.failed or "the process has closed it"
            log.info("stdin of p_uid=%d is closed: input dropped", self.p_uid)
        finally:
            self.failed = self.failed or "the process has exited"
            self._queue[0].close()
            for chunk in pending + _drain(receive):
                if chunk.done is not None and not chunk.done.is_set():
                    chunk.error = self.failed
                    chunk.done.set()
            await trio.aclose_forcefully(self.stream)


def _drain(receive: trio.MemoryReceiveChannel[Chunk]) -> list[Chunk]:
    chunks = []
    while True:
        try:
            chunks.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return chunks


class InputRefused(Exception):
    """SHFwdInput cannot be taken (the text says why)."""
