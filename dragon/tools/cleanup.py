"""`dragon cleanup`: remove what crashed runtimes of this user left behind (spec §8; issue #6).

    dragon cleanup [--dry-run] [RUN_ID ...]

After a crash that killed every service at once (SIGKILL of the whole process group), nobody is left
to tear the run down: its /dev/shm entries (`dragon.<uid>.<run_id>.*`), its runtime directory and any
process that escaped the group (a process whose environment has DRAGON_RUN_ID=<run_id>) stay. This
command finds every run id of this user in those three places and, for each run that is *not live*
(rules in `dragon._runs`: a running launcher or Local Services that is really the recorded one, a run
being brought up, or shared memory in use by a process outside the run), removes them:

1. processes of the run: SIGTERM, up to `TERM_GRACE_S` to exit, then SIGKILL (only processes owned
   by this user, never this command or its ancestors);
2. its /dev/shm entries (only entries owned by this user: the name carries the uid, the owner is
   checked as well);
3. its runtime directory, only if it is provably one (`dragon._rundir.is_run_dir`: named like a run
   id, a real directory of this user's holding nothing but runtime.json); anything else is left and
   said on stderr. A runtime root that is not this user's own directory (a symlink, another user's)
   is refused as a whole (exit status 1): its contents prove nothing.

A live run is never touched; it is listed as kept, with the reason. Nothing of another user is
looked at. With RUN_IDs, only those runs are considered. `--dry-run` lists what would be done and
changes nothing. Every action is printed on stdout, one line each. Exit status 0 (2 on a usage
error, 1 for an unsafe runtime root); something that could not be removed is said on stderr and does not change the status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Final

from dragon import _rundir, _runs
from dragon.transport import SHM_DIR

TERM_GRACE_S: Final = 2.0
KILL_GRACE_S: Final = 2.0
POLL_S: Final = 0.02


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragon cleanup",
        description="Remove the shared memory, runtime directories and leftover processes of your Dragon "
        "runtimes that crashed. Live runtimes are never touched.",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="only these runs (default: all of yours)")
    p.add_argument("-n", "--dry-run", action="store_true", help="only list what would be removed")
    return p


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Poll until every pid in `pids` has exited (zombies count as exited); return those still running."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if (info := _runs.read_proc(p)) is not None and info.running]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_S)


def stop_processes(run: _runs.Run) -> list[tuple[int, str]]:
    """SIGTERM the run's processes, wait up to TERM_GRACE_S, SIGKILL the rest, wait up to KILL_GRACE_S.

    Each pid is checked again just before it is signalled: still ours, still running, still of this
    run. Returns (pid, what happened) for each; bounded by about TERM_GRACE_S + KILL_GRACE_S.
    """
    uid, outcome = os.getuid(), {}
    targets = []
    for pid in run.processes:
        info = _runs.read_proc(pid)
        if info is None or not info.running or info.uid != uid or _runs.environ_run_id(pid) != run.run_id:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        targets.append(pid)
        outcome[pid] = f"stopped process {pid} ({_cmd(info.cmdline)})"
    for pid in _wait_gone(targets, TERM_GRACE_S):
        try:
            os.kill(pid, signal.SIGKILL)
            outcome[pid] = outcome[pid].replace("stopped", "killed (SIGKILL)", 1)
        except ProcessLookupError:
            pass
    for pid in _wait_gone(targets, KILL_GRACE_S):
        outcome[pid] = f"could not stop process {pid}: still running after SIGKILL"
    return sorted(outcome.items())


def _cmd(cmdline: list[str], limit: int = 80) -> str:
    text = " ".join(cmdline) or "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def remove_shm(run: _runs.Run) -> tuple[list[str], list[str]]:
    """Unlink the run's /dev/shm entries that are still there and still ours; (removed, failures)."""
    uid, removed, failed = os.getuid(), [], []
    for name in run.shm:
        path = os.path.join(SHM_DIR, name)
        try:
            if os.lstat(path).st_uid != uid:
                continue
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"cannot remove {path}: {exc.strerror}")
    return removed, failed


def clean_run(run: _runs.Run, dry_run: bool) -> tuple[list[str], list[str]]:
    """Remove what the dead run `run` left, in the order of the module docstring; (done, failures)."""
    done: list[str] = []
    failed: list[str] = []
    if dry_run:
        done += [
            f"would stop process {p} ({_cmd(i.cmdline)})"
            for p in run.processes
            if (i := _runs.read_proc(p)) is not None
        ]
        done += [f"would remove {os.path.join(SHM_DIR, n)}" for n in run.shm]
        if run.directory:
            done.append(f"would remove runtime directory {run.directory}")
        return done, failed
    for _, text in stop_processes(run):
        (failed if text.startswith("could not") else done).append(text)
    removed, shm_failed = remove_shm(run)
    done += [f"removed {path}" for path in removed]
    failed += shm_failed
    if run.directory:
        why_not = _rundir.is_run_dir(run.run_id)
        if why_not:
            failed.append(f"left {run.directory} alone: {why_not}, so it is not a run directory of yours")
        else:
            _rundir.remove_run_dir(run.run_id)
            done.append(f"removed runtime directory {run.directory}")
    return done, failed


def main(argv: list[str]) -> int:
    """`dragon cleanup ARGS`; returns the exit status (0; 2 on a usage error)."""
    opts = parser().parse_args(argv)
    try:
        runs = _runs.survey()
    except _rundir.UnsafeRuntimeRoot as exc:
        print(f"dragon cleanup: error: {exc}", file=sys.stderr)
        return 1
    wanted = set(opts.run_ids) if opts.run_ids else None
    anything = False
    for run_id in sorted(runs):
        run = runs[run_id]
        if wanted is not None and run_id not in wanted:
            continue
        if run.live_reason is not None:
            print(f"kept run {run_id}: live, {run.live_reason}")
            continue
        why = "crashed" if run.info is not None else "left without runtime.json"
        print(f"run {run_id} ({why}):")
        done, failed = clean_run(run, opts.dry_run)
        for line in done:
            print(f"  {line}")
        for line in failed:
            print(f"dragon cleanup: {line}", file=sys.stderr)
        anything = True
    for run_id in sorted((wanted or set()) - set(runs)):
        print(f"nothing of run {run_id} found")
    if not anything and not wanted:
        print("nothing to clean up")
    return 0
