"""Local Services' watch over Global Services: spec §3.2 "GSMonitor", as trio tasks.

GS is LS's critical child: its stdout carries nothing but framed messages (GSHalted at the end of a
normal run, AbnormalTermination when GS fails), anything on its stderr is fatal (a traceback), and its
exit before GSHalted breaks the runtime. `GSMonitor.watch` runs from LS's first step (GS is forked
before LS's loop starts and waits for its launch parameters), so a GS that dies during bringup is
noticed at once. What it sees goes to `report`, which LS sets: during bringup a failure ends the
bringup; afterwards LS forwards GSHalted to the launcher and turns failures into AbnormalTermination.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from dragon.messages import AbnormalTermination, GSHalted, GSStdoutOutbound
from dragon.transport import FrameStream, MessageChannel, ProtocolError

from ._process import ForkedChild, describe_exit

log = logging.getLogger(__name__)

STDERR_EXCERPT: Final = 4096  # what of GS's stderr is read before it counts as fatal (a traceback)
HALTED_AFTER_EXIT_S: Final = 1.0  # GSHalted, written just before GS exited, may still be in the pipe

Report = Callable[[GSHalted | AbnormalTermination], Awaitable[None]]


class GSMonitor:
    """Watches GS's stdout, stderr and exit (spec §3.2) and reports what it sees to `report`."""

    def __init__(self, proc: ForkedChild, stdout: int, stderr: int, report: Report) -> None:
        self.proc = proc
        self.report = report
        """Where GSHalted and failures go; LS replaces it once its bringup is over."""
        self._stdout, self._stderr = stdout, stderr
        self.halted = trio.Event()
        """Set once GS wrote GSHalted, or exited (a dead GS has halted too)."""
        self.exited = trio.Event()
        self._stdout_done = trio.Event()

    async def watch(self) -> None:
        """Until GS exited and its pipes ended (their fds are closed then); failures go to `report`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_stdout)
            nursery.start_soon(self._read_stderr)
            nursery.start_soon(self._watch_exit)

    async def _read_stdout(self) -> None:
        link = MessageChannel[GSStdoutOutbound](
            FrameStream(trio.lowlevel.FdStream(self._stdout), name="GS stdout"), GSStdoutOutbound, name="GS stdout"
        )
        try:
            async for msg in link:
                if isinstance(msg, GSHalted):
                    self.halted.set()
                    await self.report(msg)  # spec §3.1 m5
                    return
                await self.report(msg)  # an AbnormalTermination of GS's own
        except ProtocolError as exc:
            await self.report(AbnormalTermination(err_info=f"Global Services wrote garbage on its stdout: {exc}"))
        finally:
            self._stdout_done.set()
            await trio.aclose_forcefully(link)

    async def _read_stderr(self) -> None:
        stream = trio.lowlevel.FdStream(self._stderr)
        text = b""
        try:
            while chunk := await stream.receive_some(65536):
                text += chunk
                if len(text) > STDERR_EXCERPT:
                    break
        finally:
            await trio.aclose_forcefully(stream)
        if text:  # spec §3.2: output of a critical process on stderr is fatal
            said = text.decode(errors="replace")
            log.error("Global Services wrote on stderr:\n%s", said)
            await self.report(AbnormalTermination(err_info="Global Services wrote on its stderr: " + said[-2000:]))

    async def _watch_exit(self) -> None:
        code = await self.proc.wait()
        self.exited.set()
        with trio.move_on_after(HALTED_AFTER_EXIT_S):
            await self._stdout_done.wait()
        if not self.halted.is_set():
            self.halted.set()
            await self.report(
                AbnormalTermination(err_info=f"Global Services (pid {self.proc.pid}) died {describe_exit(code)}")
            )
            # GS is gone, so it has halted: say so, and LA's teardown need not wait for it (§3.1 m5).
            await self.report(GSHalted())
