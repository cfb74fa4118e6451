"""Local Services' copying of a managed process's stdio (spec §5.5): its output into SHFwdOutput
messages of whole lines or into its PIPE channels, and a PIPE channel into its stdin.

A full channel slows the program down (its pipe fills) instead of losing output; the last bytes of a
process are forwarded even when its task is cancelled.
"""

from __future__ import annotations

import logging

import trio

from dragon.messages import (
    FdNum,
    SHFwdOutput,
)
from dragon.transport import (
    ChannelDestroyed,
    TrioChannel,
)

from ._ls_core import LSCore, ManagedProcess
from ._output import READ_SIZE, LineAssembler

log = logging.getLogger(__name__)


class StdioForwarding(LSCore):
    async def _forward_all_output(self, mp: ManagedProcess) -> None:
        """Forward the process's output; `forwarders_done` once what goes to the launcher has ended.

        A PIPE stream is copied in LS's root nursery instead, until its end of file, however long
        after the process's exit that is: its reader may read late (`wait()`, then `read()`) or a
        child of the process may hold the pipe, and nothing of it is dropped (the copy waits while
        the channel is full, and ends when the reader lets the channel go, or at teardown). The
        output for the launcher is given DRAIN_AFTER_EXIT_S after the exit, as before."""
        async with trio.open_nursery() as nursery:
            for stream, fd_num, name in (
                (mp.proc.stdout, FdNum.STDOUT, "stdout"),
                (mp.proc.stderr, FdNum.STDERR, "stderr"),
            ):
                if stream is not None:
                    owner = self.nursery if name in mp.pipes else nursery
                    owner.start_soon(self._forward_output, mp, stream, fd_num)
        mp.forwarders_done.set()

    async def _forward_output(self, mp: ManagedProcess, stream: trio.abc.ReceiveStream, fd_num: FdNum) -> None:
        """Copy one output pipe into SHFwdOutput messages of whole lines (services/_output.py), or
        into the stream's PIPE channel (spec §5.5) as it comes, ending with an empty message for end
        of file.

        Sending waits while the channel is full, so a slow reader slows the program down (its pipe
        fills) instead of losing output. If the PIPE channel was destroyed, the rest of the output
        goes to the launcher, prefixed `[orphaned output]: ` (spec §5.5). A partial line still held
        when the stream ends, or when this task is cancelled (the process exited and something else
        keeps its pipe open), is forwarded before this returns.
        """
        pipe = mp.pipes.get("stdout" if fd_num == FdNum.STDOUT else "stderr")
        chan = TrioChannel.attach(pipe) if pipe else None
        lines = LineAssembler()

        async def to_launcher(messages: list[bytes]) -> None:
            for data in messages:
                mp.printed = True
                await self.to_la.send(SHFwdOutput(p_uid=mp.p_uid, fd_num=fd_num, data=data, pid=mp.proc.pid))

        try:
            while True:
                chunk = None
                with trio.move_on_at(lines.deadline):
                    chunk = await stream.receive_some(READ_SIZE)
                if chunk is None:  # a partial line waited long enough: forward it as it is
                    await to_launcher(lines.flush())
                    continue
                if not chunk:
                    break
                if fd_num == FdNum.STDERR and mp.hide_stderr:
                    continue
                if chan is not None:
                    try:
                        await chan.send(bytes(chunk))
                        continue
                    except ChannelDestroyed:
                        await chan.aclose()
                        chan = None
                    chunk = b"[orphaned output]: " + bytes(chunk)
                await to_launcher(lines.feed(bytes(chunk), trio.current_time()))
            if chan is not None:
                with trio.move_on_after(5):  # end of file for the reader
                    await chan.send(b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelDestroyed):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await to_launcher(lines.flush())  # the last bytes of a process are never lost
                if chan is not None:
                    await chan.aclose()

    async def _feed_stdin_from_channel(self, mp: ManagedProcess, pipe: str, initial: bytes) -> None:
        """Spec §5.5 stdin=PIPE: `initial` (initial_stdin), then what the parent sends on the channel
        goes to the process's stdin; an empty message (or the channel's destruction) means end of file."""
        stdin = mp.proc.stdin
        assert stdin is not None
        try:
            if initial:
                await stdin.send_all(initial)
            async with TrioChannel.attach(pipe) as chan:
                while data := await chan.receive():
                    await stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelDestroyed):
            log.info("stdin of p_uid=%d is closed: input dropped", mp.p_uid)
        finally:
            await trio.aclose_forcefully(stdin)
