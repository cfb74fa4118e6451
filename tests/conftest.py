"""Rules of this test suite, and the leak check that enforces the most important one.

- Tests use real processes, real shared memory and the real `dragon` command; no mocks of our runtime.
- No `sleep()` to wait for a state: wait for the event itself, with `trio.fail_after` or a bounded poll.
- Every test is followed by a leak check (the autouse fixture below): no /dev/shm entry of this user's
  runtimes (`dragon.<uid>.*`), no runtime directory and no descendant process may outlive it.
  Entries and directories of a runtime that is still live once our own leftover processes are gone
  belong to another session on this machine (another developer's test run, a benchmark): they are
  left alone, neither reported nor removed, so that concurrent test runs never damage each other. The test process makes itself a
  child subreaper, so even processes whose parent died (a killed service's children) are reparented to
  it and can be seen, reaped and, if still running, killed and reported.
- Speed is measured by the benchmarks in tools/, never asserted here.

Isolated virtual clusters (tests/multinode/netns.py, on the path through pyproject's `pythonpath`) for
tests/multinode and the e2e tests run across nodes: `cluster` is a 2-node `VirtualCluster` (parametrize
it indirectly for another size), `make_cluster(n)` makes any number. After the test each cluster must be
empty (no process in its namespaces, no entry in any node's /dev/shm, after the same grace), or the test
fails naming what was left; either way everything is killed and removed. When the test itself failed,
only the cleanup runs (its leftovers are a symptom, not news). They skip, saying why, only without root
or without `ip`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Generator, Iterator

import pytest

from dragon import _runs
from dragon._rundir import runtime_root
from dragon.services._process import become_subreaper
from dragon.transport import SHM_DIR, entries, user_prefix

from netns import VirtualCluster, sweep_stale, unavailable

LEAK_GRACE_S = 10.0  # how long a test's processes may take to finish exiting after it returns


become_subreaper()


def _children() -> dict[int, str]:
    """Direct children of this process (with the subreaper: every orphaned descendant too)."""
    me = os.getpid()
    return {p.pid: f"{p.state} {' '.join(p.cmdline)}" for p in _runs.all_processes() if p.ppid == me}


def _run_dirs() -> set[str]:
    try:
        return set(os.listdir(runtime_root()))
    except FileNotFoundError:
        return set()


def _live_runs(*, with_processes: bool) -> set[str]:
    """Run ids of runtimes that are live now: their launcher or Local Services runs, or (with
    `with_processes`) a process maps their shared memory. The last rule finds another session's
    runtime whose directory is not under our runtime root (a benchmark gives its runs a private
    XDG_RUNTIME_DIR): its entries must never be taken for ours, let alone removed."""
    return {rid for rid, run in _runs.survey(with_processes=with_processes).items() if run.live_reason}


def _not_live(shm: list[str], dirs: list[str]) -> tuple[list[str], list[str]]:
    live = _live_runs(with_processes=bool(shm))
    return ([n for n in shm if _runs.run_id_of_entry(n) not in live], [d for d in dirs if d not in live])


def _reap_zombies(pids: dict[int, str]) -> dict[int, str]:
    """Reap the exited ones among `pids` (only those: never wait(-1)); return the ones still running."""
    alive = {}
    for pid, desc in pids.items():
        if desc.startswith("Z"):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        else:
            alive[pid] = desc
    return alive


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a /dev/shm entry of ours or a live descendant process behind."""
    shm_before = set(entries(user_prefix()))
    dirs_before = _run_dirs()
    procs_before = set(_children())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:  # bounded poll: processes of a finished teardown may need a moment to be reaped
        procs_new = _reap_zombies({p: d for p, d in _children().items() if p not in procs_before})
        shm_new, dirs_new = _not_live(
            sorted(set(entries(user_prefix())) - shm_before), sorted(_run_dirs() - dirs_before)
        )
        if (not shm_new and not procs_new and not dirs_new) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in procs_new:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if procs_new:  # our leftover runtime is dead now: its entries count as ours
        shm_new, dirs_new = _not_live(
            sorted(set(entries(user_prefix())) - shm_before), sorted(_run_dirs() - dirs_before)
        )
    for name in shm_new:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except FileNotFoundError:
            pass
    for run in dirs_new:
        shutil.rmtree(os.path.join(runtime_root(), run), ignore_errors=True)
    problems = []
    if dirs_new:
        problems.append(f"runtime directories left in {runtime_root()}: {dirs_new}")
    if shm_new:
        problems.append(f"shared-memory entries left in {SHM_DIR}: {shm_new}")
    if procs_new:
        problems.append(f"processes left running (now killed): {procs_new}")
    if problems:
        pytest.fail("leak check: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the real binary, never a pyenv shim)."""
    return sys.executable


# ------------------------------------------------------------------ isolated virtual clusters (netns.py)
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the item, for the fixtures' teardown to see whether it failed."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_clusters() -> None:
    """Remove what a crashed earlier run left (its namespaces, processes, directories) once per session."""
    if unavailable() is None:
        sweep_stale()


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[[int], VirtualCluster]]:
    """Factory of open virtual clusters of n nodes, checked and removed after the test."""
    if reason := unavailable():
        pytest.skip(reason)
    made: list[VirtualCluster] = []

    def make(n: int) -> VirtualCluster:
        cluster = VirtualCluster(n)
        cluster.open()
        made.append(cluster)
        return cluster

    yield make
    report = request.node.stash.get(_CALL_REPORT, None)
    check = report is not None and report.passed
    problems = []
    for cluster in made:
        left = cluster.wait_clear(LEAK_GRACE_S) if check else {}
        try:
            cluster.close()
        except RuntimeError as e:
            problems.append(str(e))
        if left:
            problems.append(f"left in virtual cluster {cluster.prefix} (now killed and removed): {left}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, make_cluster: Callable[[int], VirtualCluster]) -> VirtualCluster:
    """An open 2-node virtual cluster (another size: `@pytest.mark.parametrize("cluster", [3], indirect=True)`)."""
    return make_cluster(getattr(request, "param", 2))
