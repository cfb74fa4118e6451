"""Benchmark the shared-memory channels against the standard library, in one run on one machine.

Measures, each side in its own process (multiprocessing "spawn"; timing with time.perf_counter inside
the processes, after start-up and after a warm-up):

1. one-way throughput, 1 producer -> 1 consumer, 64 B and 1 MiB messages: `Channel` (blocking face on
   both sides) vs `multiprocessing.Queue` (put/get) and `multiprocessing.Pipe(duplex=False)`
   (send_bytes/recv_bytes). Timed on the consumer, from the first message after the warm-up to the last.
2. round-trip latency of an 8-byte message (median and p99 over the timed round trips): blocking<->blocking,
   trio<->trio (`TrioChannel` in both processes), blocking client <-> trio echo server, and as references
   two `multiprocessing.Pipe(duplex=False)` (one per direction) and two `multiprocessing.Queue`.

Every measurement is repeated `--reps` times (the cases interleaved, so that load drift hits all of
them alike); the tables give the median over repetitions, min–max beside it, and ratios against the
standard library measured in the same run. Ratios are ours / stdlib: above 1 is better for throughput,
below 1 is better for latency. Ends with one line of JSON and a PASS/MISS check of the targets.

Usage: python tools/bench_channels.py [--reps N] [--quick] [--json-only]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dragon.transport import Channel, entries, run_prefix, unlink_quietly

from _bench_util import fmt, fmt_range, json_line, machine_info, md_table, median, percentile, summary

MiB = 1 << 20
Params = dict[str, Any]
Sync = Callable[[], None]

# Channel geometry per message size: (capacity in messages, block size in bytes); ring = product.
CHANNEL_SIZES: dict[int, tuple[int, int]] = {64: (1024, 1024), MiB: (8, MiB)}
RT_CHANNEL_SIZE = (64, 1024)  # round-trip channels: 64 messages x 1 KiB
RT_PAYLOAD = 8
CHILD_TIMEOUT_S = 120.0  # a case whose children take longer than this is abandoned (and killed)


@dataclass(frozen=True)
class Counts:
    """How many messages / round trips per measurement (warm-up excluded from timing)."""

    tp: dict[int, tuple[int, int]]  # size -> (warm-up, timed)
    rt_warm: int
    rt_timed: int


FULL = Counts(tp={64: (20_000, 200_000), MiB: (200, 2_000)}, rt_warm=1_000, rt_timed=10_000)
QUICK = Counts(tp={64: (2_000, 20_000), MiB: (20, 200)}, rt_warm=200, rt_timed=2_000)


# ============================================================================ child roles
# Each role runs in a fresh spawned process: set up, call sync() (reports ready, waits for "go"),
# measure, return a dict of results for the parent.


def _tp_chan_producer(p: Params, sync: Sync) -> Params:
    ch = Channel.attach(p["chan"])
    try:
        msg = b"\x5a" * p["size"]
        send = ch.send
        sync()
        t0 = time.perf_counter()
        for _ in range(p["warm"] + p["n"]):
            send(msg)
        return {"producer_s": time.perf_counter() - t0}
    finally:
        ch.close()


def _tp_chan_consumer(p: Params, sync: Sync) -> Params:
    ch = Channel.attach(p["chan"])
    try:
        recv = ch.recv
        sync()
        for _ in range(p["warm"]):
            recv()
        t0 = time.perf_counter()
        for _ in range(p["n"] - 1):
            recv()
        last = recv()
        dt = time.perf_counter() - t0
        return {"s": dt, "ok": len(last) == p["size"]}
    finally:
        ch.close()


BATCH = 64  # messages per send_many / at most per recv_many in the batched cases


def _tp_chanb_producer(p: Params, sync: Sync) -> Params:
    """The producer with the batch API: `send_many` of BATCH messages at a time."""
    ch = Channel.attach(p["chan"])
    try:
        total = p["warm"] + p["n"]
        batch = [b"\x5a" * p["size"]] * BATCH
        send_many = ch.send_many
        sync()
        t0 = time.perf_counter()
        for _ in range(total // BATCH):
            send_many(batch)
        send_many(batch[: total % BATCH])
        return {"producer_s": time.perf_counter() - t0}
    finally:
        ch.close()


def _tp_chanb_consumer(p: Params, sync: Sync) -> Params:
    """The consumer with the batch API: `recv_many` of whatever is waiting, up to 4 * BATCH."""
    ch = Channel.attach(p["chan"])
    try:
        recv_many = ch.recv_many
        sync()
        got = 0
        while got < p["warm"]:
            got += len(recv_many(min(4 * BATCH, p["warm"] - got)))
        t0 = time.perf_counter()
        got = 0
        while got < p["n"]:
            last = recv_many(min(4 * BATCH, p["n"] - got))
            got += len(last)
        dt = time.perf_counter() - t0
        return {"s": dt, "ok": len(last[-1]) == p["size"]}
    finally:
        ch.close()


def _tp_queue_producer(p: Params, sync: Sync) -> Params:
    q: Any = p["q"]
    msg = b"\x5a" * p["size"]
    put = q.put
    sync()
    t0 = time.perf_counter()
    for _ in range(p["warm"] + p["n"]):
        put(msg)
    dt = time.perf_counter() - t0
    q.close()
    q.join_thread()  # the feeder thread must flush before this process exits
    return {"producer_s": dt}


def _tp_queue_consumer(p: Params, sync: Sync) -> Params:
    get = p["q"].get
    sync()
    for _ in range(p["warm"]):
        get()
    t0 = time.perf_counter()
    for _ in range(p["n"] - 1):
        get()
    last = get()
    return {"s": time.perf_counter() - t0, "ok": len(last) == p["size"]}


def _tp_pipe_producer(p: Params, sync: Sync) -> Params:
    conn: mpc.Connection = p["w"]
    msg = b"\x5a" * p["size"]
    send = conn.send_bytes
    sync()
    t0 = time.perf_counter()
    for _ in range(p["warm"] + p["n"]):
        send(msg)
    return {"producer_s": time.perf_counter() - t0}


def _tp_pipe_consumer(p: Params, sync: Sync) -> Params:
    recv = p["r"].recv_bytes
    sync()
    for _ in range(p["warm"]):
        recv()
    t0 = time.perf_counter()
    for _ in range(p["n"] - 1):
        recv()
    last = recv()
    return {"s": time.perf_counter() - t0, "ok": len(last) == p["size"]}


def _rt_stats(times: list[float]) -> Params:
    us = [t * 1e6 for t in times]
    return {"median_us": median(us), "p99_us": percentile(us, 99), "mean_us": sum(us) / len(us)}


def _rt_blocking_client(send: Callable[[bytes], Any], recv: Callable[[], bytes], p: Params, sync: Sync) -> Params:
    """Ping-pong loop of a blocking client; sends b"" (stop) at the end."""
    msg = b"\x01" * RT_PAYLOAD
    times = [0.0] * p["n"]
    pc = time.perf_counter
    sync()
    try:
        for _ in range(p["warm"]):
            send(msg)
            recv()
        for i in range(p["n"]):
            t0 = pc()
            send(msg)
            recv()
            times[i] = pc() - t0
    finally:
        send(b"")
    return _rt_stats(times)


def _rt_blocking_server(send: Callable[[bytes], Any], recv: Callable[[], bytes], sync: Sync) -> Params:
    sync()
    n = 0
    while True:
        m = recv()
        if not m:
            return {"echoed": n}
        send(m)
        n += 1


def _rt_chan_client(p: Params, sync: Sync) -> Params:
    ping, pong = Channel.attach(p["ping"]), Channel.attach(p["pong"])
    try:
        return _rt_blocking_client(ping.send, pong.recv, p, sync)
    finally:
        ping.close()
        pong.close()


def _rt_chan_server(p: Params, sync: Sync) -> Params:
    ping, pong = Channel.attach(p["ping"]), Channel.attach(p["pong"])
    try:
        return _rt_blocking_server(pong.send, ping.recv, sync)
    finally:
        ping.close()
        pong.close()


def _rt_trio_client(p: Params, sync: Sync) -> Params:
    import trio

    from dragon.transport import TrioChannel

    async def main() -> Params:
        ping, pong = TrioChannel.attach(p["ping"]), TrioChannel.attach(p["pong"])
        try:
            msg = b"\x01" * RT_PAYLOAD
            times = [0.0] * p["n"]
            pc = time.perf_counter
            sync()
            try:
                for _ in range(p["warm"]):
                    await ping.send(msg)
                    await pong.receive()
                for i in range(p["n"]):
                    t0 = pc()
                    await ping.send(msg)
                    await pong.receive()
                    times[i] = pc() - t0
            finally:
                with trio.CancelScope(shield=True):
                    await ping.send(b"")
            return _rt_stats(times)
        finally:
            await ping.aclose()
            await pong.aclose()

    return trio.run(main)


def _rt_trio_server(p: Params, sync: Sync) -> Params:
    import trio

    from dragon.transport import TrioChannel

    async def main() -> Params:
        ping, pong = TrioChannel.attach(p["ping"]), TrioChannel.attach(p["pong"])
        try:
            sync()
            n = 0
            while True:
                m = await ping.receive()
                if not m:
                    return {"echoed": n}
                await pong.send(m)
                n += 1
        finally:
            await ping.aclose()
            await pong.aclose()

    return trio.run(main)


def _rt_pipe_client(p: Params, sync: Sync) -> Params:
    return _rt_blocking_client(p["ping"].send_bytes, p["pong"].recv_bytes, p, sync)


def _rt_pipe_server(p: Params, sync: Sync) -> Params:
    return _rt_blocking_server(p["pong"].send_bytes, p["ping"].recv_bytes, sync)


def _rt_queue_client(p: Params, sync: Sync) -> Params:
    return _rt_blocking_client(p["ping"].put, p["pong"].get, p, sync)


def _rt_queue_server(p: Params, sync: Sync) -> Params:
    return _rt_blocking_server(p["pong"].put, p["ping"].get, sync)


ROLES: dict[str, Callable[[Params, Sync], Params]] = {
    "tp_chan_producer": _tp_chan_producer,
    "tp_chan_consumer": _tp_chan_consumer,
    "tp_chanb_producer": _tp_chanb_producer,
    "tp_chanb_consumer": _tp_chanb_consumer,
    "tp_queue_producer": _tp_queue_producer,
    "tp_queue_consumer": _tp_queue_consumer,
    "tp_pipe_producer": _tp_pipe_producer,
    "tp_pipe_consumer": _tp_pipe_consumer,
    "rt_chan_client": _rt_chan_client,
    "rt_chan_server": _rt_chan_server,
    "rt_trio_client": _rt_trio_client,
    "rt_trio_server": _rt_trio_server,
    "rt_pipe_client": _rt_pipe_client,
    "rt_pipe_server": _rt_pipe_server,
    "rt_queue_client": _rt_queue_client,
    "rt_queue_server": _rt_queue_server,
}


def _child_main(role: str, params: Params, report: mpc.Connection, go: Any) -> None:
    """Entry point of every child process: run `role`, send ("ready",) then ("result", dict)."""

    def sync() -> None:
        report.send(("ready", None))
        if not go.wait(CHILD_TIMEOUT_S):
            raise TimeoutError("no go signal from the parent")

    try:
        result = ROLES[role](params, sync)
        report.send(("result", result))
    except KeyboardInterrupt:
        pass
    except BaseException:
        try:
            report.send(("error", f"{role}: {traceback.format_exc()}"))
        except OSError:
            pass
    finally:
        report.close()


# ============================================================================ parent


@dataclass
class Case:
    """One measurement: the processes to start (role, params) and the channels to make for them."""

    key: str
    roles: list[tuple[str, Params]]
    channels: list[tuple[str, int, int]] = field(default_factory=list)  # (name, capacity, block)


class BenchError(RuntimeError):
    pass


class Runner:
    """Runs cases in fresh spawned processes and cleans up after each (channels, processes)."""

    def __init__(self, prefix: str) -> None:
        self.ctx = mp.get_context("spawn")
        self.prefix = prefix
        self.seq = 0

    def chan_name(self, what: str) -> str:
        self.seq += 1
        return f"{self.prefix}{what}{self.seq}"

    def run(self, case: Case) -> list[Params]:
        made: list[Channel] = []
        procs: list[Any] = []
        readers: list[mpc.Connection] = []
        try:
            for name, capacity, block in case.channels:
                made.append(Channel.create(name, capacity=capacity, block_size=block))
            go = self.ctx.Event()
            for role, params in case.roles:
                r, w = self.ctx.Pipe(duplex=False)
                proc = self.ctx.Process(
                    target=_child_main, args=(role, params, w, go), name=f"bench-{role}", daemon=True
                )
                proc.start()
                w.close()
                procs.append(proc)
                readers.append(r)
            self._collect(case, procs, readers, "ready")
            go.set()
            results = self._collect(case, procs, readers, "result")
            for proc in procs:
                proc.join(10)
            return results
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                    proc.join(2)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
            for r in readers:
                r.close()
            for ch in made:
                try:
                    ch.destroy()
                except Exception:
                    pass

    def _collect(self, case: Case, procs: list[Any], readers: list[mpc.Connection], kind: str) -> list[Params]:
        """Wait for one `kind` message from every child; fail on error, early exit or timeout."""
        out: list[Params | None] = [None] * len(readers)
        pending = set(range(len(readers)))
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{case.key}: timed out waiting for '{kind}' from the children")
            waitables: list[Any] = [readers[i] for i in pending]
            ready = mpc.wait(waitables, timeout=left)
            for obj in ready:
                i = next(j for j, r in enumerate(readers) if r is obj)
                try:
                    tag, payload = readers[i].recv()
                except EOFError:
                    raise BenchError(
                        f"{case.key}: child {case.roles[i][0]} exited early (exit code {procs[i].exitcode})"
                    ) from None
                if tag == "error":
                    raise BenchError(f"{case.key}: child failed:\n{payload}")
                if tag != kind:
                    raise BenchError(f"{case.key}: expected '{kind}' from a child, got '{tag}'")
                out[i] = payload if payload is not None else {}
                pending.discard(i)
        return [o for o in out if o is not None]


def throughput_cases(runner: Runner, counts: Counts) -> list[Case]:
    cases: list[Case] = []
    ctx = runner.ctx
    for size, (warm, n) in counts.tp.items():
        base = {"size": size, "warm": warm, "n": n}
        cap, block = CHANNEL_SIZES[size]
        name = runner.chan_name("tp")
        cases.append(
            Case(
                f"tp_chan_{size}",
                [("tp_chan_producer", {**base, "chan": name}), ("tp_chan_consumer", {**base, "chan": name})],
                channels=[(name, cap, block)],
            )
        )
        if size == 64:
            name = runner.chan_name("tpb")
            cases.append(
                Case(
                    f"tp_chanb_{size}",
                    [("tp_chanb_producer", {**base, "chan": name}), ("tp_chanb_consumer", {**base, "chan": name})],
                    channels=[(name, cap, block)],
                )
            )
        q = ctx.Queue()
        cases.append(
            Case(f"tp_queue_{size}", [("tp_queue_producer", {**base, "q": q}), ("tp_queue_consumer", {**base, "q": q})])
        )
        r, w = ctx.Pipe(duplex=False)
        cases.append(
            Case(f"tp_pipe_{size}", [("tp_pipe_producer", {**base, "w": w}), ("tp_pipe_consumer", {**base, "r": r})])
        )
    return cases


def latency_cases(runner: Runner, counts: Counts) -> list[Case]:
    base = {"warm": counts.rt_warm, "n": counts.rt_timed}
    cap, block = RT_CHANNEL_SIZE
    cases: list[Case] = []
    for key, client, server in (
        ("rt_chan_blocking", "rt_chan_client", "rt_chan_server"),
        ("rt_chan_trio", "rt_trio_client", "rt_trio_server"),
        ("rt_chan_mixed", "rt_chan_client", "rt_trio_server"),
    ):
        ping, pong = runner.chan_name("ping"), runner.chan_name("pong")
        p = {**base, "ping": ping, "pong": pong}
        cases.append(Case(key, [(client, p), (server, p)], channels=[(ping, cap, block), (pong, cap, block)]))
    ctx = runner.ctx
    ping_r, ping_w = ctx.Pipe(duplex=False)
    pong_r, pong_w = ctx.Pipe(duplex=False)
    cases.append(
        Case(
            "rt_pipe",
            [
                ("rt_pipe_client", {**base, "ping": ping_w, "pong": pong_r}),
                ("rt_pipe_server", {**base, "ping": ping_r, "pong": pong_w}),
            ],
        )
    )
    qp = {**base, "ping": ctx.Queue(), "pong": ctx.Queue()}
    cases.append(Case("rt_queue", [("rt_queue_client", qp), ("rt_queue_server", qp)]))
    return cases


def measure(reps: int, counts: Counts, runner: Runner, log: Callable[[str], None]) -> dict[str, list[Params]]:
    """Run every case `reps` times, interleaved; per case key the list of per-rep results."""
    per_rep: dict[str, list[Params]] = {}
    for rep in range(reps):
        t_rep = time.monotonic()
        # Fresh channels/queues/pipes for every repetition: nothing left over from the previous one.
        for case in throughput_cases(runner, counts) + latency_cases(runner, counts):
            t0 = time.monotonic()
            results = runner.run(case)
            if case.key.startswith("tp_"):
                cons = results[1]
                if not cons.get("ok"):
                    raise BenchError(f"{case.key}: the consumer received a message of the wrong size")
                size = case.roles[1][1]["size"]
                n = case.roles[1][1]["n"]
                rec = {
                    "msgs_s": n / cons["s"],
                    "mb_s": n * size / cons["s"] / 1e6,
                    "producer_msgs_s": (case.roles[0][1]["warm"] + n) / results[0]["producer_s"],
                }
                log(
                    f"  rep {rep + 1}/{reps} {case.key:<16} {fmt(rec['msgs_s'])} msg/s "
                    f"{fmt(rec['mb_s'])} MB/s  ({time.monotonic() - t0:.1f} s)"
                )
            else:
                rec = results[0]
                log(
                    f"  rep {rep + 1}/{reps} {case.key:<16} median {rec['median_us']:.1f} µs "
                    f"p99 {rec['p99_us']:.1f} µs  ({time.monotonic() - t0:.1f} s)"
                )
            per_rep.setdefault(case.key, []).append(rec)
        log(f"rep {rep + 1}/{reps} done in {time.monotonic() - t_rep:.1f} s, load {os.getloadavg()[0]:.2f}")
    return per_rep


def report(
    per_rep: dict[str, list[Params]],
    counts: Counts,
    reps: int,
    elapsed: float,
    load_before: list[float],
    json_only: bool,
) -> bool:
    """Print the tables, the JSON line and the target check; True if every target passed."""

    def s(key: str, field_: str) -> dict[str, Any]:
        return summary([r[field_] for r in per_rep[key]])

    def med(key: str, field_: str) -> float:
        return float(s(key, field_)["median"])

    def paired(a: str, b: str, field_: str) -> list[float]:
        """Per-rep ratios a/b (same repetition, measured minutes apart at most)."""
        return [x[field_] / y[field_] for x, y in zip(per_rep[a], per_rep[b], strict=False)]

    figures: dict[str, Any] = {}
    for key, recs in per_rep.items():
        fields = [k for k in recs[0] if isinstance(recs[0][k], (int, float))]
        figures[key] = {f: summary([r[f] for r in recs]) for f in fields}

    size_label = {64: "64 B", MiB: "1 MiB"}
    rows: list[list[object]] = []
    ratios: dict[str, float] = {}
    for size in counts.tp:
        lab = size_label[size]
        ours = med(f"tp_chan_{size}", "msgs_s")
        for ref, ref_name in (("queue", "mp.Queue"), ("pipe", "mp.Pipe")):
            theirs = med(f"tp_{ref}_{size}", "msgs_s")
            ratios[f"tp_{size}_vs_{ref}"] = ours / theirs
            rows.append(
                [
                    f"throughput {lab}, channel vs {ref_name}",
                    f"{fmt(ours)} msg/s = {fmt(med(f'tp_chan_{size}', 'mb_s'))} MB/s",
                    f"{fmt(theirs)} msg/s = {fmt(med(f'tp_{ref}_{size}', 'mb_s'))} MB/s",
                    f"{ours / theirs:.2f}x",
                ]
            )
    ours = med("tp_chanb_64", "msgs_s")
    theirs = med("tp_queue_64", "msgs_s")
    ratios["tp_64_batched_vs_queue"] = ours / theirs
    rows.append(
        [
            f"throughput 64 B, channel send_many/recv_many ({BATCH}) vs mp.Queue",
            f"{fmt(ours)} msg/s = {fmt(med('tp_chanb_64', 'mb_s'))} MB/s",
            f"{fmt(theirs)} msg/s = {fmt(med('tp_queue_64', 'mb_s'))} MB/s",
            f"{ours / theirs:.2f}x",
        ]
    )
    rt_names = {
        "rt_chan_blocking": "blocking<->blocking",
        "rt_chan_trio": "trio<->trio",
        "rt_chan_mixed": "blocking client<->trio server",
    }
    for key, label in rt_names.items():
        for ref, ref_name in (("rt_pipe", "mp.Pipe"), ("rt_queue", "mp.Queue")):
            for stat in ("median_us", "p99_us"):
                ours, theirs = med(key, stat), med(ref, stat)
                short = stat.split("_")[0]
                ratios[f"{key}_{short}_vs_{ref[3:]}"] = ours / theirs
                rows.append(
                    [
                        f"round trip {short} {label} vs {ref_name}",
                        f"{ours:,.1f} µs",
                        f"{theirs:,.1f} µs",
                        f"{ours / theirs:.2f}x",
                    ]
                )

    targets = [
        (
            "64 B throughput >= 4x mp.Queue",
            ratios["tp_64_vs_queue"],
            ">=",
            4.0,
            paired("tp_chan_64", "tp_queue_64", "msgs_s"),
        ),
        (
            f"64 B throughput, batched (send_many/recv_many of {BATCH}) >= 4x mp.Queue",
            ratios["tp_64_batched_vs_queue"],
            ">=",
            4.0,
            paired("tp_chanb_64", "tp_queue_64", "msgs_s"),
        ),
        (
            "1 MiB throughput >= 2.5x mp.Queue",
            ratios[f"tp_{MiB}_vs_queue"],
            ">=",
            2.5,
            paired(f"tp_chan_{MiB}", f"tp_queue_{MiB}", "msgs_s"),
        ),
        (
            "blocking<->blocking round trip <= 0.5x mp.Pipe",
            ratios["rt_chan_blocking_median_vs_pipe"],
            "<=",
            0.5,
            paired("rt_chan_blocking", "rt_pipe", "median_us"),
        ),
        (
            "trio<->trio round trip <= 1x mp.Queue",
            ratios["rt_chan_trio_median_vs_queue"],
            "<=",
            1.0,
            paired("rt_chan_trio", "rt_queue", "median_us"),
        ),
    ]
    checks: list[dict[str, Any]] = [
        {
            "target": name,
            "ratio": value,
            "limit": limit,
            "op": op,
            "pass": value >= limit if op == ">=" else value <= limit,
            "paired_ratio_per_rep": per,
        }
        for name, value, op, limit, per in targets
    ]

    load_after = list(os.getloadavg())
    settings = {
        "reps": reps,
        "elapsed_s": elapsed,
        "load_before": load_before,
        "load_after": load_after,
        "throughput_messages": {str(k): {"warm": w, "timed": n} for k, (w, n) in counts.tp.items()},
        "throughput_channel": {
            str(k): {"capacity": c, "block_size": b, "ring_bytes": c * b} for k, (c, b) in CHANNEL_SIZES.items()
        },
        "rt_channel": {"capacity": RT_CHANNEL_SIZE[0], "block_size": RT_CHANNEL_SIZE[1]},
        "rt_round_trips": {"warm": counts.rt_warm, "timed": counts.rt_timed},
        "rt_payload": RT_PAYLOAD,
    }
    doc = {
        "bench": "channels",
        "machine": machine_info(),
        "settings": settings,
        "figures": figures,
        "ratios": ratios,
        "targets": checks,
    }

    if not json_only:
        print("# Shared-memory channels vs the standard library\n")
        mi = machine_info()
        print(
            f"Python {mi['python']}, kernel {mi['kernel']}, {mi['cpus']} CPUs; load "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {reps} reps, {elapsed:.0f} s."
        )
        tp_desc = ", ".join(
            f"{size_label[k]}: {fmt(n)} timed after {fmt(w)} warm-up, channel capacity "
            f"{CHANNEL_SIZES[k][0]} x block {fmt(CHANNEL_SIZES[k][1])} B"
            for k, (w, n) in counts.tp.items()
        )
        print(
            f"Throughput (1 producer -> 1 consumer, timed on the consumer): {tp_desc}. "
            "mp.Queue: put/get; mp.Pipe(duplex=False): send_bytes/recv_bytes. MB = 10^6 bytes."
        )
        print(
            f"Round trips: {RT_PAYLOAD}-byte payload, {fmt(counts.rt_timed)} timed after "
            f"{fmt(counts.rt_warm)} warm-up; channels capacity {RT_CHANNEL_SIZE[0]} x block "
            f"{RT_CHANNEL_SIZE[1]} B, one per direction; mp.Pipe = two Pipe(duplex=False), "
            "mp.Queue = two Queues."
        )
        print(
            "Figures: median over reps. Ratio = ours / stdlib (throughput: higher is better; "
            "latency: lower is better).\n"
        )
        print(md_table(["what", "figure", "stdlib reference", "ratio"], rows))
        print("\n## Every case (median (min–max) over reps)\n")
        detail: list[list[object]] = []
        for key in per_rep:
            if key.startswith("tp_"):
                detail.append(
                    [
                        key,
                        fmt_range(figures[key]["msgs_s"]) + " msg/s",
                        fmt_range(figures[key]["mb_s"]) + " MB/s",
                        fmt_range(figures[key]["producer_msgs_s"]) + " msg/s",
                    ]
                )
            else:
                detail.append(
                    [
                        key,
                        fmt_range(figures[key]["median_us"], 1) + " µs",
                        fmt_range(figures[key]["p99_us"], 1) + " µs",
                        "",
                    ]
                )
        print(md_table(["case", "msg/s, or RT median", "MB/s, or RT p99", "producer send rate"], detail))
        print("\n## Targets (same run)\n")
        for c in checks:
            per = ", ".join(f"{x:.2f}" for x in c["paired_ratio_per_rep"])
            print(f"{'PASS' if c['pass'] else 'MISS'}  {c['target']}: {c['ratio']:.2f}x (per rep: {per})")
        print()
    print(json_line(doc))
    return all(c["pass"] for c in checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (default 3)")
    ap.add_argument("--quick", action="store_true", help="10x fewer messages: a smoke run")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    counts = QUICK if args.quick else FULL

    def log(msg: str) -> None:
        if not args.json_only:
            print(msg, file=sys.stderr, flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    prefix = run_prefix("bench" + uuid.uuid4().hex[:8])
    runner = Runner(prefix)
    load_before = list(os.getloadavg())
    t0 = time.monotonic()
    try:
        per_rep = measure(args.reps, counts, runner, log)
        report(per_rep, counts, args.reps, time.monotonic() - t0, load_before, args.json_only)
        return 0  # a missed target is reported (MISS), not an error
    except BenchError as e:
        print(f"bench_channels: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_channels: interrupted", file=sys.stderr)
        return 130
    finally:
        for entry in entries(prefix):  # whatever a failed case may have left in /dev/shm
            unlink_quietly(entry)
        for child in mp.active_children():
            child.kill()
            child.join()


if __name__ == "__main__":
    sys.exit(main())
