"""Benchmark `AsyncSocket` (transport/zsock.py) against blocking pyzmq, in one run on one machine.

One-way PUSH/PULL throughput between two processes on tcp://127.0.0.1, 64 B and 1 MiB messages, with
CURVE (the run's keys, the receiver's authenticator running) and without security:
- `blocking`: plain pyzmq, blocking send/recv loops (the reference);
- `trio`: AsyncSocket in trio on both ends, one `send_multipart`/`recv_multipart` per message;
- `trio-batch` (64 B): AsyncSocket, `try_send_many` (batches of 256, `send_multipart` when full) and
  `recv_many(256)`;
- `trio-nocopy` (1 MiB): as `trio`, with copy=False on both ends.
The receiver binds (a CURVE server, as a transport agent) and times from the first message after a warm-up
to the last; the sender is a child process that gets its keys on stdin. Cases are interleaved per
repetition (load drift hits all alike); tables give the median over repetitions (min–max) and ratios
against `blocking` of the same size and security. Ends with one line of JSON.

Usage: python tools/bench_zsock.py [--reps N] [--quick] [--json-only]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import trio
import zmq

from dragon.transport.zsecurity import Authenticator, RunKeys, client_socket, server_socket
from dragon.transport.zsock import AsyncSocket

from _bench_util import fmt, fmt_range, json_line, machine_info, md_table, summary

MiB = 1 << 20
BATCH = 256
MODES = ("blocking", "trio", "trio-batch", "trio-nocopy")
FULL = {64: (2_000, 300_000), MiB: (50, 1_500)}  # size -> (warm-up, timed) messages
QUICK = {64: (1_000, 50_000), MiB: (20, 300)}


# -- the sender (child process): python bench_zsock.py --send ENDPOINT MODE SIZE COUNT, keys on stdin


def send_blocking(sock: zmq.Socket[bytes], msg: bytes, count: int) -> None:
    for _ in range(count):
        sock.send(msg)


async def send_trio(sock: zmq.Socket[bytes], msg: bytes, count: int, mode: str) -> None:
    s = AsyncSocket(sock)
    if mode == "trio-batch":
        batch = [[msg]] * BATCH
        left = count
        while left:
            n = s.try_send_many(batch[: min(left, BATCH)])
            left -= n
            if n == 0:
                await s.send_multipart(batch[0])
                left -= 1
    else:
        frames = [msg]
        copy = mode != "trio-nocopy"
        for _ in range(count):
            await s.send_multipart(frames, copy=copy)


def sender(endpoint: str, mode: str, size: int, count: int) -> None:
    keys = msgspec.json.decode(sys.stdin.readline(), type=RunKeys | None)
    ctx: zmq.Context[Any] = zmq.Context()
    sock = client_socket(ctx, zmq.PUSH, keys)
    sock.connect(endpoint)
    msg = bytes(size)
    if mode == "blocking":
        send_blocking(sock, msg, count)
    else:
        trio.run(send_trio, sock, msg, count, mode)
    sock.close(linger=-1)  # wait until everything is delivered
    ctx.term()


# -- the receiver (this process)


def recv_blocking(sock: zmq.Socket[bytes], warm: int, timed: int) -> float:
    for _ in range(warm):
        sock.recv()
    t0 = time.perf_counter()
    for _ in range(timed):
        sock.recv()
    return time.perf_counter() - t0


async def recv_trio(sock: zmq.Socket[bytes], warm: int, timed: int, mode: str) -> float:
    s = AsyncSocket(sock)
    copy = mode != "trio-nocopy"
    t0 = 0.0
    for phase, n in (("warm", warm), ("timed", timed)):
        if phase == "timed":
            t0 = time.perf_counter()
        if mode == "trio-batch":
            while n:
                n -= len(await s.recv_many(min(n, BATCH)))
        else:
            for _ in range(n):
                await (s.recv_multipart() if copy else s.recv_multipart(copy=False))
    return time.perf_counter() - t0


class AuthThread:
    """The receiver's authenticator, in a trio loop of its own thread (the blocking receiver has none)."""

    def __init__(self, ctx: zmq.Context[Any], keys: RunKeys) -> None:
        self._auth = Authenticator(ctx, keys)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _main(self) -> None:
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._auth.serve)
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()

    def stop(self) -> None:
        assert self._token is not None and self._scope is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)


def measure(ctx: zmq.Context[Any], keys: RunKeys | None, mode: str, size: int, warm: int, timed: int) -> float:
    """Messages per second of one case."""
    sock = server_socket(ctx, zmq.PULL, keys)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    cmd = [sys.executable, __file__, "--send", endpoint, mode, str(size), str(warm + timed)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as child:
        assert child.stdin is not None
        child.stdin.write(msgspec.json.encode(keys) + b"\n")
        child.stdin.close()
        if mode == "blocking":
            elapsed = recv_blocking(sock, warm, timed)
        else:
            elapsed = trio.run(recv_trio, sock, warm, timed, mode)
        if child.wait(60) != 0:
            raise RuntimeError(f"the sender of {mode} {size} B failed ({child.returncode})")
    sock.close(linger=0)
    return timed / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--send", nargs=4, metavar=("ENDPOINT", "MODE", "SIZE", "COUNT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.send:
        endpoint, mode, size, count = args.send
        sender(endpoint, mode, int(size), int(count))
        return
    counts = QUICK if args.quick else FULL
    keys = RunKeys.make()
    ctx: zmq.Context[Any] = zmq.Context()
    auth = AuthThread(ctx, keys)
    cases = [
        (security, size, mode)
        for security in ("none", "curve")
        for size in counts
        for mode in MODES
        if (mode != "trio-nocopy" or size == MiB) and (mode != "trio-batch" or size == 64)
    ]
    results: dict[tuple[str, int, str], list[float]] = {c: [] for c in cases}
    try:
        for _ in range(args.reps):
            for security, size, mode in cases:
                warm, timed = counts[size]
                rate = measure(ctx, keys if security == "curve" else None, mode, size, warm, timed)
                results[security, size, mode].append(rate)
    finally:
        auth.stop()
        ctx.term()
    report(results, args.json_only)


def report(results: dict[tuple[str, int, str], list[float]], json_only: bool) -> None:
    doc: dict[str, Any] = {"bench": "zsock", "machine": machine_info(), "cases": []}
    rows = []
    for (security, size, mode), rates in results.items():
        s = summary(rates)
        ref = summary(results[security, size, "blocking"])["median"]
        gbs = s["median"] * size / 1e9
        doc["cases"].append(
            {
                "security": security,
                "size": size,
                "mode": mode,
                "msg_per_s": s,
                "gb_per_s": gbs,
                "ratio_to_blocking": s["median"] / ref,
            }
        )
        rows.append(
            [
                security,
                "64 B" if size == 64 else "1 MiB",
                mode,
                fmt_range(s),
                f"{gbs:.3f}",
                f"{s['median'] / ref:.2f}x",
            ]
        )
    if not json_only:
        print(f"machine: {doc['machine']}")
        print(md_table(["security", "size", "mode", "msg/s median (min–max)", "GB/s", "vs blocking"], rows))
        print(f"({fmt(len(next(iter(results.values()))))} repetitions per case)")
    print(json_line(doc))


if __name__ == "__main__":
    main()
