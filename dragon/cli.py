"""The `dragon` command: run a Python program as the head process of a fresh runtime (spec §7.1).

`dragon [options] PROG [ARGS...]`, `dragon [options] -m MODULE [ARGS...]`, `dragon [options] -c CODE
[ARGS...]`. The head runs as under `python PROG ARGS`: same argv (shifted), working directory and
environment (plus the launch parameters), and the command exits with its exit status (128+N when it
died of signal N, as a shell reports it). The command prints nothing on stdout of its own; its own
messages go to stderr, one `dragon: error: ...` line when something goes wrong.

Ctrl-C: the launcher alone receives the terminal's SIGINT (the runtime has its own process group) and
forwards it to every process of that group but the services (`RuntimeHandle.interrupt`), as the
terminal would to every process of `python my.py`: the head and the program's processes see
KeyboardInterrupt, and the runtime tears down in order when the head exits (exit 130). A second
Ctrl-C kills the runtime at once. SIGTERM to the launcher goes on to the head, as `kill` would reach `python my.py`; if the head
exits within HEAD_TERM_GRACE_S `dragon` exits with the head's status (a program that handles SIGTERM
and exits 0 ends with 0), else the runtime is torn down in order and `dragon` exits 143.

Start-up: trio is imported here, *before* Local Services is forked, so that Local Services and Global
Services (forked from it) inherit it instead of importing it again (services/_process.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol, TypeVar

import trio

from dragon import __version__, _log, _pool_sizes, _rundir, wlm
from dragon.client.requests import head_create, process_kill, run_async
from dragon.errors import BringupError, DragonError, ProcessStartFailed, leaf_exceptions
from dragon.messages import GSHeadExit, Response
from dragon.services import launcher
from dragon.services._process import exit_status_for_shell, exit_without_finalization
from dragon.services.local_services import LSConfig

MP_HINT: Final = (b"multiprocessing", b"dragon")
"""A head whose source names both is expected to use the start method "dragon" (`fork_server_for`)."""
HINT_SCAN_BYTES: Final = 1 << 20  # of a script: its imports are at the top


R = TypeVar("R", bound=Response)
HEAD_TERM_GRACE_S = 2.0  # after SIGTERM, the head's own exit status counts if it exits this soon


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragon",
        description="Run a Python program in a Dragon runtime (managed processes, shm channels).",
        usage="dragon [options] (PROG | -m MODULE | -c CODE) [ARGS...]\n"
        "       dragon status [RUN_ID] [--json] [--watch]   (see: dragon status --help)\n"
        "       dragon cleanup [--dry-run] [RUN_ID ...]     (see: dragon cleanup --help)",
        epilog="environment: DRAGON_INF_SEG_SZ and DRAGON_DEFAULT_SEG_SZ size the infrastructure and default "
        "pools (bytes, or with a suffix K, M, G or T; default 1G and 4G)",
    )
    p.add_argument("--version", action="version", version=f"dragon {__version__}")
    p.add_argument(
        "-l",
        "--log-level",
        metavar="LEVEL",
        help="write a log of the run (DEBUG: every message) to --log-file; env DRAGON_LOG_LEVEL",
    )
    p.add_argument("--log-file", metavar="PATH", help="log file (default: ./dragon-<run id>.log)")
    p.add_argument(
        "--bringup-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=os.environ.get("DRAGON_BRINGUP_TIMEOUT", str(launcher.DEFAULT_BRINGUP_TIMEOUT_S)),
        help="give up if the runtime is not up within this time (default 30; env DRAGON_BRINGUP_TIMEOUT)",
    )
    p.add_argument(
        "-s", "--single-node-override", action="store_true", help="run on this node only, whatever else says more"
    )
    wlm.add_arguments(p)
    p.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as the head, like python -m")
    p.add_argument("-c", dest="code", metavar="CODE", help="run CODE as the head, like python -c")
    p.add_argument("prog", nargs=argparse.REMAINDER, metavar="PROG [ARGS...]")
    return p


def _seconds(text: str) -> float:
    """A positive number of seconds (for --bringup-timeout and DRAGON_BRINGUP_TIMEOUT)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the bringup timeout must be more than 0 seconds")
    return value


def head_command(opts: argparse.Namespace) -> tuple[str, list[str]] | str:
    """The head's executable and argv (spec §2 "Head-process command line"), or an error text."""
    if opts.code is not None:
        return sys.executable, ["-c", opts.code, *opts.prog]
    if opts.module is not None:
        return sys.executable, ["-m", opts.module, *opts.prog]
    if not opts.prog:
        return "no program given: dragon PROG [ARGS...] (or -m MODULE, -c CODE)"
    prog, *args = opts.prog
    if not prog:
        return (
            "the program name '' is empty: give a script (or a directory or zip with __main__.py), -m MODULE or -c CODE"
        )
    found = shutil.which(prog) if os.sep not in prog else (prog if os.access(prog, os.X_OK) else None)
    if found and os.path.isfile(found) and os.access(found, os.X_OK) and not prog.endswith(".py"):
        return os.path.abspath(found), args
    if not os.path.exists(prog):
        return f"can't open file {os.path.abspath(prog)!r}: [Errno 2] No such file or directory"
    return sys.executable, [prog, *args]


def head_env() -> dict[str, str]:
    """What the head's environment adds to ours."""
    if os.isatty(1) and "PYTHONUNBUFFERED" not in os.environ:
        # The head's stdout is a pipe to Local Services, so Python would buffer it in blocks;
        # at a terminal `python my.py` shows each line at once, and so must `dragon my.py`.
        return {"PYTHONUNBUFFERED": "1"}
    return {}


def fork_server_for(exe: str, args: list[str]) -> list[str]:
    """`LSConfig.fork_server` for the head: `[exe, *our interpreter flags]` if it is a Python script
    or `-c CODE` whose source names multiprocessing and dragon (the start method, or the package that
    registers it), else [] (`-m MODULE` is not looked for).

    Only a hint, read before the runtime comes up: such a head gets its fork server booted at once, so
    that its first start finds it ready (a program that then ends at once has paid about 40 ms of CPU
    for it, on the other core); any other Python head gets one PRESTART_DELAY_S after it
    starts unless it has ended by then (a hello world never pays for one), or at its first start. The
    flags are ours, which Local Services (forked from us) has too: the head's children get those of an
    interpreter started in our environment (services/_fast_start.py, `ForkServer.prestart`).
    """
    if exe != sys.executable or len(args) < 1 or args[0] == "-m":
        return []
    if args[0] == "-c":
        source = args[1].encode(errors="surrogateescape")
    else:
        try:
            with open(args[0], "rb") as f:
                source = f.read(HINT_SCAN_BYTES)
        except OSError:  # a directory or zip file with __main__, unreadable: no hint
            return []
    if not all(word in source for word in MP_HINT):
        return []
    return [exe, *subprocess._args_from_interpreter_flags()]  # type: ignore[attr-defined]


def head_labels(exe: str, args: list[str]) -> tuple[str, str]:
    """The head's `label` and `target` for `dragon status` (`ProcessDescriptor`): a Python head is
    multiprocessing's `MainProcess`, running its script (by file name), `-m`'s module or `-c CODE`;
    another program has neither (its command line says what it is)."""
    if exe != sys.executable or not args:
        return "", ""
    if args[0] == "-m":
        return "MainProcess", args[1]
    if args[0] == "-c":
        return "MainProcess", f"-c {args[1]}"
    return "MainProcess", os.path.basename(args[0])


class Handle(Protocol):
    """What a run is driven with: the single-node launcher's `RuntimeHandle`, or the frontend's of a
    run of many nodes (services/frontend.py)."""

    async def call(self, req: Any, response_type: type[R]) -> R: ...
    async def send_input(self, p_uid: int, data: bytes, *, confirm: bool = False) -> None: ...
    async def wait_head_exit(self) -> GSHeadExit: ...
    def force_stop(self) -> None: ...
    def interrupt(self) -> None: ...


StartRuntime = Callable[..., Awaitable[None]]
"""`launcher.serve` or `frontend.serve` with their arguments bound: started in a nursery, it reports a Handle."""


@dataclass
class _Run:
    handle: Handle | None = None
    head_puid: int | None = None
    interrupts: int = 0
    terminated: bool = False
    code: int | None = None
    program_scope: trio.CancelScope | None = None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dragon` console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "status":
        from dragon.tools import status

        return status.main(args[1:])
    if args and args[0] == "cleanup":
        from dragon.tools import cleanup

        return cleanup.main(args[1:])
    opts = _parser().parse_args(args)
    cmd = head_command(opts)
    if isinstance(cmd, str):
        print(f"dragon: error: {cmd}", file=sys.stderr)
        return 2
    try:
        plan = None
        if not opts.single_node_override:
            plan = wlm.plan_nodes(
                nodes=opts.nodes, hosts=opts.hosts, hostfile=opts.hostfile, wlm=opts.wlm, primary=opts.primary
            )
    except wlm.WLMError as exc:
        print(f"dragon: error: {exc}", file=sys.stderr)
        return 2
    if plan is not None:
        return _main_many_nodes(opts, plan, cmd)
    try:
        sizes = _pool_sizes.pool_sizes()
    except ValueError as exc:
        print(f"dragon: error: {exc}", file=sys.stderr)
        return 2
    run_id = _rundir.new_run_id()
    try:
        _log.configure(opts.log_level, opts.log_file or os.environ.get("DRAGON_LOG_FILE") or f"dragon-{run_id}.log")
    except ValueError as exc:
        print(f"dragon: error: {exc}", file=sys.stderr)
        return 2
    try:
        _rundir.create_run_dir(run_id)
    except OSError as exc:
        print(f"dragon: error: cannot make the runtime directory: {exc}", file=sys.stderr)
        return 1
    env = head_env()
    config = LSConfig(
        run_id=run_id,
        bringup_timeout_s=opts.bringup_timeout,
        launcher_pid=os.getpid(),
        inf_seg_sz=sizes.inf_seg_sz,
        default_seg_sz=sizes.default_seg_sz,
        fork_server=fork_server_for(*cmd),
        fork_server_env=env,
    )
    preforked = launcher.prefork_local_services(config)  # before trio.run: see the module docstring
    start = functools.partial(
        launcher.serve, run_id=run_id, preforked=preforked, bringup_timeout_s=opts.bringup_timeout
    )
    return _run_and_report(start, cmd, env)


def _main_many_nodes(opts: argparse.Namespace, plan: wlm.NodePlan, cmd: tuple[str, list[str]]) -> int:
    """`dragon` with more than one node (MULTINODE §1): the frontend, ZeroMQ and the keys of this run.
    Imported here: a single-node run never imports ZeroMQ."""
    from dragon.services import frontend
    from dragon.transport.zsecurity import RunKeys

    run_id = _rundir.new_run_id()
    log_file = opts.log_file or os.environ.get("DRAGON_LOG_FILE") or f"dragon-{run_id}.log"
    try:
        log_file = _log.configure(opts.log_level, log_file) or ""
    except ValueError as exc:
        print(f"dragon: error: {exc}", file=sys.stderr)
        return 2
    if opts.transport_security == "none":
        print(
            "dragon: warning: --transport-security none: traffic between nodes is neither authenticated "
            "nor encrypted (use it on a trusted fabric only)",
            file=sys.stderr,
        )
    launch = frontend.Launch(
        plan=plan,
        keys=None if opts.transport_security == "none" else RunKeys.make(),
        label=opts.label,
        bringup_timeout_s=opts.bringup_timeout,
        frontend_addr=opts.frontend_addr or "",
        log_level=opts.log_level or os.environ.get("DRAGON_LOG_LEVEL"),
        log_file=log_file or None,
        run_id=run_id,
        fork_server=fork_server_for(*cmd),
        fork_server_env=head_env(),
    )
    if plan.wlm == "local" and not os.environ.get(wlm.LOCAL_WRAP_ENV):
        launch.forked = frontend.fork_backends(plan.n)  # before trio.run, as the single-node LS is
    return _run_and_report(functools.partial(frontend.serve, launch), cmd, head_env())


def _run_and_report(start: StartRuntime, cmd: tuple[str, list[str]], env: dict[str, str]) -> int:
    """Run the program on the runtime `start` brings up; say a bringup failure on one line."""
    try:
        return trio.run(_main, start, cmd, env)
    except BaseExceptionGroup as group:
        # Policy at this boundary: a bringup failure is said here; a runtime that broke while running
        # was reported by the launcher when it happened; anything else is a bug and is raised as is.
        known, rest = group.split((BringupError, launcher.RuntimeBroken))
        if rest is not None:
            raise
        bringup, _ = known.split(BringupError) if known is not None else (None, None)
        for err in leaf_exceptions(bringup) if bringup is not None else []:
            print(f"dragon: error: {err}", file=sys.stderr)
        return 1


async def _main(start: StartRuntime, cmd: tuple[str, list[str]], env: dict[str, str]) -> int:
    run = _Run()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:
            outer.start_soon(_handle_signals, signals, run)
            with trio.CancelScope() as run.program_scope:
                await _run_program(run, start, cmd, env)
            if run.code is None and run.terminated:  # the head did not exit in time after SIGTERM
                run.code = 128 + signal.SIGTERM
            outer.cancel_scope.cancel()
    return 1 if run.code is None else run.code


async def _run_program(run: _Run, start: StartRuntime, cmd: tuple[str, list[str]], env: dict[str, str]) -> None:
    async with trio.open_nursery() as nursery:
        run.handle = await nursery.start(start)
        exe, args = cmd
        label, target = head_labels(exe, args)
        try:
            desc = await run_async(run.handle, head_create(exe, args, env, label=label, target=target))
        except ProcessStartFailed as exc:
            print(f"dragon: error: the program did not start: {exc}", file=sys.stderr)
            run.code = 1
            nursery.cancel_scope.cancel()
            return
        run.head_puid = desc.p_uid
        nursery.start_soon(_forward_stdin, run.handle, run.head_puid)
        head_exit = await run.handle.wait_head_exit()
        if run.code is None:
            run.code = exit_status_for_shell(head_exit.exit_code)
        nursery.cancel_scope.cancel()


async def _forward_stdin(handle: Handle, p_uid: int) -> None:
    """Our stdin goes to the head (SHFwdInput), end of file included (an empty input)."""
    while True:
        try:
            data = await trio.to_thread.run_sync(os.read, 0, launcher.INPUT_CHUNK, abandon_on_cancel=True)
        except OSError:
            data = b""
        await handle.send_input(p_uid, data)
        if not data:
            return


async def _handle_signals(signals: trio.abc.AsyncIterator[int], run: _Run) -> None:  # type: ignore[name-defined]
    async for sig in signals:
        if sig == signal.SIGTERM:
            if (
                not run.terminated
                and run.handle is not None
                and run.head_puid is not None
                and run.program_scope is not None
            ):
                # SIGTERM is the head's to handle, as under `python my.py`: if it exits within the
                # grace, `dragon` exits with its status; if not, teardown stops it (143).
                run.terminated = True
                trio.lowlevel.spawn_system_task(_terminate_head, run.handle, run.head_puid)
                run.program_scope.deadline = trio.current_time() + HEAD_TERM_GRACE_S
                continue
            run.code = 128 + signal.SIGTERM if run.code is None else run.code
            if run.program_scope is not None:
                run.program_scope.cancel()
            continue
        run.interrupts += 1
        if run.interrupts == 1 and run.handle is not None and run.head_puid is not None:
            run.handle.interrupt()
        else:
            run.code = 128 + signal.SIGINT
            if run.handle is not None and run.interrupts > 1:
                os.write(2, b"dragon: interrupted again: killing the runtime\n")
                run.handle.force_stop()
            if run.program_scope is not None:
                run.program_scope.cancel()


async def _terminate_head(handle: Handle, p_uid: int) -> None:
    """SIGTERM for the head (the launcher got it), through GS; a runtime that broke has ended it."""
    try:
        await run_async(handle, process_kill(p_uid, signal.SIGTERM))
    except DragonError:  # RuntimeBroken, or the head has gone meanwhile
        pass


def entry() -> NoReturn:
    """The `dragon` console script: `main`, then leave without the interpreter's finalization
    (`exit_without_finalization`): by then the runtime is gone and everything said is flushed."""
    exit_without_finalization(main())


if __name__ == "__main__":
    entry()
