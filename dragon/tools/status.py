"""`dragon status`: what a running runtime holds right now (spec §8; issue #6).

    dragon status [RUN_ID] [--json] [--watch [--interval S]] [--timeout S]

Finds this user's running runtimes through their runtime directories (`dragon._rundir`, `dragon._runs`);
with no RUN_ID shows the only one, or lists them and asks to name one. The tables are Global Services'
own and the process figures Local Services', each asked once over a reply channel of this command
(`dragon.tools.status_query`); everything else is read directly from /proc and shared memory
(`dragon.tools.status_report`), so the command never changes the runtime and never hangs on a stuck
service: one that does not answer within `--timeout` is reported as not answering. It runs no trio
loop: a short-lived, blocking tool. The text is `dragon.tools.status_render`'s; `--json` prints a `StatusReport`
(stable shape, version 1: the structs of `dragon.tools.status_report` say what each key means).

Exit status: 0 shown; 1 no runtime running (or RUN_ID is not one); 2 usage error, or several running
and none named (with --json a `RunList`); 3 Global Services did not answer. `--watch` redraws in place
every `--interval` seconds until Ctrl-C (exit 0), one JSON document per refresh with --json, over one
reply channel for the whole session.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from typing import Final

import msgspec

from dragon import _rundir, _runs
from dragon.tools.status_query import StatusClient
from dragon.tools.status_render import WIDTH, render, render_runs
from dragon.tools.status_report import RunList, RunSummary, StatusReport, collect

DEFAULT_TIMEOUT_S: Final = 2.0
DEFAULT_INTERVAL_S: Final = 2.0
CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"

EXIT_OK: Final = 0
EXIT_NO_RUNTIME: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_ANSWERING: Final = 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragon status",
        description="Show the services, processes, channels and pools of a running "
        "Dragon runtime of yours (read-only).",
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="which runtime (needed when several run)")
    p.add_argument("--json", action="store_true", help="print JSON (shape: see `pydoc dragon.tools.status`)")
    p.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"seconds between refreshes with --watch (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"report Global Services as not answering after this long (default {DEFAULT_TIMEOUT_S:g})",
    )
    return p


def _err(text: str) -> None:
    print(f"dragon status: {text}", file=sys.stderr)


def _pick_run(run_id: str | None, as_json: bool) -> _rundir.RunInfo | int:
    """The RunInfo of the run to show, or the exit status after saying why there is none."""
    try:
        runs = _runs.survey(with_processes=False)
    except _rundir.UnsafeRuntimeRoot as exc:
        _err(str(exc))
        return EXIT_NO_RUNTIME
    if run_id is not None:
        run = runs.get(run_id)
        if run is None:
            _err(f"no runtime {run_id} of yours (no {_rundir.run_dir(run_id)})")
            return EXIT_NO_RUNTIME
        if run.info is None:
            _err(
                f"runtime {run_id} is "
                + (
                    "being brought up; try again"
                    if run.live_reason
                    else "not running (it left a directory without runtime.json; `dragon cleanup` removes it)"
                )
            )
            return EXIT_NO_RUNTIME
        if run.live_reason is None:
            _err(
                f"runtime {run_id} is not running (its launcher and Local Services are gone); "
                "`dragon cleanup` removes what it left"
            )
            return EXIT_NO_RUNTIME
        return run.info
    live = [r for r in runs.values() if r.info is not None and r.live_reason is not None]
    if not live:
        _err(f"no Dragon runtime of yours is running (looked in {_rundir.runtime_root()})")
        return EXIT_NO_RUNTIME
    if len(live) == 1:
        assert live[0].info is not None
        return live[0].info
    now = time.time()
    summaries = [
        RunSummary(
            run_id=r.run_id,
            launcher_pid=r.info.launcher_pid,
            started=r.info.started,
            uptime_s=round(now - r.info.started, 2),
            runtime_dir=_rundir.run_dir(r.run_id),
        )
        for r in live
        if r.info is not None
    ]
    if as_json:
        sys.stdout.write(msgspec.json.encode(RunList(runs=summaries)).decode() + "\n")
    else:
        print(f"{len(live)} Dragon runtimes are running; name one: dragon status RUN_ID")
        print(render_runs(summaries))
    return EXIT_USAGE


def main(argv: list[str]) -> int:
    """`dragon status ARGS`; returns the exit status (see the module docstring)."""
    opts = parser().parse_args(argv)
    if opts.timeout <= 0 or opts.interval <= 0:
        _err("--timeout and --interval must be positive")
        return EXIT_USAGE
    picked = _pick_run(opts.run_id, opts.json)
    if isinstance(picked, int):
        return picked
    info = picked
    show: Callable[[StatusReport], None]
    if opts.json:
        enc = msgspec.json.Encoder()

        def show(report: StatusReport) -> None:
            sys.stdout.write(enc.encode(report).decode() + "\n")
            sys.stdout.flush()
    else:

        def show(report: StatusReport) -> None:
            text = render(report, shutil.get_terminal_size((WIDTH, 24)).columns)  # read again: a resize
            sys.stdout.write(CLEAR_SCREEN + text if opts.watch else text)
            sys.stdout.flush()

    try:
        client = StatusClient(info)
    except FileNotFoundError:  # the run ended between finding it and now
        _err(f"runtime {info.run_id} has ended")
        return EXIT_NO_RUNTIME
    try:
        with client:
            while True:
                report = collect(info, client, opts.timeout)
                show(report)
                if not opts.watch:
                    return EXIT_OK if report.answering else EXIT_NOT_ANSWERING
                if _runs.live_reason_from_info(info) is None:
                    _err(f"runtime {info.run_id} has ended")
                    return EXIT_NO_RUNTIME
                time.sleep(opts.interval)
    except KeyboardInterrupt:  # the way out of --watch (the reply channel is removed above)
        return EXIT_OK if opts.watch else 130
    except BrokenPipeError:  # `dragon status | head`
        sys.stderr.close()
        return EXIT_OK
