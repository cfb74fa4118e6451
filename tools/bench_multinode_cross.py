"""The cross-node section of tools/bench_multinode.py (`--section cross`): data between two isolated nodes.

Issue 17's rows of MULTINODE §10, each against a baseline measured in the same run between the same
two nodes: a `VirtualCluster(2)` of tests/multinode/netns.py (a network namespace and a private
/dev/shm each, joined by veth pairs through a bridge), which this module imports by putting
tests/multinode on sys.path. Without root or without `ip` the section is skipped, saying why.

Every command runs inside a node, its output captured: the baselines as a pair of plain Python
processes (the receiving/timing one in node 0, the sending/echoing one in node 1, started once the
first listens), the runtime as `dragon --nodes 2 --wlm local --frontend-addr <node 0>` run in node 0
(node 1's backend started inside node 1 through DRAGON_LOCAL_WRAP), as tests/multinode does. --cross-runs
rounds (default 3), each running every command once, the order reversed from one round to the next;
per row the median over rounds of the figure, of its baseline and of their per-round ratio (the two
measured within seconds of each other), which is judged against the target (PASS/MISS).

| row | the runtime (head on node 0, `Policy(node=1)` for the other end) | baseline | target |
|---|---|---|---|
| Queue 1 MiB one-way, CURVE | producer on node 1 -> the head, MiB/s | raw ZeroMQ PUSH/PULL 1 MiB, CURVE | >= 0.7x |
| same, `--transport-security none` | same | raw TCP stream (`sendall`/`recv_into`) | >= 0.5x |
| Queue 64 B one-way, CURVE / none | same, msg/s | raw ZeroMQ PUSH/PULL 64 B, same security | >= 0.3x and >= 100k msg/s |
| Queue round trip 8 B, CURVE / none | the head <-> an echo on node 1 (µs) | raw TCP ping-pong, 8 B | <= 3x |
| Pool(4).map of `abs`, chunksize 1 / 100 | 4 workers, 2 per node (round robin, checked), CURVE; tasks/s | the same Pool under single-node `dragon` (in node 0) | >= 0.5x |
| Pipe round trip 8 B, CURVE / none | the head <-> an echo on node 1 over `Pipe()` (µs; a run of its own) | raw TCP ping-pong, 8 B | <= 3x |
| raw ZeroMQ ping-pong 8 B, CURVE / none | (not the runtime: two DEALER sockets, pinned as the TCP ping-pong) | raw TCP ping-pong, 8 B | none: what ZeroMQ itself adds to a round trip (its I/O threads: two more wake-ups each way), the floor under the runtime's round trips, which cross ZeroMQ |

The Queue and Pipe rows are tools/bench_mp.py's own measuring functions (queue_tp, queue_rt, pipe_rt; imported from its
PROGRAM), run under `Policy(node=1)`: its round trip pins the head on the first CPU and the echo on
the second, and the TCP ping-pong pins its two ends the same way. The raw ZeroMQ receiver takes
messages without a copy (`copy=False`), the sender's large messages go without one (pyzmq's default):
what ZeroMQ itself can do. The 64 B and round-trip rows are run under both security settings; the
spec's targets name the security only for the bulk rows. The 1 MiB rows run in a `dragon` of their own
(a failure there takes no other row with it) with one untimed message only: the producer's Queue
feeder sends all that `put` buffered meanwhile as one batch, which a longer warm-up would let land
before the timing starts. The Pool maps 20,000 tasks at chunksize 1 and 1,000,000 at chunksize 100
(10,000 tasks would be 100 chunks, a map of a few ms).

Leftovers: after every command, nothing may run in either node's namespace nor remain in either
node's /dev/shm (`VirtualCluster.wait_clear`, with a grace for processes still exiting); the cluster is
removed at the end whatever happened.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "multinode"))
from _bench_util import fmt, md_table, median
from netns import VirtualCluster, unavailable

MiB: Final = 1 << 20
RUN_TIMEOUT_S: Final = 120.0
LEFTOVER_GRACE_S: Final = 10.0  # as tests/multinode/conftest.py
MARK: Final = "BENCH_MULTINODE_REPORT "
FILES: Final = ("bench_multinode_raw.py", "bench_multinode_cross_prog.py")  # written into the work directory

# The baselines: one program, two roles. `recv` (node 0) listens, prints "READY port key", times, reports;
# `send` (node 1) connects and sends (or echoes).
RAW_PROGRAM = '''\
"""bench_multinode raw baselines: python PROG recv|send CASE PARAMS_JSON ADDR [PORT KEY]."""
import json
import os
import socket
import sys
import time

PAYLOAD = b"12345678"


def _pin(cpu):
    """As bench_mp's: the two ends of a round trip on two CPUs."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu]})


def _ready(port, key=""):
    print(f"READY {port} {key}", flush=True)


def _timed(one, warm, n):
    for _ in range(warm):
        one()
    t0 = time.perf_counter()
    for _ in range(n):
        one()
    return time.perf_counter() - t0


def zmq_recv(addr, size, warm, n, curve):
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    key = ""
    if curve:
        public, secret = zmq.curve_keypair()
        s.curve_server, s.curve_publickey, s.curve_secretkey = True, public, secret
        key = public.decode()
    _ready(s.bind_to_random_port(f"tcp://{addr}"), key)
    dt = _timed(lambda: s.recv(copy=False), warm, n)
    s.close()
    ctx.term()
    return {"elapsed_s": dt, "msgs_per_s": n / dt, "MiB_per_s": n * size / (1 << 20) / dt}


def zmq_send(addr, port, key, size, warm, n, curve):
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    if curve:
        public, secret = zmq.curve_keypair()
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = key.encode(), public, secret
    s.connect(f"tcp://{addr}:{port}")
    msg = b"Z" * size
    for _ in range(warm + n):
        s.send(msg)
    s.close(linger=-1)  # every message delivered before the context ends
    ctx.term()


def _server(addr):
    srv = socket.create_server((addr, 0))
    _ready(srv.getsockname()[1])
    conn, _ = srv.accept()
    srv.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _recv_exactly(conn, view):
    got = 0
    while got < len(view):
        k = conn.recv_into(view[got:])
        if not k:
            raise EOFError("the sender closed early")
        got += k


def tcp_recv(addr, size, warm, n):
    conn = _server(addr)
    view = memoryview(bytearray(size))
    dt = _timed(lambda: _recv_exactly(conn, view), warm, n)
    conn.close()
    return {"elapsed_s": dt, "MiB_per_s": n * size / (1 << 20) / dt}


def tcp_send(addr, port, key, size, warm, n):
    conn = socket.create_connection((addr, port))
    msg = b"Z" * size
    for _ in range(warm + n):
        conn.sendall(msg)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # the receiver's close: it has everything


def ping_recv(addr, warm, n):
    _pin(0)
    conn = _server(addr)
    view = memoryview(bytearray(len(PAYLOAD)))

    def one():
        conn.sendall(PAYLOAD)
        _recv_exactly(conn, view)

    dt = _timed(one, warm, n)
    assert bytes(view) == PAYLOAD
    conn.close()
    return {"elapsed_s": dt, "rt_s": dt / n}


def ping_send(addr, port, key, warm, n):
    _pin(1)
    conn = socket.create_connection((addr, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    view = memoryview(bytearray(len(PAYLOAD)))
    while True:
        try:
            _recv_exactly(conn, view)
        except EOFError:
            return
        conn.sendall(view)


def _zmq_pair(curve, key=""):
    """A DEALER (CURVE server if `key` is empty, else client of `key`), and the public key to hand over."""
    import zmq

    s = zmq.Context.instance().socket(zmq.DEALER)
    if curve:
        public, secret = zmq.curve_keypair()
        s.curve_publickey, s.curve_secretkey = public, secret
        if key:
            s.curve_serverkey = key.encode()
        else:
            s.curve_server = True
        return s, public.decode()
    return s, ""


def zping_recv(addr, warm, n, curve):
    _pin(0)
    s, key = _zmq_pair(curve)
    _ready(s.bind_to_random_port(f"tcp://{addr}"), key)

    def one():
        s.send(PAYLOAD)
        assert s.recv() == PAYLOAD

    dt = _timed(one, warm, n)
    s.send(b"")  # the echo's end
    s.close(linger=1000)
    return {"elapsed_s": dt, "rt_s": dt / n}


def zping_send(addr, port, key, warm, n, curve):
    _pin(1)
    s, _ = _zmq_pair(curve, key)
    s.connect(f"tcp://{addr}:{port}")
    while msg := s.recv():
        s.send(msg)
    s.close()


if __name__ == "__main__":
    role, case, params, addr = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    if role == "recv":
        report = globals()[f"{case}_recv"](addr, **params)
        print("BENCH_MULTINODE_REPORT " + json.dumps(report), flush=True)
    else:
        globals()[f"{case}_send"](addr, sys.argv[5], sys.argv[6], **params)
'''

# The runtime's side, under `dragon` (two nodes, or one for the Pool's baseline).
PROGRAM = '''\
"""bench_multinode cross-node program: dragon PROG cross|pool PARAMS_JSON -> "BENCH_MULTINODE_REPORT {json}"."""
import json
import multiprocessing as mp
import os
import sys
import time

import bench_mp_prog as mpb
import dragon  # noqa: F401  (registers the start method "dragon")
from dragon.native import Policy

PROBE_S = 10


def _node_exit():
    sys.exit(int(os.environ.get("DRAGON_INDEX", "0")))


def _pipe_probe(conn):
    conn.send(os.environ.get("DRAGON_INDEX", "0"))


def _pipe_crosses(ctx):
    """Whether a Pipe end reaches a process on node 1 (else its row fails at once, not at the timeout)."""
    a, b = ctx.Pipe()
    p = ctx.Process(target=_pipe_probe, args=(b,))
    p.start()
    ok = a.poll(PROBE_S) and a.recv() == "1"
    p.join(PROBE_S)
    return ok


def _where(delay):
    time.sleep(delay)
    return os.getpid(), os.environ.get("DRAGON_INDEX", "0")


def pool(ctx, workers, maps):
    """Pool(workers).map of a trivial function, for each [chunksize, tasks] of `maps`, once every worker
    has answered; tasks/s, and each worker's node."""
    pl = ctx.Pool(workers)
    seen = set()
    while len({pid for pid, _ in seen}) < workers:
        seen |= set(pl.map(_where, [0.02] * workers, chunksize=1))
    out = {"pool_nodes": sorted(node for _, node in seen)}
    for cs, n in maps:
        t0 = time.perf_counter()
        res = pl.map(abs, range(n), chunksize=cs)
        out[f"pool{cs}"] = n / (time.perf_counter() - t0)
        assert sum(res) == n * (n - 1) // 2
    pl.close()
    pl.join()
    return out


QUEUE_ROWS = {
    "queue1m": ("queue_tp", "MiB_per_s"),
    "queue64": ("queue_tp", "msgs_per_s"),
    "queue_rt": ("queue_rt", "rt_s"),
    "pipe_rt": ("pipe_rt", "rt_s"),
}


def cross(ctx, **rows):
    """The given rows (row -> parameters): bench_mp's Queue rows with the other end on node 1 (checked
    first), then the Pool."""
    affinity = os.sched_getaffinity(0)
    out = {}
    with Policy(node=1):
        p = ctx.Process(target=_node_exit)
        p.start()
        p.join()
        assert p.exitcode == 1, f"a process placed on node 1 ran on node {p.exitcode}"
        if "pipe_rt" in rows and not _pipe_crosses(ctx):
            sys.exit("a Pipe does not cross nodes yet: its end did not reach node 1 within the probe's bound")
        for key, (case, metric) in QUEUE_ROWS.items():
            if key in rows:
                out[key] = getattr(mpb, case)(ctx, **rows[key])[metric]
                os.sched_setaffinity(0, affinity)  # the round trip pinned the head
    return {**out, **(pool(ctx, **rows["pool_"]) if "pool_" in rows else {})}


if __name__ == "__main__":
    case, params = sys.argv[1], json.loads(sys.argv[2])
    report = {"cross": cross, "pool": pool}[case](mp.get_context("dragon"), **params)
    print("BENCH_MULTINODE_REPORT " + json.dumps(report), flush=True)
'''

# (full, --quick) counts
# 1 MiB: one untimed message only (it opens the way). The producer's feeder sends what `put` buffered
# meanwhile as one batch; a longer warm-up would let that batch land before the timing starts.
QUEUE1M: Final = ({"size": MiB, "warm": 1, "n": 300}, {"size": MiB, "warm": 1, "n": 50})
QUEUE64: Final = ({"size": 64, "warm": 5_000, "n": 50_000}, {"size": 64, "warm": 1_000, "n": 5_000})
QUEUE_RT: Final = ({"warm": 200, "n": 2_000}, {"warm": 50, "n": 300})
# Pool: [chunksize, tasks]; at chunksize 100, 10,000 tasks are 100 chunks, a map of a few ms: too short to time.
POOL: Final = (
    {"workers": 4, "maps": [[1, 20_000], [100, 1_000_000]]},
    {"workers": 4, "maps": [[1, 1_000], [100, 50_000]]},
)
ZMQ1M: Final = ({"size": MiB, "warm": 50, "n": 500}, {"size": MiB, "warm": 10, "n": 50})
ZMQ64: Final = ({"size": 64, "warm": 10_000, "n": 200_000}, {"size": 64, "warm": 1_000, "n": 20_000})
TCP1M: Final = ({"size": MiB, "warm": 50, "n": 1_000}, {"size": MiB, "warm": 10, "n": 100})
PING: Final = ({"warm": 500, "n": 5_000}, {"warm": 100, "n": 500})


@dataclass(frozen=True)
class Command:
    """One command of a round: a baseline pair (raw: its case and parameters) or a `dragon` run."""

    key: str
    label: str
    raw: tuple[str, dict[str, Any]] | None = None
    dragon: tuple[list[str], str, dict[str, Any]] | None = None  # (options, case, params)


def commands(quick: bool) -> list[Command]:
    q = int(quick)
    bulk = {"queue1m": QUEUE1M[q]}  # a run of its own: if it fails, it takes no other row with it
    rest = {"queue64": QUEUE64[q], "queue_rt": QUEUE_RT[q], "pool_": POOL[q]}
    pipe = {"pipe_rt": QUEUE_RT[q]}  # a run of its own too
    two = ["--nodes", "2", "--wlm", "local"]
    none = [*two, "--transport-security", "none"]
    return [
        Command("zmq1m_curve", "raw ZeroMQ PUSH/PULL 1 MiB, CURVE", raw=("zmq", {**ZMQ1M[q], "curve": True})),
        Command("tcp1m", "raw TCP stream 1 MiB", raw=("tcp", TCP1M[q])),
        Command("zmq64_curve", "raw ZeroMQ PUSH/PULL 64 B, CURVE", raw=("zmq", {**ZMQ64[q], "curve": True})),
        Command("zmq64_none", "raw ZeroMQ PUSH/PULL 64 B, no security", raw=("zmq", {**ZMQ64[q], "curve": False})),
        Command("tcp_rt", "raw TCP ping-pong 8 B", raw=("ping", PING[q])),
        Command("zmq_rt_curve", "raw ZeroMQ ping-pong 8 B, CURVE", raw=("zping", {**PING[q], "curve": True})),
        Command("zmq_rt_none", "raw ZeroMQ ping-pong 8 B, no security", raw=("zping", {**PING[q], "curve": False})),
        Command("bulk_curve", "`dragon --nodes 2`, 1 MiB", dragon=(two, "cross", bulk)),
        Command("bulk_none", "`dragon --nodes 2 --transport-security none`, 1 MiB", dragon=(none, "cross", bulk)),
        Command("pipe_curve", "`dragon --nodes 2`, Pipe", dragon=(two, "cross", pipe)),
        Command("pipe_none", "`dragon --nodes 2 --transport-security none`, Pipe", dragon=(none, "cross", pipe)),
        Command("dragon_curve", "`dragon --nodes 2`", dragon=(two, "cross", rest)),
        Command("dragon_none", "`dragon --nodes 2 --transport-security none`", dragon=(none, "cross", rest)),
        Command("dragon_one", "`dragon` (one node)", dragon=([], "pool", POOL[q])),
    ]


@dataclass(frozen=True)
class Row:
    what: str
    value: tuple[str, str]  # (command, figure of its report)
    baseline: tuple[str, str]
    baseline_label: str
    unit: str
    scale: float
    higher: bool  # higher is better (throughput); the ratio is value/baseline either way
    target: float | None  # ratio at least (higher) or at most; None: for information
    floor: float | None = None  # and the value at least
    digits: int = 0


def _round_trip(what: str, value: tuple[str, str]) -> Row:
    """A round-trip row: against the raw TCP ping-pong, at most 3x."""
    return Row(what, value, ("tcp_rt", "rt_s"), "raw TCP ping-pong 8 B", "µs", 1e6, False, 3.0, digits=1)


def _zmq_round_trip(security: str, command: str) -> Row:
    """A raw ZeroMQ ping-pong row: against the raw TCP ping-pong, for information (no target)."""
    what = f"raw ZeroMQ ping-pong 8 B, node 0 <-> node 1, {security} (µs): what ZeroMQ adds"
    return Row(what, (command, "rt_s"), ("tcp_rt", "rt_s"), "raw TCP ping-pong 8 B", "µs", 1e6, False, None, digits=1)


ROWS: Final = {
    "queue1m_curve": Row(
        "Queue 1 MiB one-way, node 1 -> node 0, CURVE (MiB/s)",
        ("bulk_curve", "queue1m"),
        ("zmq1m_curve", "MiB_per_s"),
        "raw ZeroMQ PUSH/PULL 1 MiB, CURVE",
        "MiB/s",
        1.0,
        True,
        0.7,
    ),
    "queue1m_none": Row(
        "Queue 1 MiB one-way, node 1 -> node 0, security none (MiB/s)",
        ("bulk_none", "queue1m"),
        ("tcp1m", "MiB_per_s"),
        "raw TCP stream 1 MiB",
        "MiB/s",
        1.0,
        True,
        0.5,
    ),
    "queue64_curve": Row(
        "Queue 64 B one-way, node 1 -> node 0, CURVE (msg/s)",
        ("dragon_curve", "queue64"),
        ("zmq64_curve", "msgs_per_s"),
        "raw ZeroMQ PUSH/PULL 64 B, CURVE",
        "msg/s",
        1.0,
        True,
        0.3,
        100_000,
    ),
    "queue64_none": Row(
        "Queue 64 B one-way, node 1 -> node 0, security none (msg/s)",
        ("dragon_none", "queue64"),
        ("zmq64_none", "msgs_per_s"),
        "raw ZeroMQ PUSH/PULL 64 B, no security",
        "msg/s",
        1.0,
        True,
        0.3,
        100_000,
    ),
    "queue_rt_curve": _round_trip("Queue round trip 8 B, node 0 <-> node 1, CURVE (µs)", ("dragon_curve", "queue_rt")),
    "queue_rt_none": _round_trip(
        "Queue round trip 8 B, node 0 <-> node 1, security none (µs)", ("dragon_none", "queue_rt")
    ),
    "zmq_rt_curve": _zmq_round_trip("CURVE", "zmq_rt_curve"),
    "zmq_rt_none": _zmq_round_trip("no security", "zmq_rt_none"),
    "pipe_rt_curve": _round_trip("Pipe round trip 8 B, node 0 <-> node 1, CURVE (µs)", ("pipe_curve", "pipe_rt")),
    "pipe_rt_none": _round_trip("Pipe round trip 8 B, node 0 <-> node 1, security none (µs)", ("pipe_none", "pipe_rt")),
    "pool1": Row(
        "Pool(4 workers on 2 nodes).map, chunksize 1, CURVE (tasks/s)",
        ("dragon_curve", "pool1"),
        ("dragon_one", "pool1"),
        "the same Pool(4), `dragon` one node",
        "tasks/s",
        1.0,
        True,
        0.5,
    ),
    "pool100": Row(
        "Pool(4 workers on 2 nodes).map, chunksize 100, CURVE (tasks/s)",
        ("dragon_curve", "pool100"),
        ("dragon_one", "pool100"),
        "the same Pool(4), `dragon` one node",
        "tasks/s",
        1.0,
        True,
        0.5,
    ),
}


# ============================================================================ running


@dataclass
class Outcome:
    rc: int | None
    stdout: str
    stderr: str

    def report(self) -> dict[str, Any] | None:
        """The one report line's JSON (None if there is none, or more than one)."""
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith(MARK)]
        return json.loads(lines[0][len(MARK) :]) if len(lines) == 1 else None


def finish(proc: subprocess.Popen[str], timeout_s: float) -> Outcome:
    """Wait for `proc` (killed after `timeout_s`), its output."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[bench] killed after {timeout_s} s"
    return Outcome(proc.returncode, out, err)


def run_raw(c: VirtualCluster, prog: Path, case: str, params: dict[str, Any]) -> Outcome:
    """The receiving end in node 0, then (once it listens) the sending end in node 1; the receiver's outcome
    (with the sender's failure, if it failed)."""
    argv = [sys.executable, str(prog)]
    pipes: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    recv = c.spawn(0, [*argv, "recv", case, json.dumps(params), c.addr(0)], text=True, **pipes)
    assert recv.stdout is not None
    ready = recv.stdout.readline().split()
    if len(ready) < 2 or ready[0] != "READY":
        return finish(recv, RUN_TIMEOUT_S)
    port, key = ready[1], (ready[2] if len(ready) > 2 else "")
    send = c.spawn(1, [*argv, "send", case, json.dumps(params), c.addr(0), port, key], text=True, **pipes)
    got = finish(recv, RUN_TIMEOUT_S)
    sent = finish(send, RUN_TIMEOUT_S)
    if sent.rc != 0:
        return Outcome(sent.rc, got.stdout, f"sender: {sent.stderr}\nreceiver: {got.stderr}")
    return got


def run_dragon(
    c: VirtualCluster, cmd: Command, dragon: list[str], prog: Path, work: Path, env: dict[str, str]
) -> Outcome:
    """`dragon [options] --frontend-addr <node 0> PROG CASE PARAMS` in node 0 (two nodes: node 1 wrapped)."""
    assert cmd.dragon is not None
    options, case, params = cmd.dragon
    if options:
        options = [*options, "--frontend-addr", c.addr(0)]
    argv = [*dragon, *options, str(prog), case, json.dumps(params)]
    proc = c.spawn(
        0, argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return finish(proc, RUN_TIMEOUT_S)


def measure(
    opts: argparse.Namespace, work: Path, env: dict[str, str], dragon: list[str], say: Callable[[str], None]
) -> dict[str, Any]:
    """The section's figures, failures and leftovers; {"skipped": why} without root or `ip`."""
    if reason := unavailable():
        return {"skipped": reason}
    raw_prog, prog = (work / name for name in FILES)
    raw_prog.write_text(RAW_PROGRAM)
    prog.write_text(PROGRAM)
    cmds = commands(opts.quick)
    reports: dict[str, dict[int, dict[str, Any]]] = {c.key: {} for c in cmds}  # command -> round -> report
    failures: list[dict[str, Any]] = []
    leftovers: list[dict[str, Any]] = []
    started = time.perf_counter()
    cluster = VirtualCluster(2)
    try:
        cluster.open()
        denv = {k: v for k, v in env.items() if not k.startswith("DRAGON_")}
        denv["DRAGON_LOCAL_WRAP"] = cluster.wrap_template()
        for i in range(opts.cross_runs):
            say(f"[bench] cross-node round {i + 1}/{opts.cross_runs}")
            for cmd in cmds if i % 2 == 0 else cmds[::-1]:
                if cmd.raw is not None:
                    got = run_raw(cluster, raw_prog, *cmd.raw)
                else:
                    got = run_dragon(cluster, cmd, dragon, prog, work, denv)
                report = got.report()
                if got.rc != 0 or report is None:
                    failures.append(
                        {"case": cmd.key, "rc": got.rc, "stdout": got.stdout[-500:], "stderr": got.stderr[-2000:]}
                    )
                    say(f"[bench] FAILED {cmd.key} rc={got.rc}: {got.stderr.strip()[-300:]}")
                else:
                    reports[cmd.key][i] = report
                if left := cluster.wait_clear(LEFTOVER_GRACE_S):
                    leftovers.append({"after": cmd.key, "left": left})
                    say(f"[bench] LEFT after {cmd.key}: {left}")
    finally:
        try:
            cluster.close()
        except RuntimeError as e:
            leftovers.append({"after": "close", "left": {"stuck": [str(e)]}})
    return {
        "nodes": "2 isolated virtual nodes (network namespaces on a veth bridge, a private /dev/shm each)",
        "runs": opts.cross_runs,
        "elapsed_s": round(time.perf_counter() - started, 2),
        "counts": {c.key: (c.raw[1] if c.raw else c.dragon[2] if c.dragon else None) for c in cmds},
        "rows": figures(reports),
        "pool_nodes": [r["pool_nodes"] for key in ("dragon_curve", "dragon_none") for r in reports[key].values()],
        "failures": failures,
        "leftovers": leftovers,
    }


# ============================================================================ figures


def over_rounds(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "reps": []}
    return {"median": median(values), "min": min(values), "max": max(values), "reps": values}


def figures(reports: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Each row over the rounds in which both it and its baseline were measured (pass: None if none was)."""
    out = {}
    for key, row in ROWS.items():
        mine, theirs = reports[row.value[0]], reports[row.baseline[0]]
        rounds = sorted(mine.keys() & theirs.keys())
        values = [mine[i][row.value[1]] * row.scale for i in rounds]
        bases = [theirs[i][row.baseline[1]] * row.scale for i in rounds]
        ratios = [v / b for v, b in zip(values, bases, strict=True)]
        ratio = median(ratios)
        ok: bool | None = None
        if rounds and row.target is not None:
            ok = ratio >= row.target if row.higher else ratio <= row.target
            if row.floor is not None:
                ok = ok and median(values) >= row.floor
        out[key] = {
            "what": row.what,
            "unit": row.unit,
            "value": over_rounds(values),
            "baseline": over_rounds(bases),
            "baseline_is": row.baseline_label,
            "ratio": over_rounds(ratios),
            "rounds": len(rounds),
            "target": "(information)"
            if row.target is None
            else (">= " if row.higher else "<= ")
            + f"{row.target}x"
            + (f", >= {row.floor:,.0f} {row.unit}" if row.floor else ""),
            "pass": ok,
        }
    return out


def print_tables(section: dict[str, Any]) -> None:
    if "skipped" in section:
        print(f"### Across two isolated nodes: skipped ({section['skipped']})\n")
        return
    print(
        f"### Across two isolated nodes ({section['runs']} rounds, interleaved; every baseline between the "
        f"same two namespaces in the same run; medians over rounds, min–max; {section['elapsed_s']} s)\n"
    )
    rows = []
    for key, r in section["rows"].items():
        d = ROWS[key].digits

        def cell(s: dict[str, Any], d: int = d) -> str:
            return f"{fmt(s['median'], d)} ({fmt(s['min'], d)}–{fmt(s['max'], d)})"

        rows.append(
            [
                r["what"],
                cell(r["value"]),
                f"{r['baseline_is']}: {cell(r['baseline'])}",
                f"{fmt(r['ratio']['median'], 2)}x ({fmt(r['ratio']['min'], 2)}–{fmt(r['ratio']['max'], 2)})",
                r["rounds"],
                r["target"],
                "" if ROWS[key].target is None else {True: "PASS", False: "MISS", None: "no sample"}[r["pass"]],
            ]
        )
    print(md_table(["figure", "the runtime", "baseline", "ratio", "rounds", "target", "met?"], rows))
    print(
        "\nratio: median of the per-round ratios (the figure over its baseline, measured within seconds of "
        "each other), over the rounds in which both were measured (a failed run has none). Pool workers' "
        f"nodes per run: {section['pool_nodes']}\n"
    )
    for f in section["failures"]:
        print(f"FAILED cross-node run: {f['case']} rc={f['rc']} stderr: {f['stderr'].strip()[-300:]!r}")
    for left in section["leftovers"]:
        print(f"LEFT BEHIND in the virtual cluster after {left['after']}: {left['left']}")
    if not section["leftovers"]:
        print("nothing left in either node (processes in its namespace, entries in its /dev/shm) after any command")
