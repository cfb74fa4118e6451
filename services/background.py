"""The background launcher: a runtime owned by a plain `python my.py` program (issue #5).

`python -m dragon.services.background --bringup-timeout S` is started by `dragon.client.background` when a
program that was not launched with `dragon` first starts a process with the multiprocessing start
method "dragon" (the program's side, and why, is in that module's docstring). It is the launcher of
`dragon my.py` without a head process: the same bringup (trio imported here once, Local Services
forked before `trio.run`, which forks Global Services), the same `launcher.serve`, the same teardown.

Its fd 0 is the control socket, whose other end the program holds:

- once Global Services takes requests, it writes one JSON line `{"run_id": ...}` (a
  `dragon._rundir.StartReport`); Local Services has written runtime.json by then;
- end of file on the socket means the program is done (its exit handler closed it) or gone (killed:
  the kernel closed it): the runtime is torn down in order, and the launcher exits 0;
- if bringup fails, the launcher first removes everything it made (`launcher.serve` guarantees it),
  then writes `{"error": "..."}` and exits 1. An end of file during bringup stops the bringup and
  cleans up the same way (the program was interrupted).

There is no head, so nothing waits for GSHeadExit: the runtime lives until the program lets go of it
(or it breaks: the launcher then says `dragon: error: ...` on stderr, tears down and exits 1; the
program's next request raises RuntimeNotRunning). SIGTERM and SIGHUP tear down in order as the end
of file does; a second one kills the runtime at once. The launcher runs in the program's process
group, so the terminal's Ctrl-C reaches it with the program: it passes SIGINT on to the runtime's
processes (`RuntimeHandle.interrupt`), as under spawn the terminal's Ctrl-C reaches the children.

Its fds 1 and 2 are the program's: managed processes' output, forwarded by Local Services, goes there
unchanged (`launcher.write_to_own_stdio`), as does the launcher's own `dragon: error:` line.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

# Until trio listens for it (`_main`), a Ctrl-C (this process is in the program's process group) is
# the program's to handle: importing trio takes a moment, and a traceback of ours must not appear.
signal.signal(signal.SIGINT, signal.SIG_IGN)

import msgspec  # noqa: E402
import trio  # noqa: E402

from dragon import _log, _rundir  # noqa: E402
from dragon._pool_sizes import pool_sizes  # noqa: E402
from dragon.errors import leaf_exceptions  # noqa: E402

from . import launcher  # noqa: E402
from ._process import ForkedChild, exit_without_finalization  # noqa: E402
from .local_services import LSConfig  # noqa: E402

CONTROL_FD = 0
EXIT_OK = 0
EXIT_FAILED = 1


@dataclass
class _State:
    handle: launcher.RuntimeHandle | None = None
    scope: trio.CancelScope | None = None
    reported: bool = False
    signals: int = 0


def main(argv: list[str] | None = None) -> int:
    """Bring the runtime up, report on the control socket, serve until its end of file; exit status."""
    p = argparse.ArgumentParser(
        prog="python -m dragon.services.background",
        description="internal: the runtime of a program using the start method 'dragon'",
    )
    p.add_argument("--bringup-timeout", type=float, default=launcher.DEFAULT_BRINGUP_TIMEOUT_S)
    p.add_argument(
        "--fork-server",
        type=_json_list,
        default=[],
        help="JSON list: executable and flags of the program's start-method children (LSConfig.fork_server)",
    )
    opts = p.parse_args(argv)
    try:
        sizes = pool_sizes()
    except ValueError as exc:
        _report(_rundir.StartReport(error=str(exc)))
        return EXIT_FAILED
    run_id = _rundir.new_run_id()
    try:
        _log.configure(None, os.environ.get("DRAGON_LOG_FILE") or f"dragon-{run_id}.log")
        _rundir.create_run_dir(run_id)
    except (ValueError, OSError) as exc:
        _report(_rundir.StartReport(error=f"cannot start the runtime: {exc}"))
        return EXIT_FAILED
    config = LSConfig(
        run_id=run_id,
        bringup_timeout_s=opts.bringup_timeout,
        launcher_pid=os.getpid(),
        inf_seg_sz=sizes.inf_seg_sz,
        default_seg_sz=sizes.default_seg_sz,
        fork_server=opts.fork_server,
    )
    try:
        preforked = launcher.prefork_local_services(config)  # before trio.run: LS inherits the imported trio
    except OSError as exc:
        _rundir.remove_run_dir(run_id)
        _report(_rundir.StartReport(error=f"cannot start Local Services: {exc}"))
        return EXIT_FAILED
    state = _State()
    try:
        trio.run(_main, state, run_id, preforked, opts.bringup_timeout)
    except BaseException as exc:  # the runtime is torn down already; policy below
        # Policy at this boundary: a bringup failure goes to the program as its report (it raises
        # BringupError from Process.start); a runtime that broke once up was said on stderr by the
        # launcher when it happened; anything else is reported (or said, once up) as it is.
        leaves = leaf_exceptions(exc)
        text = "; ".join(str(e) or type(e).__name__ for e in leaves)
        if not state.reported:
            _report(_rundir.StartReport(error=text))
        elif not all(isinstance(e, launcher.RuntimeBroken) for e in leaves):
            os.write(2, f"dragon: error: the background runtime failed: {text}\n".encode())
        return EXIT_FAILED
    return EXIT_OK


def _json_list(text: str) -> list[str]:
    """A JSON list of strings (for --fork-server)."""
    try:
        return msgspec.json.decode(text, type=list[str])
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON list of strings: {exc}") from None


async def _main(state: _State, run_id: str, preforked: tuple[ForkedChild, int, int], bringup_timeout_s: float) -> None:
    control = trio.lowlevel.FdStream(os.dup(CONTROL_FD))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as outer:
            outer.start_soon(_handle_signals, signals, state)
            with trio.CancelScope() as state.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_program_gone, control, state.scope)
                    state.handle = await nursery.start(
                        functools.partial(
                            launcher.serve, run_id=run_id, preforked=preforked, bringup_timeout_s=bringup_timeout_s
                        )
                    )
                    try:
                        await control.send_all(msgspec.json.encode(_rundir.StartReport(run_id=run_id)) + b"\n")
                        state.reported = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        state.scope.cancel()  # the program is gone already: tear down
            outer.cancel_scope.cancel()
    await control.aclose()


async def _until_program_gone(control: trio.lowlevel.FdStream, scope: trio.CancelScope) -> None:
    """End of file on the control socket (the program is done, or dead): tear the runtime down."""
    try:
        while await control.receive_some(4096):
            pass  # the program sends nothing; anything else is ignored
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def _handle_signals(signals: AsyncIterator[int], state: _State) -> None:
    """Ctrl-C (SIGINT, sent by the terminal to the program's process group, ours too) goes on to the
    runtime's processes, as under spawn it reaches the program's children; the program decides
    what follows. The first SIGTERM/SIGHUP tears down in order; a second kills the runtime at once."""
    async for sig in signals:
        if sig == signal.SIGINT:
            if state.handle is not None:
                state.handle.interrupt()
            continue  # during bringup: the program's KeyboardInterrupt closes the control socket
        state.signals += 1
        if state.signals > 1 and state.handle is not None:
            state.handle.force_stop()
        if state.scope is not None:
            state.scope.cancel()


def _report(report: _rundir.StartReport) -> None:
    """Write the report line on the control socket (blocking); a program that has gone is no error."""
    data = msgspec.json.encode(report) + b"\n"
    try:
        while data:
            data = data[os.write(CONTROL_FD, data) :]
    except BlockingIOError:
        pass  # never with one short line in an empty socket buffer: the program reads nothing else
    except OSError:
        pass


if __name__ == "__main__":
    exit_without_finalization(main())
