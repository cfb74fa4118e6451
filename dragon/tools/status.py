"""`dragon status`: what a running runtime holds right now (spec §8; issue #6).

    dragon status [RUN_ID] [--json] [--watch [--interval S]] [--timeout S]

Finds this user's running runtimes through their runtime directories (`dragon._rundir`, `dragon._runs`);
with no RUN_ID shows the only one, or lists them and asks to name one. In a run of several nodes
every node has a runtime directory (and a run id) of its own, but only the primary node's (node 0)
has a Global Services, which answers for the whole run: a directory of another node is no runtime
to ask, only part of one. Naming it shows its run if the primary is on this machine too (`--wlm
local`), else says where to ask; listings show such directories apart (`node_dirs`). The tables are Global Services'
own and the process figures Local Services', each asked once over a reply channel of this command
(`dragon.tools.status_query`); everything else is read directly from /proc and shared memory
(`dragon.tools.status_report`), so the command never changes the runtime and never hangs on a stuck
service: one that does not answer within `--timeout` is reported as not answering. It runs no trio
loop: a short-lived, blocking tool. The text is `dragon.tools.status_render`'s; `--json` prints a `StatusReport`
(stable shape, version 2 since runs of several nodes: the structs of `dragon.tools.status_report`
say what each key means and what changed).

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
from dragon.tools.status_render import WIDTH, render, render_node_dirs, render_runs
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


def _node_of(info: _rundir.RunInfo) -> str:
    """How to name a non-primary node's runtime directory, for people."""
    of = f" (its primary's run id is {info.primary_run_id})" if info.primary_run_id else ""
    return f"node {info.node_idx} of a run of {info.nodes} nodes{of}"


def _summary(info: _rundir.RunInfo, now: float) -> RunSummary:
    return RunSummary(
        run_id=info.run_id,
        launcher_pid=info.launcher_pid,
        started=info.started,
        uptime_s=round(now - info.started, 2),
        runtime_dir=_rundir.run_dir(info.run_id),
        nodes=info.nodes,
        node_idx=info.node_idx,
        primary_run_id=info.primary_run_id,
    )


def _pick_run(run_id: str | None, as_json: bool) -> _rundir.RunInfo | int:
    """The RunInfo of the run to show (a primary node's), or the exit status after saying why there is none."""
    try:
        runs = _runs.survey(with_processes=False)
    except _rundir.UnsafeRuntimeRoot as exc:
        _err(str(exc))
        return EXIT_NO_RUNTIME
    if run_id is not None:
        picked = _pick_named(runs, run_id)
        if isinstance(picked, int) or picked.node_idx == 0:
            return picked
        primary = runs.get(picked.primary_run_id) if picked.primary_run_id else None
        if primary is not None and primary.info is not None and primary.live_reason and primary.info.node_idx == 0:
            return primary.info  # its primary is here too (--wlm local): show the whole run
        _err(
            f"runtime directory {run_id} is {_node_of(picked)}: only the run's primary node answers "
            "`dragon status`; ask there"
        )
        return EXIT_NO_RUNTIME
    live = [r.info for r in runs.values() if r.info is not None and r.live_reason is not None]
    primaries = [info for info in live if info.node_idx == 0]
    node_dirs = [info for info in live if info.node_idx > 0]
    if not primaries:
        if node_dirs:
            _err(
                "no primary node of a Dragon runtime of yours is on this machine, which runs "
                + "; ".join(f"{_node_of(info)} in {_rundir.run_dir(info.run_id)}" for info in node_dirs)
                + ": only a run's primary node answers `dragon status`; ask there"
            )
        else:
            _err(f"no Dragon runtime of yours is running (looked in {_rundir.runtime_root()})")
        return EXIT_NO_RUNTIME
    if len(primaries) == 1:
        return primaries[0]
    now = time.time()
    summaries = [_summary(info, now) for info in primaries]
    node_summaries = [_summary(info, now) for info in node_dirs]
    if as_json:
        sys.stdout.write(msgspec.json.encode(RunList(runs=summaries, node_dirs=node_summaries)).decode() + "\n")
    else:
        print(f"{len(primaries)} Dragon runtimes are running; name one: dragon status RUN_ID")
        print(render_runs(summaries))
        if node_summaries:
            print("\nAlso here, nodes of runs of several nodes (their run's primary node answers for them):")
            print(render_node_dirs(node_summaries))
    return EXIT_USAGE


def _pick_named(runs: dict[str, _runs.Run], run_id: str) -> _rundir.RunInfo | int:
    """The RunInfo of the live run `run_id`, or the exit status after saying why there is none."""
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
