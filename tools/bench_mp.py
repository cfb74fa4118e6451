"""Benchmark the multiprocessing start method "dragon" against "spawn", the same programs in one run.

Every measurement is one small program (written to a temporary directory) that uses only the standard
multiprocessing API through `multiprocessing.get_context(METHOD)`. It runs under plain `python` with
"spawn" and under the `dragon` command (next to sys.executable) with "dragon", each run in its own
interpreter. The program times itself with time.perf_counter, after interpreter and runtime start-up,
and prints one JSON report that this driver parses. Rows (--rows selects some; keys in brackets):

- [first_start] A program's first `Process(target=abs)` started and joined, its first use of
  multiprocessing after its imports (`import multiprocessing`, and `import dragon` under "dragon"):
  from just before `Process(...)` to the end of `join()`. It includes what each method does only
  the first time: spawn imports its Popen and starts the resource tracker; dragon does that too,
  imports its client and connects to Global Services, and may wait for its fork server to boot
  (the program names multiprocessing and dragon, so the runtime boots it as it comes up: see
  services/_fast_start.py). Its client imports msgspec, which imports typing_extensions where the
  development extras installed it (`dev_only_imports`: the run says so). [first_start_bg] (informational) the same under plain `python` with the
  start method "dragon": the first start brings a background runtime up (dragon.client.background).
- [first_pool] `Pool(2)` as a program's first use of multiprocessing, from just before `Pool(2)`
  until both workers have answered, as [pool_start] below (its programs also begin with the Pool).
- [procs16, procs64] N `Process(target=abs)` started one after the other, then all joined: time of
  the whole (start loop + joins).
- [queue64, queue1m] Queue one-way throughput: a producer child puts warm-up + N messages (one
  `bytes` of 64 B or 1 MiB) and a None sentinel; the parent gets the warm-up messages (the first of
  which waits for the child's start), then the clock runs from just before the first timed `get` to
  the return of the `get` that yields the sentinel. The producer is free to run ahead (Queue.put
  buffers), so this is what a consumer sees of a busy producer: messages/s (MiB/s for 1 MiB).
- [pipe_rt, queue_rt] Round trip of an 8-byte message echoed by a child: `Pipe()` (send/recv on both
  ends) and two Queues (put/get); warm-up round trips excluded; mean time per timed round trip.
  The parent runs on the first CPU and the child on the second (`_pin`, on a machine with two or
  more, under both methods): on these VMs a round trip takes about 20 µs or about 150 µs depending
  on where the scheduler places the two, which otherwise decides the median. `--unpinned` leaves
  the placement to the scheduler (issue 15 states its targets both ways).
- [pool1, pool100] `Pool(2).map(abs, range(10000), chunksize=1 / 100)`: the map call only, once both
  workers are up. [pool_start] (informational) from the same programs: `Pool(2)` creation until both
  workers have answered (2-task maps of a 10 ms sleep returning the worker's pid, repeated until two
  pids come back; so at least 10 ms).
- [lock] Lock acquire/release pairs per second in one process (uncontended), timed after one
  process was started and joined (so that start-up work of either method, such as dragon's fork
  server booting on the other CPU, is over: it halves a single thread's speed on these VMs), through
  the bound methods (the stdlib's fastest way); [lock_with] (informational) the same as `with lock:`,
  the way locks are mostly used. [lock2] two processes each doing N pairs on one Lock, started
  together by a Barrier.
- [event] Event ping-pong between two processes with two Events (set / wait / clear): mean time per
  round trip, warm-up excluded; the two processes on two CPUs, as for the round trips.
- [barrier] `Barrier(4)` waited on by the program and 3 child processes, round after round: mean time
  per round, warm-up rounds excluded (not pinned: 4 processes, 2 CPUs).

The methods are interleaved (which goes first alternates by repetition and program), each figure is
the median over --runs repetitions. The ratio column is "how many times better dragon is": dragon /
spawn for rates, spawn / dragon for times, so above 1 always means dragon is better. Targets (issue
#5): no row slower than spawn (ratio >= 1), Queue 64 B and 1 MiB throughput >= 3x, Pool.map with
chunksize 1 >= 2x; informational rows have none. A 1x row below 1 whose two methods cannot be told
apart in the run (each median within the other's min-max range) is shown as "tie" and counted as
met: that is run-to-run noise, not a slower row. The first-use rows depend on whether dragon's own
modules have bytecode caches (.pyc files): without them (an editable install under
PYTHONDONTWRITEBYTECODE) every process that imports the client compiles it (about 15 ms of CPU here),
while the standard library spawn imports is always compiled. The run says when they are missing. A miss is reported, not an error; a program that
fails (non-zero exit, no report, timeout) under either method stops the run with exit status 1 and its
stderr shown. Progress goes to stderr; stdout gets a Markdown table, then one line of JSON.

--reference VENV adds a third method, "reference": the same programs under the reference runtime
(`dragonhpc` installed in VENV, never a dependency of ours) through VENV/bin/dragon, VENV/bin first on
PATH, the program setting the start method "dragon" after `import dragon`; the same pinning (`_pin`
runs in the program). The /dev/shm/DD* files that appear during its run (it leaves them) are removed.
The table gets its column and, for the rows issue 15 names a target for, dragon against the reference
and that target ("Pipe round trip at most 0.5x spawn's and no slower than the reference's": >= 2x vs
spawn, >= 1x vs reference; the tie rule for every 1x "no slower than"). A program that fails under the
reference shows "n/a", with the reason in a note. --load N runs N CPU-bound processes (busy loops)
from before each program starts until it has ended: the figures under load (issue 15: the reference's
waits spin).

Usage: python tools/bench_mp.py [--runs 3] [--quick] [--rows queue64 pool1 ...] [--timeout 300]
       [--reference VENV] [--load N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_util import fmt, json_line, machine_info, md_table, reference_shm_removed, summary

MiB = 1 << 20
METHODS = ("spawn", "dragon")
MARK = "BENCH_MP_REPORT "
Report = dict[str, float]

# The measured program. Only the standard multiprocessing API; `dragon` is imported only by the main
# process under "dragon" (spawn's children re-import this module: no extra imports for them).
PROGRAM = '''\
"""bench_mp program: python|dragon PROG METHOD CASE PARAMS_JSON -> one line "BENCH_MP_REPORT {json}"."""
import multiprocessing as mp
import os
import sys
import time

PAYLOAD = b"12345678"


def _pin(cpu):
    """Run the calling thread (and the threads it starts later) on CPU `cpu` only, on a machine with
    two or more: the latency rows put the two processes on two CPUs, under both methods alike, so
    that where the scheduler happens to place them (same CPU or not: 20 µs or 150 µs a round trip
    here, either way round) does not decide the figure."""
    if len(os.sched_getaffinity(0)) >= 2 and not os.environ.get("BENCH_MP_UNPINNED"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu]})


def procs(ctx, n):
    t0 = time.perf_counter()
    ps = [ctx.Process(target=abs, args=(-1,)) for _ in range(n)]
    for p in ps:
        p.start()
    t1 = time.perf_counter()
    for p in ps:
        p.join()
    t2 = time.perf_counter()
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    return {"start_s": t1 - t0, "total_s": t2 - t0}


def _producer(q, size, count):
    msg = b"Z" * size
    for _ in range(count):
        q.put(msg)
    q.put(None)


def queue_tp(ctx, size, warm, n):
    q = ctx.Queue()
    p = ctx.Process(target=_producer, args=(q, size, warm + n))
    p.start()
    get = q.get
    for _ in range(warm):
        get()
    t0 = time.perf_counter()
    for _ in range(n):
        m = get()
    end = get()
    t1 = time.perf_counter()
    p.join()
    assert end is None and isinstance(m, bytes) and len(m) == size and p.exitcode == 0, (end, p.exitcode)
    dt = t1 - t0
    return {"elapsed_s": dt, "msgs_per_s": n / dt, "MiB_per_s": n * size / (1 << 20) / dt}


def _echo_pipe(conn):
    _pin(1)
    while (m := conn.recv()) is not None:
        conn.send(m)


def _round_trips(send, recv, p, warm, n):
    """Time n echoed round trips (after warm ones) through send/recv; then stop the echoing child p."""
    _pin(0)
    for _ in range(warm):
        send(PAYLOAD)
        recv()
    t0 = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD)
        r = recv()
    t1 = time.perf_counter()
    send(None)
    p.join()
    assert r == PAYLOAD and p.exitcode == 0, (r, p.exitcode)
    return {"elapsed_s": t1 - t0, "rt_s": (t1 - t0) / n}


def pipe_rt(ctx, warm, n):
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_pipe, args=(b,))
    p.start()
    return _round_trips(a.send, a.recv, p, warm, n)


def _echo_queue(qin, qout):
    _pin(1)
    while (m := qin.get()) is not None:
        qout.put(m)


def queue_rt(ctx, warm, n):
    qin, qout = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_echo_queue, args=(qin, qout))
    p.start()
    return _round_trips(qin.put, qout.get, p, warm, n)


def _pid_after(delay):
    time.sleep(delay)
    return os.getpid()


def pool(ctx, chunksize, n):
    t0 = time.perf_counter()
    pl = ctx.Pool(2)
    while len(set(pl.map(_pid_after, [0.01, 0.01], chunksize=1))) < 2:  # until both workers answer
        pass
    t1 = time.perf_counter()
    out = pl.map(abs, range(n), chunksize=chunksize)
    t2 = time.perf_counter()
    pl.close()
    pl.join()
    assert sum(out) == n * (n - 1) // 2
    return {"start_s": t1 - t0, "map_s": t2 - t1, "tasks_per_s": n / (t2 - t1)}


def lock(ctx, warm, n, with_stmt=False):
    settle = ctx.Process(target=abs, args=(-1,))  # either method's start-up work is over before timing
    settle.start()
    settle.join()
    lk = ctx.Lock()
    acquire, release = lk.acquire, lk.release

    def pairs(k):
        if with_stmt:
            for _ in range(k):
                with lk:
                    pass
        else:
            for _ in range(k):
                acquire()
                release()

    pairs(warm)
    t0 = time.perf_counter()
    pairs(n)
    dt = time.perf_counter() - t0
    return {"elapsed_s": dt, "pairs_per_s": n / dt}


def _lock_pairs(lk, n):
    acquire, release = lk.acquire, lk.release
    for _ in range(n):
        acquire()
        release()


def _lock_child(lk, barrier, conn, n):
    barrier.wait()
    t0 = time.perf_counter()
    _lock_pairs(lk, n)
    conn.send(time.perf_counter() - t0)


def lock_contended(ctx, n):
    lk, barrier = ctx.Lock(), ctx.Barrier(2)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_lock_child, args=(lk, barrier, b, n))
    p.start()
    barrier.wait()
    t0 = time.perf_counter()
    _lock_pairs(lk, n)
    child_s = a.recv()
    dt = time.perf_counter() - t0
    p.join()
    assert p.exitcode == 0, p.exitcode
    return {"elapsed_s": dt, "child_s": child_s, "pairs_per_s": 2 * n / dt}


def _event_child(ping, pong, count):
    _pin(1)
    for _ in range(count):
        ping.wait()
        ping.clear()
        pong.set()


def event(ctx, warm, n):
    ping, pong = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_event_child, args=(ping, pong, warm + n))
    p.start()

    def rounds(k):
        for _ in range(k):
            ping.set()
            pong.wait()
            pong.clear()

    _pin(0)
    rounds(warm)
    t0 = time.perf_counter()
    rounds(n)
    t1 = time.perf_counter()
    p.join()
    assert p.exitcode == 0, p.exitcode
    return {"elapsed_s": t1 - t0, "rt_s": (t1 - t0) / n}


def _barrier_child(bar, count):
    for _ in range(count):
        bar.wait()


def barrier(ctx, parties, warm, n):
    bar = ctx.Barrier(parties)
    ps = [ctx.Process(target=_barrier_child, args=(bar, warm + n)) for _ in range(parties - 1)]
    for p in ps:
        p.start()
    for _ in range(warm):
        bar.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        bar.wait()
    t1 = time.perf_counter()
    for p in ps:
        p.join()
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    return {"elapsed_s": t1 - t0, "round_s": (t1 - t0) / n}


CASES = {f.__name__: f for f in (procs, queue_tp, pipe_rt, queue_rt, pool, lock, lock_contended, event, barrier)}

if __name__ == "__main__":
    import json

    method, case, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if method == "dragon":
        import dragon  # noqa: F401  (registers the start method "dragon")
    elif method == "reference":  # the reference runtime's "dragon" works once set as the start method
        import dragon  # noqa: F401

        mp.set_start_method("dragon")
        method = "dragon"
    report = CASES[case](mp.get_context(method), **params)
    print("BENCH_MP_REPORT " + json.dumps(report), flush=True)
'''


@dataclass(frozen=True)
class Program:
    """One measured program: a case of PROGRAM and its parameters (full run, --quick run); with
    `background`, "dragon" runs it under plain python (a background runtime) instead of `dragon`."""

    case: str
    full: dict[str, int]
    quick: dict[str, int]
    background: bool = False


@dataclass(frozen=True)
class Goal:
    """Issue 15's target for a row: the least "dragon better" ratio against spawn and against the
    reference runtime (None: none named). A 1x target is "no slower than", met by a tie too, unless
    `faster` ("faster than spawn")."""

    spawn: float
    reference: float | None = None
    faster: bool = False

    def text(self) -> str:
        parts = [f"{'>' if self.faster else '>='} {self.spawn:g}x vs spawn"]
        if self.reference is not None:
            parts.append(f">= {self.reference:g}x vs reference")
        return ", ".join(parts)


@dataclass(frozen=True)
class Row:
    """One table row: a metric of the reports of some programs, shown as `metric * scale` in `unit`."""

    what: str  # format string over the first program's parameters
    programs: tuple[str, ...]
    metric: str
    unit: str
    scale: float
    higher_better: bool
    target: float | None  # least "dragon better" ratio; None: informational row
    digits: int = 0
    goal: Goal | None = None  # issue 15's target, shown with --reference


PROGRAMS: dict[str, Program] = {
    "procs1": Program("procs", {"n": 1}, {"n": 1}),
    "procs1_bg": Program("procs", {"n": 1}, {"n": 1}, background=True),
    "procs16": Program("procs", {"n": 16}, {"n": 16}),
    "procs64": Program("procs", {"n": 64}, {"n": 64}),
    "queue64": Program(
        "queue_tp", {"size": 64, "warm": 10_000, "n": 100_000}, {"size": 64, "warm": 1_000, "n": 10_000}
    ),
    "queue1m": Program("queue_tp", {"size": MiB, "warm": 50, "n": 1_500}, {"size": MiB, "warm": 10, "n": 150}),
    "pipe_rt": Program("pipe_rt", {"warm": 500, "n": 5_000}, {"warm": 100, "n": 500}),
    "queue_rt": Program("queue_rt", {"warm": 500, "n": 5_000}, {"warm": 100, "n": 500}),
    "pool0": Program("pool", {"chunksize": 1, "n": 0}, {"chunksize": 1, "n": 0}),
    "pool1": Program("pool", {"chunksize": 1, "n": 10_000}, {"chunksize": 1, "n": 1_000}),
    "pool100": Program("pool", {"chunksize": 100, "n": 10_000}, {"chunksize": 100, "n": 1_000}),
    "lock": Program("lock", {"warm": 10_000, "n": 1_000_000}, {"warm": 1_000, "n": 100_000}),
    "lock_with": Program(
        "lock", {"warm": 10_000, "n": 1_000_000, "with_stmt": True}, {"warm": 1_000, "n": 100_000, "with_stmt": True}
    ),
    "lock2": Program("lock_contended", {"n": 500_000}, {"n": 50_000}),
    "event": Program("event", {"warm": 200, "n": 3_000}, {"warm": 50, "n": 300}),
    "barrier": Program("barrier", {"parties": 4, "warm": 100, "n": 1_000}, {"parties": 4, "warm": 20, "n": 100}),
}

ROWS: dict[str, Row] = {
    "first_start": Row(
        "first Process started and joined, a program's first multiprocessing (ms)",
        ("procs1",),
        "total_s",
        "ms",
        1e3,
        False,
        1.0,
        1,
    ),
    "first_start_bg": Row(
        "the same under plain python (dragon: a background runtime comes up) (ms)",
        ("procs1_bg",),
        "total_s",
        "ms",
        1e3,
        False,
        None,
        1,
    ),
    "first_pool": Row(
        "Pool(2) start as a program's first multiprocessing, until both workers answer (ms)",
        ("pool0",),
        "start_s",
        "ms",
        1e3,
        False,
        1.0,
        1,
    ),
    "procs16": Row("{n} processes started and joined (ms)", ("procs16",), "total_s", "ms", 1e3, False, 1.0),
    "procs64": Row("{n} processes started and joined (ms)", ("procs64",), "total_s", "ms", 1e3, False, 1.0),
    "queue64": Row("Queue one-way, 64 B messages (msg/s)", ("queue64",), "msgs_per_s", "msg/s", 1.0, True, 3.0),
    "queue1m": Row("Queue one-way, 1 MiB messages (MiB/s)", ("queue1m",), "MiB_per_s", "MiB/s", 1.0, True, 3.0),
    "pipe_rt": Row("Pipe round trip, 8 B (µs)", ("pipe_rt",), "rt_s", "µs", 1e6, False, 1.0, 1, Goal(2.0, 1.0)),
    "queue_rt": Row("Queue round trip, 8 B (µs)", ("queue_rt",), "rt_s", "µs", 1e6, False, 1.0, 1),
    "pool1": Row("Pool(2).map, {n:,} tasks, chunksize {chunksize} (ms)", ("pool1",), "map_s", "ms", 1e3, False, 2.0, 1),
    "pool100": Row(
        "Pool(2).map, {n:,} tasks, chunksize {chunksize} (ms)", ("pool100",), "map_s", "ms", 1e3, False, 1.0, 1
    ),
    "pool_start": Row(
        "Pool(2) start, until both workers answer (ms)", ("pool1", "pool100"), "start_s", "ms", 1e3, False, None, 1
    ),
    "lock": Row(
        "Lock acquire+release, 1 process (pairs/s)", ("lock",), "pairs_per_s", "pairs/s", 1.0, True, 0.5, 0, Goal(0.5)
    ),
    "lock_with": Row(
        "Lock as `with lock:`, 1 process (pairs/s)", ("lock_with",), "pairs_per_s", "pairs/s", 1.0, True, None, 0
    ),
    "lock2": Row(
        "Lock acquire+release, 2 processes contending (pairs/s)",
        ("lock2",),
        "pairs_per_s",
        "pairs/s",
        1.0,
        True,
        1.0,
        0,
        Goal(1.0),
    ),
    "event": Row(
        "Event ping-pong round trip, 2 processes (µs)", ("event",), "rt_s", "µs", 1e6, False, 1.0, 1, Goal(4.0, 1.0)
    ),
    "barrier": Row(
        "Barrier of {parties} processes, {n:,} rounds: time per round (µs)",
        ("barrier",),
        "round_s",
        "µs",
        1e6,
        False,
        1.0,
        1,
        Goal(1.0, faster=True),
    ),
}


@dataclass(frozen=True)
class Setup:
    """How every program runs: the reference runtime's venv (None: no "reference" column), the number
    of CPU-bound processes beside each program (--load) and the time one program may take."""

    reference: Path | None
    load: int
    timeout: float

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS if self.reference is None else (*METHODS, "reference")


def command(method: str, prog: Path, setup: Setup, background: bool = False) -> list[str]:
    """The interpreter (spawn, or dragon in the `background`), the `dragon` command that runs `prog`,
    or the reference runtime's `dragon` command."""
    if method == "reference":
        assert setup.reference is not None
        return [str(setup.reference / "bin" / "dragon"), str(prog)]
    if method == "spawn" or background:
        return [sys.executable, str(prog)]
    return [str(Path(sys.executable).with_name("dragon")), str(prog)]


def environment(method: str, setup: Setup) -> dict[str, str] | None:
    """The reference runtime finds its own commands on PATH (its launcher starts its services by
    name): its venv's bin first. Other methods inherit the environment."""
    if method != "reference":
        return None
    assert setup.reference is not None
    path = f"{setup.reference / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "VIRTUAL_ENV": str(setup.reference)}


class ProgramFailed(Exception):
    """A program exited non-zero, printed no report or overran; with its output."""

    def __init__(self, what: str, detail: str, stdout: bytes, stderr: bytes) -> None:
        super().__init__(f"{what} {detail}")
        self.detail, self.stdout, self.stderr = detail, stdout, stderr

    def show(self) -> None:
        """Print what went wrong, with the program's output."""
        sys.stderr.write(
            f"\nbench_mp: {self}\n--- stdout ---\n{self.stdout.decode(errors='replace')}"
            f"--- stderr ---\n{self.stderr.decode(errors='replace')}--------------\n"
        )

    def reason(self) -> str:
        """One line for the table's notes: what happened and the last line of stderr (the exception)."""
        lines = [ln.strip() for ln in self.stderr.decode(errors="replace").splitlines() if ln.strip()]
        return f"{self.detail}: {lines[-1]}" if lines else self.detail


# A CPU-bound process for --load: a plain busy loop, ended with the driver whatever ends it.
LOADER = (
    "import ctypes, signal\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "print(flush=True)\n"
    "while True:\n"
    "    pass\n"
)


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """`n` CPU-bound processes running (their loops started) for the duration of the block, then
    killed and reaped: what a program measured under load shares the CPUs with."""
    loaders: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            loaders.append(
                subprocess.Popen([sys.executable, "-c", LOADER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            )
        for loader in loaders:
            assert loader.stdout is not None
            loader.stdout.readline()  # its loop runs from here on
        yield
    finally:
        for loader in loaders:
            loader.kill()
        for loader in loaders:
            loader.communicate()


def run_program(method: str, key: str, params: dict[str, int], prog: Path, setup: Setup) -> Report:
    """Run one program once (beside --load busy processes); its report plus the command's wall time.
    Raises ProgramFailed if it fails."""
    argv = [*command(method, prog, setup, PROGRAMS[key].background), method, PROGRAMS[key].case, json.dumps(params)]
    what = f"{key} under {method!r} ({' '.join(argv)})"
    with busy(setup.load), reference_shm_removed(method == "reference"):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=prog.parent,
            env=environment(method, setup),
            # Its own process group to stop it by; the reference runtime hangs as a session leader.
            start_new_session=method != "reference",
            process_group=0 if method == "reference" else None,
        )
        try:
            out, err = proc.communicate(timeout=setup.timeout)
        except subprocess.TimeoutExpired:
            out, err = stop(proc)
            raise ProgramFailed(what, f"timed out after {setup.timeout:.0f} s", out, err) from None
        except BaseException:  # the driver is interrupted or terminated: the program goes too
            stop(proc)
            raise
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ProgramFailed(what, f"failed with exit status {proc.returncode}", out, err)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith(MARK)]
    if len(lines) != 1:
        raise ProgramFailed(what, "printed no report", out, err)
    if err.strip():
        sys.stderr.write(f"bench_mp: {what} succeeded but wrote to stderr:\n{err.decode(errors='replace')[-2000:]}\n")
    report: Report = json.loads(lines[0][len(MARK) :])
    report["wall_s"] = wall
    return report


def descendants(pid: int) -> set[int]:
    """The processes started by `pid`, and by them, that are still its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """End a program that overran: SIGTERM to its process group and its descendants (also those in
    other groups), SIGKILL if it lingers; its output."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        pids = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            return proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return b"", b""


Results = dict[str, dict[str, list[Report]]]


def measure(keys: list[str], runs: int, quick: bool, setup: Setup) -> tuple[Results, dict[str, str]]:
    """Reports of every program, per method, `runs` times, the methods interleaved (which goes first
    rotates by repetition and program); and why programs could not run under the reference, by key.
    A program that fails under spawn or dragon ends the run (exit status 1)."""
    methods = setup.methods
    results: Results = {k: {m: [] for m in methods} for k in keys}
    failed: dict[str, str] = {
        k: "runs under plain python (a background runtime): the reference needs its dragon command"
        for k in keys
        if setup.reference is not None and PROGRAMS[k].background
    }
    with tempfile.TemporaryDirectory(prefix="bench_mp_") as tmp:
        prog = Path(tmp) / "bench_mp_prog.py"
        prog.write_text(PROGRAM)
        for i in range(runs):
            for j, key in enumerate(keys):
                params = params_of(key, quick)
                first = (i + j) % len(methods)
                for method in methods[first:] + methods[:first]:
                    if method == "reference" and key in failed:
                        continue
                    try:
                        report = run_program(method, key, params, prog, setup)
                    except ProgramFailed as e:
                        e.show()
                        if method != "reference":
                            raise SystemExit(1) from None
                        failed[key] = e.reason()
                        continue
                    results[key][method].append(report)
                    sys.stderr.write(
                        f"bench_mp: run {i + 1}/{runs} {key:9} {method:9} "
                        f"{json.dumps({k: round(v, 6) for k, v in report.items()})}\n"
                    )
    return results, failed


def params_of(key: str, quick: bool) -> dict[str, int]:
    """The parameters of program `key` for a full or a --quick run."""
    return PROGRAMS[key].quick if quick else PROGRAMS[key].full


def row_values(row: Row, method: str, results: Results) -> list[float]:
    """The row's metric (scaled to its unit) from every report of its programs under `method`."""
    return [r[row.metric] * row.scale for key in row.programs for r in results[key][method]]


def advantage(row: Row, other: float, dragon: float) -> float:
    """How many times better dragon is than the `other` method on this row (above 1: dragon better)."""
    return dragon / other if row.higher_better else other / dragon


def tied(spawn: dict[str, Any], dragon: dict[str, Any]) -> bool:
    """Whether the two methods cannot be told apart in this run: each one's median lies within the
    other's min-max range. Only for "no slower than" targets (1x): a row whose code is the standard
    library's under both methods (Pipe, Lock) then counts as met, shown as "tie"."""
    return (dragon["min"] <= spawn["median"] <= dragon["max"]) and (spawn["min"] <= dragon["median"] <= spawn["max"])


def verdict(ratio: float, target: float, tie: bool, faster: bool = False) -> str:
    """ "yes" if the ratio meets the target, else "tie" if a 1x target's two methods are `tie`d, else "NO"."""
    if ratio > target or (ratio == target and not faster):
        return "yes"
    return "tie" if tie else "NO"


def goal_verdict(goal: Goal, stats: dict[str, dict[str, Any]], ratio: float, ref_ratio: float) -> str:
    """Issue 15's target for a row, both parts: "yes", "tie" (met, a part by a tie), "NO", or "n/a"
    (the reference part could not be measured)."""
    parts = [verdict(ratio, goal.spawn, goal.spawn == 1 and tied(stats["spawn"], stats["dragon"]), goal.faster)]
    if goal.reference is not None:
        if math.isnan(ref_ratio):
            parts.append("n/a")
        else:
            tie = goal.reference == 1 and tied(stats["reference"], stats["dragon"])
            parts.append(verdict(ref_ratio, goal.reference, tie))
    return next((v for v in ("NO", "n/a", "tie") if v in parts), "yes")


def tabulate(
    rows: list[str], results: Results, quick: bool, setup: Setup, failed: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The Markdown table and the per-row summary for the JSON line. With a reference: its column,
    and for the rows issue 15 names a target for, dragon against the reference and that target."""
    table: list[list[object]] = []
    out: dict[str, Any] = {}
    with_ref = setup.reference is not None
    for key in rows:
        row = ROWS[key]
        stats = {m: summary(row_values(row, m, results)) for m in setup.methods}
        ratio = advantage(row, stats["spawn"]["median"], stats["dragon"]["median"])
        met = None if row.target is None else ratio >= row.target
        tie = row.target == 1 and not met and tied(stats["spawn"], stats["dragon"])
        what = row.what.format(**params_of(row.programs[0], quick))
        cells: list[object] = [
            what,
            fmt(stats["spawn"]["median"], row.digits),
            fmt(stats["dragon"]["median"], row.digits),
        ]
        unmeasured = any(k in failed for k in row.programs)
        if with_ref:
            cells.append("n/a" if unmeasured else fmt(stats["reference"]["median"], row.digits))
        cells += [
            f"{ratio:.2f}x",
            "–" if row.target is None else f">= {row.target:g}x",
            "–" if met is None else ("yes" if met else "tie" if tie else "NO"),
        ]
        out[key] = {
            "what": what,
            "unit": row.unit,
            "higher_is_better": row.higher_better,
            **stats,
            "dragon_better_ratio": ratio,
            "target": row.target,
            "met": (met or tie) if met is not None else None,
            "tie": tie,
        }
        if with_ref and row.goal is not None:
            ref_ratio = (
                math.nan if unmeasured else advantage(row, stats["reference"]["median"], stats["dragon"]["median"])
            )
            judged = goal_verdict(row.goal, stats, ratio, ref_ratio)
            cells += ["n/a" if math.isnan(ref_ratio) else f"{ref_ratio:.2f}x", row.goal.text(), judged]
            out[key] |= {
                "dragon_vs_reference": ref_ratio,
                "issue15_target": row.goal.text(),
                "issue15_met": None if judged == "n/a" else judged in ("yes", "tie"),
            }
        elif with_ref:
            cells += ["–", "–", "–"]
        table.append(cells)
    headers = ["what", "spawn", "dragon", "ratio (>1: dragon better)", "target", "met?"]
    if with_ref:
        headers[3:3] = ["reference"]
        headers += ["dragon vs reference (>1: dragon better)", "issue 15 target", "met?"]
    return md_table(headers, table), out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="repetitions per method (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="about 10x fewer messages/tasks: a smoke run")
    ap.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS),
        default=list(ROWS),
        metavar="ROW",
        help=f"rows to measure (default all): {' '.join(ROWS)}",
    )
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one program may take (default 300)")
    ap.add_argument(
        "--reference",
        type=Path,
        metavar="VENV",
        help="a venv with the reference runtime (pip install dragonhpc): its column, and issue 15's targets",
    )
    ap.add_argument(
        "--load", type=int, default=0, metavar="N", help="N CPU-bound processes beside every program (default 0)"
    )
    ap.add_argument(
        "--unpinned", action="store_true", help="leave the latency rows' two processes where the scheduler puts them"
    )
    opts = ap.parse_args()
    if opts.runs is None:
        opts.runs = 1 if opts.quick else 3
    if opts.runs < 1:
        ap.error("--runs must be at least 1")
    if opts.load < 0:
        ap.error("--load must be 0 or more")
    if opts.reference is not None:
        opts.reference = opts.reference.absolute()
        if not (opts.reference / "bin" / "dragon").is_file():
            ap.error(
                f"--reference {opts.reference}: no bin/dragon there; give the venv the reference runtime is "
                f"installed in (python3 -m venv VENV && VENV/bin/pip install dragonhpc)"
            )
    return opts


def reference_version(venv: Path) -> str:
    """The reference runtime's version, for the JSON line ("unknown" if its venv cannot tell)."""
    argv = [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('dragonhpc'))"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def bytecode_cached() -> bool:
    """Whether the modules a program imports for its first start under "dragon" have .pyc files."""
    import importlib.util

    for name in ("dragon.mp.popen", "dragon.client.gs_client", "dragon.messages", "dragon.transport._channel"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not os.path.exists(importlib.util.cache_from_source(spec.origin)):
            return False
    return True


def dev_only_imports() -> list[str]:
    """Modules a user's install does not have that the client's imports pick up when present:
    msgspec imports typing_extensions (and with it inspect, about 6 ms) if it can, and the test extras
    (mypy, trio-typing) bring it. The first-use rows then include it under "dragon"."""
    import importlib.util

    return [name for name in ("typing_extensions",) if importlib.util.find_spec(name) is not None]


def main() -> None:
    opts = parse_args()
    rows = [k for k in ROWS if k in opts.rows]
    keys = [k for k in PROGRAMS if any(k in ROWS[r].programs for r in rows)]
    setup = Setup(opts.reference, opts.load, opts.timeout)
    if opts.unpinned:  # read by `_pin` in every program, whatever the method (they inherit it)
        os.environ["BENCH_MP_UNPINNED"] = "1"
    signal.signal(signal.SIGTERM, lambda sig, _frame: sys.exit(128 + sig))  # the --load processes go too
    t0 = time.perf_counter()
    results, failed = measure(keys, opts.runs, opts.quick, setup)
    wall = time.perf_counter() - t0
    table, per_row = tabulate(rows, results, opts.quick, setup, failed)
    print(table)
    if opts.load:
        print(f"\nnote: {opts.load} CPU-bound processes ran beside every program (--load {opts.load})")
    if opts.unpinned:
        print("\nnote: --unpinned: the latency rows' processes ran where the scheduler put them")
    for key, why in failed.items():
        print(f"\nnote: {key} could not run under the reference (n/a): {why}")
    cached = bytecode_cached()
    if not cached:
        print(
            "\nnote: dragon's modules have no .pyc files here (PYTHONDONTWRITEBYTECODE with an editable install?): "
            "every process that imports its client compiles them, which the first-use rows include"
        )
    extra = dev_only_imports()
    if extra:
        print(
            f"\nnote: {', '.join(extra)} is importable here (development extras), and msgspec imports it: the "
            'first-use rows include that under "dragon" (about 6 ms); a venv with only the runtime '
            "dependencies (`pip install .`) shows what users see"
        )
    programs = {k: {"case": PROGRAMS[k].case, "params": params_of(k, opts.quick), **results[k]} for k in keys}
    met = [v["met"] for v in per_row.values() if v["met"] is not None]
    goals = [v["issue15_met"] for v in per_row.values() if v.get("issue15_met") is not None]
    reference = None
    if opts.reference is not None:
        reference = {
            "venv": str(opts.reference),
            "version": reference_version(opts.reference),
            "failed": failed,
            "issue15_targets_met": f"{sum(goals)}/{len(goals)}",
        }
    print(
        json_line(
            {
                "bench": "mp",
                "runs": opts.runs,
                "quick": opts.quick,
                "wall_s": wall,
                "targets_met": f"{sum(met)}/{len(met)}",
                "load": opts.load,
                "pinned": not opts.unpinned,
                "reference": reference,
                "machine": machine_info(),
                "dragon_bytecode_cached": cached,
                "dev_only_imports": extra,
                "rows": per_row,
                "programs": programs,
            }
        )
    )
    sys.stderr.write(
        f"bench_mp: {len(keys)} programs x {len(setup.methods)} methods x {opts.runs} runs in {wall:.1f} s; "
        f"targets met {sum(met)}/{len(met)}" + (f"; issue 15's {sum(goals)}/{len(goals)}" if reference else "") + "\n"
    )


if __name__ == "__main__":
    main()
